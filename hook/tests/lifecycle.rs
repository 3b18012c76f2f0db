//! The real Lambda handler (`bootstrap`, driven through the Lambda Runtime API) against ec2-sim:
//! launch creates, tags and attaches one ENI per Multus subnet of the node's zone and continues;
//! ten nodes launching at once in static mode get the ten lowest free addresses outside every
//! reservation; a duplicate delivery makes no second ENI; an attach failure removes what was made
//! and abandons; terminate detaches and deletes the node's ENIs and continues. A foreign hook's
//! event on the same group is ignored, its action left pending; terminate waits for the node's
//! Multus ENIs to lose their pod addresses, bounded by DRAIN_TIMEOUT_SECONDS.

mod common;
use common::*;
use ec2_sim::{EniState, Sim};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn ours(sim: &Sim, instance: &str) -> Vec<EniState> {
    let mut v: Vec<EniState> = sim
        .state()
        .enis
        .into_iter()
        .filter(|e| e.tags.get("aws-eni-ip/instance-id").map(String::as_str) == Some(instance))
        .collect();
    v.sort_by_key(|e| e.device_index);
    v
}

fn result_of(sim: &Sim, instance: &str, transition: &str) -> Vec<Option<String>> {
    sim.lifecycle_actions()
        .into_iter()
        .filter(|a| a.instance_id == instance && a.lifecycle_transition == transition)
        .map(|a| a.result)
        .collect()
}

fn result_of_hook(sim: &Sim, instance: &str, hook: &str) -> Vec<Option<String>> {
    sim.lifecycle_actions()
        .into_iter()
        .filter(|a| a.instance_id == instance && a.lifecycle_hook_name == hook)
        .map(|a| a.result)
        .collect()
}

fn calls(sim: &Sim, action: &str) -> u64 {
    sim.calls().ec2.get(action).copied().unwrap_or(0)
}

#[test]
fn launch_creates_tags_and_attaches_one_eni_per_multus_subnet_of_the_zone_then_continues() {
    let sim = Sim::start(world(1)).unwrap();
    reserve(&sim, MULTUS_A, "198.18.1.0/25");
    let api = RuntimeApi::start();
    let subnets = format!("{MULTUS_A},{MULTUS_B},{MULTUS_A2}");
    let _f = start_function(
        &api,
        &sim,
        &[
            ("MULTUS_SUBNETS", &subnets),
            ("MULTUS_DEVICE_INDEXES", "1,1,2"),
            ("MULTUS_SECURITY_GROUPS", "sg-0123456789abcdef0"),
            ("MULTUS_TAGS", "team=5g-core"),
        ],
    );
    let node = instance(1);
    let (id, _) = fire(&api, &sim, &node, LAUNCHING);
    let r = api.wait(&id, WAIT).expect("launch answered");
    assert_eq!(r["result"], "CONTINUE", "{r}");
    assert_eq!(r["enis"].as_array().unwrap().len(), 2, "{r}");
    let enis = ours(&sim, &node);
    assert_eq!(enis.len(), 2, "none in the other zone's subnet");
    for (e, (subnet, dev)) in enis.iter().zip([(MULTUS_A, 1), (MULTUS_A2, 2)]) {
        assert_eq!(e.subnet_id, subnet);
        assert_eq!(e.instance_id.as_deref(), Some(node.as_str()));
        assert_eq!(e.device_index, Some(dev));
        assert!(e.delete_on_termination, "{}", e.id);
        assert_eq!(e.tags["node.k8s.amazonaws.com/no_manage"], "true");
        assert_eq!(e.tags["team"], "5g-core");
        assert_eq!(e.security_groups, ["sg-0123456789abcdef0"]);
    }
    let dhcp = enis[0].primary_ip;
    assert!(
        dhcp.octets()[3] >= 128,
        "DHCP chose {dhcp} inside the explicit reservation"
    );
    assert_eq!(result_of(&sim, &node, LAUNCHING), [Some("CONTINUE".into())]);
}

#[test]
fn ten_nodes_launching_at_once_in_static_mode_get_the_ten_lowest_free_addresses_outside_reservations(
) {
    let sim = Sim::start(world(10)).unwrap();
    // .5 is taken by someone else's ENI, .8-.15 reserved for pods: the lowest free ten are these.
    reserve(&sim, MULTUS_A, "198.18.1.8/29");
    let api = RuntimeApi::start();
    let pre = pre_existing(&sim, MULTUS_A, "198.18.1.5");
    let functions: Vec<Function> = (0..10)
        .map(|_| {
            start_function(
                &api,
                &sim,
                &[
                    ("MULTUS_SUBNETS", MULTUS_A),
                    ("WORKER_IP_MODE", "static-from-start"),
                ],
            )
        })
        .collect();
    let ids: Vec<String> = (1..=10)
        .map(|i| fire(&api, &sim, &instance(i), LAUNCHING).0)
        .collect();
    for id in &ids {
        let r = api.wait(id, WAIT).expect("launch answered");
        assert_eq!(r["result"], "CONTINUE", "{r}");
    }
    drop(functions);
    let got: BTreeSet<Ipv4Addr> = (1..=10)
        .map(|i| {
            let e = ours(&sim, &instance(i));
            assert_eq!(e.len(), 1, "{}", instance(i));
            e[0].primary_ip
        })
        .collect();
    let want: BTreeSet<Ipv4Addr> = [4, 6, 7, 16, 17, 18, 19, 20, 21, 22]
        .into_iter()
        .map(|d| Ipv4Addr::new(198, 18, 1, d))
        .collect();
    assert_eq!(
        got, want,
        "ten distinct, lowest free, none in 198.18.1.8/29 (pre-existing {pre})"
    );
}

/// An ENI of someone else in the Multus subnet, created through the simulator's EC2 API.
fn pre_existing(sim: &Sim, subnet: &str, address: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "AKIDTEST", "s", None, None, "t",
            ))
            .endpoint_url(sim.ec2_url())
            .build();
        let out = aws_sdk_ec2::Client::from_conf(conf)
            .create_network_interface()
            .subnet_id(subnet)
            .private_ip_address(address)
            .send()
            .await
            .unwrap();
        out.network_interface()
            .unwrap()
            .network_interface_id()
            .unwrap()
            .to_string()
    })
}

#[test]
fn a_duplicate_delivery_of_the_launch_event_makes_no_second_eni() {
    let sim = Sim::start(world(1)).unwrap();
    let api = RuntimeApi::start();
    let _f = start_function(&api, &sim, &[("MULTUS_SUBNETS", MULTUS_A)]);
    let node = instance(1);
    let (id, event) = fire(&api, &sim, &node, LAUNCHING);
    let first = api.wait(&id, WAIT).unwrap();
    assert_eq!(first["enis"][0]["created"], true, "{first}");
    let again = api.invoke(event);
    let second = api.wait(&again, WAIT).unwrap();
    assert_eq!(second["result"], "CONTINUE", "{second}");
    assert_eq!(second["alreadyCompleted"], true, "{second}");
    assert_eq!(second["enis"][0]["created"], false, "{second}");
    assert_eq!(second["enis"][0]["eniId"], first["enis"][0]["eniId"]);
    assert_eq!(ours(&sim, &node).len(), 1);
    assert_eq!(calls(&sim, "CreateNetworkInterface"), 1);
    assert_eq!(calls(&sim, "AttachNetworkInterface"), 1);
    assert_eq!(result_of(&sim, &node, LAUNCHING), [Some("CONTINUE".into())]);
}

#[test]
fn concurrent_duplicate_deliveries_converge_on_one_eni() {
    let sim = Sim::start(world(1)).unwrap();
    let api = RuntimeApi::start();
    let _f: Vec<Function> = (0..2)
        .map(|_| start_function(&api, &sim, &[("MULTUS_SUBNETS", MULTUS_A)]))
        .collect();
    let node = instance(1);
    let (a, event) = fire(&api, &sim, &node, LAUNCHING);
    let b = api.invoke(event);
    let (ra, rb) = (api.wait(&a, WAIT), api.wait(&b, WAIT));
    let results: Vec<Value> = [ra, rb]
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| e))
        .collect();
    assert_eq!(ours(&sim, &node).len(), 1, "{results:?}");
    assert_eq!(
        result_of(&sim, &node, LAUNCHING),
        [Some("CONTINUE".into())],
        "{results:?}"
    );
}

#[test]
fn an_attach_failure_removes_the_eni_it_made_and_abandons() {
    let sim = Sim::start(world(1)).unwrap();
    let node = instance(1);
    // Someone else's ENI already sits at device index 1: EC2 refuses the attach.
    let foreign = pre_existing(&sim, MULTUS_A2, "198.18.2.50");
    attach_foreign(&sim, &foreign, &node);
    let api = RuntimeApi::start();
    let _f = start_function(&api, &sim, &[("MULTUS_SUBNETS", MULTUS_A)]);
    let (id, _) = fire(&api, &sim, &node, LAUNCHING);
    let r = api.wait(&id, WAIT).unwrap();
    assert_eq!(r["result"], "ABANDON", "{r}");
    assert!(r["error"].as_str().unwrap().contains("attaching"), "{r}");
    assert_eq!(r["removed"].as_array().unwrap().len(), 1, "{r}");
    assert!(ours(&sim, &node).is_empty(), "the ENI it made is gone");
    assert_eq!(calls(&sim, "DeleteNetworkInterface"), 1);
    assert!(
        sim.state().eni(&foreign).is_some(),
        "someone else's ENI stays"
    );
    assert_eq!(result_of(&sim, &node, LAUNCHING), [Some("ABANDON".into())]);
}

fn attach_foreign(sim: &Sim, eni: &str, instance: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "AKIDTEST", "s", None, None, "t",
            ))
            .endpoint_url(sim.ec2_url())
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
            .attach_network_interface()
            .network_interface_id(eni)
            .instance_id(instance)
            .device_index(1)
            .send()
            .await
            .unwrap();
    })
}

#[test]
fn terminate_detaches_and_deletes_the_nodes_enis_then_continues() {
    let sim = Sim::start(world(2)).unwrap();
    let api = RuntimeApi::start();
    let subnets = format!("{MULTUS_A},{MULTUS_A2}");
    let _f = start_function(&api, &sim, &[("MULTUS_SUBNETS", &subnets)]);
    for i in [1, 2] {
        let (id, _) = fire(&api, &sim, &instance(i), LAUNCHING);
        assert_eq!(api.wait(&id, WAIT).unwrap()["result"], "CONTINUE");
    }
    assert_eq!(ours(&sim, &instance(1)).len(), 2);
    let (id, _) = fire(&api, &sim, &instance(1), TERMINATING);
    let r = api.wait(&id, WAIT).unwrap();
    assert_eq!(r["result"], "CONTINUE", "{r}");
    assert_eq!(r["removed"].as_array().unwrap().len(), 2, "{r}");
    assert!(
        ours(&sim, &instance(1)).is_empty(),
        "the node's ENIs are gone"
    );
    assert_eq!(
        ours(&sim, &instance(2)).len(),
        2,
        "the other node keeps its own"
    );
    assert_eq!(calls(&sim, "DetachNetworkInterface"), 2);
    assert_eq!(
        result_of(&sim, &instance(1), TERMINATING),
        [Some("CONTINUE".into())]
    );
}

#[test]
fn a_bad_configuration_stops_the_function_at_init_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aws-eni-ip-hook"))
        .env_clear()
        .env("MULTUS_SUBNETS", "subnet-a")
        .env("WORKER_IP_MODE", "static")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WORKER_IP_MODE"), "{err}");
}

/// Another tool's hooks on the same group: an EKS-style launch hook and a drain controller's.
const FOREIGN_LAUNCH_HOOK: &str = "eks-managed-launch";
const FOREIGN_TERMINATE_HOOK: &str = "drain-controller-terminate";

#[test]
fn a_foreign_hooks_events_are_ignored_and_its_actions_stay_pending_while_ours_complete() {
    let sim = Sim::start(world(1)).unwrap();
    let api = RuntimeApi::start();
    let _f = start_function(&api, &sim, &[("MULTUS_SUBNETS", MULTUS_A)]);
    let node = instance(1);
    let (foreign, _) = fire_hook(&api, &sim, &node, LAUNCHING, FOREIGN_LAUNCH_HOOK);
    let r = api
        .wait(&foreign, WAIT)
        .expect("the foreign event answered");
    assert!(
        r["ignored"].as_str().unwrap().contains(FOREIGN_LAUNCH_HOOK),
        "{r}"
    );
    assert!(ours(&sim, &node).is_empty(), "a foreign event made an ENI");
    let (id, _) = fire(&api, &sim, &node, LAUNCHING);
    assert_eq!(api.wait(&id, WAIT).unwrap()["result"], "CONTINUE");
    assert_eq!(ours(&sim, &node).len(), 1);
    assert_eq!(
        result_of_hook(&sim, &node, OUR_LAUNCH_HOOK),
        [Some("CONTINUE".into())]
    );
    assert_eq!(
        result_of_hook(&sim, &node, FOREIGN_LAUNCH_HOOK),
        [None],
        "the foreign launch action is still pending after ours ran"
    );
    let (foreign, _) = fire_hook(&api, &sim, &node, TERMINATING, FOREIGN_TERMINATE_HOOK);
    assert!(api.wait(&foreign, WAIT).unwrap()["ignored"].is_string());
    assert_eq!(
        ours(&sim, &node).len(),
        1,
        "a foreign terminate removed ENIs"
    );
    assert_eq!(result_of_hook(&sim, &node, FOREIGN_TERMINATE_HOOK), [None]);
    assert_eq!(calls(&sim, "DetachNetworkInterface"), 0);
}

#[test]
fn hook_names_come_from_lifecycle_hook_names_and_replace_the_defaults() {
    let sim = Sim::start(world(1)).unwrap();
    let api = RuntimeApi::start();
    let _f = start_function(
        &api,
        &sim,
        &[
            ("MULTUS_SUBNETS", MULTUS_A),
            (
                "LIFECYCLE_HOOK_NAMES",
                "ng1-multus-launch,ng1-multus-terminate",
            ),
        ],
    );
    let node = instance(1);
    let (default_named, _) = fire(&api, &sim, &node, LAUNCHING);
    assert!(api.wait(&default_named, WAIT).unwrap()["ignored"].is_string());
    let (id, _) = fire_hook(&api, &sim, &node, LAUNCHING, "ng1-multus-launch");
    assert_eq!(api.wait(&id, WAIT).unwrap()["result"], "CONTINUE");
    assert_eq!(
        result_of_hook(&sim, &node, "ng1-multus-launch"),
        [Some("CONTINUE".into())]
    );
    assert_eq!(result_of_hook(&sim, &node, OUR_LAUNCH_HOOK), [None]);
}

fn pod_address(sim: &Sim, eni: &str, a: &str) -> std::net::IpAddr {
    let a: std::net::IpAddr = a.parse().unwrap();
    sim.assign(eni, &[a]);
    a
}

#[test]
fn terminate_waits_for_the_pods_addresses_to_leave_the_multus_enis_then_detaches_deletes_and_continues(
) {
    let sim = Sim::start(world(1)).unwrap();
    let api = RuntimeApi::start();
    let _f = start_function(
        &api,
        &sim,
        &[
            ("MULTUS_SUBNETS", MULTUS_A),
            ("DRAIN_TIMEOUT_SECONDS", "25"),
        ],
    );
    let node = instance(1);
    let (id, _) = fire(&api, &sim, &node, LAUNCHING);
    assert_eq!(api.wait(&id, WAIT).unwrap()["result"], "CONTINUE");
    let eni = ours(&sim, &node)[0].id.clone();
    let pod = pod_address(&sim, &eni, "198.18.1.200");
    let started = Instant::now();
    let (id, _) = fire(&api, &sim, &node, TERMINATING);
    std::thread::sleep(Duration::from_secs(3));
    let e = ours(&sim, &node);
    assert_eq!(
        e[0].instance_id.as_deref(),
        Some(node.as_str()),
        "detached while a pod still held an address"
    );
    assert_eq!(result_of(&sim, &node, TERMINATING), [None]);
    // The pod's DEL: the plugin unassigns its address.
    sim.unassign(&eni, &[pod]);
    let r = api.wait(&id, WAIT).unwrap();
    let took = started.elapsed();
    assert_eq!(r["result"], "CONTINUE", "{r}");
    assert_eq!(r["drain"]["outcome"], "drained", "{r}");
    assert!(r["drain"]["waitedMs"].as_u64().unwrap() >= 3000, "{r}");
    assert!(
        took < Duration::from_secs(20),
        "took {took:?}: not the timeout"
    );
    assert_eq!(r["removed"], serde_json::json!([eni]), "{r}");
    assert!(ours(&sim, &node).is_empty());
    assert_eq!(
        result_of(&sim, &node, TERMINATING),
        [Some("CONTINUE".into())]
    );
}

#[test]
fn terminate_stops_waiting_at_the_drain_timeout_and_still_removes_the_enis_and_continues() {
    let sim = Sim::start(world(1)).unwrap();
    let api = RuntimeApi::start();
    let _f = start_function(
        &api,
        &sim,
        &[("MULTUS_SUBNETS", MULTUS_A), ("DRAIN_TIMEOUT_SECONDS", "3")],
    );
    let node = instance(1);
    let (id, _) = fire(&api, &sim, &node, LAUNCHING);
    assert_eq!(api.wait(&id, WAIT).unwrap()["result"], "CONTINUE");
    let eni = ours(&sim, &node)[0].id.clone();
    pod_address(&sim, &eni, "198.18.1.201");
    pod_address(&sim, &eni, "198.18.1.202");
    let started = Instant::now();
    let (id, _) = fire(&api, &sim, &node, TERMINATING);
    let r = api.wait(&id, WAIT).unwrap();
    let took = started.elapsed();
    assert_eq!(r["drain"]["outcome"], "timedOut", "{r}");
    assert_eq!(r["drain"]["held"][&eni], 2, "{r}");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(15),
        "took {took:?} for a 3 s bound"
    );
    assert_eq!(r["result"], "CONTINUE", "{r}");
    assert!(ours(&sim, &node).is_empty(), "the ENI goes all the same");
    assert_eq!(
        result_of(&sim, &node, TERMINATING),
        [Some("CONTINUE".into())]
    );
}
