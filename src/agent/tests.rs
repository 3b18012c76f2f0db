//! The agent's parts against fakes: which records a pass releases, the cap and the throttling
//! back-off, the follower's decisions (sync, debounce, flap), and the metrics text.

use super::follow::{Action, Event, Follower};
use super::metrics::{render, AgentMetrics};
use super::reconcile::{reason, Listing, Reason, ReconcileSettings, Reconciler};
use super::watch::{AddressSource, AddressWatch};
use crate::cloud::CloudError;
use crate::commands::tests::fake::{FakeAws, ENI, MAC};
use crate::node::{AddressChange, HostError};
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

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

struct Node {
    store: Store,
    aws: FakeAws,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("state"),
            NodeDir::new(dir.path().join("node")),
        )
        .unwrap();
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

#[test]
fn a_record_is_due_only_for_the_documented_reasons() {
    let g = Duration::from_secs(120);
    let now = now_unix();
    let at = now_unix_ms();
    let alive = listing(&["c1"], at);
    let others = listing(&["agent-pod"], at);
    let r = |phase, age| record("c1", &["198.18.1.5"], phase, age);
    let seen_missing = Some(at - 60_000);
    assert_eq!(
        reason(&r(Phase::Assigned, 500), Some(&alive), None, now, g),
        None
    );
    assert_eq!(
        reason(
            &r(Phase::Assigned, 500),
            Some(&others),
            seen_missing,
            now,
            g
        ),
        Some(Reason::SandboxGone)
    );
    assert_eq!(
        reason(&r(Phase::Assigned, 500), Some(&others), None, now, g),
        None,
        "one listing without it is not enough"
    );
    assert_eq!(
        reason(
            &r(Phase::Assigned, 500),
            Some(&listing(&[], at)),
            seen_missing,
            now,
            g
        ),
        None,
        "a runtime that lists nothing at all is restarting, not empty"
    );
    assert_eq!(
        reason(&r(Phase::Assigned, 500), None, seen_missing, now, g),
        None,
        "no listing, no sandbox is gone"
    );
    assert_eq!(
        reason(&r(Phase::Releasing, 10), None, None, now, g),
        Some(Reason::HandedOff),
        "a handed-off release needs no sandbox list"
    );
    assert_eq!(
        reason(
            &r(Phase::Assigned, 10),
            Some(&others),
            Some(at - 5_000),
            now,
            g
        ),
        None,
        "grace protects a young ADD"
    );
    assert_eq!(
        reason(&r(Phase::Assigning, 10), Some(&alive), None, now, g),
        None
    );
    assert_eq!(
        reason(&r(Phase::Assigning, 500), Some(&alive), None, now, g),
        Some(Reason::StuckAssigning)
    );
    assert_eq!(
        reason(&r(Phase::Releasing, 0), Some(&alive), None, now, g),
        Some(Reason::HandedOff)
    );
}

#[test]
fn the_grace_runs_from_the_commit_not_from_the_write_ahead_record() {
    // A throttled ADD: its write-ahead record is 8.5 s old when it commits, the grace is 3 s.
    let g = Duration::from_secs(3);
    let committed = now_unix_ms();
    let mut r = record("slow", &["198.18.1.5"], Phase::Assigned, 9);
    r.committed_unix_ms = Some(committed);
    let now = now_unix();
    let missing = |at| listing(&["agent-pod"], at);
    // Right after the commit the runtime has not listed the sandbox yet (RunPodSandbox runs on).
    assert_eq!(
        reason(
            &r,
            Some(&missing(committed + 1_000)),
            Some(committed + 10),
            now,
            g
        ),
        None,
        "within the grace after the commit"
    );
    assert_eq!(
        reason(
            &r,
            Some(&missing(committed + 5_000)),
            Some(committed - 100),
            now,
            g
        ),
        None,
        "a listing from before the commit does not count"
    );
    assert_eq!(
        reason(
            &r,
            Some(&missing(committed + 3_000)),
            Some(committed + 3_000),
            now,
            g
        ),
        None,
        "one listing, counted once"
    );
    assert_eq!(
        reason(
            &r,
            Some(&missing(committed + 3_000)),
            Some(committed + 10),
            now,
            g
        ),
        Some(Reason::SandboxGone)
    );
}

#[test]
fn a_pass_keeps_a_pod_committed_within_the_grace_whatever_its_write_ahead_age() {
    let node = Node::new();
    let mut slow = record("slow", &["198.18.1.5"], Phase::Assigned, 600);
    slow.committed_unix_ms = Some(now_unix_ms());
    node.put(&slow);
    let mut rec = Reconciler::new(settings(3, 20));
    let report = settle(&mut rec, &node, &["agent-pod"]);
    assert!(report.released.is_empty(), "{:?}", report.released);
    assert_eq!(node.aws.holds(ENI), vec![ip("198.18.1.5")]);
}

#[test]
fn while_the_runtime_cannot_be_asked_only_hand_offs_are_finished() {
    let node = Node::new();
    node.put(&record("dead", &["198.18.1.6"], Phase::Assigned, 500));
    let mut rec = Reconciler::new(settings(0, 20));
    block(rec.pass(
        std::slice::from_ref(&node.store),
        &node.aws,
        &live(&["agent-pod"]),
    ));
    // The runtime goes away; a DEL had handed a release over just before.
    node.put(&record("handed", &["198.18.1.5"], Phase::Releasing, 500));
    std::thread::sleep(Duration::from_millis(3));
    let report = block(rec.pass_with(std::slice::from_ref(&node.store), &node.aws, None));
    assert_eq!(
        report
            .released
            .iter()
            .map(|(why, _)| *why)
            .collect::<Vec<_>>(),
        vec![Reason::HandedOff]
    );
    assert_eq!(node.aws.holds(ENI), vec![ip("198.18.1.6")]);
    // Absences seen before the outage start over after it: one listing is not enough.
    let after = block(rec.pass(
        std::slice::from_ref(&node.store),
        &node.aws,
        &live(&["agent-pod"]),
    ));
    assert!(after.released.is_empty());
    std::thread::sleep(Duration::from_millis(3));
    let again = block(rec.pass(
        std::slice::from_ref(&node.store),
        &node.aws,
        &live(&["agent-pod"]),
    ));
    assert_eq!(again.released.len(), 1);
}

#[test]
fn a_pass_releases_dead_sandboxes_and_keeps_live_ones() {
    let node = Node::new();
    node.put(&record("alive", &["198.18.1.5"], Phase::Assigned, 500));
    node.put(&record("dead", &["198.18.1.6"], Phase::Assigned, 500));
    let mut rec = Reconciler::new(settings(120, 20));
    let report = settle(&mut rec, &node, &["alive"]);
    assert_eq!(report.released.len(), 1);
    assert_eq!(report.released[0].0, Reason::SandboxGone);
    assert_eq!(node.aws.holds(ENI), vec![ip("198.18.1.5")]);
    assert_eq!(node.store.all().unwrap().len(), 1);
    assert_eq!(report.pending, 0);
}

#[test]
fn a_runtime_that_lists_no_sandbox_at_all_loses_nobody_their_address() {
    let node = Node::new();
    node.put(&record("c1", &["198.18.1.50"], Phase::Assigned, 500));
    let mut rec = Reconciler::new(settings(0, 20));
    let report = settle(&mut rec, &node, &[]);
    assert!(report.released.is_empty(), "{:?}", report.released);
    assert_eq!(node.aws.holds(ENI), vec![ip("198.18.1.50")]);
    assert_eq!(node.store.all().unwrap().len(), 1);
}

#[test]
fn a_pass_releases_at_most_the_cap_and_the_rest_later() {
    let node = Node::new();
    for i in 0..5 {
        node.put(&record(
            &format!("dead{i}"),
            &[&format!("198.18.1.{}", 50 + i)],
            Phase::Assigned,
            500,
        ));
    }
    let mut rec = Reconciler::new(settings(0, 2));
    let first = settle(&mut rec, &node, &["agent-pod"]);
    assert_eq!((first.released.len(), first.pending), (2, 3));
    block(rec.pass(
        std::slice::from_ref(&node.store),
        &node.aws,
        &live(&["agent-pod"]),
    ));
    block(rec.pass(
        std::slice::from_ref(&node.store),
        &node.aws,
        &live(&["agent-pod"]),
    ));
    assert!(node.aws.holds(ENI).is_empty());
    assert!(node.store.all().unwrap().is_empty());
}

#[test]
fn throttling_stops_the_pass_and_halves_the_next_one() {
    let node = Node::new();
    for i in 0..6 {
        node.put(&record(
            &format!("dead{i}"),
            &[&format!("198.18.1.{}", 50 + i)],
            Phase::Assigned,
            500,
        ));
    }
    node.aws.fail_next.borrow_mut().insert(
        "UnassignPrivateIpAddresses",
        CloudError::Transient {
            action: "UnassignPrivateIpAddresses",
            reason: "RequestLimitExceeded".into(),
        },
    );
    let mut rec = Reconciler::new(settings(0, 4));
    let first = settle(&mut rec, &node, &["agent-pod"]);
    assert!(first.throttled);
    assert!(
        first.released.is_empty(),
        "stopped at the first throttled call"
    );
    let second = block(rec.pass(
        std::slice::from_ref(&node.store),
        &node.aws,
        &live(&["agent-pod"]),
    ));
    assert_eq!(second.released.len(), 2, "half the cap after throttling");
    let third = block(rec.pass(
        std::slice::from_ref(&node.store),
        &node.aws,
        &live(&["agent-pod"]),
    ));
    assert_eq!(third.released.len(), 4, "the full cap once clean");
    assert!(node.aws.holds(ENI).is_empty());
}

#[test]
fn two_records_sharing_an_address_release_it_with_the_last_one() {
    let node = Node::new();
    node.put(&record("a", &["198.18.1.5"], Phase::Assigned, 500));
    node.put(&record("b", &["198.18.1.5"], Phase::Assigned, 500));
    let mut rec = Reconciler::new(settings(0, 20));
    settle(&mut rec, &node, &["b"]);
    assert_eq!(
        node.aws.holds(ENI),
        vec![ip("198.18.1.5")],
        "b still holds it"
    );
    settle(&mut rec, &node, &["agent-pod"]);
    assert!(node.aws.holds(ENI).is_empty());
}

#[test]
fn two_dead_records_sharing_an_address_release_it_in_one_pass() {
    let node = Node::new();
    node.put(&record("a", &["198.18.1.5"], Phase::Assigned, 500));
    node.put(&record(
        "b",
        &["198.18.1.5", "198.18.1.6"],
        Phase::Assigned,
        500,
    ));
    let mut rec = Reconciler::new(settings(0, 20));
    let report = settle(&mut rec, &node, &["agent-pod"]);
    assert_eq!(report.released.len(), 2);
    assert!(node.aws.holds(ENI).is_empty(), "{:?}", node.aws.holds(ENI));
    assert!(node.store.all().unwrap().is_empty());
}

/// Watches whose addresses the test sets, and whose events never come (the test feeds them).
struct FakeSource(std::collections::HashMap<String, Vec<IpAddr>>);
struct Silent;

impl AddressWatch for Silent {
    async fn next(&mut self) -> std::io::Result<Vec<AddressChange>> {
        std::future::pending().await
    }
}

impl AddressSource for FakeSource {
    type Watch = Silent;
    fn open(&self, netns: &Path, ifname: &str) -> Result<(Silent, Vec<IpAddr>), HostError> {
        self.0
            .get(netns.to_str().unwrap())
            .map(|a| (Silent, a.clone()))
            .ok_or(HostError::NoPodInterface {
                ifname: ifname.into(),
                netns: netns.display().to_string(),
            })
    }
}

fn follow_record(container: &str, addrs: &[&str], added: &[&str]) -> Attachment {
    let mut r = record(container, addrs, Phase::Assigned, 0);
    r.follow = Some(Follow {
        allow_reassignment: true,
        added: added.iter().map(|a| ip(a)).collect(),
    });
    r
}

fn in_local_set<T>(f: impl FnOnce() -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async { f() })
}

#[test]
fn sync_catches_up_with_what_the_pod_has_and_lost_what_it_lost() {
    in_local_set(|| {
        let pod = "/var/run/netns/c1";
        let source = FakeSource(
            [(
                pod.to_string(),
                vec![ip("198.18.1.5"), ip("198.18.1.50"), ip("fe80::1")],
            )]
            .into(),
        );
        let mut f = Follower::new(source, Duration::from_secs(2));
        let (tx, _rx) = tokio::sync::mpsc::channel::<Event>(8);
        let r = follow_record("c1", &["198.18.1.5", "198.18.1.60"], &["198.18.1.60"]);
        let actions = f.sync(
            std::slice::from_ref(&r),
            Some(&listing(&["c1"], now_unix_ms())),
            &tx,
        );
        assert_eq!(
            actions,
            vec![Action::Add {
                key: r.key(),
                addr: ip("198.18.1.50"),
                retry: false
            }]
        );
        assert!(
            f.next_due().is_some(),
            "the lost .60 waits out the debounce"
        );
        assert_eq!(f.watched(), 1);
        // The sandbox died: its watch goes, and so does the pending removal.
        f.sync(
            std::slice::from_ref(&r),
            Some(&listing(&[], now_unix_ms())),
            &tx,
        );
        assert_eq!((f.watched(), f.next_due()), (0, None));
    });
}

#[test]
fn a_pod_committed_after_the_last_listing_is_followed_at_once() {
    in_local_set(|| {
        let pod = "/var/run/netns/new";
        let source = FakeSource([(pod.to_string(), vec![ip("198.18.1.5")])].into());
        let mut f = Follower::new(source, Duration::from_secs(2));
        let (tx, _rx) = tokio::sync::mpsc::channel::<Event>(8);
        let last_pass = listing(&["agent-pod"], now_unix_ms() - 30_000);
        let mut r = follow_record("new", &["198.18.1.5"], &[]);
        r.committed_unix_ms = Some(now_unix_ms());
        f.sync(std::slice::from_ref(&r), Some(&last_pass), &tx);
        assert_eq!(f.watched(), 1, "not listed yet, but newer than the listing");
        // Once a listing after its commit lacks it, the sandbox is gone: the watch goes.
        let later = listing(&["agent-pod"], now_unix_ms() + 1);
        f.sync(std::slice::from_ref(&r), Some(&later), &tx);
        assert_eq!(f.watched(), 0);
    });
}

#[test]
fn a_flap_within_the_debounce_cancels_the_removal_and_only_confirms() {
    in_local_set(|| {
        let pod = "/var/run/netns/c1";
        let source =
            FakeSource([(pod.to_string(), vec![ip("198.18.1.5"), ip("198.18.1.50")])].into());
        let mut f = Follower::new(source, Duration::from_millis(200));
        let (tx, _rx) = tokio::sync::mpsc::channel::<Event>(8);
        let r = follow_record("c1", &["198.18.1.5", "198.18.1.50"], &["198.18.1.50"]);
        assert!(f.sync(std::slice::from_ref(&r), None, &tx).is_empty());
        let vip = ip("198.18.1.50");
        assert!(f
            .on_event(Event::Changes(r.key(), vec![AddressChange::Removed(vip)]))
            .is_empty());
        let back = f.on_event(Event::Changes(r.key(), vec![AddressChange::Added(vip)]));
        assert_eq!(
            back,
            vec![Action::Confirm {
                key: r.key(),
                addr: vip
            }],
            "checked in IMDS, not EC2"
        );
        assert_eq!(f.next_due(), None, "the re-add cancelled the removal");
        // A real removal comes due after the debounce, not before.
        f.on_event(Event::Changes(r.key(), vec![AddressChange::Removed(vip)]));
        assert!(f.take_due(Instant::now()).is_empty());
        let due = f.take_due(Instant::now() + Duration::from_millis(250));
        assert_eq!(
            due,
            vec![Action::Remove {
                key: r.key(),
                addr: vip
            }]
        );
        // An ADD-time address leaving the pod is not ours to give back.
        f.on_event(Event::Changes(
            r.key(),
            vec![AddressChange::Removed(ip("198.18.1.5"))],
        ));
        assert_eq!(f.next_due(), None);
    });
}

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

/// A pod whose addresses change without pause: every wait returns at once.
struct Storm;
struct StormWatch;

impl AddressWatch for StormWatch {
    async fn next(&mut self) -> std::io::Result<Vec<AddressChange>> {
        Ok(vec![AddressChange::Added(ip("198.18.1.5"))])
    }
}

impl AddressSource for Storm {
    type Watch = StormWatch;
    fn open(&self, _: &Path, _: &str) -> Result<(StormWatch, Vec<IpAddr>), HostError> {
        Ok((StormWatch, vec![ip("198.18.1.5")]))
    }
}

/// Counts the runtime's listings; lists `c1` and the agent's own pod.
#[derive(Clone, Default)]
struct CountingRuntime(std::rc::Rc<std::cell::Cell<u64>>);

impl super::cri::Liveness for CountingRuntime {
    async fn sandboxes(&self) -> Result<HashSet<String>, super::cri::LivenessError> {
        self.0.set(self.0.get() + 1);
        Ok(live(&["c1", "agent-pod"]))
    }
}

#[test]
fn a_storm_of_address_events_does_not_starve_the_passes() {
    let node = Node::new();
    node.put(&follow_record("c1", &["198.18.1.5"], &[]));
    let listings = CountingRuntime::default();
    let agent = super::run::Agent::new(
        node.store.node().clone(),
        FakeAws::new(),
        listings.clone(),
        Follower::new(Storm, Duration::from_secs(2)),
        Reconciler::new(settings(0, 20)),
        Default::default(),
        super::run::LoopSettings {
            interval: Duration::from_millis(50),
            drift_interval: None,
            op_timeout: Duration::from_secs(1),
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new()
        .block_on(&rt, async {
            agent
                .run(tokio::time::sleep(Duration::from_millis(1_000)))
                .await
        })
        .unwrap();
    assert!(
        listings.0.get() >= 10,
        "only {} passes in 1 s at a 50 ms interval under an event storm",
        listings.0.get()
    );
}

/// The host's links as a test sets them; records which it was asked to bring up.
struct FakeLinks(std::cell::RefCell<Vec<crate::node::HostLink>>);

impl super::links::LinkHost for FakeLinks {
    fn links(&self) -> Result<Vec<crate::node::HostLink>, HostError> {
        Ok(self.0.borrow().clone())
    }

    fn set_up(&self, index: u32) -> Result<(), HostError> {
        for l in self.0.borrow_mut().iter_mut().filter(|l| l.index == index) {
            l.up = true;
        }
        Ok(())
    }
}

fn host_link(index: u32, name: &str, mac: &str, up: bool) -> crate::node::HostLink {
    crate::node::HostLink {
        index,
        name: name.into(),
        mac: Some(mac.into()),
        up,
    }
}

#[test]
fn a_down_no_manage_enis_link_is_brought_up_and_every_other_link_left_alone() {
    let aws = FakeAws::new();
    // OTHER's ENI loses its no_manage tag: the VPC CNI's, not ours.
    aws.enis
        .borrow_mut()
        .get_mut(crate::commands::tests::fake::OTHER)
        .unwrap()
        .tags
        .clear();
    let host = FakeLinks(std::cell::RefCell::new(vec![
        host_link(2, "ens5", "02:00:c6:12:09:99", false),
        host_link(3, "ens6", MAC, false),
        host_link(4, "ens7", "02:00:c6:12:01:02", false),
    ]));
    let mut keeper = super::links::LinkKeeper::default();
    let up = block(keeper.ensure(&aws, &host));
    assert_eq!(up, vec!["ens6"]);
    let links = host.0.borrow().clone();
    assert_eq!(
        links
            .iter()
            .map(|l| (l.name.as_str(), l.up))
            .collect::<Vec<_>>(),
        vec![("ens5", false), ("ens6", true), ("ens7", false)],
        "not this instance's ENI, ours, the VPC CNI's"
    );
    // Down again later: brought up again without describing the ENI a second time.
    host.0.borrow_mut()[1].up = false;
    let describes = aws.count("DescribeNetworkInterfaces");
    assert_eq!(block(keeper.ensure(&aws, &host)), vec!["ens6"]);
    assert_eq!(aws.count("DescribeNetworkInterfaces"), describes);
}
