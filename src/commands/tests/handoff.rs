//! DEL's hand-off to the node agent, and the agent's flows for addresses added or removed in a pod
//! at run time, against the fake.

use super::*;
use crate::commands::follow::{address_added, address_removed, address_returned, Added, Removed};
use crate::commands::release::release_batch;
use crate::store::{AttachmentKey, Phase};
use std::time::{Duration, Instant};

fn key(container: &str) -> AttachmentKey {
    AttachmentKey {
        network: "net".into(),
        container_id: container.into(),
        ifname: "net1".into(),
    }
}

fn followed(addrs: &[&str]) -> serde_json::Value {
    let mut c = conf(addrs);
    c["followAddresses"] = json!(true);
    c
}

/// The agent's release of c1, as a pass does it.
fn release_one(
    bed: &Bed,
    still: impl Fn(&crate::store::Attachment) -> bool,
) -> Option<crate::commands::release::Released> {
    let waits = (Duration::from_secs(1), Duration::from_secs(5));
    let mut out = block(release_batch(
        &bed.store,
        &bed.aws,
        &[key("c1")],
        waits,
        still,
    ));
    out.pop().unwrap().1.unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

/// The agent's calls for c1's pod interface, as its loop makes them.
fn added(bed: &Bed, addr: IpAddr) -> Added {
    block(address_added(
        &bed.store,
        &bed.aws,
        &key("c1"),
        addr,
        false,
        soon(),
    ))
    .unwrap()
}

fn removed(bed: &Bed, addr: IpAddr) -> Removed {
    block(address_removed(
        &bed.store,
        &bed.aws,
        &key("c1"),
        addr,
        soon(),
    ))
    .unwrap()
}

fn returned(bed: &Bed, addr: IpAddr) -> Added {
    block(address_returned(
        &bed.store,
        &bed.aws,
        &key("c1"),
        addr,
        soon(),
    ))
    .unwrap()
}

/// A node agent's heartbeat, fresh for a minute, that listed the runtime just now and watches
/// the bed's state dir.
fn agent_alive(bed: &Bed) {
    bed.store
        .node()
        .write_heartbeat(
            Duration::from_secs(60),
            Some(crate::store::now_unix_ms()),
            &[bed.store.root().to_path_buf()],
        )
        .unwrap();
}

#[test]
fn del_does_not_hand_over_to_an_agent_that_cannot_list_the_runtime() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    let dirs = [bed.store.root().to_path_buf()];
    for listed in [None, Some(crate::store::now_unix_ms() - 200_000)] {
        bed.store
            .node()
            .write_heartbeat(Duration::from_secs(60), listed, &dirs)
            .unwrap();
        bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
        let e = bed.run("DEL", "c1", conf(&[]), del).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotAuthorized);
        assert!(e.details.contains("cannot list"), "{}", e.details);
        assert_eq!(
            bed.store.get(&key("c1")).unwrap().unwrap().phase,
            Phase::Assigned,
            "the runtime retries DEL; nobody would act on a hand-off"
        );
    }
}

#[test]
fn del_does_not_hand_over_a_record_in_a_state_dir_the_agent_does_not_watch() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.store
        .node()
        .write_heartbeat(
            Duration::from_secs(60),
            Some(crate::store::now_unix_ms()),
            &[std::path::PathBuf::from("/var/lib/cni/aws-eni-ip")],
        )
        .unwrap();
    bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
    let e = bed.run("DEL", "c1", conf(&[]), del).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotAuthorized);
    let dir = bed.store.root().display().to_string();
    assert!(
        e.details.contains(&dir) && e.details.contains("mount it"),
        "names the missing mount: {}",
        e.details
    );
    assert_eq!(
        bed.store.get(&key("c1")).unwrap().unwrap().phase,
        Phase::Assigned
    );
}

#[test]
fn del_with_108_and_a_live_agent_succeeds_and_leaves_a_releasing_record() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    agent_alive(&bed);
    bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
    let summary = bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert!(summary.handed_off, "{}", summary.note);
    let record = bed.store.get(&key("c1")).unwrap().expect("record kept");
    assert_eq!(record.phase, Phase::Releasing);
    assert!(record
        .release_error
        .unwrap()
        .contains("UnauthorizedOperation"));
    assert_eq!(bed.aws.holds(ENI), vec![ip("198.18.1.5")]);
    // The agent's retry, once the fault is gone: released, record removed.
    let done = release_one(&bed, |r| r.phase == Phase::Releasing).expect("released");
    assert_eq!(done.addresses, vec![ip("198.18.1.5")]);
    assert!(bed.aws.holds(ENI).is_empty());
    assert!(bed.store.all().unwrap().is_empty());
}

#[test]
fn del_with_108_and_no_agent_fails_and_says_an_agent_would_retry() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
    let e = bed.run("DEL", "c1", conf(&[]), del).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotAuthorized);
    assert!(e.details.contains("agent"), "{}", e.details);
    assert_eq!(
        bed.store.get(&key("c1")).unwrap().unwrap().phase,
        Phase::Assigned
    );
}

#[test]
fn del_with_a_stale_heartbeat_does_not_hand_over() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.store
        .node()
        .write_heartbeat(
            Duration::from_millis(1),
            Some(crate::store::now_unix_ms()),
            &[bed.store.root().to_path_buf()],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
    let e = bed.run("DEL", "c1", conf(&[]), del).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotAuthorized);
    assert_eq!(
        bed.store.get(&key("c1")).unwrap().unwrap().phase,
        Phase::Assigned,
        "not handed over"
    );
}

#[test]
fn del_throttled_still_returns_11_with_a_live_agent() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    agent_alive(&bed);
    bed.aws.fail_next.borrow_mut().insert(
        "UnassignPrivateIpAddresses",
        CloudError::Transient {
            action: "UnassignPrivateIpAddresses",
            reason: "RequestLimitExceeded".into(),
        },
    );
    let e = bed.run("DEL", "c1", conf(&[]), del).unwrap_err();
    assert_eq!(e.code, ErrorCode::TryAgainLater);
    assert_eq!(
        bed.store.get(&key("c1")).unwrap().unwrap().phase,
        Phase::Assigned
    );
}

#[test]
fn a_handed_off_release_whose_address_moved_away_drops_the_record() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    agent_alive(&bed);
    bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    bed.aws.move_addr("198.18.1.5", Some(ENI), Some(OTHER));
    bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
    let done = release_one(&bed, |_| true).expect("record dropped");
    assert!(done.nothing_left);
    assert!(bed.store.all().unwrap().is_empty());
    assert_eq!(bed.aws.holds(OTHER), vec![ip("198.18.1.5")], "left alone");
}

#[test]
fn a_followed_address_is_recorded_before_it_is_assigned_and_released_when_it_leaves() {
    let bed = Bed::new();
    bed.run("ADD", "c1", followed(&["198.18.1.5/24"]), add)
        .unwrap();
    let vip = ip("198.18.1.50");
    let first = added(&bed, vip);
    assert!(matches!(first, Added::Assigned(_)), "{first:?}");
    assert_eq!(bed.aws.holds(ENI), vec![ip("198.18.1.5"), vip]);
    let record = bed.store.get(&key("c1")).unwrap().unwrap();
    assert!(record.addresses.contains(&vip));
    assert_eq!(record.follow.unwrap().added, vec![vip]);
    // Seen again (an agent restart): no call.
    let calls = bed.aws.mutating();
    let again = added(&bed, vip);
    assert!(matches!(again, Added::Recorded));
    assert_eq!(bed.aws.mutating(), calls);
    let gone = removed(&bed, vip);
    assert_eq!(gone, Removed::Released);
    assert_eq!(bed.aws.holds(ENI), vec![ip("198.18.1.5")]);
    let record = bed.store.get(&key("c1")).unwrap().unwrap();
    assert_eq!(record.addresses, vec![ip("198.18.1.5")]);
}

#[test]
fn addresses_outside_the_subnet_or_the_primary_ip_are_ignored_without_a_call() {
    let bed = Bed::new();
    bed.run("ADD", "c1", followed(&["198.18.1.5/24"]), add)
        .unwrap();
    let calls = bed.aws.mutating();
    for addr in ["198.18.9.50", "198.18.1.10"] {
        let r = block(address_added(
            &bed.store,
            &bed.aws,
            &key("c1"),
            ip(addr),
            false,
            soon(),
        ))
        .unwrap();
        assert!(matches!(r, Added::Ignored(_)), "{addr}: {r:?}");
    }
    assert_eq!(bed.aws.mutating(), calls);
}

#[test]
fn a_network_without_follow_addresses_is_never_followed() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    let r = added(&bed, ip("198.18.1.50"));
    assert!(matches!(r, Added::Ignored(_)));
    assert_eq!(bed.aws.holds(ENI), vec![ip("198.18.1.5")]);
}

#[test]
fn a_followed_address_removed_after_its_eni_left_this_instance_is_only_forgotten() {
    let bed = Bed::new();
    bed.run("ADD", "c1", followed(&["198.18.1.5/24"]), add)
        .unwrap();
    let vip = ip("198.18.1.50");
    added(&bed, vip);
    // The ENI now belongs to another instance: DEL's rule, EC2 untouched.
    bed.aws.detached.borrow_mut().push(fake::MAC.into());
    let calls = bed.aws.mutating();
    assert_eq!(removed(&bed, vip), Removed::Forgotten);
    assert_eq!(bed.aws.mutating(), calls, "no unassign on a detached ENI");
    assert!(bed.aws.holds(ENI).contains(&vip));
    let record = bed.store.get(&key("c1")).unwrap().unwrap();
    assert!(!record.addresses.contains(&vip));
}

#[test]
fn a_pod_interface_at_the_address_limit_gets_no_more_followed_addresses() {
    let bed = Bed::new();
    bed.run("ADD", "c1", followed(&["198.18.1.5/24"]), add)
        .unwrap();
    let mut record = bed.store.get(&key("c1")).unwrap().unwrap();
    record.addresses = (0..crate::commands::add::MAX_POD_ADDRESSES)
        .map(|i| ip(&format!("198.18.1.{}", 100 + i)))
        .collect();
    bed.store.put(&record).unwrap();
    let calls = bed.aws.mutating();
    let r = added(&bed, ip("198.18.1.50"));
    assert!(
        matches!(r, Added::Ignored(why) if why.contains("most addresses")),
        "{r:?}"
    );
    assert_eq!(bed.aws.mutating(), calls);
}

#[test]
fn a_followed_address_taken_over_by_a_peer_is_only_forgotten() {
    let bed = Bed::new();
    bed.run("ADD", "c1", followed(&["198.18.1.5/24"]), add)
        .unwrap();
    let vip = ip("198.18.1.50");
    added(&bed, vip);
    bed.aws.move_addr("198.18.1.50", Some(ENI), Some(OTHER));
    let gone = removed(&bed, vip);
    assert_eq!(gone, Removed::Forgotten);
    assert_eq!(bed.aws.holds(OTHER), vec![vip], "the peer keeps it");
    // DEL later does not take it back either.
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert_eq!(bed.aws.holds(OTHER), vec![vip]);
}

#[test]
fn a_followed_address_on_another_eni_is_taken_over_by_the_rules_of_add() {
    let bed = Bed::new();
    bed.run("ADD", "c1", followed(&["198.18.1.5/24"]), add)
        .unwrap();
    bed.aws.move_addr("198.18.1.50", None, Some(OTHER));
    let r = added(&bed, ip("198.18.1.50"));
    match r {
        Added::Assigned(done) => assert_eq!(done.moved, vec![format!("198.18.1.50 from {OTHER}")]),
        other => panic!("{other:?}"),
    }
    assert!(bed.aws.holds(ENI).contains(&ip("198.18.1.50")));
    assert!(!bed.aws.holds(OTHER).contains(&ip("198.18.1.50")));
}

#[test]
fn an_address_another_record_shares_is_forgotten_not_unassigned() {
    let bed = Bed::new();
    bed.run("ADD", "c1", followed(&["198.18.1.5/24"]), add)
        .unwrap();
    bed.run("ADD", "c2", conf(&["198.18.1.50/24"]), add)
        .unwrap();
    let vip = ip("198.18.1.50");
    added(&bed, vip);
    let gone = removed(&bed, vip);
    assert_eq!(gone, Removed::Forgotten);
    assert!(bed.aws.holds(ENI).contains(&vip), "c2 still holds it");
}

#[test]
fn a_flap_costs_no_ec2_call_unless_a_peer_took_the_address_meanwhile() {
    let bed = Bed::new();
    bed.run("ADD", "c1", followed(&["198.18.1.5/24"]), add)
        .unwrap();
    let vip = ip("198.18.1.50");
    added(&bed, vip);
    let calls = bed.aws.mutating();
    let back = returned(&bed, vip);
    assert!(matches!(back, Added::Recorded), "{back:?}");
    assert_eq!(
        bed.aws.mutating(),
        calls,
        "IMDS still lists it: no EC2 call"
    );
    // Failover and back within the debounce: the peer holds it now, so it is taken back.
    bed.aws.move_addr("198.18.1.50", Some(ENI), Some(OTHER));
    let back = returned(&bed, vip);
    assert!(matches!(back, Added::Assigned(_)), "{back:?}");
    assert!(bed.aws.holds(ENI).contains(&vip));
}
