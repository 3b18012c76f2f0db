//! Reconcile: release what lost DELs left behind, and finish the releases DEL handed over. Which
//! records go is decided from the records and the runtime's sandbox list alone ([`reason`]); each
//! release goes through DEL's path and is decided again under the addresses' locks
//! ([`release_batch`]), so an ADD that finished meanwhile is never undone.

use crate::cloud::Aws;
use crate::commands::release::release_batch;
use crate::store::{now_unix, Attachment, AttachmentKey, Phase, Store};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// A record younger than this is never released for a missing sandbox: its ADD may be in flight.
    pub grace: Duration,
    /// At most this many releases per pass, so the agent's EC2 calls never starve pod starts.
    pub max_releases: usize,
    /// How long a release waits for an address lock a plugin process holds before trying next pass.
    pub lock_wait: Duration,
    /// Deadline of one release (IMDS, the node budget, EC2 with its retries).
    pub op_timeout: Duration,
}

/// Why a record is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// DEL failed for good and marked it `releasing`.
    HandedOff,
    /// An ADD died between its write-ahead record and its end.
    StuckAssigning,
    /// The runtime no longer lists the sandbox and no DEL came.
    SandboxGone,
}

impl Reason {
    pub const ALL: [Reason; 3] = [
        Reason::HandedOff,
        Reason::StuckAssigning,
        Reason::SandboxGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HandedOff => "handed_off",
            Reason::StuckAssigning => "assigning_stuck",
            Reason::SandboxGone => "sandbox_gone",
        }
    }
}

/// Why `record` must be released now, if it must.
pub fn reason(
    record: &Attachment,
    live: &HashSet<String>,
    now_unix: u64,
    grace: Duration,
) -> Option<Reason> {
    let old = now_unix.saturating_sub(record.created_unix) >= grace.as_secs();
    match record.phase {
        Phase::Releasing => Some(Reason::HandedOff),
        Phase::Assigning if old => Some(Reason::StuckAssigning),
        // An empty list is a runtime that is (re)starting, never a real node: our own pod runs there.
        _ if old && !live.is_empty() && !live.contains(&record.container_id) => {
            Some(Reason::SandboxGone)
        }
        _ => None,
    }
}

/// What one pass saw and did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Records on the node at the start of the pass.
    pub records: usize,
    /// Releases done, by reason.
    pub released: Vec<(Reason, AttachmentKey)>,
    /// Releases that failed (logged); they are tried again next pass.
    pub failed: usize,
    /// EC2 throttled or timed out: the rest waits for the next pass.
    pub throttled: bool,
    /// Records that must be released and were not (cap, throttling, failures, busy locks).
    pub pending: usize,
}

/// The reconciler's memory between passes: after a throttled pass it releases fewer.
#[derive(Debug)]
pub struct Reconciler {
    pub settings: ReconcileSettings,
    cap: usize,
}

impl Reconciler {
    pub fn new(settings: ReconcileSettings) -> Reconciler {
        Reconciler {
            cap: settings.max_releases,
            settings,
        }
    }

    /// One pass over every record of every state dir, given the sandboxes the runtime lists.
    pub async fn pass<A: Aws>(
        &mut self,
        stores: &[Store],
        aws: &A,
        live: &HashSet<String>,
    ) -> PassReport {
        let mut report = PassReport::default();
        let now = now_unix();
        let grace = self.settings.grace;
        let mut due: Vec<(Reason, usize, AttachmentKey)> = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            let records = match store.all() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list records; skipped this pass");
                    continue;
                }
            };
            for r in records {
                if let Some(why) = reason(&r, live, now, grace) {
                    due.push((why, i, r.key()));
                }
                report.records += 1;
            }
        }
        if live.is_empty() && report.records > 0 {
            tracing::warn!(records = report.records,
                "the runtime lists no sandbox at all: nothing is released for a missing sandbox this pass");
        }
        // Handed-off releases first: DEL already told the runtime they were done.
        due.sort_by_key(|(why, _, _)| *why);
        report.pending = due.len();
        due.truncate(self.cap);
        let chosen: HashMap<AttachmentKey, Reason> =
            due.iter().map(|(why, _, k)| (k.clone(), *why)).collect();
        let still = |r: &Attachment| {
            chosen
                .get(&r.key())
                .is_some_and(|why| reason(r, live, now_unix(), grace) == Some(*why))
        };
        let waits = (self.settings.lock_wait, self.settings.op_timeout);
        for (i, store) in stores.iter().enumerate() {
            let keys: Vec<AttachmentKey> = due
                .iter()
                .filter(|(_, j, _)| *j == i)
                .map(|(_, _, k)| k.clone())
                .collect();
            if keys.is_empty() {
                continue;
            }
            for (key, result) in release_batch(store, aws, &keys, waits, still).await {
                let why = chosen[&key];
                match result {
                    Ok(Some(done)) => {
                        tracing::info!(reason = why.as_str(), network = %key.network, container = %key.container_id,
                            ifname = %key.ifname, released = %crate::commands::list(&done.addresses),
                            eni_detached = done.eni_detached, nothing_left = done.nothing_left, "released");
                        report.released.push((why, key));
                        report.pending -= 1;
                    }
                    Ok(None) => {
                        tracing::debug!(container = %key.container_id, "no longer due, or its lock is busy");
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(container = %key.container_id, error = %e,
                            "EC2 is throttling or unavailable: the rest waits for the next pass");
                        report.throttled = true;
                    }
                    Err(e) => {
                        tracing::warn!(reason = why.as_str(), container = %key.container_id, error = %e,
                            "release failed; tried again next pass");
                        report.failed += 1;
                    }
                }
            }
            if report.throttled {
                break;
            }
        }
        // Back off after throttling: half as many next pass, back to the cap once a pass is clean.
        self.cap = if report.throttled {
            (self.cap / 2).max(1)
        } else {
            self.settings.max_releases
        };
        report
    }
}
