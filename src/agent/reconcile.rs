//! Reconcile: release what lost DELs left behind, and finish the releases DEL handed over. Which
//! records go is decided from the records and the runtime's sandbox listings alone ([`reason`]): a
//! sandbox counts as gone only when two successful listings after its ADD committed lack it, the
//! later one at least `--grace` after the commit. Each release goes through DEL's path and is
//! decided again under the addresses' locks ([`release_batch`]), so an ADD that finished meanwhile
//! is never undone. The agent's loop takes the releases one at a time ([`Reconciler::plan`],
//! [`Reconciler::release`]), so a pass never holds up address events for more than one EC2 call.

use crate::cloud::Aws;
use crate::commands::release::release_batch;
use crate::store::{now_unix, now_unix_ms, Attachment, AttachmentKey, Phase, Store};
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

/// One successful ListPodSandbox: which sandboxes live, and when it was asked (unix ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub at_ms: u64,
    pub sandboxes: HashSet<String>,
}

impl Listing {
    pub fn now(sandboxes: HashSet<String>) -> Listing {
        Listing {
            at_ms: now_unix_ms(),
            sandboxes,
        }
    }
}

/// Why `record` must be released now, if it must. `listing`: the runtime's last answer, `None`
/// while it cannot be asked (then only hand-offs are finished: they need no liveness answer).
/// `first_absent_ms`: the first listing after the record's commit that lacked its sandbox.
pub fn reason(
    record: &Attachment,
    listing: Option<&Listing>,
    first_absent_ms: Option<u64>,
    now_unix: u64,
    grace: Duration,
) -> Option<Reason> {
    let grace_ms = grace.as_millis() as u64;
    match record.phase {
        Phase::Releasing => Some(Reason::HandedOff),
        // Decided again under the record's locks, which a live ADD holds until it commits.
        Phase::Assigning if now_unix.saturating_sub(record.created_unix) >= grace.as_secs() => {
            Some(Reason::StuckAssigning)
        }
        Phase::Assigning => None,
        Phase::Assigned => {
            let listing = listing?;
            let committed = record.committed_ms();
            // Missing from two listings after the commit, the later one a grace after it. An
            // empty list is a runtime that is (re)starting, never a real node: our own pod runs.
            let gone = !listing.sandboxes.is_empty()
                && !listing.sandboxes.contains(&record.container_id)
                && first_absent_ms.is_some_and(|first| first >= committed && first < listing.at_ms)
                && listing.at_ms >= committed.saturating_add(grace_ms);
            gone.then_some(Reason::SandboxGone)
        }
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

/// One release a pass decided on.
#[derive(Debug, Clone)]
pub struct Due {
    pub reason: Reason,
    /// The state dir that holds the record.
    pub store: Store,
    pub key: AttachmentKey,
}

/// What one release came to.
#[derive(Debug)]
pub enum Step {
    Released,
    /// No longer due, or its locks are busy (an ADD or DEL in flight): next pass decides again.
    Skipped,
    /// EC2 throttled or timed out: the rest of the pass waits for the next one.
    Throttled,
    Failed,
}

/// The reconciler's memory between passes: when each sandbox was first seen missing, and after a
/// throttled pass, a smaller cap.
#[derive(Debug)]
pub struct Reconciler {
    pub settings: ReconcileSettings,
    cap: usize,
    first_absent: HashMap<AttachmentKey, u64>,
    listing: Option<Listing>,
    throttled: bool,
}

impl Reconciler {
    pub fn new(settings: ReconcileSettings) -> Reconciler {
        Reconciler {
            cap: settings.max_releases,
            settings,
            first_absent: HashMap::new(),
            listing: None,
            throttled: false,
        }
    }

    /// Decides what this pass releases, given the runtime's answer (`None`: it could not be
    /// asked, and only hand-offs are finished). At most the cap, hand-offs first.
    pub fn plan(&mut self, stores: &[Store], listing: Option<Listing>) -> (Vec<Due>, PassReport) {
        let mut report = PassReport::default();
        // Back off after throttling: half as many this pass, back to the cap once one is clean.
        self.cap = if self.throttled {
            (self.cap / 2).max(1)
        } else {
            self.settings.max_releases
        };
        self.throttled = false;
        let now = now_unix();
        let grace = self.settings.grace;
        let mut records: Vec<(usize, Attachment)> = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            match store.all() {
                Ok(r) => records.extend(r.into_iter().map(|r| (i, r))),
                Err(e) => tracing::warn!(error = %e, "cannot list records; skipped this pass"),
            }
        }
        report.records = records.len();
        if let Some(l) = &listing {
            self.observe(records.iter().map(|(_, r)| r), l);
            if l.sandboxes.is_empty() && !records.is_empty() {
                tracing::warn!(records = records.len(),
                    "the runtime lists no sandbox at all: nothing is released for a missing sandbox this pass");
            }
            self.listing = listing;
        } else {
            // Absences seen before an outage say nothing about after it: start counting again.
            self.first_absent.clear();
            self.listing = None;
        }
        let mut due: Vec<Due> = records
            .into_iter()
            .filter_map(|(i, r)| {
                let first = self.first_absent.get(&r.key()).copied();
                reason(&r, self.listing.as_ref(), first, now, grace).map(|why| Due {
                    reason: why,
                    store: stores[i].clone(),
                    key: r.key(),
                })
            })
            .collect();
        // Handed-off releases first: DEL already told the runtime they were done.
        due.sort_by(|a, b| a.reason.cmp(&b.reason).then_with(|| a.key.cmp(&b.key)));
        report.pending = due.len();
        due.truncate(self.cap);
        (due, report)
    }

    /// Remembers, per committed record, the first listing after its commit that lacked its sandbox.
    fn observe<'a>(&mut self, records: impl Iterator<Item = &'a Attachment>, listing: &Listing) {
        let mut seen = HashMap::new();
        for r in records.filter(|r| r.phase == Phase::Assigned) {
            let key = r.key();
            let missing = !listing.sandboxes.is_empty()
                && !listing.sandboxes.contains(&r.container_id)
                && listing.at_ms >= r.committed_ms();
            if missing {
                let first = self
                    .first_absent
                    .get(&key)
                    .copied()
                    .unwrap_or(listing.at_ms);
                seen.insert(key, first);
            }
        }
        self.first_absent = seen;
    }

    /// Releases one planned record through DEL's path, decided again under its locks.
    pub async fn release<A: Aws>(&mut self, aws: &A, due: &Due) -> Step {
        let grace = self.settings.grace;
        let first = self.first_absent.get(&due.key).copied();
        let listing = self.listing.clone();
        let still = |r: &Attachment| {
            reason(r, listing.as_ref(), first, now_unix(), grace) == Some(due.reason)
        };
        let waits = (self.settings.lock_wait, self.settings.op_timeout);
        let key = &due.key;
        let why = due.reason;
        let results = release_batch(&due.store, aws, std::slice::from_ref(key), waits, still).await;
        let Some((_, result)) = results.into_iter().next() else {
            return Step::Skipped;
        };
        match result {
            Ok(Some(done)) => {
                tracing::info!(reason = why.as_str(), network = %key.network, container = %key.container_id,
                    ifname = %key.ifname, released = %crate::commands::list(&done.addresses),
                    eni_detached = done.eni_detached, nothing_left = done.nothing_left, "released");
                self.first_absent.remove(key);
                Step::Released
            }
            Ok(None) => {
                tracing::debug!(container = %key.container_id, "no longer due, or its lock is busy");
                Step::Skipped
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(container = %key.container_id, error = %e,
                    "EC2 is throttling or unavailable: the rest waits for the next pass");
                self.throttled = true;
                Step::Throttled
            }
            Err(e) => {
                tracing::warn!(reason = why.as_str(), container = %key.container_id, error = %e,
                    "release failed; tried again next pass");
                Step::Failed
            }
        }
    }

    /// A whole pass at once (tests, the bench): plan, then every release until throttled.
    pub async fn pass<A: Aws>(
        &mut self,
        stores: &[Store],
        aws: &A,
        live: &HashSet<String>,
    ) -> PassReport {
        self.pass_with(stores, aws, Some(Listing::now(live.clone())))
            .await
    }

    /// [`Reconciler::pass`] with the runtime's answer as the loop has it.
    pub async fn pass_with<A: Aws>(
        &mut self,
        stores: &[Store],
        aws: &A,
        listing: Option<Listing>,
    ) -> PassReport {
        let (due, mut report) = self.plan(stores, listing);
        for d in &due {
            match self.release(aws, d).await {
                Step::Released => {
                    report.released.push((d.reason, d.key.clone()));
                    report.pending -= 1;
                }
                Step::Skipped => {}
                Step::Failed => report.failed += 1,
                Step::Throttled => {
                    report.throttled = true;
                    break;
                }
            }
        }
        report
    }
}
