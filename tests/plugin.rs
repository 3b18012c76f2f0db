//! The plugin binary, run exactly as a runtime runs it, against ec2-sim: every spec version, both
//! families, reassignment, idempotent DEL, CHECK, GC, STATUS, the safety refusals and throttling.

mod common;

use common::*;
use ec2_sim::{Faults, Throttle};
use serde_json::json;

#[test]
fn version_lists_every_supported_spec_version() {
    let r = run_plugin("VERSION", "", "", None, &json!({"cniVersion": "0.3.0"}));
    r.ok();
    assert_eq!(r.json["cniVersion"], "0.3.0");
    assert_eq!(
        r.json["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn add_check_del_in_every_cni_version() {
    let fx = Fixture::new();
    for (i, version) in versions().into_iter().enumerate() {
        let addr = format!("198.18.1.{}", 80 + i);
        let prev = prev_result(version, &[&format!("{addr}/24")]);
        let conf = fx.conf(version, NODE1, ENI1, Some(prev.clone()));
        let container = format!("ctr-{i}");

        let out = fx.run("ADD", &container, "net1", &conf);
        out.ok();
        assert_eq!(out.json["cniVersion"], *version);
        assert_eq!(out.json["ips"][0]["address"], format!("{addr}/24"));
        assert_eq!(out.json["dns"], prev["dns"], "prevResult passes through");
        assert!(
            fx.addresses(ENI1).contains(&ip(&addr)),
            "{version}: assigned"
        );

        let check = fx.run("CHECK", &container, "net1", &conf);
        if version.starts_with("0.3") {
            assert_eq!(
                check.err_code(),
                1,
                "{version}: CHECK is not in this version"
            );
        } else {
            check.ok();
        }

        fx.run("DEL", &container, "net1", &conf).ok();
        assert!(
            !fx.addresses(ENI1).contains(&ip(&addr)),
            "{version}: released"
        );
        fx.run("DEL", &container, "net1", &conf).ok();
    }
}

#[test]
fn add_output_keeps_every_field_of_a_1_1_prev_result() {
    let fx = Fixture::new();
    let prev = json!({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "net1", "mac": "02:00:c6:12:01:99", "sandbox": "/var/run/netns/p", "pciID": "0000:00:06.0"}],
        "ips": [{"address": "198.18.1.90/24", "gateway": "198.18.1.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.1.1", "mtu": 9001, "advmss": 8961, "priority": 10, "table": 100, "scope": 0}],
        "dns": {"nameservers": ["192.0.2.53"], "domain": "svc", "search": ["a"], "options": ["ndots:2"]}
    });
    let out = fx.run(
        "ADD",
        "c1",
        "net1",
        &fx.conf("1.1.0", NODE1, ENI1, Some(prev.clone())),
    );
    out.ok();
    assert_eq!(out.json, prev);
}

#[test]
fn ipv6_and_dual_stack_are_assigned_and_released() {
    let fx = Fixture::new();
    let v6 = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["2001:db8:100:1::50/64"])),
    );
    fx.run("ADD", "v6", "net1", &v6).ok();
    assert!(fx.addresses(ENI1).contains(&ip("2001:db8:100:1::50")));

    let dual = fx.conf(
        "0.4.0",
        NODE1,
        ENI1,
        Some(prev_result(
            "0.4.0",
            &["198.18.1.51/24", "2001:db8:100:1::51/64"],
        )),
    );
    fx.run("ADD", "dual", "net1", &dual).ok();
    fx.run("CHECK", "dual", "net1", &dual).ok();
    assert!(fx.addresses(ENI1).contains(&ip("198.18.1.51")));
    assert!(fx.addresses(ENI1).contains(&ip("2001:db8:100:1::51")));
    assert_eq!(
        fx.calls("AssignPrivateIpAddresses"),
        1,
        "all IPv4 in one call"
    );

    fx.run("DEL", "dual", "net1", &dual).ok();
    fx.run("DEL", "v6", "net1", &v6).ok();
    assert!(fx.addresses(ENI1).is_empty(), "{:?}", fx.addresses(ENI1));
}

#[test]
fn reassignment_moves_ipv4_and_ipv6_from_another_eni() {
    let fx = Fixture::new();
    fx.sim
        .assign(ENI2, &[ip("198.18.1.60"), ip("2001:db8:100:1::60")]);
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result(
            "1.0.0",
            &["198.18.1.60/24", "2001:db8:100:1::60/64"],
        )),
    );
    let out = fx.run("ADD", "float", "net1", &conf);
    out.ok();
    assert!(fx.addresses(ENI1).contains(&ip("198.18.1.60")));
    assert!(fx.addresses(ENI1).contains(&ip("2001:db8:100:1::60")));
    assert!(
        fx.addresses(ENI2).is_empty(),
        "moved away from {ENI2}: {:?}",
        fx.addresses(ENI2)
    );
    let log = fx.log_lines(NODE1).join("\n");
    for moved in [
        "198.18.1.60 from eni-0b000000000000002",
        "2001:db8:100:1::60 from eni-0b000000000000002",
    ] {
        assert!(log.contains(moved), "{log}");
    }
}

#[test]
fn without_reassignment_an_address_held_elsewhere_is_refused() {
    let fx = Fixture::new();
    fx.sim
        .assign(ENI2, &[ip("198.18.1.61"), ip("2001:db8:100:1::61")]);
    for addr in ["198.18.1.61/24", "2001:db8:100:1::61/64"] {
        let mut conf = fx.conf("1.0.0", NODE1, ENI1, Some(prev_result("1.0.0", &[addr])));
        conf["allowReassignment"] = json!(false);
        let r = fx.run("ADD", "c", "net1", &conf);
        assert_eq!(r.err_code(), 107, "{}", r.stdout);
        assert!(r.msg().contains(ENI1), "{}", r.msg());
    }
    assert_eq!(fx.addresses(ENI2).len(), 2, "nothing moved");
    assert!(fx.addresses(ENI1).is_empty());
    assert!(
        fx.records(NODE1).is_empty(),
        "a refused ADD leaves no record"
    );
}

#[test]
fn del_without_prev_result_uses_the_record_and_repeats_cleanly() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "0.3.0",
        NODE1,
        ENI1,
        Some(prev_result("0.3.0", &["198.18.1.70/24"])),
    );
    fx.run("ADD", "c70", "net1", &conf).ok();
    let bare = fx.conf("0.3.0", NODE1, ENI1, None);
    fx.run("DEL", "c70", "net1", &bare).ok();
    assert!(fx.addresses(ENI1).is_empty());
    fx.run("DEL", "c70", "net1", &bare).ok();
    // No netns at all (the sandbox is gone) is fine for DEL.
    run_plugin("DEL", "c70", "net1", None, &bare).ok();
}

#[test]
fn del_of_an_unknown_attachment_touches_nothing() {
    let fx = Fixture::new();
    fx.sim.assign(ENI1, &[ip("198.18.1.71")]);
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.71/24"])),
    );
    fx.run("DEL", "never-added", "net1", &conf).ok();
    assert_eq!(
        fx.addresses(ENI1),
        vec![ip("198.18.1.71")],
        "not ours to remove"
    );
    assert_eq!(fx.calls("UnassignPrivateIpAddresses"), 0);
}

#[test]
fn check_fails_after_an_out_of_band_unassign() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.72/24"])),
    );
    fx.run("ADD", "c72", "net1", &conf).ok();
    fx.run("CHECK", "c72", "net1", &conf).ok();
    fx.sim.unassign(ENI1, &[ip("198.18.1.72")]);
    let r = fx.run("CHECK", "c72", "net1", &conf);
    assert_eq!(r.err_code(), 109);
    assert!(
        r.msg().contains("198.18.1.72") && r.msg().contains(ENI1),
        "{}",
        r.msg()
    );
    // DEL still succeeds: the address is already gone.
    fx.run("DEL", "c72", "net1", &conf).ok();
}

#[test]
fn a_floating_address_taken_over_by_another_node_survives_our_del() {
    let fx = Fixture::new();
    let a = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.73/24"])),
    );
    let b = fx.conf(
        "1.0.0",
        NODE2,
        ENI2,
        Some(prev_result("1.0.0", &["198.18.1.73/24"])),
    );
    fx.run("ADD", "on-a", "net1", &a).ok();
    fx.run("ADD", "on-b", "net1", &b).ok();
    assert_eq!(fx.addresses(ENI2), vec![ip("198.18.1.73")]);
    fx.run("DEL", "on-a", "net1", &a).ok();
    assert_eq!(
        fx.addresses(ENI2),
        vec![ip("198.18.1.73")],
        "node A's DEL must not take it from B"
    );
    assert!(fx.addresses(ENI1).is_empty());
}

#[test]
fn an_address_two_pods_share_is_released_with_the_last_one() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.74/24"])),
    );
    fx.run("ADD", "first", "net1", &conf).ok();
    fx.run("ADD", "second", "net1", &conf).ok();
    fx.run("DEL", "first", "net1", &conf).ok();
    assert_eq!(
        fx.addresses(ENI1),
        vec![ip("198.18.1.74")],
        "second still holds it"
    );
    fx.run("DEL", "second", "net1", &conf).ok();
    assert!(fx.addresses(ENI1).is_empty());
}

#[test]
fn gc_releases_only_attachments_the_runtime_no_longer_lists() {
    let fx = Fixture::new();
    for (c, a) in [("keep", "198.18.1.75/24"), ("stale", "198.18.1.76/24")] {
        let conf = fx.conf("1.1.0", NODE1, ENI1, Some(prev_result("1.1.0", &[a])));
        fx.run("ADD", c, "net1", &conf).ok();
    }
    let mut gc = fx.conf("1.1.0", NODE1, ENI1, None);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "net1"}]);
    run_plugin("GC", "", "", None, &gc).ok();
    assert_eq!(fx.addresses(ENI1), vec![ip("198.18.1.75")]);
    // The older key alone works too.
    let mut old = fx.conf("1.1.0", NODE1, ENI1, None);
    old["cni.dev/attachments"] = json!([]);
    run_plugin("GC", "", "", None, &old).ok();
    assert!(fx.addresses(ENI1).is_empty());
    let r = run_plugin("GC", "", "", None, &fx.conf("1.0.0", NODE1, ENI1, None));
    assert_eq!(r.err_code(), 1, "GC needs 1.1.0");
}

#[test]
fn status_is_ready_with_imds_and_50_without() {
    let fx = Fixture::new();
    let conf = fx.conf("1.1.0", NODE1, ENI1, None);
    run_plugin("STATUS", "", "", None, &conf).ok();
    fx.sim.set_faults(Faults {
        imds_down: true,
        ..Faults::default()
    });
    let mut quick = conf.clone();
    quick["timeoutMs"] = json!(2000);
    let r = run_plugin("STATUS", "", "", None, &quick);
    assert_eq!(r.err_code(), 50);
    assert!(r.msg().contains("IMDS"), "{}", r.msg());
    let mutating: u64 = [
        "AssignPrivateIpAddresses",
        "UnassignPrivateIpAddresses",
        "AssignIpv6Addresses",
        "UnassignIpv6Addresses",
    ]
    .iter()
    .map(|a| fx.calls(a))
    .sum();
    assert_eq!(mutating, 0, "STATUS never mutates");
    assert_eq!(
        run_plugin("STATUS", "", "", None, &fx.conf("1.0.0", NODE1, ENI1, None)).err_code(),
        1
    );
}

#[test]
fn an_address_outside_the_enis_subnet_is_refused_before_ec2() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.7.5/24"])),
    );
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 105);
    assert!(
        r.msg().contains("198.18.7.5")
            && r.msg().contains(ENI1)
            && r.msg().contains("198.18.1.0/24"),
        "{}",
        r.msg()
    );
    assert_eq!(fx.calls("AssignPrivateIpAddresses"), 0);
}

#[test]
fn the_primary_eni_is_refused() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI_PRIMARY,
        Some(prev_result("1.0.0", &["198.18.0.50/24"])),
    );
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 103);
    assert!(r.msg().contains(ENI_PRIMARY), "{}", r.msg());
}

#[test]
fn an_eni_the_vpc_cni_manages_is_refused_unless_allowed() {
    let fx = Fixture::new();
    let mut conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI_MANAGED,
        Some(prev_result("1.0.0", &["198.18.1.77/24"])),
    );
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 104);
    assert!(
        r.msg().contains(ENI_MANAGED) && r.msg().contains("no_manage"),
        "{}",
        r.msg()
    );
    conf["allowManagedEni"] = json!(true);
    fx.run("ADD", "c", "net1", &conf).ok();
    assert!(fx.addresses(ENI_MANAGED).contains(&ip("198.18.1.77")));
}

#[test]
fn after_the_first_add_an_eni_needs_no_describe_and_no_imds() {
    let fx = Fixture::new();
    let conf = |a: &str| fx.conf("1.0.0", NODE1, ENI1, Some(prev_result("1.0.0", &[a])));
    fx.run("ADD", "p1", "net1", &conf("198.18.1.81/24")).ok();
    let describes = fx.calls("DescribeNetworkInterfaces");
    assert_eq!(describes, 1, "one tag check for a new ENI");
    fx.run("ADD", "p2", "net1", &conf("198.18.1.82/24")).ok();
    fx.run("DEL", "p2", "net1", &conf("198.18.1.82/24")).ok();
    assert_eq!(fx.calls("DescribeNetworkInterfaces"), describes, "cached");
    assert_eq!(fx.calls("AssignPrivateIpAddresses"), 2);
    assert_eq!(fx.calls("UnassignPrivateIpAddresses"), 1);
}

#[test]
fn throttling_is_retried_inside_the_deadline() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.83/24"])),
    );
    let mut faults = Faults::default();
    faults.throttle.insert(
        "AssignPrivateIpAddresses".into(),
        ec2_sim::Throttle {
            capacity: 1,
            // One token per 2 s: the second ADD always meets an empty bucket, even on a slow machine.
            refill_per_second: 0.5,
        },
    );
    fx.sim.set_faults(faults);
    // The first ADD takes the only token.
    let drain = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.84/24"])),
    );
    fx.run("ADD", "drain", "net1", &drain).ok();
    fx.run("ADD", "c83", "net1", &conf).ok();
    assert!(fx.addresses(ENI1).contains(&ip("198.18.1.83")));
    assert!(
        fx.sim.calls().throttled >= 1,
        "the call was throttled at least once"
    );
}

#[test]
fn throttling_past_the_deadline_is_code_11_and_keeps_the_record_for_del() {
    let fx = Fixture::new();
    let mut conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.85/24"])),
    );
    conf["timeoutMs"] = json!(1500);
    fx.run("ADD", "c85", "net1", &conf).ok();
    let mut faults = Faults::default();
    faults.throttle.insert(
        "*".into(),
        ec2_sim::Throttle {
            capacity: 0,
            refill_per_second: 0.0,
        },
    );
    fx.sim.set_faults(faults);
    let r = fx.run("DEL", "c85", "net1", &conf);
    assert_eq!(r.err_code(), 11);
    assert!(r.msg().contains("RequestLimitExceeded"), "{}", r.msg());
    assert!(fx.addresses(ENI1).contains(&ip("198.18.1.85")));
    fx.sim.set_faults(Faults::default());
    // The storm slowed the node's pace: the runtime retries DEL until a token comes in time.
    let mut tries = 1;
    loop {
        let r = fx.run("DEL", "c85", "net1", &conf);
        if r.code == 0 {
            break;
        }
        assert_eq!(r.err_code(), 11, "{}", r.msg());
        assert!(r.msg().contains("budget"), "{}", r.msg());
        assert!(tries < 20, "still refused after {tries} tries: {}", r.msg());
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        fx.addresses(ENI1).is_empty(),
        "the runtime's retry finished the job"
    );
}

#[test]
fn a_token_past_the_deadline_goes_on_credit_until_the_node_owes_two_calls() {
    let fx = Fixture::new();
    // One call per 20 s, its single token spent by the first ADD.
    std::fs::create_dir_all(fx.state_dir(NODE1)).unwrap();
    aws_eni_ip::store::NodeDir::new(fx.state_dir(NODE1))
        .write_settings(&aws_eni_ip::store::NodeSettings {
            ec2_budget: Some(aws_eni_ip::store::BudgetLimits {
                burst: 1,
                refill_per_second: 0.05,
            }),
            node_ec2_rate: None,
        })
        .unwrap();
    let add = |pod: &str, a: &str| {
        let mut conf = fx.conf("1.0.0", NODE1, ENI1, Some(prev_result("1.0.0", &[a])));
        conf["timeoutMs"] = json!(5000);
        let started = std::time::Instant::now();
        (fx.run("ADD", pod, "net1", &conf), started.elapsed())
    };
    add("first", "198.18.1.90/24").0.ok();
    // Each next token is 20 s away, past the 5 s deadline: refused, the pod would only be run
    // again; lent, the call goes 2 s before the deadline, until the node owes two calls.
    let mut lent = Vec::new();
    let refused = loop {
        let a = format!("198.18.1.{}", 91 + lent.len());
        let (reply, took) = add(&format!("p{}", lent.len()), &format!("{a}/24"));
        if reply.code != 0 {
            break reply;
        }
        assert!(
            took >= std::time::Duration::from_millis(2500),
            "{a}: sent on credit just before its deadline, not at once: {took:?}"
        );
        lent.push(a);
        assert!(lent.len() <= 3, "lent past two calls owed: {lent:?}");
    };
    // Owing 0.85, 1.7, then 2.5 calls less what 3 s per ADD repay at 0.05/s: the third loan is the last.
    assert_eq!(lent.len(), 3, "{lent:?}: {}", refused.msg());
    assert_eq!(refused.err_code(), 11);
    assert!(refused.msg().contains("budget"), "{}", refused.msg());
    let held = fx.addresses(ENI1);
    for a in &lent {
        assert!(held.contains(&ip(a)), "{a}: {held:?}");
    }
    assert_eq!(
        fx.calls("AssignPrivateIpAddresses"),
        4,
        "one call per ADD that went"
    );
}

#[test]
fn add_without_prev_result_says_it_must_be_chained() {
    let fx = Fixture::new();
    let r = fx.run("ADD", "c", "net1", &fx.conf("1.0.0", NODE1, ENI1, None));
    assert_eq!(r.err_code(), 100);
    assert!(r.msg().contains("chained"), "{}", r.msg());
}

#[test]
fn a_prev_result_without_addresses_passes_through_without_ec2() {
    let fx = Fixture::new();
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": "/x"}], "ips": []});
    let out = fx.run(
        "ADD",
        "c",
        "net1",
        &fx.conf("1.0.0", NODE1, ENI1, Some(prev.clone())),
    );
    out.ok();
    assert_eq!(out.json, prev);
    assert!(
        fx.sim.calls().ec2.values().all(|n| *n == 0),
        "{:?}",
        fx.sim.calls()
    );
}

#[test]
fn every_operation_logs_one_line() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.86/24"])),
    );
    fx.run("ADD", "c86", "net1", &conf).ok();
    fx.run("CHECK", "c86", "net1", &conf).ok();
    fx.run("DEL", "c86", "net1", &conf).ok();
    let lines = fx.log_lines(NODE1);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (line, cmd) in lines.iter().zip(["ADD", "CHECK", "DEL"]) {
        assert!(
            line.contains(&format!("cmd=\"{cmd}\"")) || line.contains(&format!("cmd={cmd}")),
            "{line}"
        );
        assert!(
            line.contains("container=c86") && line.contains(ENI1) && line.contains("198.18.1.86"),
            "{line}"
        );
        assert!(
            !line.contains("SecretAccessKey") && !line.contains("Token"),
            "{line}"
        );
    }
}

#[test]
fn bad_input_is_a_cni_error_never_a_panic() {
    for (stdin, code) in [
        (&b"{"[..], 6),
        (&b"[1,2]"[..], 6),
        (&br#"{"cniVersion":"0.2.0","name":"n","type":"aws-eni-ip"}"#[..], 1),
        (&br#"{"cniVersion":"1.0.0","name":"n","type":"aws-eni-ip","timeoutMs":"x"}"#[..], 7),
        (&br#"{"cniVersion":"1.0.0","name":"n","type":"aws-eni-ip","prevResult":{"ips":[{"address":"nope"}]}}"#[..], 6),
    ] {
        let r = run_plugin_raw("ADD", "c", "net1", Some("/x"), stdin);
        assert_eq!(r.err_code(), code, "{}", String::from_utf8_lossy(stdin));
    }
    let r = run_plugin_raw(
        "ADD",
        "",
        "net1",
        Some("/x"),
        br#"{"cniVersion":"1.0.0","name":"n"}"#,
    );
    assert_eq!(r.err_code(), 4, "missing CNI_CONTAINERID");
    let big = vec![b' '; 2 << 20];
    assert_eq!(
        run_plugin_raw("ADD", "c", "net1", Some("/x"), &big).err_code(),
        6
    );
}

#[test]
fn state_command_lists_what_the_node_assigned() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.87/24"])),
    );
    fx.run("ADD", "c87", "net1", &conf).ok();
    let state = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aws-eni-ip"))
            .args(["state", "--state-dir", &fx.state_dir(NODE1)])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&state(&["--json"])).unwrap();
    assert_eq!(json[0]["containerId"], "c87");
    assert_eq!(json[0]["eniId"], ENI1);
    assert_eq!(json[0]["phase"], "assigned");
    let table = state(&[]);
    assert!(
        table.contains("c87") && table.contains("198.18.1.87") && table.contains("1 attachment(s)"),
        "{table}"
    );
}

#[test]
fn debug_logs_each_aws_call_and_no_secret() {
    let fx = Fixture::new();
    let mut conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.88/24"])),
    );
    conf["logLevel"] = json!("debug");
    fx.run("ADD", "c88", "net1", &conf).ok();
    let log = fx.log_lines(NODE1).join("\n");
    assert!(
        log.contains("action=\"AssignPrivateIpAddresses\"") && log.contains("IMDS"),
        "{log}"
    );
    for secret in [
        "SecretAccessKey",
        "secret_access_key",
        "Token\":",
        "AWS4-HMAC-SHA256",
    ] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
}

#[test]
fn concurrent_first_adds_on_one_eni_learn_it_once() {
    let fx = Fixture::new();
    let confs: Vec<_> = (0..6)
        .map(|i| {
            fx.conf(
                "1.0.0",
                NODE1,
                ENI1,
                Some(prev_result("1.0.0", &[&format!("198.18.1.{}/24", 90 + i)])),
            )
        })
        .collect();
    std::thread::scope(|s| {
        for (i, conf) in confs.iter().enumerate() {
            let fx = &fx;
            s.spawn(move || fx.run("ADD", &format!("first{i}"), "net1", conf).ok().code);
        }
    });
    assert_eq!(fx.addresses(ENI1).len(), 6);
    assert_eq!(
        fx.calls("DescribeNetworkInterfaces"),
        1,
        "one tag check, not one per pod"
    );
    let imds: u64 = fx.sim.calls().imds.values().sum();
    assert!(
        imds < 6 * 10,
        "IMDS asked about the ENI once, not per pod: {imds} requests"
    );
}

#[test]
fn a_missing_or_macless_master_is_code_101() {
    let fx = Fixture::new();
    for master in ["aei-missing0", "lo"] {
        let mut conf = fx.conf(
            "1.0.0",
            NODE1,
            ENI1,
            Some(prev_result("1.0.0", &["198.18.1.89/24"])),
        );
        conf["master"] = json!(master);
        let r = fx.run("ADD", "c", "net1", &conf);
        assert_eq!(r.err_code(), 101, "{master}: {}", r.stdout);
        assert!(r.msg().contains(master), "{}", r.msg());
    }
    assert!(fx.sim.calls().ec2.values().all(|n| *n == 0));
}

#[test]
fn the_enis_primary_ip_is_refused_before_ec2() {
    let fx = Fixture::new();
    // 198.18.1.10 is eni-0b…1's primary address in the demo world.
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.10/24"])),
    );
    for _ in 0..2 {
        let r = fx.run("ADD", "c", "net1", &conf);
        assert_eq!(r.err_code(), 107, "{}", r.stdout);
        assert!(
            r.msg().contains("primary IP") && r.msg().contains(ENI1),
            "{}",
            r.msg()
        );
    }
    assert_eq!(fx.calls("AssignPrivateIpAddresses"), 0);
    fx.run("DEL", "c", "net1", &conf).ok();
    assert_eq!(
        fx.calls("UnassignPrivateIpAddresses"),
        0,
        "nothing was recorded to release"
    );
}

/// Whether EC2 refuses an explicit assign of an address the ENI already holds is undocumented;
/// here it accepts it. An address someone else put on the ENI before the pod started is adopted
/// all the same (decided from the ENI's listing), so DEL leaves it, and so does a DEL after a
/// failed ADD (code 11) whose record was kept.
#[test]
fn an_address_already_on_the_eni_is_adopted_even_when_ec2_accepts_the_reassign() {
    let fx = Fixture::new();
    fx.sim.assign(ENI1, &[ip("198.18.1.40")]);
    fx.sim.set_faults(Faults {
        same_eni_assign_accepted: true,
        ..Faults::default()
    });
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.40/24"])),
    );
    fx.run("ADD", "ctr-adopt", "net1", &conf).ok();
    assert_eq!(fx.records(NODE1)[0].adopted, vec![ip("198.18.1.40")]);
    fx.run(
        "DEL",
        "ctr-adopt",
        "net1",
        &fx.conf("1.0.0", NODE1, ENI1, None),
    )
    .ok();
    assert_eq!(
        fx.addresses(ENI1),
        vec![ip("198.18.1.40")],
        "left to its owner"
    );
    assert_eq!(fx.calls("UnassignPrivateIpAddresses"), 0);

    // A failed ADD (EC2 throttles past the deadline) keeps its record for DEL: it must not claim
    // the address that was there before it, only its own.
    fx.sim.set_faults(Faults {
        same_eni_assign_accepted: true,
        throttle: [(
            "AssignPrivateIpAddresses".to_string(),
            Throttle {
                capacity: 0,
                refill_per_second: 0.0,
            },
        )]
        .into(),
        ..Faults::default()
    });
    let mut quick = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.40/24", "198.18.1.41/24"])),
    );
    quick["timeoutMs"] = json!(1500);
    let r = fx.run("ADD", "ctr-failed", "net1", &quick);
    assert_eq!(r.err_code(), 11, "{}", r.msg());
    let kept = &fx.records(NODE1)[0];
    assert_eq!(kept.adopted, vec![ip("198.18.1.40")]);
    fx.sim.set_faults(Faults::default());
    fx.run(
        "DEL",
        "ctr-failed",
        "net1",
        &fx.conf("1.0.0", NODE1, ENI1, None),
    )
    .ok();
    assert_eq!(fx.addresses(ENI1), vec![ip("198.18.1.40")]);
    assert!(fx.records(NODE1).is_empty());
}

/// A hot-attached ENI's link is DOWN until the agent brings it up: ADD says so (code 11, the
/// runtime retries) before any EC2 call, and leaves no address and no record behind.
#[test]
fn add_on_a_down_master_fails_with_11_naming_the_link_and_leaves_nothing() {
    let fx = Fixture::new();
    let link = fx.link(ENI1).to_string();
    sh(&["ip", "link", "set", &link, "down"]);
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.5/24"])),
    );
    let r = fx.run("ADD", "ctr-down", "net1", &conf);
    assert_eq!(r.err_code(), 11, "{}", r.msg());
    assert!(
        r.msg().contains(&link) && r.msg().contains("DOWN"),
        "{}",
        r.msg()
    );
    assert!(fx.addresses(ENI1).is_empty());
    assert!(fx.records(NODE1).is_empty());
    assert_eq!(fx.calls("AssignPrivateIpAddresses"), 0);
    sh(&["ip", "link", "set", &link, "up"]);
    fx.run("ADD", "ctr-down", "net1", &conf).ok();
    assert_eq!(fx.addresses(ENI1), vec![ip("198.18.1.5")]);
}
