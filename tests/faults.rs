//! Fault matrix: each EC2/IMDS fault ends with its documented CNI code, a message naming the cause,
//! and a consistent state (the store and the ENI agree, or the record is kept so a retry completes).

mod common;

use common::*;
use ec2_sim::Faults;
use serde_json::json;
use std::collections::BTreeMap;

fn faults(f: impl FnOnce(&mut Faults)) -> Faults {
    let mut x = Faults::default();
    f(&mut x);
    x
}

fn all(v: f64) -> BTreeMap<String, f64> {
    [("*".to_string(), v)].into()
}

fn records(fx: &Fixture) -> usize {
    fx.records(NODE1).len()
}

#[test]
fn fault_5xx_bursts_are_retried_to_success() {
    let fx = Fixture::new();
    fx.sim.set_faults(faults(|f| {
        f.seed = Some(7);
        f.error_rate = all(0.5);
    }));
    for i in 0..4 {
        let conf = fx.conf(
            "1.0.0",
            NODE1,
            ENI1,
            Some(prev_result("1.0.0", &[&format!("198.18.1.{}/24", 100 + i)])),
        );
        fx.run("ADD", &format!("c{i}"), "net1", &conf).ok();
        fx.run("DEL", &format!("c{i}"), "net1", &conf).ok();
    }
    assert!(fx.sim.calls().injected_errors > 0, "faults were injected");
    assert!(fx.addresses(ENI1).is_empty());
    assert_eq!(records(&fx), 0);
}

#[test]
fn fault_5xx_past_the_deadline_is_code_11_with_the_record_kept() {
    let fx = Fixture::new();
    let mut conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.110/24"])),
    );
    conf["timeoutMs"] = json!(1200);
    // First ADD learns the ENI (IMDS + tag check), so the failure below is the Assign itself.
    fx.run(
        "ADD",
        "warm",
        "net1",
        &fx.conf(
            "1.0.0",
            NODE1,
            ENI1,
            Some(prev_result("1.0.0", &["198.18.1.111/24"])),
        ),
    )
    .ok();
    fx.sim.set_faults(faults(|f| f.error_rate = all(1.0)));
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 11);
    assert!(
        r.msg().contains("InternalError") || r.msg().contains("AssignPrivateIpAddresses"),
        "{}",
        r.msg()
    );
    assert_eq!(
        records(&fx),
        2,
        "the interrupted ADD's record stays for DEL"
    );
    fx.sim.set_faults(Faults::default());
    fx.run("DEL", "c", "net1", &conf).ok();
    assert_eq!(records(&fx), 1);
}

#[test]
fn fault_connection_refused_is_code_11() {
    let fx = Fixture::new();
    let mut conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.112/24"])),
    );
    conf["timeoutMs"] = json!(1000);
    // Port 1 (tcpmux) is privileged and unused: a freed ephemeral port could be taken by a
    // simulator of a test running in parallel.
    assert!(
        std::net::TcpStream::connect("127.0.0.1:1").is_err(),
        "something listens on 127.0.0.1:1"
    );
    conf["ec2Endpoint"] = json!("http://127.0.0.1:1");
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 11, "{}", r.stdout);
}

#[test]
fn fault_ec2_latency_beyond_the_deadline_is_code_11() {
    let fx = Fixture::new();
    let mut conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.113/24"])),
    );
    conf["timeoutMs"] = json!(1000);
    fx.sim.set_faults(faults(|f| {
        f.latency_ms = [("*".to_string(), 3000)].into();
    }));
    let started = std::time::Instant::now();
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 11, "{}", r.stdout);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2500),
        "the deadline bounds the command"
    );
}

#[test]
fn fault_imds_down_is_code_11_and_imds_slow_still_works() {
    let fx = Fixture::new();
    let mut conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.114/24"])),
    );
    conf["timeoutMs"] = json!(1500);
    fx.sim.set_faults(faults(|f| f.imds_down = true));
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 11, "{}", r.stdout);
    assert!(r.msg().contains("IMDS"), "{}", r.msg());
    assert!(fx.addresses(ENI1).is_empty());
    fx.sim.set_faults(faults(|f| f.imds_latency_ms = 200));
    conf["timeoutMs"] = json!(10000);
    fx.run("ADD", "c", "net1", &conf).ok();
    assert_eq!(fx.addresses(ENI1), vec![ip("198.18.1.114")]);
}

#[test]
fn fault_imds_token_refused_is_code_112() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.115/24"])),
    );
    fx.sim.set_faults(faults(|f| f.imds_token_refused = true));
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 112, "{}", r.stdout);
    assert!(r.msg().contains("token"), "{}", r.msg());
}

#[test]
fn fault_describe_lag_does_not_fail_check_right_after_add() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.116/24"])),
    );
    fx.sim.set_faults(faults(|f| f.consistency_lag_ms = 1500));
    fx.run("ADD", "c", "net1", &conf).ok();
    fx.run("CHECK", "c", "net1", &conf).ok();
}

#[test]
fn fault_address_limit_reached_is_code_106_and_nothing_stays() {
    let fx = Fixture::new();
    // m5.large: 10 addresses per ENI, the primary included.
    let addrs: Vec<String> = (0..10)
        .map(|i| format!("198.18.1.{}/24", 120 + i))
        .collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let conf = fx.conf("1.0.0", NODE1, ENI1, Some(prev_result("1.0.0", &refs)));
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 106, "{}", r.stdout);
    assert!(r.msg().contains(ENI1), "{}", r.msg());
    assert!(fx.addresses(ENI1).is_empty());
    assert_eq!(records(&fx), 0);
}

#[test]
fn fault_eni_gone_mid_flight_fails_add_with_102_and_del_succeeds() {
    let fx = Fixture::new();
    let warm = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.130/24"])),
    );
    fx.run("ADD", "warm", "net1", &warm).ok();
    // The ENI is deleted after the plugin cached its facts.
    fx.sim.delete_eni(ENI1);
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.131/24"])),
    );
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 102, "{}", r.stdout);
    assert!(r.msg().contains(ENI1), "{}", r.msg());
    assert_eq!(records(&fx), 1, "only the earlier pod's record");
    // Its addresses went with the ENI: DEL has nothing left to do and succeeds.
    fx.run("DEL", "warm", "net1", &warm).ok();
    assert_eq!(records(&fx), 0);
}

#[test]
fn fault_unauthorized_is_code_108_naming_the_fix() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.132/24"])),
    );
    fx.sim
        .set_faults(faults(|f| f.deny = vec!["AssignPrivateIpAddresses".into()]));
    let r = fx.run("ADD", "c", "net1", &conf);
    assert_eq!(r.err_code(), 108, "{}", r.stdout);
    assert!(
        r.msg().contains(ENI1) && r.msg().contains("iam-policy"),
        "{}",
        r.msg()
    );
    assert_eq!(records(&fx), 0);

    fx.sim.set_faults(Faults::default());
    fx.run("ADD", "c", "net1", &conf).ok();
    fx.sim.set_faults(faults(|f| {
        f.deny = vec!["UnassignPrivateIpAddresses".into()]
    }));
    assert_eq!(fx.run("DEL", "c", "net1", &conf).err_code(), 108);
    assert_eq!(
        records(&fx),
        1,
        "kept so that DEL can finish once the policy is fixed"
    );
    fx.sim.set_faults(Faults::default());
    fx.run("DEL", "c", "net1", &conf).ok();
    assert!(fx.addresses(ENI1).is_empty());
}

#[test]
fn fault_throttling_burst_of_eight_pods_all_succeed_inside_the_deadline() {
    let fx = Fixture::new();
    let mut world_faults = Faults::default();
    // One token: the burst's calls (batched into a few) still meet the bucket.
    world_faults.throttle.insert(
        "AssignPrivateIpAddresses".into(),
        ec2_sim::Throttle {
            capacity: 1,
            refill_per_second: 2.0,
        },
    );
    // m5.large holds 9 secondaries: the warm-up and a burst of 8 fit.
    let confs: Vec<_> = (0..8)
        .map(|i| {
            fx.conf(
                "1.0.0",
                NODE1,
                ENI1,
                Some(prev_result("1.0.0", &[&format!("198.18.1.{}/24", 140 + i)])),
            )
        })
        .collect();
    fx.sim.set_faults(world_faults);
    // Takes the bucket's only token: the burst's first call meets an empty bucket.
    let warm = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.139/24"])),
    );
    fx.run("ADD", "warm", "net1", &warm).ok();
    std::thread::scope(|s| {
        for (i, conf) in confs.iter().enumerate() {
            let fx = &fx;
            s.spawn(move || fx.run("ADD", &format!("burst{i}"), "net1", conf).ok().code);
        }
    });
    assert_eq!(fx.addresses(ENI1).len(), 9);
    assert!(fx.sim.calls().throttled > 0, "the burst met the bucket");
    assert_eq!(records(&fx), 9);
}
