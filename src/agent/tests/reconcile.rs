//! The reconciler: what is due when, one pass at a time, against the fakes.

use super::*;

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
