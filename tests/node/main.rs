//! Scenarios on the node in a box (`make e2e-node`): a one-node Kubernetes built from pinned
//! modules, with containerd, Multus thick, the project's DaemonSet and a NAD from conf/ applied
//! with kubectl, and ec2-sim as EC2 and IMDS (scripts/node/up.sh). Each test says what a user of
//! a real cluster would see. They share the node, so they run one at a time; each leaves the ENI
//! holding what it found. Run outside `make e2e-node` they fail: AEI_NODE_ENV names the node.

mod cluster;

use cluster::{serial, Cluster};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

/// A sandbox whose DEL was lost goes from the runtime's list only at kubelet's next container GC
/// (each minute), then the agent needs two listings and its grace (up.sh: --interval 5 --grace 10).
const AGENT_RELEASE_WITHIN: Duration = Duration::from_secs(120);

#[test]
fn a_pod_gets_its_address_on_the_eni_answers_over_multus_and_gives_it_back_when_deleted() {
    let _serial = serial();
    let c = Cluster::from_env();
    let before = c.held();
    c.create_pod("aei-a");
    c.wait_ready("aei-node-test=aei-a", 1, Duration::from_secs(180));
    let ips = c.multus_ips("aei-a");
    assert_eq!(ips.len(), 1, "one address on the ENI network: {ips:?}");
    let ip = ips[0];
    assert!(
        c.held().contains(&ip),
        "{ip} is not on {} after the pod became ready",
        c.eni()
    );
    let sandbox = c.sandbox_of("aei-a");
    let records = c.records();
    assert!(
        records
            .lines()
            .any(|l| l.contains(&ip.to_string()) && l.contains(&sandbox[..20])),
        "no record of {ip} for sandbox {sandbox}:\n{records}"
    );
    assert!(
        c.answers(ip),
        "{ip} does not answer a ping from the ENI's side"
    );

    c.delete_pod("aei-a");
    c.wait_held(&before, Duration::from_secs(30), "after the pod's deletion");
    assert!(!c.records().contains(&ip.to_string()), "{}", c.records());
}

#[test]
fn thirty_pods_up_then_down_at_once_leave_the_eni_with_exactly_the_live_set() {
    let _serial = serial();
    let c = Cluster::from_env();
    let before = c.held();
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "aei-batch", "namespace": "default"},
        "spec": {"replicas": 30, "selector": {"matchLabels": {"aei-node-test": "batch"}},
                 "template": {"metadata": {"labels": {"aei-node-test": "batch"},
                     "annotations": {"k8s.v1.cni.cncf.io/networks": c.get("AEI_NODE_NAD")}},
                     "spec": c.pod_spec()}}
    });
    c.kubectl_in(&["apply", "-f", "-"], Some(&deploy.to_string()));
    c.wait_ready("aei-node-test=batch", 30, Duration::from_secs(600));
    let pods = c.json(&["get", "pods", "-n", "default", "-l", "aei-node-test=batch"]);
    let mut live: BTreeSet<IpAddr> = before.clone();
    for p in pods["items"].as_array().unwrap() {
        let name = p["metadata"]["name"].as_str().unwrap();
        for ip in c.multus_ips(name) {
            assert!(live.insert(ip), "{ip} given to two pods");
        }
    }
    assert_eq!(live.len(), before.len() + 30, "30 distinct pod addresses");
    c.wait_held(&live, Duration::from_secs(30), "30 pods running");

    c.kubectl(&["scale", "-n", "default", "deploy/aei-batch", "--replicas=0"]);
    c.wait_ready("aei-node-test=batch", 0, Duration::from_secs(300));
    c.wait_held(&before, Duration::from_secs(60), "after scaling to 0");
    c.kubectl(&["delete", "-n", "default", "deploy/aei-batch"]);
    let failures = c.events_of_failures();
    for line in failures.lines() {
        assert!(
            !(line.contains("code 11")
                || line.contains("\"code\":11")
                || line.contains("code: 11")),
            "kubelet reported a CNI code 11: {line}"
        );
    }
}

#[test]
fn a_lost_del_is_reclaimed_by_the_agent_while_a_live_pod_keeps_its_address() {
    let _serial = serial();
    let c = Cluster::from_env();
    let before = c.held();
    c.create_pod("aei-lost");
    c.create_pod("aei-kept");
    c.wait_ready(
        "aei-node-test in (aei-lost,aei-kept)",
        2,
        Duration::from_secs(180),
    );
    let lost = c.multus_ips("aei-lost")[0];
    assert!(c.held().contains(&lost), "{lost} not on the ENI");
    let kept = c.multus_ips("aei-kept")[0];

    c.lose_del_and_delete("aei-lost");

    let want: BTreeSet<IpAddr> = before.iter().copied().chain([kept]).collect();
    c.wait_held(
        &want,
        AGENT_RELEASE_WITHIN,
        "the agent reclaiming the lost DEL's address",
    );
    assert!(c.answers(kept), "{kept} (live pod) stopped answering");

    c.delete_pod("aei-kept");
    c.wait_held(
        &before,
        Duration::from_secs(30),
        "after the live pod's deletion",
    );
}

#[test]
fn restarting_or_rolling_the_agent_releases_no_live_pod_address() {
    let _serial = serial();
    let c = Cluster::from_env();
    let before = c.held();
    for p in ["aei-e1", "aei-e2", "aei-e3"] {
        c.create_pod(p);
    }
    c.wait_ready(
        "aei-node-test in (aei-e1,aei-e2,aei-e3)",
        3,
        Duration::from_secs(180),
    );
    let mut live = before.clone();
    for p in ["aei-e1", "aei-e2", "aei-e3"] {
        live.extend(c.multus_ips(p));
    }
    let unassigns = || {
        c.calls()
            .get("UnassignPrivateIpAddresses")
            .copied()
            .unwrap_or(0)
    };
    let unassigned_before = unassigns();

    // The agent's pod deleted (the DaemonSet recreates it), then the DaemonSet rolled.
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        "kube-system",
        "-l",
        "app.kubernetes.io/name=aws-eni-ip",
        "--wait=true",
    ]);
    c.kubectl(&[
        "rollout",
        "status",
        "-n",
        "kube-system",
        "ds/aws-eni-ip",
        "--timeout=180s",
    ]);
    c.kubectl(&["rollout", "restart", "-n", "kube-system", "ds/aws-eni-ip"]);
    c.kubectl(&[
        "rollout",
        "status",
        "-n",
        "kube-system",
        "ds/aws-eni-ip",
        "--timeout=180s",
    ]);
    // Three of the new agent's passes, past its grace.
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(c.held(), live, "the ENI after the agent's restart and roll");
    assert_eq!(
        unassigns(),
        unassigned_before,
        "the agent unassigned something"
    );
    for p in ["aei-e1", "aei-e2", "aei-e3"] {
        let ip = c.multus_ips(p)[0];
        assert!(c.answers(ip), "{p} ({ip}) stopped answering");
    }

    for p in ["aei-e1", "aei-e2", "aei-e3"] {
        c.delete_pod(p);
    }
    c.wait_held(&before, Duration::from_secs(30), "after the pods' deletion");
}

#[test]
fn after_a_containerd_restart_the_agent_reports_the_outage_then_lists_and_reclaims_again() {
    let _serial = serial();
    let c = Cluster::from_env();
    let before = c.held();
    c.create_pod("aei-c-lost");
    c.create_pod("aei-c-kept");
    c.create_pod("aei-c-handed");
    c.wait_ready(
        "aei-node-test in (aei-c-lost,aei-c-kept,aei-c-handed)",
        3,
        Duration::from_secs(180),
    );
    let kept = c.multus_ips("aei-c-kept")[0];
    let lost = c.multus_ips("aei-c-lost")[0];
    assert_eq!(
        c.readyz().0,
        200,
        "agent not ready before the restart: {:?}",
        c.readyz()
    );

    // EC2 refuses the release, so kubelet's DEL hands it to the agent; the pod goes all the same.
    c.set_faults(json!({"deny": ["UnassignPrivateIpAddresses"]}));
    c.delete_pod("aei-c-handed");
    assert!(
        c.records().contains("releasing"),
        "DEL under a denied unassign left no record for the agent: {}",
        c.records()
    );
    c.ctl("containerd-stop");
    let outage = c.wait_readyz(|code| code != 200, Duration::from_secs(30));
    // While the runtime is down, EC2 takes releases again: the hand-off needs no sandbox listing.
    c.set_faults(json!({}));
    let want_live: BTreeSet<IpAddr> = before.iter().copied().chain([kept, lost]).collect();
    let finished = wait_until(AGENT_RELEASE_WITHIN, || c.held() == want_live);
    let still_down = c.readyz().0 != 200;
    c.ctl("containerd-start");
    assert!(
        outage.is_some(),
        "/readyz stayed 200 for 30 s while containerd was stopped"
    );
    assert!(
        finished && still_down,
        "the handed-off release was not finished during the outage (finished {finished}, runtime still down {still_down}); ENI holds {:?}",
        c.held()
    );
    c.wait_readyz(|code| code == 200, Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "/readyz not 200 30 s after containerd's start: {:?}",
                c.readyz()
            )
        });

    // The agent lists sandboxes over the new socket: it reclaims a DEL lost after the restart.
    c.lose_del_and_delete("aei-c-lost");
    let want: BTreeSet<IpAddr> = before.iter().copied().chain([kept]).collect();
    c.wait_held(
        &want,
        AGENT_RELEASE_WITHIN,
        "the agent reclaiming after containerd's restart",
    );
    c.delete_pod("aei-c-kept");
    c.wait_held(
        &before,
        Duration::from_secs(30),
        "after the live pod's deletion",
    );
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + within;
    while std::time::Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    done()
}

#[test]
fn a_vip_added_inside_a_running_pod_is_on_the_eni_within_one_second() {
    let _serial = serial();
    let c = Cluster::from_env();
    let before = c.held();
    c.create_net_admin_pod("aei-vip");
    c.wait_ready("aei-node-test=aei-vip", 1, Duration::from_secs(180));
    let vip: IpAddr = "198.18.1.240".parse().unwrap();
    c.kubectl(&[
        "exec",
        "-n",
        "default",
        "aei-vip",
        "--",
        "ip",
        "addr",
        "add",
        "198.18.1.240/24",
        "dev",
        "net1",
    ]);
    let added = std::time::Instant::now();
    while !c.held().contains(&vip) && added.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let on_eni = c.held().contains(&vip);
    c.delete_pod("aei-vip");
    assert!(
        on_eni,
        "{vip} not on the ENI 1 s after `ip addr add` in the pod"
    );
    c.wait_held(&before, Duration::from_secs(30), "after the pod's deletion");
}

#[test]
fn a_multus_eni_link_down_when_the_agent_starts_is_brought_up_and_pods_answer() {
    let _serial = serial();
    let c = Cluster::from_env();
    c.ctl("eni-link-down");
    c.kubectl(&[
        "delete",
        "pod",
        "-n",
        "kube-system",
        "-l",
        "app.kubernetes.io/name=aws-eni-ip",
        "--wait=true",
    ]);
    c.kubectl(&[
        "rollout",
        "status",
        "-n",
        "kube-system",
        "ds/aws-eni-ip",
        "--timeout=180s",
    ]);
    let up = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        c.link_is_up(c.get("AEI_NODE_ENI_LINK"))
    });
    if !up {
        c.ctl("eni-link-up");
    }
    assert!(up, "the agent left {} DOWN", c.get("AEI_NODE_ENI_LINK"));
    c.create_pod("aei-g");
    c.wait_ready("aei-node-test=aei-g", 1, Duration::from_secs(180));
    let ip = c.multus_ips("aei-g")[0];
    let answers = c.answers(ip);
    c.delete_pod("aei-g");
    assert!(
        answers,
        "{ip} does not answer behind a link the agent brought up"
    );
}
