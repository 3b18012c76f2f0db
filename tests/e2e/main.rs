//! End-to-end: a real CNI runtime (Debian's libcni, through tests/runtime/driver) runs real chains
//! (`macvlan`/`ipvlan` + `host-local`/`static` from /usr/lib/cni, then aws-eni-ip) in network
//! namespaces against ec2-sim. Needs root and the Debian packages (see `make test`); it fails,
//! never skips, without them. Scenarios run one at a time: they share the kernel's network state.
//! The pod link is macvlan unless `E2E_LINK` says otherwise: `make e2e-ipvlan` runs these same
//! scenarios with ipvlan (l2, and l3 for one lifecycle) in a VM whose kernel has it.

mod agent;
// Shared with tests/agent.rs, which uses more of them.
#[allow(dead_code)]
#[path = "../common/agent.rs"]
mod agent_proc;
#[allow(dead_code)]
#[path = "../common/cri.rs"]
mod cri;
mod harness;
mod ipam;

use harness::*;
use serde_json::{json, Value};
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4_range(node: &Node) -> Value {
    node.host_local(json!([[{"subnet": "198.18.1.0/24", "rangeStart": "198.18.1.100", "rangeEnd": "198.18.1.150"}]]))
}

/// ADD → on the ENI; CHECK passes; out-of-band unassign → CHECK code 109; back → CHECK passes;
/// DEL → gone; DEL again succeeds. Every plugin call writes exactly one log line.
fn lifecycle(version: &str, ipam: fn(&Node) -> Value, expect: &[&str]) {
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let pod = lab.pod("pod1");
    let list = node.conflist(
        "e2e-net",
        version,
        vec![
            pod_link("eth1", ipam(&node)),
            node.aws_eni_ip(json!({"master": "eth1"})),
        ],
    );
    let before = lab.state();
    let expect: Vec<IpAddr> = expect.iter().map(|s| ip(s)).collect();

    let added = node.add(&list, "ctr-1", &pod).ok();
    assert_eq!(
        added.json()["cniVersion"],
        version,
        "result speaks the list's version"
    );
    let mut got = added.ips();
    got.sort();
    assert_eq!(
        got, expect,
        "the chain's result carries the IPAM's addresses"
    );
    let mut in_pod = pod.addresses(IFNAME);
    in_pod.sort();
    assert_eq!(
        in_pod, expect,
        "the pod link plugin configured the pod interface"
    );
    let mut held = lab.held(ENI_A);
    held.sort();
    let mut want = expect.clone();
    want.push(ip("198.18.1.20")); // the world's own secondary stays untouched
    want.sort();
    assert_eq!(
        held, want,
        "ADD assigned the pod addresses to the master's ENI"
    );
    let line = node.expect_one_log_line(0, "ADD");
    assert!(line.contains(ENI_A) && line.contains(" ok "), "{line}");
    let calls = lab.calls();
    let v4_assigns = calls
        .ec2
        .get("AssignPrivateIpAddresses")
        .copied()
        .unwrap_or(0);
    let v6_assigns = calls.ec2.get("AssignIpv6Addresses").copied().unwrap_or(0);
    assert_eq!(
        v4_assigns,
        u64::from(expect.iter().any(IpAddr::is_ipv4)),
        "one IPv4 assign call: {calls:?}"
    );
    assert_eq!(
        v6_assigns,
        u64::from(expect.iter().any(IpAddr::is_ipv6)),
        "one IPv6 assign call: {calls:?}"
    );

    let mut lines = 1;
    if version == "0.3.1" {
        let refused = node.check(&list, "ctr-1", &pod).fails_with(0);
        assert!(
            refused["msg"]
                .as_str()
                .unwrap()
                .contains("does not support the CHECK command"),
            "libcni refuses CHECK for 0.3.1: {refused}"
        );
        assert_eq!(
            node.log_lines().len(),
            lines,
            "libcni refused before calling any plugin"
        );
    } else {
        node.check(&list, "ctr-1", &pod).ok();
        node.expect_one_log_line(lines, "CHECK");
        lines += 1;

        lab.unassign_out_of_band(ENI_A, &expect);
        let err = node.check(&list, "ctr-1", &pod).fails_with(109);
        assert!(err["msg"].as_str().unwrap().contains(ENI_A), "{err}");
        let line = node.expect_one_log_line(lines, "CHECK");
        assert!(line.contains("code=109"), "{line}");
        lines += 1;

        lab.assign_out_of_band(ENI_A, &expect);
        node.check(&list, "ctr-1", &pod).ok();
        node.expect_one_log_line(lines, "CHECK");
        lines += 1;
    }

    node.del(&list, "ctr-1", &pod).ok();
    node.expect_one_log_line(lines, "DEL");
    lines += 1;
    assert_eq!(lab.state(), before, "DEL removed exactly what ADD assigned");
    node.del(&list, "ctr-1", &pod).ok();
    node.expect_one_log_line(lines, "DEL");
    assert_eq!(lab.state(), before, "a repeated DEL changes nothing");
    lab.close();
}

#[test]
fn e2e_host_local_v0_3_1_add_del_check_refused_by_libcni() {
    lifecycle("0.3.1", v4_range, &["198.18.1.100"]);
}

#[test]
fn e2e_host_local_v0_4_0_add_check_del() {
    lifecycle("0.4.0", v4_range, &["198.18.1.100"]);
}

#[test]
fn e2e_host_local_v1_0_0_add_check_del() {
    lifecycle("1.0.0", v4_range, &["198.18.1.100"]);
}

#[test]
fn e2e_static_ipam_add_check_del() {
    lifecycle(
        "1.0.0",
        |_| json!({"type": "static", "addresses": [{"address": "198.18.1.77/24"}]}),
        &["198.18.1.77"],
    );
}

#[test]
fn e2e_host_local_ipv6_add_check_del() {
    lifecycle(
        "1.0.0",
        |node| {
            node.host_local(json!([[{"subnet": "2001:db8:100:1::/64",
                "rangeStart": "2001:db8:100:1::100", "rangeEnd": "2001:db8:100:1::1ff"}]]))
        },
        &["2001:db8:100:1::100"],
    );
}

#[test]
fn e2e_host_local_dual_stack_add_check_del() {
    lifecycle(
        "1.0.0",
        |node| {
            node.host_local(json!([
                [{"subnet": "198.18.1.0/24", "rangeStart": "198.18.1.100", "rangeEnd": "198.18.1.150"}],
                [{"subnet": "2001:db8:100:1::/64", "rangeStart": "2001:db8:100:1::100", "rangeEnd": "2001:db8:100:1::1ff"}]
            ]))
        },
        &["198.18.1.100", "2001:db8:100:1::100"],
    );
}

#[test]
fn e2e_master_omitted_plugin_finds_parent_link_of_pod_interface() {
    let _serial = serial();
    let mut lab = Lab::start();
    // Two ENI links; the pod link sits on eth2, and aws-eni-ip is not told: it must find eth2 itself.
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A), ("eth2", MAC_A2)]);
    let pod = lab.pod("pod1");
    let list = node.conflist(
        "e2e-net",
        "1.0.0",
        vec![
            pod_link("eth2", v4_range(&node)),
            node.aws_eni_ip(json!({})),
        ],
    );
    let before = lab.state();
    node.add(&list, "ctr-1", &pod).ok();
    assert_eq!(
        lab.held(ENI_A2),
        vec![ip("198.18.1.100")],
        "eth2's ENI got the address"
    );
    assert_eq!(
        lab.held(ENI_A),
        vec![ip("198.18.1.20")],
        "eth1's ENI is untouched"
    );
    let line = node.expect_one_log_line(0, "ADD");
    assert!(line.contains(ENI_A2), "{line}");
    node.check(&list, "ctr-1", &pod).ok();
    node.del(&list, "ctr-1", &pod).ok();
    assert_eq!(lab.state(), before);
    lab.close();
}

#[test]
fn e2e_two_nodes_floating_address_stays_with_new_owner() {
    let _serial = serial();
    let mut lab = Lab::start();
    let node_a = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let node_b = lab.node(INSTANCE_B, &[("eth1", MAC_B)]);
    assert_ne!(
        node_a.imds_url, node_b.imds_url,
        "each node has its own IMDS identity"
    );
    let pod_a = lab.pod("pod-a");
    let pod_b = lab.pod("pod-b");
    let floating = json!({"type": "static", "addresses": [{"address": "198.18.1.200/24"}]});
    let list_a = node_a.conflist(
        "e2e-float",
        "1.0.0",
        vec![
            pod_link("eth1", floating.clone()),
            node_a.aws_eni_ip(json!({"master": "eth1"})),
        ],
    );
    let list_b = node_b.conflist(
        "e2e-float",
        "1.0.0",
        vec![
            pod_link("eth1", floating),
            node_b.aws_eni_ip(json!({"master": "eth1", "allowReassignment": true})),
        ],
    );
    let vip = ip("198.18.1.200");

    node_a.add(&list_a, "ctr-a", &pod_a).ok();
    assert!(
        lab.held(ENI_A).contains(&vip),
        "A's ENI holds the floating address"
    );

    node_b.add(&list_b, "ctr-b", &pod_b).ok();
    assert!(lab.held(ENI_B).contains(&vip), "it moved to B's ENI");
    assert!(!lab.held(ENI_A).contains(&vip), "and is gone from A's ENI");

    let err = node_a.check(&list_a, "ctr-a", &pod_a).fails_with(109);
    assert!(
        err["msg"].as_str().unwrap().contains("198.18.1.200"),
        "{err}"
    );

    node_a.del(&list_a, "ctr-a", &pod_a).ok();
    assert!(lab.held(ENI_B).contains(&vip), "A's DEL left it on B's ENI");
    assert!(!lab.held(ENI_A).contains(&vip));
    node_b.check(&list_b, "ctr-b", &pod_b).ok();

    node_b.del(&list_b, "ctr-b", &pod_b).ok();
    assert!(!lab.held(ENI_B).contains(&vip), "B's DEL released it");
    assert_eq!(node_a.log_lines().len(), 3, "A: ADD, CHECK, DEL");
    assert_eq!(node_b.log_lines().len(), 3, "B: ADD, CHECK, DEL");
    lab.close();
}

#[test]
fn e2e_pods_in_parallel_leave_the_eni_as_it_started() {
    let pods_at_once = parallel_pods();
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let pods: Vec<Pod> = (0..pods_at_once)
        .map(|i| lab.pod(&format!("pod{i}")))
        .collect();
    let list = node.conflist(
        "e2e-net",
        "1.0.0",
        vec![
            pod_link("eth1", v4_range(&node)),
            node.aws_eni_ip(json!({"master": "eth1"})),
        ],
    );
    let before = lab.state();

    let added: Vec<Vec<IpAddr>> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, list) = (&node, &list);
                s.spawn(move || node.add(list, &format!("ctr-{i}"), pod).ok().ips())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let mut all: Vec<IpAddr> = added.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), pods_at_once, "every pod got its own address");
    let held = lab.held(ENI_A);
    for a in &all {
        assert!(held.contains(a), "{a} is on the ENI");
    }
    assert_eq!(
        held.len(),
        pods_at_once + 1,
        "pods' addresses plus the world's own secondary"
    );

    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let (node, list) = (&node, &list);
            s.spawn(move || {
                node.del(list, &format!("ctr-{i}"), pod).ok();
            });
        }
    });
    assert_eq!(lab.state(), before, "the ENI ends exactly as it started");
    let lines = node.log_lines();
    assert_eq!(
        lines.len(),
        2 * pods_at_once,
        "one log line per ADD and per DEL"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("cmd=\"ADD\"") && l.contains(" ok "))
            .count(),
        pods_at_once
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("cmd=\"DEL\"") && l.contains(" ok "))
            .count(),
        pods_at_once
    );
    lab.close();
}

#[test]
fn e2e_managed_eni_is_refused_with_code_104_and_nothing_assigned() {
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth3", MAC_A_MANAGED)]);
    let pod = lab.pod("pod1");
    let list = node.conflist(
        "e2e-net",
        "1.0.0",
        vec![
            pod_link("eth3", v4_range(&node)),
            node.aws_eni_ip(json!({"master": "eth3"})),
        ],
    );
    let before = lab.state();
    let err = node.add(&list, "ctr-1", &pod).fails_with(104);
    assert!(
        err["msg"].as_str().unwrap().contains(ENI_A_MANAGED),
        "{err}"
    );
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("plugin type=\"aws-eni-ip\" failed (add)"),
        "libcni names the failing plugin: {err}"
    );
    assert_eq!(lab.state(), before, "nothing assigned");
    assert_eq!(
        lab.calls().ec2.get("AssignPrivateIpAddresses"),
        None,
        "refused before any assign"
    );
    let line = node.expect_one_log_line(0, "ADD");
    assert!(line.contains("code=104"), "{line}");
    // The runtime cleans up the failed ADD with DEL, which must succeed.
    node.del(&list, "ctr-1", &pod).ok();
    lab.close();
}

#[test]
fn e2e_gc_releases_attachments_the_runtime_no_longer_lists() {
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let pod1 = lab.pod("pod1");
    let pod2 = lab.pod("pod2");
    let list = node.conflist(
        "e2e-net",
        "1.0.0",
        vec![
            pod_link("eth1", v4_range(&node)),
            node.aws_eni_ip(json!({"master": "eth1"})),
        ],
    );
    let a1 = node.add(&list, "ctr-1", &pod1).ok().ips();
    let a2 = node.add(&list, "ctr-2", &pod2).ok().ips();
    // The runtime lost ctr-1 (its cache is gone, as after a node reboot): no DEL will ever come.
    std::fs::remove_file(node.cache_file("e2e-net", "ctr-1")).expect("ctr-1's cache file");
    let gc = node.gc(&list, &["ctr-2"]).ok();
    let skipped = format!(
        "GC skipped for plugin {}",
        PodLink::under_test().plugin_type()
    );
    assert!(gc.stderr.contains(&skipped), "{}", gc.stderr);
    let held = lab.held(ENI_A);
    assert!(
        !held.contains(&a1[0]),
        "GC released the lost attachment's {}",
        a1[0]
    );
    assert!(
        held.contains(&a2[0]),
        "GC kept the listed attachment's {}",
        a2[0]
    );
    let line = node.expect_one_log_line(2, "GC");
    assert!(line.contains("1 stale record(s) released"), "{line}");
    node.del(&list, "ctr-2", &pod2).ok();
    assert_eq!(lab.held(ENI_A), vec![ip("198.18.1.20")]);
    lab.close();
}

#[test]
fn e2e_status_is_ready_then_code_50_when_imds_is_down() {
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let list = node.conflist(
        "e2e-net",
        "1.0.0",
        vec![
            pod_link("eth1", v4_range(&node)),
            node.aws_eni_ip(json!({"master": "eth1"})),
        ],
    );
    node.status(&list).ok();
    node.expect_one_log_line(0, "STATUS");
    lab.set_faults(json!({"imdsDown": true}));
    let err = node.status(&list).fails_with(50);
    assert!(err["msg"].as_str().unwrap().contains("IMDS"), "{err}");
    node.expect_one_log_line(1, "STATUS");
    lab.close();
}
