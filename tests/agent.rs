//! The node agent, as the DaemonSet runs it: the real binary (`aws-eni-ip agent`) against ec2-sim
//! and a fake container runtime that speaks CRI over a unix socket with the same protobufs. Records
//! come from the real plugin's ADD. Each test proves one rule of issue 12 and fails if it breaks:
//! what is released (sandbox gone, stuck ADD, handed-off DEL) and what never is (a live sandbox,
//! anything while the runtime cannot be asked, a shared address, an address another node took).

mod common;

use aws_eni_ip::store::{NodeDir, Phase, Store};
use common::agent::{wait_until, AgentProc};
use common::cri::FakeCri;
use common::*;
use ec2_sim::{Faults, Throttle};
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

struct Bed {
    fx: Fixture,
    cri: FakeCri,
}

impl Bed {
    /// The runtime lists `live` and, as on every real node, the agent's own pod.
    fn new(live: &[&str]) -> Bed {
        let fx = Fixture::new();
        let live: Vec<&str> = live.iter().copied().chain(["agent-pod"]).collect();
        let cri = FakeCri::start(&fx.dir.path().join("cri.sock"), &live);
        Bed { fx, cri }
    }

    fn add(&self, container: &str, addrs: &[&str]) {
        let conf = self
            .fx
            .conf("1.0.0", NODE1, ENI1, Some(prev_result("1.0.0", addrs)));
        self.fx.run("ADD", container, "net1", &conf).ok();
    }

    fn add_with(&self, container: &str, addrs: &[&str], env: &[(&str, &str)]) -> Reply {
        let conf = self
            .fx
            .conf("1.0.0", NODE1, ENI1, Some(prev_result("1.0.0", addrs)));
        run_plugin_with(
            "ADD",
            container,
            "net1",
            Some("/var/run/netns/unused"),
            conf.to_string().as_bytes(),
            env,
        )
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
            "--state-dir",
            &self.fx.state_dir(NODE1),
            "--interval",
            "0.3",
            "--grace",
            "0",
            "--runtime-endpoint",
            &self.cri.socket.display().to_string(),
            "--metrics-bind",
            "127.0.0.1:0",
            "--ec2-endpoint",
            &self.fx.sim.ec2_url(),
            "--imds-endpoint",
            &self.fx.sim.imds_url(NODE1),
            "--timeout-ms",
            "5000",
            "--drift-interval",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn agent(&self, extra: &[&str]) -> AgentProc {
        start_agent(&self.args(extra), &[])
    }

    fn held(&self) -> Vec<IpAddr> {
        self.fx.addresses(ENI1)
    }

    fn containers(&self) -> Vec<String> {
        let mut c: Vec<String> = self
            .fx
            .records(NODE1)
            .into_iter()
            .map(|r| r.container_id)
            .collect();
        c.sort();
        c
    }

    fn store(&self) -> Store {
        let dir = std::path::PathBuf::from(self.fx.state_dir(NODE1));
        Store::open(&dir, NodeDir::new(&dir)).unwrap()
    }
}

const SOON: Duration = Duration::from_secs(15);

/// `aws-eni-ip agent ARGS` with `env`, once it serves metrics.
fn start_agent(args: &[String], env: &[(&str, &str)]) -> AgentProc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aws-eni-ip"));
    cmd.arg("agent").args(args).envs(env.iter().copied());
    AgentProc::spawn(cmd)
}

#[test]
fn agent_releases_an_attachment_whose_sandbox_is_gone_after_two_listings_without_it() {
    let bed = Bed::new(&["ctr-live", "ctr-gone"]);
    bed.add("ctr-live", &["198.18.1.5/24"]);
    bed.add("ctr-gone", &["198.18.1.6/24"]);
    let agent = bed.agent(&["--interval", "1"]);
    agent.passes(1, SOON);
    assert_eq!(bed.held(), vec![ip("198.18.1.5"), ip("198.18.1.6")]);
    // The runtime forgets the sandbox; no DEL ever comes.
    let passes_before = agent.metric("aws_eni_ip_reconcile_passes_total");
    bed.cri.set(&["ctr-live"]);
    wait_until(SOON, || {
        !bed.held().contains(&ip("198.18.1.6")) && bed.containers() == ["ctr-live"]
    })
    .unwrap_or_else(|()| panic!("not released:\n{}", agent.log()));
    // Counted in passes, not seconds: the one running when the sandbox went may have listed it
    // alive; the next one sees it missing once, and the one after releases it.
    let passes = agent.metric("aws_eni_ip_reconcile_passes_total") - passes_before;
    assert!(
        passes <= 3,
        "released only after {passes} passes since the sandbox went:\n{}",
        agent.log()
    );
    assert_eq!(bed.held(), vec![ip("198.18.1.5")]);
    assert_eq!(bed.containers(), vec!["ctr-live"]);
    assert_eq!(
        agent.metric("aws_eni_ip_releases_total{reason=\"sandbox_gone\"}"),
        1
    );
}

#[test]
fn agent_never_releases_a_live_sandbox_over_many_passes() {
    let bed = Bed::new(&["ctr-1", "ctr-2"]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    bed.add("ctr-2", &["198.18.1.6/24", "2001:db8:100:1::6/64"]);
    let before = bed.held();
    let agent = bed.agent(&["--interval", "0.1"]);
    agent.passes(20, SOON);
    assert!(bed.cri.calls() >= 20, "every pass asked the runtime");
    assert_eq!(bed.held(), before);
    assert_eq!(bed.containers(), vec!["ctr-1", "ctr-2"]);
    assert_eq!(bed.fx.calls("UnassignPrivateIpAddresses"), 0);
    assert_eq!(bed.fx.calls("UnassignIpv6Addresses"), 0);
}

#[test]
fn agent_releases_nothing_while_the_runtime_socket_is_down() {
    let mut bed = Bed::new(&[]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    bed.cri.stop();
    let agent = bed.agent(&["--interval", "0.2"]);
    wait_until(SOON, || {
        agent.metric("aws_eni_ip_reconcile_runtime_failures_total") >= 5
    })
    .unwrap_or_else(|()| panic!("no failed passes counted:\n{}", agent.log()));
    assert_eq!(bed.held(), vec![ip("198.18.1.5")], "never guess");
    assert_eq!(bed.containers(), vec!["ctr-1"]);
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("runtime: "), "{body}");
    assert_eq!(agent.get("/healthz").0, 200);
    assert_eq!(agent.metric("aws_eni_ip_runtime_reachable"), 0);
    // The runtime comes back without the sandbox (only the agent's own pod): now the record goes.
    bed.cri = FakeCri::start(&bed.cri.socket.clone(), &["agent-pod"]);
    wait_until(SOON, || bed.held().is_empty())
        .unwrap_or_else(|()| panic!("not released once the runtime answered:\n{}", agent.log()));
    assert_eq!(agent.get("/readyz").0, 200);
    assert_eq!(agent.metric("aws_eni_ip_runtime_reachable"), 1);
}

/// A runtime restart replaces its socket (a new inode at the same path): the agent connects
/// afresh, says so while it cannot, and finishes a release handed over during the outage.
#[test]
fn agent_survives_a_runtime_restart_and_finishes_hand_offs_meanwhile() {
    let mut bed = Bed::new(&["ctr-1", "ctr-2"]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    bed.add("ctr-2", &["198.18.1.6/24"]);
    let agent = bed.agent(&["--interval", "0.2"]);
    agent.passes(2, SOON);
    // A DEL right as the runtime goes down: its release is handed over (the agent listed recently).
    bed.fx.sim.set_faults(Faults {
        deny: vec!["UnassignPrivateIpAddresses".into()],
        ..Faults::default()
    });
    let conf = bed.fx.conf("1.0.0", NODE1, ENI1, None);
    bed.fx.run("DEL", "ctr-1", "net1", &conf).ok();
    bed.cri.stop();
    wait_until(SOON, || agent.metric("aws_eni_ip_runtime_reachable") == 0)
        .unwrap_or_else(|()| panic!("outage not reported:\n{}", agent.log()));
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 503, "{body}");
    bed.fx.sim.set_faults(Faults::default());
    // The agent drops ctr-1's record after EC2's answer: wait for both, not only the first.
    wait_until(SOON, || {
        bed.held() == [ip("198.18.1.6")] && bed.containers() == ["ctr-2"]
    })
    .unwrap_or_else(|()| panic!("hand-off not finished during the outage:\n{}", agent.log()));
    assert_eq!(bed.held(), vec![ip("198.18.1.6")], "nobody else released");
    assert_eq!(bed.containers(), vec!["ctr-2"], "nobody else released");
    bed.cri = FakeCri::start(&bed.cri.socket.clone(), &["agent-pod", "ctr-2"]);
    let calls = bed.cri.calls();
    wait_until(SOON, || agent.metric("aws_eni_ip_runtime_reachable") == 1)
        .unwrap_or_else(|()| panic!("not listing again:\n{}", agent.log()));
    assert!(bed.cri.calls() > calls);
    assert_eq!(agent.get("/readyz").0, 200);
    agent.passes(3, SOON);
    assert_eq!(bed.held(), vec![ip("198.18.1.6")]);
}

/// DEL must not hand a release to an agent that cannot act on it: the runtime retries DEL.
#[test]
fn del_is_not_handed_over_to_an_agent_that_cannot_list_the_runtime() {
    let mut bed = Bed::new(&["ctr-1"]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    bed.cri.stop();
    let agent = bed.agent(&["--interval", "0.2"]);
    wait_until(SOON, || {
        agent.metric("aws_eni_ip_reconcile_runtime_failures_total") >= 2
    })
    .unwrap_or_else(|()| panic!("no failed passes:\n{}", agent.log()));
    assert!(NodeDir::new(bed.fx.state_dir(NODE1)).heartbeat().is_some());
    bed.fx.sim.set_faults(Faults {
        deny: vec!["UnassignPrivateIpAddresses".into()],
        ..Faults::default()
    });
    let conf = bed.fx.conf("1.0.0", NODE1, ENI1, None);
    let reply = bed.fx.run("DEL", "ctr-1", "net1", &conf);
    assert_eq!(reply.err_code(), 108, "{}", reply.msg());
    assert!(reply.msg().contains("cannot list"), "{}", reply.msg());
    assert_eq!(bed.fx.records(NODE1)[0].phase, Phase::Assigned);
}

/// Measured before the fix, scaled down: a 3 s grace, an ADD slowed to 5 s by EC2, a sandbox the
/// runtime lists only after ADD returned. The agent released the address right after ADD's success.
#[test]
fn agent_never_releases_a_pod_whose_slow_add_outlasted_the_grace() {
    let bed = Bed::new(&["ctr-old"]);
    let agent = bed.agent(&["--interval", "0.3", "--grace", "3"]);
    agent.passes(1, SOON);
    bed.fx.sim.set_faults(Faults {
        latency_ms: [("AssignPrivateIpAddresses".to_string(), 5_000)].into(),
        ..Faults::default()
    });
    bed.add("ctr-slow", &["198.18.1.7/24"]);
    bed.fx.sim.set_faults(Faults::default());
    assert_eq!(bed.held(), vec![ip("198.18.1.7")]);
    // RunPodSandbox is still returning: the runtime does not list it yet for a while.
    std::thread::sleep(Duration::from_millis(1_500));
    bed.cri.set(&["agent-pod", "ctr-old", "ctr-slow"]);
    agent.passes(5, SOON);
    assert_eq!(bed.held(), vec![ip("198.18.1.7")], "{}", agent.log());
    assert_eq!(bed.containers(), vec!["ctr-slow"]);
}

#[test]
fn agent_keeps_a_young_assigning_record_and_releases_an_old_one() {
    let bed = Bed::new(&["ctr-young", "ctr-old"]);
    // Two ADDs killed right after their EC2 call: records stuck in `assigning`.
    for (c, a) in [("ctr-young", "198.18.1.5/24"), ("ctr-old", "198.18.1.6/24")] {
        let r = bed.add_with(c, &[a], &[("AWS_ENI_IP_CRASH_AT", "add:after-ec2")]);
        assert_eq!(r.signal, Some(9), "the plugin died at the crash point");
    }
    let store = bed.store();
    let mut old = store
        .all()
        .unwrap()
        .into_iter()
        .find(|r| r.container_id == "ctr-old")
        .unwrap();
    assert_eq!(old.phase, Phase::Assigning);
    old.created_unix -= 600;
    store.put(&old).unwrap();
    let agent = bed.agent(&["--interval", "0.2", "--grace", "120"]);
    wait_until(SOON, || bed.containers() == ["ctr-young"])
        .unwrap_or_else(|()| panic!("old assigning record not released:\n{}", agent.log()));
    agent.passes(5, SOON);
    assert_eq!(
        bed.held(),
        vec![ip("198.18.1.5")],
        "the young one is an ADD in flight"
    );
    assert_eq!(bed.containers(), vec!["ctr-young"]);
    assert_eq!(
        agent.metric("aws_eni_ip_releases_total{reason=\"assigning_stuck\"}"),
        1
    );
}

#[test]
fn agent_releases_a_shared_address_only_when_both_records_are_gone() {
    let bed = Bed::new(&["ctr-1", "ctr-2"]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    bed.add("ctr-2", &["198.18.1.5/24"]);
    let agent = bed.agent(&["--interval", "0.2"]);
    bed.cri.set(&["ctr-1"]);
    wait_until(SOON, || bed.containers() == vec!["ctr-1"])
        .unwrap_or_else(|()| panic!("ctr-2 not released:\n{}", agent.log()));
    agent.passes(3, SOON);
    assert_eq!(bed.held(), vec![ip("198.18.1.5")], "ctr-1 still holds it");
    bed.cri.set(&["agent-pod"]);
    wait_until(SOON, || {
        bed.held().is_empty() && bed.containers().is_empty()
    })
    .unwrap_or_else(|()| panic!("not released with the last holder:\n{}", agent.log()));
}

#[test]
fn agent_drops_a_record_whose_address_moved_to_another_nodes_eni_and_leaves_the_address() {
    let bed = Bed::new(&[]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    bed.fx.sim.assign(ENI2, &[ip("198.18.1.5")]);
    let agent = bed.agent(&[]);
    wait_until(SOON, || bed.containers().is_empty())
        .unwrap_or_else(|()| panic!("record not dropped:\n{}", agent.log()));
    assert_eq!(
        bed.fx.addresses(ENI2),
        vec![ip("198.18.1.5")],
        "the other node keeps it"
    );
    assert!(bed.held().is_empty());
}

#[test]
fn agent_releases_everything_over_later_passes_under_throttling() {
    let bed = Bed::new(&[]);
    let addrs: Vec<String> = (0..8).map(|i| format!("198.18.1.{}/24", 50 + i)).collect();
    for (i, a) in addrs.iter().enumerate() {
        bed.add(&format!("ctr-{i}"), &[a]);
    }
    let mut faults = Faults::default();
    faults.throttle.insert(
        "UnassignPrivateIpAddresses".into(),
        Throttle {
            capacity: 2,
            refill_per_second: 0.5,
        },
    );
    bed.fx.sim.set_faults(faults);
    let agent = bed.agent(&[
        "--interval",
        "0.3",
        "--timeout-ms",
        "1000",
        "--max-releases",
        "8",
    ]);
    wait_until(Duration::from_secs(60), || {
        bed.held().is_empty() && bed.containers().is_empty()
    })
    .unwrap_or_else(|()| panic!("not all released:\n{}", agent.log()));
    assert!(bed.fx.sim.calls().throttled > 0, "EC2 did throttle");
    assert!(
        agent.metric("aws_eni_ip_reconcile_throttled_passes_total") >= 1,
        "a pass backed off:\n{}",
        agent.log()
    );
}

#[test]
fn agent_killed_mid_release_leaves_the_job_to_its_next_pass() {
    for point in ["release:before-ec2", "release:after-ec2"] {
        let bed = Bed::new(&[]);
        bed.add("ctr-1", &["198.18.1.5/24"]);
        let mut dying = start_agent(&bed.args(&[]), &[("AWS_ENI_IP_CRASH_AT", point)]);
        let status = wait_until(SOON, || matches!(dying.child.try_wait(), Ok(Some(_))))
            .map(|()| dying.child.wait().unwrap());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.ok().and_then(|s| s.signal()),
            Some(9),
            "{point}: killed"
        );
        assert_eq!(
            bed.containers(),
            vec!["ctr-1"],
            "{point}: the record outlived the agent"
        );
        let agent = bed.agent(&[]);
        wait_until(SOON, || {
            bed.containers().is_empty() && bed.held().is_empty()
        })
        .unwrap_or_else(|()| panic!("{point}: the next agent did not finish:\n{}", agent.log()));
    }
}

#[test]
fn del_with_108_while_an_agent_runs_succeeds_and_the_agent_releases_it_once_the_fault_clears() {
    let bed = Bed::new(&["ctr-1"]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    let agent = bed.agent(&["--interval", "0.2"]);
    agent.passes(1, SOON);
    bed.fx.sim.set_faults(Faults {
        deny: vec!["UnassignPrivateIpAddresses".into()],
        ..Faults::default()
    });
    let conf = bed.fx.conf("1.0.0", NODE1, ENI1, None);
    let reply = bed.fx.run("DEL", "ctr-1", "net1", &conf);
    reply.ok();
    let record = &bed.fx.records(NODE1)[0];
    assert_eq!(record.phase, Phase::Releasing);
    assert!(
        record
            .release_error
            .as_deref()
            .unwrap_or("")
            .contains("UnauthorizedOperation"),
        "{record:?}"
    );
    agent.passes(3, SOON);
    assert_eq!(bed.held(), vec![ip("198.18.1.5")], "still denied");
    assert!(agent.metric("aws_eni_ip_release_failures_total") >= 1);
    bed.fx.sim.set_faults(Faults::default());
    wait_until(SOON, || {
        bed.held().is_empty() && bed.containers().is_empty()
    })
    .unwrap_or_else(|()| panic!("not released after the fault cleared:\n{}", agent.log()));
    assert_eq!(
        agent.metric("aws_eni_ip_releases_total{reason=\"handed_off\"}"),
        1
    );
    assert_eq!(
        agent.metric(
            "aws_eni_ip_plugin_operations_total{command=\"DEL\",outcome=\"handed_off\",code=\"0\"}"
        ),
        1
    );
    let log = bed.fx.log_lines(NODE1).join("\n");
    assert!(log.contains("handed to the node agent"), "{log}");
}

#[test]
fn agent_stops_cleanly_on_sigterm_and_del_then_fails_as_before() {
    let bed = Bed::new(&["ctr-1"]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    let agent = bed.agent(&[]);
    agent.passes(1, SOON);
    assert!(NodeDir::new(bed.fx.state_dir(NODE1)).heartbeat().is_some());
    let status = agent.terminate();
    assert!(status.success(), "{status}");
    assert!(
        NodeDir::new(bed.fx.state_dir(NODE1)).heartbeat().is_none(),
        "heartbeat removed"
    );
    bed.fx.sim.set_faults(Faults {
        deny: vec!["UnassignPrivateIpAddresses".into()],
        ..Faults::default()
    });
    let conf = bed.fx.conf("1.0.0", NODE1, ENI1, None);
    let reply = bed.fx.run("DEL", "ctr-1", "net1", &conf);
    assert_eq!(reply.err_code(), 108);
    assert!(reply.msg().contains("agent"), "{}", reply.msg());
}

#[test]
fn state_check_reports_unrecorded_and_missing_addresses() {
    let bed = Bed::new(&[]);
    bed.add("ctr-1", &["198.18.1.5/24"]);
    bed.add("ctr-2", &["198.18.1.6/24"]);
    bed.fx.sim.assign(ENI1, &[ip("198.18.1.77")]);
    bed.fx.sim.unassign(ENI1, &[ip("198.18.1.6")]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aws-eni-ip"))
        .args(["state", "--check", "--state-dir", &bed.fx.state_dir(NODE1)])
        .args(["--ec2-endpoint", &bed.fx.sim.ec2_url()])
        .args(["--imds-endpoint", &bed.fx.sim.imds_url(NODE1)])
        .env_clear()
        .env(aws_eni_ip::store::NODE_DIR_ENV, bed.fx.state_dir(NODE1))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("unrecorded") && text.contains("198.18.1.77"),
        "{text}"
    );
    assert!(
        text.contains("missing") && text.contains("198.18.1.6 (ipvlan-multus ctr-2/net1)"),
        "{text}"
    );
    assert_eq!(
        bed.held(),
        vec![ip("198.18.1.5"), ip("198.18.1.77")],
        "nothing removed"
    );
}
