//! Group commit per ENI, on disk. A plugin process that wants an ENI's addresses changed takes a
//! ticket (a flock it holds while it waits) and files a request; one leader, whoever wins the
//! ENI's batch lock without waiting, sends every pending request in one EC2 call per kind and
//! writes each requester its outcome. Waiters watch for their outcome and never queue on the
//! batch lock; when nobody leads, the next waiter to look takes the lock. No daemon, no window.
//!
//! ```text
//! <node>/spool/<eni>/<ticket>.live   flocked by the requester while it waits (liveness)
//! <node>/spool/<eni>/<ticket>.req    pending: what it asks for, until its monotonic deadline
//! <node>/spool/<eni>/<ticket>.sent   claimed by a leader (renamed from .req) before it is sent
//! <node>/spool/<eni>/<ticket>.out    its outcome, for the requester to pick up
//! <node>/locks/batch-<eni>.lock      held by the leader
//! ```
//! A request whose requester let go of its ticket, or whose deadline passed, is removed unsent:
//! the addresses it named are no longer locked by it. A `.sent` found by a later leader was in
//! flight when its leader died: its outcome is unknown, and is read from the ENI's listing.

mod sweep;
mod ticket;

pub use ticket::Ticket;

use super::clock::{monotonic_ms, monotonic_ms_at};
use super::fs::{create_private_dir, read_json, write_json_atomic, Durability};
use super::lock::Locks;
use super::{NodeDir, StoreError};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

/// A request this close to its deadline is not sent: its answer could not reach its requester.
pub(super) const SEND_MARGIN_MS: u64 = 100;

/// The kind of EC2 call a request needs; requests of one kind share a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BatchOp {
    AssignIpv4 { allow_reassignment: bool },
    UnassignIpv4,
    AssignIpv6,
    UnassignIpv6,
}

impl BatchOp {
    pub fn action(self) -> &'static str {
        match self {
            BatchOp::AssignIpv4 { .. } => "AssignPrivateIpAddresses",
            BatchOp::UnassignIpv4 => "UnassignPrivateIpAddresses",
            BatchOp::AssignIpv6 => "AssignIpv6Addresses",
            BatchOp::UnassignIpv6 => "UnassignIpv6Addresses",
        }
    }

    /// Whether the request leaves its addresses on the ENI (else off it).
    pub fn assigns(self) -> bool {
        matches!(self, BatchOp::AssignIpv4 { .. } | BatchOp::AssignIpv6)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRequest {
    pub op: BatchOp,
    pub addresses: Vec<IpAddr>,
    /// CLOCK_MONOTONIC ms: the same clock in every process of this boot.
    pub deadline_monotonic_ms: u64,
    /// How often a leader claimed it: more than none means an earlier send may have taken effect.
    #[serde(default)]
    pub sends: u32,
}

/// What EC2 answered for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BatchOutcome {
    Done,
    Refused {
        code: String,
        message: String,
        maybe_applied: bool,
    },
}

/// What became of a request its requester gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawn {
    /// Never sent, and now never will be.
    Unsent,
    /// A leader had claimed it: it may have been carried out.
    InFlight,
    /// Answered just in time.
    Answered(BatchOutcome),
}

/// One ENI's spool.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    lock: PathBuf,
}

impl NodeDir {
    pub fn spool(&self, eni: &str) -> Spool {
        let safe: String = eni
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        Spool {
            dir: self.root().join("spool").join(&safe),
            lock: self.locks().join(format!("batch-{safe}.lock")),
        }
    }
}

impl Spool {
    /// Takes a ticket and files the request; the ticket must be held until the outcome is taken.
    pub fn submit(
        &self,
        op: BatchOp,
        addresses: &[IpAddr],
        deadline: Instant,
    ) -> Result<Ticket, StoreError> {
        create_private_dir(&self.dir)?;
        let deadline_monotonic_ms = monotonic_ms_at(deadline);
        // Ordered by filing time; the random part keeps names unique across PID namespaces.
        let name = format!(
            "{:013}-{:016x}",
            monotonic_ms_at(Instant::now()),
            rand::random::<u64>()
        );
        let ticket = Ticket::take(&self.dir, name)?;
        let req = BatchRequest {
            op,
            addresses: addresses.to_vec(),
            deadline_monotonic_ms,
            sends: 0,
        };
        write_json_atomic(
            &self.file(ticket.name(), "req"),
            &req,
            Durability::ProcessCrashSafe,
        )?;
        Ok(ticket)
    }

    /// Becomes the leader if nobody is: never waits for the batch lock.
    pub fn try_lead(&self) -> Result<Option<Locks>, StoreError> {
        Locks::try_acquire(&self.lock)
    }

    /// The outcome of `ticket`, if a leader wrote one (it is then removed).
    pub fn take_outcome(&self, ticket: &str) -> Option<BatchOutcome> {
        let path = self.file(ticket, "out");
        let outcome = read_json::<BatchOutcome>(&path).ok().flatten()?;
        let _ = std::fs::remove_file(&path);
        Some(outcome)
    }

    /// The requester gives up: a request no leader claimed is never sent.
    pub fn withdraw(&self, ticket: Ticket) -> Withdrawn {
        let unsent = std::fs::remove_file(self.file(ticket.name(), "req")).is_ok();
        let outcome = self.take_outcome(ticket.name());
        self.finish(ticket);
        match (unsent, outcome) {
            (_, Some(o)) => Withdrawn::Answered(o),
            (true, None) => Withdrawn::Unsent,
            (false, None) => Withdrawn::InFlight,
        }
    }

    /// The requester is done with its ticket: every file of it goes.
    pub fn finish(&self, ticket: Ticket) {
        for kind in ["req", "sent", "out", "live"] {
            let _ = std::fs::remove_file(self.file(ticket.name(), kind));
        }
        drop(ticket);
    }

    /// The leader claims a request before sending it: false when its requester withdrew it.
    pub fn claim(&self, ticket: &str, request: &mut BatchRequest) -> bool {
        let (req, sent) = (self.file(ticket, "req"), self.file(ticket, "sent"));
        if request.sends == 0 && std::fs::rename(&req, &sent).is_err() {
            return false;
        }
        request.sends += 1;
        let _ = write_json_atomic(&sent, request, Durability::ProcessCrashSafe);
        true
    }

    /// Whether every claimed request is still wanted right now: its requester waits, and its
    /// deadline is far enough away for an answer to reach it. The leader asks before each send.
    pub fn still_wanted(&self, claimed: &[(String, u64)]) -> bool {
        let now = monotonic_ms();
        claimed.iter().all(|(ticket, deadline_ms)| {
            *deadline_ms > now + SEND_MARGIN_MS
                && ticket::liveness(&self.file(ticket, "live")) == ticket::Liveness::Waiting
        })
    }

    /// Puts back a claimed request whose last attempt did not go out, unless its requester let
    /// go. Its send stays counted when an earlier attempt of the call went out (`sent`).
    pub fn unclaim(&self, ticket: &str, request: &BatchRequest, sent: bool) {
        if ticket::liveness(&self.file(ticket, "live")) == ticket::Liveness::Waiting {
            let back = BatchRequest {
                sends: match sent {
                    true => request.sends,
                    false => request.sends.saturating_sub(1),
                },
                ..request.clone()
            };
            let _ = write_json_atomic(
                &self.file(ticket, "req"),
                &back,
                Durability::ProcessCrashSafe,
            );
        }
        let _ = std::fs::remove_file(self.file(ticket, "sent"));
    }

    /// Writes the requester its outcome and retires the request; nothing for one that let go.
    pub fn answer(&self, ticket: &str, outcome: &BatchOutcome) {
        if ticket::liveness(&self.file(ticket, "live")) == ticket::Liveness::Waiting {
            let _ = write_json_atomic(
                &self.file(ticket, "out"),
                outcome,
                Durability::ProcessCrashSafe,
            );
        }
        let _ = std::fs::remove_file(self.file(ticket, "sent"));
    }

    fn file(&self, ticket: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{ticket}.{kind}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeDir::new(dir.path());
        node.create().unwrap();
        let s = node.spool("eni-0b000000000000001");
        (dir, s)
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn a_request_is_pending_until_answered_and_the_answer_is_taken_once() {
        let (_d, s) = spool();
        let t = s
            .submit(
                BatchOp::UnassignIpv4,
                &["198.18.1.5".parse().unwrap()],
                far(),
            )
            .unwrap();
        let mut pending = s.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, t.name());
        assert!(s.claim(t.name(), &mut pending[0].1));
        s.answer(t.name(), &BatchOutcome::Done);
        assert!(s.pending().is_empty());
        assert_eq!(s.take_outcome(t.name()), Some(BatchOutcome::Done));
        assert_eq!(s.take_outcome(t.name()), None);
        let name = t.name().to_string();
        s.finish(t);
        assert!(!s.file(&name, "live").exists(), "nothing left of it");
    }

    #[test]
    fn requests_whose_requester_let_go_or_whose_deadline_passed_are_dropped_unsent() {
        let (_d, s) = spool();
        let addr = ["2001:db8::5".parse().unwrap()];
        let kept = s.submit(BatchOp::AssignIpv6, &addr, far()).unwrap();
        let gone = s.submit(BatchOp::AssignIpv6, &addr, far()).unwrap();
        let gone_name = gone.name().to_string();
        drop(gone); // the process died: its flock went with it
        let late = s
            .submit(
                BatchOp::AssignIpv6,
                &addr,
                Instant::now() + Duration::from_millis(1),
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let pending: Vec<String> = s.pending().into_iter().map(|(t, _)| t).collect();
        assert_eq!(pending, vec![kept.name().to_string()]);
        assert!(!s.file(&gone_name, "req").exists() && !s.file(late.name(), "req").exists());
    }

    #[test]
    fn a_withdrawn_request_is_never_claimed_and_a_claimed_one_is_in_flight() {
        let (_d, s) = spool();
        let addr = ["198.18.1.5".parse().unwrap()];
        let t = s.submit(BatchOp::UnassignIpv4, &addr, far()).unwrap();
        let mut req = s.pending().remove(0).1;
        let name = t.name().to_string();
        assert_eq!(s.withdraw(t), Withdrawn::Unsent);
        assert!(
            !s.claim(&name, &mut req),
            "nothing is sent for a requester that gave up"
        );
        let t = s.submit(BatchOp::UnassignIpv4, &addr, far()).unwrap();
        let mut req = s.pending().remove(0).1;
        assert!(s.claim(t.name(), &mut req));
        assert_eq!(s.withdraw(t), Withdrawn::InFlight);
    }

    #[test]
    fn a_claimed_request_of_a_dead_leader_is_pending_again_with_its_send_counted() {
        let (_d, s) = spool();
        let t = s
            .submit(
                BatchOp::UnassignIpv4,
                &["198.18.1.5".parse().unwrap()],
                far(),
            )
            .unwrap();
        let mut req = s.pending().remove(0).1;
        assert!(s.claim(t.name(), &mut req));
        let again = s.pending();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.sends, 1, "its outcome is unknown");
    }

    #[test]
    fn an_unsent_claim_goes_back_pending_with_its_send_counted_only_if_an_attempt_went_out() {
        let (_d, s) = spool();
        let addr = ["198.18.1.5".parse().unwrap()];
        let t = s.submit(BatchOp::UnassignIpv4, &addr, far()).unwrap();
        for (sent, sends) in [(false, 0), (true, 1)] {
            let mut req = s.pending().remove(0).1;
            assert!(s.claim(t.name(), &mut req));
            s.unclaim(t.name(), &req, sent);
            let again = s.pending();
            assert_eq!(again.len(), 1, "pending again");
            assert_eq!(again[0].1.sends, sends, "sent before: {sent}");
            assert!(!s.file(t.name(), "sent").exists());
        }
        let name = t.name().to_string();
        let mut req = s.pending().remove(0).1;
        assert!(s.claim(&name, &mut req));
        drop(t); // its requester gave up while the call waited
        s.unclaim(&name, &req, false);
        assert!(
            s.pending().is_empty(),
            "nothing put back for a requester that let go"
        );
    }

    #[test]
    fn leftover_temp_files_and_old_outcomes_are_cleaned_and_fresh_ones_kept() {
        let (_d, s) = spool();
        let t = s
            .submit(
                BatchOp::UnassignIpv4,
                &["198.18.1.5".parse().unwrap()],
                far(),
            )
            .unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        for name in [".x.req.77.tmp", "y.out"] {
            let f = s.dir.join(name);
            std::fs::write(&f, b"{}").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        std::fs::write(s.dir.join(".z.req.78.tmp"), b"{}").unwrap();
        assert_eq!(s.pending().len(), 1);
        assert!(!s.dir.join(".x.req.77.tmp").exists() && !s.dir.join("y.out").exists());
        assert!(
            s.dir.join(".z.req.78.tmp").exists(),
            "a writer may be at work"
        );
        assert!(s.file(t.name(), "live").exists());
    }
}
