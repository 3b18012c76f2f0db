//! Group commit against the fake: what shares a call, and who gets which answer.

use super::fake::MANAGED;
use super::*;
use crate::store::{BatchOp, BatchOutcome};
use std::time::{Duration, Instant};

/// A pod's assign as ADD files it.
const ASSIGN: BatchOp = BatchOp::AssignIpv4 {
    allow_reassignment: false,
};

#[test]
fn one_bad_address_in_a_batch_of_ten_gets_its_own_answer_and_nine_succeed() {
    let bed = Bed::new();
    bed.aws.move_addr("198.18.1.59", None, Some(MANAGED));
    let spool = bed.store.node().spool(ENI);
    let far = Instant::now() + Duration::from_secs(30);
    // Nine requests of pods waiting on the ENI, and one for an address a VPC CNI ENI holds.
    let waiting: Vec<(crate::store::Ticket, &str)> = (50..60)
        .map(|i| {
            let addr = format!("198.18.1.{i}");
            (
                spool.submit(ASSIGN, &[ip(&addr)], far).unwrap(),
                if i == 59 { "bad" } else { "good" },
            )
        })
        .collect();
    // This ADD takes the batch lock and sends for everyone.
    bed.run("ADD", "c60", conf(&["198.18.1.60/24"]), add)
        .unwrap();
    assert_eq!(
        bed.aws.count("AssignPrivateIpAddresses"),
        1 + 11,
        "one shared call, refused; then each request alone"
    );
    for (ticket, kind) in &waiting {
        match (spool.take_outcome(ticket.name()), *kind) {
            (Some(BatchOutcome::Done), "good") => {}
            (Some(BatchOutcome::Refused { code, .. }), "bad") => {
                assert_eq!(code, "InvalidIPAddress.InUse")
            }
            (other, kind) => panic!("{kind} request {}: {other:?}", ticket.name()),
        }
    }
    let mut held = bed.aws.holds(ENI);
    held.sort();
    let expected: Vec<IpAddr> = (50..=60)
        .filter(|i| *i != 59)
        .map(|i| ip(&format!("198.18.1.{i}")))
        .collect();
    assert_eq!(held, expected);
    assert_eq!(bed.aws.holds(MANAGED), vec![ip("198.18.1.59")], "untouched");
}

#[test]
fn a_lone_request_is_sent_at_once_and_leaves_nothing_in_the_spool() {
    let bed = Bed::new();
    bed.run("ADD", "c0", conf(&["198.18.1.4/24"]), add).unwrap();
    let before = bed.aws.mutating();
    let started = Instant::now();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert_eq!(bed.aws.mutating() - before, 2, "one call each");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(bed.store.node().spool(ENI).pending().is_empty());
}

#[test]
fn a_request_resent_after_a_crashed_sender_is_never_adopted() {
    let bed = Bed::new();
    // A sender died after EC2 carried out .5 for pod c1, before answering: c1's request, sent
    // again, finds .5 on the ENI. Its request went out twice, so .5 is c1's own, not adopted.
    *bed.aws.applied_by_an_earlier_attempt.borrow_mut() = true;
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    assert!(bed.store.all().unwrap()[0].adopted.is_empty());
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert!(bed.aws.holds(ENI).is_empty(), "released as its own");
}

#[test]
fn a_request_given_up_while_the_leaders_call_waited_is_never_sent() {
    let bed = Bed::new();
    let spool = bed.store.node().spool(ENI);
    let far = Instant::now() + Duration::from_secs(30);
    let gave_up = spool.submit(ASSIGN, &[ip("198.18.1.50")], far).unwrap();
    // Its requester ends (its ticket's flock goes) while the leader's shared call waits for a token.
    *bed.aws.while_waiting.borrow_mut() = Some(Box::new(move || drop(gave_up)));
    bed.run("ADD", "c60", conf(&["198.18.1.60/24"]), add)
        .unwrap();
    assert_eq!(
        bed.aws.holds(ENI),
        vec![ip("198.18.1.60")],
        "nothing sent for .50"
    );
    assert_eq!(
        bed.aws.count("AssignPrivateIpAddresses"),
        1,
        "the shared call went unsent; .60 went alone"
    );
    assert!(spool.pending().is_empty());
}

#[test]
fn a_request_that_comes_while_the_leader_waits_for_a_token_shares_its_call() {
    let bed = Bed::new();
    let spool = bed.store.node().spool(ENI);
    let far = Instant::now() + Duration::from_secs(30);
    // A second pod's ADD submits while the first one's leader waits for the node's token.
    let late = std::rc::Rc::new(std::cell::RefCell::new(None));
    let (slot, submitter) = (late.clone(), spool.clone());
    *bed.aws.while_pacing.borrow_mut() = Some(Box::new(move || {
        *slot.borrow_mut() = Some(submitter.submit(ASSIGN, &[ip("198.18.1.50")], far).unwrap());
    }));
    bed.run("ADD", "c60", conf(&["198.18.1.60/24"]), add)
        .unwrap();
    assert_eq!(
        bed.aws.count("AssignPrivateIpAddresses"),
        1,
        "one token, one call for both"
    );
    let mut held = bed.aws.holds(ENI);
    held.sort();
    assert_eq!(held, vec![ip("198.18.1.50"), ip("198.18.1.60")]);
    let ticket = late.borrow_mut().take().unwrap();
    assert_eq!(spool.take_outcome(ticket.name()), Some(BatchOutcome::Done));
}

#[test]
fn a_leader_waits_for_another_kinds_token_no_longer_than_its_own_deadline() {
    let bed = Bed::new();
    bed.run("ADD", "c60", conf(&["198.18.1.60/24"]), add)
        .unwrap();
    let spool = bed.store.node().spool(ENI);
    // Another pod's assign, with a minute to go, waits in the spool when this DEL leads.
    let later = Instant::now() + Duration::from_secs(60);
    let _other = spool.submit(ASSIGN, &[ip("198.18.1.50")], later).unwrap();
    let started = Instant::now();
    bed.run("DEL", "c60", conf(&[]), del).unwrap();
    let untils = bed.aws.paced_until.borrow().clone();
    assert!(untils.len() >= 2, "one wait per kind of call: {untils:?}");
    let own_deadline = started + Duration::from_millis(crate::config::DEFAULT_TIMEOUT_MS);
    assert!(
        untils.iter().all(|u| *u <= own_deadline),
        "a wait past the DEL's own deadline: {untils:?}"
    );
}

#[test]
fn a_shared_call_goes_out_by_the_first_deadline_it_carries_not_by_the_leaders() {
    let bed = Bed::new();
    let spool = bed.store.node().spool(ENI);
    // A pod with 10 s left waits in the spool when this ADD, with the default 30 s, leads.
    let soon = Instant::now() + Duration::from_secs(10);
    let waiter = spool.submit(ASSIGN, &[ip("198.18.1.50")], soon).unwrap();
    bed.run("ADD", "c60", conf(&["198.18.1.60/24"]), add)
        .unwrap();
    let by = bed.aws.send_by.borrow().clone();
    assert_eq!(by.len(), 1, "one shared call: {by:?}");
    // The node budget lends a token for this deadline rather than let the waiter end in code 11.
    let by = by[0].expect("the call knows its first requester's deadline");
    let off = by.max(soon) - by.min(soon);
    assert!(
        off <= Duration::from_millis(2),
        "{off:?} from the waiter's deadline"
    );
    assert_eq!(spool.take_outcome(waiter.name()), Some(BatchOutcome::Done));
    bed.run("ADD", "c61", conf(&["198.18.1.61/24"]), add)
        .unwrap();
    assert_eq!(
        bed.aws.send_by.borrow()[1],
        None,
        "a lone call goes by its own deadline"
    );
}
