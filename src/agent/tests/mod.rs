//! The agent's parts against fakes: which records a pass releases, the cap and the throttling
//! back-off, the follower's decisions (sync, debounce, flap), and the metrics text.

use super::follow::{Action, Event, Follower};
use super::metrics::{render, AgentMetrics};
use super::reconcile::{reason, Listing, Reason, ReconcileSettings, Reconciler};
use super::watch::{AddressSource, AddressWatch};
use crate::cloud::CloudError;
use crate::commands::tests::fake::{block, FakeAws, ENI, MAC};
use crate::node::{AddressChange, HostError};
use crate::store::tests::temp_store;
use crate::store::{
    now_unix, now_unix_ms, Attachment, Follow, NodeDir, Phase, PluginCounters, Store,
};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn record(container: &str, addrs: &[&str], phase: Phase, age_secs: u64) -> Attachment {
    Attachment {
        network: "net".into(),
        container_id: container.into(),
        ifname: "net1".into(),
        eni_id: ENI.into(),
        mac: MAC.into(),
        addresses: addrs.iter().map(|a| ip(a)).collect(),
        phase,
        created_unix: now_unix() - age_secs,
        netns: Some(format!("/var/run/netns/{container}")),
        pod: None,
        instance_id: None,
        adopted: Vec::new(),
        follow: None,
        release_error: None,
        committed_unix_ms: None,
        eni_before: None,
        by_ipam: false,
    }
}

fn live(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

struct Node {
    store: Store,
    aws: FakeAws,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let (dir, store) = temp_store();
        Node {
            store,
            aws: FakeAws::new(),
            _dir: dir,
        }
    }

    /// A record whose addresses are on the fake ENI, as a finished ADD leaves them.
    fn put(&self, r: &Attachment) {
        for a in r
            .addresses
            .iter()
            .filter(|a| !self.aws.holds(ENI).contains(a))
        {
            self.aws.move_addr(&a.to_string(), None, Some(ENI));
        }
        self.store.put(r).unwrap();
    }
}

fn settings(grace: u64, max: usize) -> ReconcileSettings {
    ReconcileSettings {
        grace: Duration::from_secs(grace),
        max_releases: max,
        lock_wait: Duration::from_secs(1),
        op_timeout: Duration::from_secs(5),
    }
}

fn listing(ids: &[&str], at_ms: u64) -> Listing {
    Listing {
        at_ms,
        sandboxes: live(ids),
    }
}

/// Two passes a few ms apart: a missing sandbox counts after the second listing that lacks it.
fn settle(rec: &mut Reconciler, node: &Node, ids: &[&str]) -> super::reconcile::PassReport {
    block(rec.pass(std::slice::from_ref(&node.store), &node.aws, &live(ids)));
    std::thread::sleep(Duration::from_millis(3));
    block(rec.pass(std::slice::from_ref(&node.store), &node.aws, &live(ids)))
}

fn follow_record(container: &str, addrs: &[&str], added: &[&str]) -> Attachment {
    let mut r = record(container, addrs, Phase::Assigned, 0);
    r.follow = Some(Follow {
        allow_reassignment: true,
        added: added.iter().map(|a| ip(a)).collect(),
    });
    r
}

mod follow;
mod reconcile;
mod run;

#[test]
fn metrics_name_every_family_with_its_labels() {
    let mut m = AgentMetrics::default();
    m.releases.insert("sandbox_gone", 3);
    m.pending_releases = 2;
    let mut plugin = PluginCounters::default();
    plugin.add(
        "ADD",
        "ok",
        0,
        &[crate::store::Ec2Count {
            action: "AssignPrivateIpAddresses".into(),
            calls: 2,
            throttled: 1,
        }],
    );
    plugin.add("DEL", "error", 108, &[]);
    let text = render(&m, &plugin, &Default::default());
    for line in [
        "aws_eni_ip_plugin_operations_total{command=\"ADD\",outcome=\"ok\",code=\"0\"} 1",
        "aws_eni_ip_plugin_operations_total{command=\"DEL\",outcome=\"error\",code=\"108\"} 1",
        "aws_eni_ip_ec2_requests_total{source=\"plugin\",action=\"AssignPrivateIpAddresses\"} 2",
        "aws_eni_ip_ec2_throttled_total{source=\"plugin\",action=\"AssignPrivateIpAddresses\"} 1",
        "aws_eni_ip_releases_total{reason=\"sandbox_gone\"} 3",
        "aws_eni_ip_releases_total{reason=\"handed_off\"} 0",
        "aws_eni_ip_pending_releases 2",
        "# TYPE aws_eni_ip_eni_address_limit gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn plugin_runs_add_up_in_the_counters_file() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeDir::new(dir.path());
    let calls = [crate::store::Ec2Count {
        action: "AssignPrivateIpAddresses".into(),
        calls: 1,
        throttled: 0,
    }];
    for _ in 0..3 {
        node.count_plugin_run("ADD", "ok", 0, &calls, Duration::from_secs(1))
            .unwrap();
    }
    node.count_plugin_run("DEL", "handed_off", 0, &[], Duration::from_secs(1))
        .unwrap();
    let c = node.plugin_counters();
    assert_eq!(
        c.operations
            .iter()
            .find(|o| o.command == "ADD")
            .unwrap()
            .count,
        3
    );
    assert_eq!(
        c.operations
            .iter()
            .find(|o| o.outcome == "handed_off")
            .unwrap()
            .count,
        1
    );
    assert_eq!(c.ec2[0].calls, 3);
}

#[test]
fn a_heartbeat_is_fresh_for_three_intervals() {
    let beat = crate::store::Heartbeat {
        pid: 1,
        unix_ms: 1_000_000,
        interval_ms: 60_000,
        listed_unix_ms: Some(1_000_000),
        state_dirs: Vec::new(),
    };
    assert!(beat.is_fresh(1_000_000 + 179_000));
    assert!(!beat.is_fresh(1_000_000 + 181_000));
    assert!(!beat.is_fresh(900_000), "not from the future");
}
