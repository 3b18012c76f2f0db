//! The node agent in the real chain (on the host's pod link; the ipvlan VM run does not include
//! these): each simulated node runs
//! `aws-eni-ip agent` in its own namespace (its IMDS identity, its state dir, a fake CRI runtime of
//! its own). Issue 12: a sandbox that vanishes without DEL loses its address. Issue 15: a VIP that
//! an application adds in a pod (`ip addr add`) follows to the ENI of the node whose pod holds it,
//! in either order of failover, survives an agent restart, and a flap costs no EC2 call.

use super::agent_proc::{wait_until, AgentProc};
use super::cri::FakeCri;
use super::harness::*;
use super::{ip, v4_range};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(20);
const VIP: &str = "198.18.1.200";
/// The agents' debounce in these tests (the default is 2 s).
const DEBOUNCE_MS: u64 = 600;

fn agent_in(node: &Node, cri: &FakeCri) -> AgentProc {
    agent_every(node, cri, "0.5")
}

fn agent_every(node: &Node, cri: &FakeCri, interval: &str) -> AgentProc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node.ns])
        .arg(env!("CARGO_BIN_EXE_aws-eni-ip"))
        .arg("agent")
        .arg("--state-dir")
        .arg(node.state_dir())
        .arg("--runtime-endpoint")
        .arg(&cri.socket)
        .args([
            "--interval",
            interval,
            "--grace",
            "0",
            "--drift-interval",
            "0",
        ])
        .args([
            "--metrics-bind",
            "127.0.0.1:0",
            "--debounce",
            &DEBOUNCE_MS.to_string(),
        ])
        .args([
            "--ec2-endpoint",
            &node.ec2_url,
            "--imds-endpoint",
            &node.imds_url,
        ]);
    AgentProc::spawn(cmd)
}

/// Waits for `n` more reconcile passes: each asks the runtime once.
fn passes(cri: &FakeCri, n: u64) {
    let start = cri.calls();
    wait_until(SOON, || cri.calls() >= start + n).expect("the agent's passes");
}

fn cri_of(node: &Node, live: &[&str]) -> FakeCri {
    FakeCri::start(&node.dir.join("cri.sock"), live)
}

/// `ip addr add|del VIP/24 dev net1` inside the pod, as keepalived does.
fn vip(pod: &Pod, op: &str) {
    let out = Command::new("ip")
        .args([
            "-n",
            &pod.ns,
            "addr",
            op,
            &format!("{VIP}/24"),
            "dev",
            IFNAME,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip addr {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn holds(lab: &Lab, eni: &str) -> bool {
    lab.held(eni).contains(&ip(VIP))
}

fn recorded(node: &Node, container: &str) -> Vec<IpAddr> {
    let dir = node.state_dir();
    aws_eni_ip::store::Store::open_existing(&dir, aws_eni_ip::store::NodeDir::new(&dir))
        .and_then(|s| s.all())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.container_id == container)
        .flat_map(|r| r.addresses)
        .collect()
}

fn follow_list(node: &Node, pod_ip: &str) -> PathBuf {
    let ipam = json!({"type": "static", "addresses": [{"address": format!("{pod_ip}/24")}]});
    let block: Value = node.aws_eni_ip(json!({"master": "eth1", "followAddresses": true}));
    node.conflist("e2e-vip", "1.0.0", vec![pod_link("eth1", ipam), block])
}

struct Pair {
    lab: Lab,
    a: Node,
    b: Node,
    pod_a: Pod,
    pod_b: Pod,
    list_a: PathBuf,
    list_b: PathBuf,
    cri_a: FakeCri,
    cri_b: FakeCri,
}

/// Two nodes, one pod each on a followed network; both pods added through the real chain.
fn pair() -> Pair {
    let mut lab = Lab::start();
    let a = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let b = lab.node(INSTANCE_B, &[("eth1", MAC_B)]);
    let pod_a = lab.pod("vip-a");
    let pod_b = lab.pod("vip-b");
    let list_a = follow_list(&a, "198.18.1.101");
    let list_b = follow_list(&b, "198.18.1.102");
    a.add(&list_a, "ctr-a", &pod_a).ok();
    b.add(&list_b, "ctr-b", &pod_b).ok();
    let cri_a = cri_of(&a, &["ctr-a"]);
    let cri_b = cri_of(&b, &["ctr-b"]);
    Pair {
        lab,
        a,
        b,
        pod_a,
        pod_b,
        list_a,
        list_b,
        cri_a,
        cri_b,
    }
}

fn eventually(what: &str, agents: &[&AgentProc], ok: impl FnMut() -> bool) {
    wait_until(SOON, ok).unwrap_or_else(|()| {
        let logs: Vec<String> = agents.iter().map(|a| a.log()).collect();
        panic!("{what}: did not happen\n{}", logs.join("\n----\n"))
    });
}

/// The debounce, then two more passes of each running agent (its loop is sequential: a removal due
/// before a pass began is done by the end of the next one): what has not happened by then will not.
fn settle(cris: &[&FakeCri]) {
    std::thread::sleep(Duration::from_millis(DEBOUNCE_MS));
    let starts: Vec<u64> = cris.iter().map(|c| c.calls()).collect();
    wait_until(SOON, || {
        cris.iter().zip(&starts).all(|(c, s)| c.calls() >= s + 2)
    })
    .expect("the agents' passes");
}

#[test]
fn e2e_agent_releases_an_address_whose_sandbox_vanished_without_del() {
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let pod = lab.pod("pod1");
    let list = node.conflist(
        "e2e-net",
        "1.0.0",
        vec![
            pod_link("eth1", v4_range(&node)),
            node.aws_eni_ip(json!({"master": "eth1"})),
        ],
    );
    let addr = node.add(&list, "ctr-1", &pod).ok().ips()[0];
    assert!(lab.held(ENI_A).contains(&addr));
    let cri = cri_of(&node, &["ctr-1"]);
    let agent = agent_in(&node, &cri);
    passes(&cri, 2);
    assert!(
        lab.held(ENI_A).contains(&addr),
        "a live sandbox keeps its address"
    );
    // The runtime lost the sandbox and Multus never sends DEL.
    cri.set(&["agent-pod"]);
    eventually("the address leaves the ENI", &[&agent], || {
        !lab.held(ENI_A).contains(&addr)
    });
    assert_eq!(
        lab.held(ENI_A),
        vec![ip("198.18.1.20")],
        "the world's own secondary stays"
    );
    // The record goes after EC2 answered the unassign: a moment after the ENI's listing shows it.
    eventually("the record is gone", &[&agent], || {
        recorded(&node, "ctr-1").is_empty()
    });
    drop(agent);
    lab.close();
}

#[test]
fn e2e_vip_added_in_a_pod_follows_to_the_new_holder_and_stays_there() {
    let _serial = serial();
    let p = pair();
    let agent_a = agent_in(&p.a, &p.cri_a);
    let agent_b = agent_in(&p.b, &p.cri_b);
    let agents = [&agent_a, &agent_b];
    vip(&p.pod_a, "add");
    eventually("the VIP lands on A's ENI", &agents, || holds(&p.lab, ENI_A));
    assert!(recorded(&p.a, "ctr-a").contains(&ip(VIP)));
    // Failover, new holder first: B adds it while A still has it.
    vip(&p.pod_b, "add");
    eventually("the VIP moves to B's ENI", &agents, || {
        holds(&p.lab, ENI_B) && !holds(&p.lab, ENI_A)
    });
    vip(&p.pod_a, "del");
    eventually("A forgets it", &agents, || {
        !recorded(&p.a, "ctr-a").contains(&ip(VIP))
    });
    settle(&[&p.cri_a, &p.cri_b]);
    assert!(
        holds(&p.lab, ENI_B) && !holds(&p.lab, ENI_A),
        "A's removal changed nothing on B"
    );
    p.a.del(&p.list_a, "ctr-a", &p.pod_a).ok();
    settle(&[&p.cri_a, &p.cri_b]);
    assert!(holds(&p.lab, ENI_B), "A's DEL and reconcile leave it on B");
    assert!(recorded(&p.b, "ctr-b").contains(&ip(VIP)));
    p.b.del(&p.list_b, "ctr-b", &p.pod_b).ok();
    assert!(
        !holds(&p.lab, ENI_B),
        "B's DEL releases the VIP it followed"
    );
    drop((agent_a, agent_b));
    p.lab.close();
}

#[test]
fn e2e_vip_removed_before_the_peer_adds_it_converges_the_same_way() {
    let _serial = serial();
    let p = pair();
    let agent_a = agent_in(&p.a, &p.cri_a);
    let agent_b = agent_in(&p.b, &p.cri_b);
    let agents = [&agent_a, &agent_b];
    vip(&p.pod_a, "add");
    eventually("the VIP lands on A's ENI", &agents, || holds(&p.lab, ENI_A));
    // Failover, old holder first: A drops it, B picks it up within A's debounce.
    vip(&p.pod_a, "del");
    vip(&p.pod_b, "add");
    eventually("the VIP moves to B's ENI", &agents, || {
        holds(&p.lab, ENI_B) && !holds(&p.lab, ENI_A)
    });
    eventually("A forgets it", &agents, || {
        !recorded(&p.a, "ctr-a").contains(&ip(VIP))
    });
    settle(&[&p.cri_a, &p.cri_b]);
    assert!(
        holds(&p.lab, ENI_B) && !holds(&p.lab, ENI_A),
        "converged on B"
    );
    p.a.del(&p.list_a, "ctr-a", &p.pod_a).ok();
    settle(&[&p.cri_a, &p.cri_b]);
    assert!(holds(&p.lab, ENI_B), "A's DEL leaves it on B");
    drop((agent_a, agent_b));
    p.lab.close();
}

#[test]
fn e2e_agent_restart_syncs_a_vip_already_present() {
    let _serial = serial();
    let p = pair();
    // The VIP comes up while no agent runs (an agent upgrade, a restart).
    vip(&p.pod_a, "add");
    assert!(!holds(&p.lab, ENI_A), "only an agent puts it there");
    let agent_a = agent_in(&p.a, &p.cri_a);
    eventually("the running agent syncs it", &[&agent_a], || {
        holds(&p.lab, ENI_A)
    });
    let line = agent_a.log();
    assert!(line.contains("run-time address assigned"), "{line}");
    // And a second restart with the VIP recorded and on the ENI calls EC2 for nothing.
    drop(agent_a);
    let before = p.lab.calls();
    let agent_a = agent_in(&p.a, &p.cri_a);
    passes(&p.cri_a, 2);
    let after = p.lab.calls();
    for action in ["AssignPrivateIpAddresses", "UnassignPrivateIpAddresses"] {
        assert_eq!(
            before.ec2.get(action),
            after.ec2.get(action),
            "{action} after a restart"
        );
    }
    drop(agent_a);
    drop(p.cri_b);
    p.lab.close();
}

#[test]
fn e2e_vip_flap_within_the_debounce_makes_no_ec2_call() {
    let _serial = serial();
    let p = pair();
    let agent_a = agent_in(&p.a, &p.cri_a);
    vip(&p.pod_a, "add");
    eventually("the VIP lands on A's ENI", &[&agent_a], || {
        holds(&p.lab, ENI_A)
    });
    let before = p.lab.calls();
    vip(&p.pod_a, "del");
    std::thread::sleep(Duration::from_millis(100));
    vip(&p.pod_a, "add");
    // Proof the agent saw the flap, so the unchanged counts below are its doing.
    eventually("the agent keeps the VIP it saw return", &[&agent_a], || {
        agent_a
            .log()
            .contains("run-time address back within the debounce")
    });
    settle(&[&p.cri_a]);
    let after = p.lab.calls();
    for action in [
        "AssignPrivateIpAddresses",
        "UnassignPrivateIpAddresses",
        "DescribeNetworkInterfaces",
    ] {
        assert_eq!(
            before.ec2.get(action),
            after.ec2.get(action),
            "{action} during a flap"
        );
    }
    assert!(holds(&p.lab, ENI_A));
    assert!(recorded(&p.a, "ctr-a").contains(&ip(VIP)));
    drop(agent_a);
    drop(p.cri_b);
    p.lab.close();
}

/// Issue 25, item 5: a pod created after the agent's last pass (its sandbox not listed yet) gets a
/// VIP added by its application: the agent follows it at once, not at its next pass a minute later.
#[test]
fn e2e_vip_in_a_pod_created_after_the_last_pass_is_followed_without_waiting_for_a_pass() {
    let _serial = serial();
    let mut lab = Lab::start();
    let a = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    let cri = cri_of(&a, &["agent-pod"]);
    let agent = agent_every(&a, &cri, "60");
    // Its first pass runs at start; the next one is a minute away.
    wait_until(SOON, || cri.calls() >= 1).expect("the agent's first pass");
    let pod = lab.pod("vip-new");
    let list = follow_list(&a, "198.18.1.103");
    a.add(&list, "ctr-new", &pod).ok();
    std::thread::sleep(Duration::from_secs(2));
    let passes_before = cri.calls();
    vip(&pod, "add");
    eventually("the VIP is followed", &[&agent], || holds(&lab, ENI_A));
    assert_eq!(cri.calls(), passes_before, "no pass ran meanwhile");
    assert!(recorded(&a, "ctr-new").contains(&ip(VIP)));
    drop(agent);
    lab.close();
}

fn link_up(node: &Node, name: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", &node.ns, "-o", "link", "show", name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let flags = text.split('<').nth(1).and_then(|f| f.split('>').next());
    flags.is_some_and(|f| f.split(',').any(|x| x == "UP"))
}

/// Issue 22, item 2: a hot-attached Multus ENI comes up DOWN on the EKS AMIs. The agent brings up
/// the link of this instance's no_manage ENI (found by MAC from IMDS) at start and again whenever
/// it goes down, and leaves the VPC CNI's ENI alone.
#[test]
fn e2e_agent_brings_a_down_no_manage_enis_link_up_and_leaves_an_untagged_one_down() {
    let _serial = serial();
    let mut lab = Lab::start();
    let a = lab.node(INSTANCE_A, &[("ens6", MAC_A), ("ens7", MAC_A_MANAGED)]);
    for name in ["ens6", "ens7"] {
        Command::new("ip")
            .args(["-n", &a.ns, "link", "set", name, "down"])
            .status()
            .unwrap();
    }
    let cri = cri_of(&a, &["agent-pod"]);
    let agent = agent_every(&a, &cri, "60");
    eventually("ens6 is brought up", &[&agent], || link_up(&a, "ens6"));
    assert!(!link_up(&a, "ens7"), "the VPC CNI's ENI is left alone");
    // The first pass (at start) lists the runtime after the links; the next one is a minute away.
    wait_until(SOON, || cri.calls() >= 1).expect("the agent's first pass");
    let calls = cri.calls();
    Command::new("ip")
        .args(["-n", &a.ns, "link", "set", "ens6", "down"])
        .status()
        .unwrap();
    eventually("ens6 is brought up again at once", &[&agent], || {
        link_up(&a, "ens6")
    });
    assert_eq!(cri.calls(), calls, "on the link event, not at a pass");
    assert!(!link_up(&a, "ens7"));
    let log = agent.log();
    assert_eq!(
        log.matches("brought up the link of a no_manage ENI")
            .count(),
        2,
        "{log}"
    );
    drop(agent);
    lab.close();
}
