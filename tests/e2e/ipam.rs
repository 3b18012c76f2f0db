//! IPAM mode end to end: libcni runs `macvlan` with `"ipam": {"type": "aws-eni-ip"}` in network
//! namespaces against ec2-sim. EC2 chooses every pod's address, never one inside an explicit subnet
//! CIDR reservation; a pod that asks for one through the `ips` capability (Multus's
//! runtimeConfig) gets exactly that one; DEL gives all back.

use super::harness::*;

/// ENI A's subnet in tests/worlds/e2e.json.
const SUBNET_A: &str = "subnet-0e2e00000000002";
use serde_json::{json, Value};
use std::net::IpAddr;

fn ipam_macvlan(node: &Node, ipam: Value) -> Value {
    json!({"type": "macvlan", "master": "eth1", "mode": "bridge",
        "capabilities": {"ips": true}, "ipam": node.aws_eni_ip(ipam)})
}

#[test]
fn e2e_ipam_mode_twenty_pods_in_parallel_get_distinct_addresses_ec2_chose() {
    const PODS: usize = 20;
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let pods: Vec<Pod> = (0..PODS).map(|i| lab.pod(&format!("ipam{i}"))).collect();
    let list = node.conflist("ipam-net", "1.0.0", vec![ipam_macvlan(&node, json!({}))]);
    // The lower half of ENI A's subnet is kept for static addresses: EC2 must choose above it.
    let reserved: ipnetwork::Ipv4Network = "198.18.1.0/25".parse().unwrap();
    let (code, body) = ec2_query(
        &lab.endpoints.ec2,
        &[
            ("Action", "CreateSubnetCidrReservation"),
            ("SubnetId", SUBNET_A),
            ("Cidr", "198.18.1.0/25"),
            ("ReservationType", "explicit"),
        ],
    );
    assert_eq!(code, 200, "reserve: {body}");
    let before = lab.state();
    let added: Vec<Vec<IpAddr>> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, list) = (&node, &list);
                s.spawn(move || {
                    let ips = node.add(list, &format!("ictr-{i}"), pod).ok().ips();
                    assert_eq!(pod.addresses(IFNAME), ips, "net1 carries what EC2 chose");
                    ips
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD"))
            .collect()
    });
    let mut all: Vec<IpAddr> = added.into_iter().flatten().collect();
    assert_eq!(all.len(), PODS, "one address per pod");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), PODS, "every pod got its own address");
    let held = lab.held(ENI_A);
    for a in &all {
        assert!(held.contains(a), "{a} is on {ENI_A}");
        let IpAddr::V4(v4) = a else { panic!("{a}") };
        assert!(
            !reserved.contains(*v4),
            "{a} lies in the reservation {reserved}"
        );
    }
    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let (node, list) = (&node, &list);
            s.spawn(move || {
                node.del(list, &format!("ictr-{i}"), pod).ok();
            });
        }
    });
    assert_eq!(lab.state(), before, "DEL gave every address back");
    lab.close();
}

#[test]
fn e2e_ipam_mode_a_pod_asking_through_the_ips_capability_gets_exactly_that_address() {
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let pod = lab.pod("vip");
    let list = node.conflist("ipam-net", "1.0.0", vec![ipam_macvlan(&node, json!({}))]);
    let before = lab.state();
    let wanted: IpAddr = "198.18.1.77".parse().unwrap();
    let added = node
        .cni(
            "add",
            &list,
            Some("vctr"),
            Some(&pod),
            &["--capability-args", r#"{"ips":["198.18.1.77/24"]}"#],
        )
        .ok();
    assert_eq!(added.ips(), vec![wanted]);
    assert_eq!(pod.addresses(IFNAME), vec![wanted]);
    assert!(lab.held(ENI_A).contains(&wanted));
    node.del(&list, "vctr", &pod).ok();
    assert_eq!(lab.state(), before);
    lab.close();
}
