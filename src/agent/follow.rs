//! Which followed pod interfaces are watched, what each holds, and the debounce that makes a flap
//! cost nothing. The follower only decides; the agent carries its actions out through
//! `commands::follow` (ADD's and DEL's rules, under the same locks).

use super::reconcile::Listing;
use super::watch::{never_routed, AddressSource, AddressWatch};
use crate::node::AddressChange;
use crate::store::{Attachment, AttachmentKey, Phase};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// What a watch reports to the agent's loop.
#[derive(Debug)]
pub enum Event {
    Changes(AttachmentKey, Vec<AddressChange>),
    /// The socket failed; the next sync opens the watch again.
    Lost(AttachmentKey, String),
}

/// Something to do about one address of one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// It appeared in the pod: assign and record it (`retry`: it is recorded, assign it again).
    Add {
        key: AttachmentKey,
        addr: IpAddr,
        retry: bool,
    },
    /// It left the pod and stayed away through the debounce: give it back.
    Remove { key: AttachmentKey, addr: IpAddr },
    /// It came back within the debounce: nothing to do, unless a peer took it meanwhile.
    Confirm { key: AttachmentKey, addr: IpAddr },
}

impl Action {
    pub fn target(&self) -> (&AttachmentKey, IpAddr) {
        match self {
            Action::Add { key, addr, .. }
            | Action::Remove { key, addr }
            | Action::Confirm { key, addr } => (key, *addr),
        }
    }
}

struct Watched {
    netns: String,
    /// What the record holds (ADD's addresses and the followed ones).
    recorded: HashSet<IpAddr>,
    /// What the agent added at run time: only these are given back on removal.
    added: HashSet<IpAddr>,
    /// What the pod interface has now.
    present: HashSet<IpAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        // The socket closes with the task: a dead sandbox's netns is not kept alive by us.
        self.task.abort();
    }
}

pub struct Follower<S> {
    source: S,
    debounce: Duration,
    watches: HashMap<AttachmentKey, Watched>,
    /// Removals waiting out the debounce, by when they are due.
    pending: BTreeMap<(AttachmentKey, IpAddr), Instant>,
    /// Actions that ended transiently, tried again on the next tick.
    retry: BTreeSet<(AttachmentKey, IpAddr, bool)>,
    /// Watches that could not be opened, so each failure is logged once.
    failed: HashMap<AttachmentKey, String>,
}

/// A record the follower should watch now.
/// A record committed after the last listing is followed at once: its sandbox may not be listed
/// yet (the runtime lists it only once RunPodSandbox returns), and its VIP may come any moment.
fn followed(r: &Attachment, live: Option<&Listing>) -> bool {
    r.follow.is_some()
        && r.phase == Phase::Assigned
        && r.netns.is_some()
        && live.is_none_or(|l| l.sandboxes.contains(&r.container_id) || r.committed_ms() >= l.at_ms)
}

impl<S: AddressSource> Follower<S> {
    pub fn new(source: S, debounce: Duration) -> Follower<S> {
        Follower {
            source,
            debounce,
            watches: HashMap::new(),
            pending: BTreeMap::new(),
            retry: BTreeSet::new(),
            failed: HashMap::new(),
        }
    }

    pub fn watched(&self) -> usize {
        self.watches.len()
    }

    /// Brings the watches in line with the records: one per followed attachment whose sandbox
    /// lives or is newer than the runtime's last answer (`None` when unknown), none for the rest.
    /// A new watch starts with what the pod has now, so an agent restart or a late record catches up.
    pub fn sync(
        &mut self,
        records: &[Attachment],
        live: Option<&Listing>,
        tx: &Sender<Event>,
    ) -> Vec<Action> {
        let want: HashMap<AttachmentKey, &Attachment> = records
            .iter()
            .filter(|r| followed(r, live))
            .map(|r| (r.key(), r))
            .collect();
        self.watches.retain(|k, w| {
            want.get(k)
                .is_some_and(|r| r.netns.as_deref() == Some(w.netns.as_str()))
        });
        self.pending.retain(|(k, _), _| want.contains_key(k));
        self.failed.retain(|k, _| want.contains_key(k));
        let mut actions = Vec::new();
        for (key, record) in want {
            let recorded: HashSet<IpAddr> = record.addresses.iter().copied().collect();
            let added: HashSet<IpAddr> = record
                .follow
                .iter()
                .flat_map(|f| f.added.iter().copied())
                .collect();
            if let Some(w) = self.watches.get_mut(&key) {
                w.recorded = recorded;
                w.added = added;
                continue;
            }
            let netns = record.netns.clone().unwrap_or_default();
            let (watch, present) = match self.source.open(Path::new(&netns), &key.ifname) {
                Ok(opened) => opened,
                Err(e) => {
                    if self.failed.insert(key.clone(), e.to_string()).is_none() {
                        tracing::warn!(container = %key.container_id, ifname = %key.ifname, error = %e,
                            "cannot watch the pod's addresses; tried again on the next pass");
                    }
                    continue;
                }
            };
            self.failed.remove(&key);
            for addr in present.iter().copied() {
                if !never_routed(addr) && !recorded.contains(&addr) {
                    actions.push(Action::Add {
                        key: key.clone(),
                        addr,
                        retry: false,
                    });
                }
            }
            for addr in added.iter().copied().filter(|a| !present.contains(a)) {
                self.pending
                    .insert((key.clone(), addr), Instant::now() + self.debounce);
            }
            let task = tokio::task::spawn_local(forward(watch, key.clone(), tx.clone()));
            tracing::info!(container = %key.container_id, ifname = %key.ifname, netns = %netns,
                present = %crate::commands::list(&present), "watching the pod's addresses");
            self.watches.insert(
                key,
                Watched {
                    netns,
                    recorded,
                    added,
                    present: present.into_iter().collect(),
                    task,
                },
            );
        }
        actions
    }

    /// What a watch reported.
    pub fn on_event(&mut self, event: Event) -> Vec<Action> {
        let (key, changes) = match event {
            Event::Changes(k, c) => (k, c),
            Event::Lost(key, why) => {
                tracing::warn!(container = %key.container_id, error = %why, "address watch lost");
                self.watches.remove(&key);
                return Vec::new();
            }
        };
        let Some(w) = self.watches.get_mut(&key) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        for change in changes {
            match change {
                AddressChange::Added(addr) if never_routed(addr) => {}
                AddressChange::Added(addr) => {
                    w.present.insert(addr);
                    if self.pending.remove(&(key.clone(), addr)).is_some() {
                        // Back within the debounce: a flap, unless a peer took it meanwhile.
                        actions.push(Action::Confirm {
                            key: key.clone(),
                            addr,
                        });
                    } else if !w.recorded.contains(&addr) {
                        actions.push(Action::Add {
                            key: key.clone(),
                            addr,
                            retry: false,
                        });
                    }
                }
                AddressChange::Removed(addr) => {
                    w.present.remove(&addr);
                    if w.added.contains(&addr) {
                        self.pending
                            .insert((key.clone(), addr), Instant::now() + self.debounce);
                    }
                }
            }
        }
        actions.dedup();
        actions
    }

    /// Whether the pod interface of `key` has `addr` now (as far as its watch saw).
    pub fn present(&self, key: &AttachmentKey, addr: IpAddr) -> bool {
        self.watches
            .get(key)
            .is_some_and(|w| w.present.contains(&addr))
    }

    /// When the earliest pending removal is due; `None` when nothing waits (no timer at all).
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    /// Removals whose debounce is over.
    pub fn take_due(&mut self, now: Instant) -> Vec<Action> {
        let due: Vec<(AttachmentKey, IpAddr)> = self
            .pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .map(|(key, addr)| {
                self.pending.remove(&(key.clone(), addr));
                Action::Remove { key, addr }
            })
            .collect()
    }

    /// Actions that ended transiently, to try again now.
    pub fn take_retries(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.retry)
            .into_iter()
            .map(|(key, addr, adding)| match adding {
                true => Action::Add {
                    key,
                    addr,
                    retry: true,
                },
                false => Action::Remove { key, addr },
            })
            .collect()
    }

    /// How an action ended: `Ok(true)` when the record now follows the address (added) or no
    /// longer does (removed); `Ok(false)` when it was not ours; `Err(transient)` when it failed.
    pub fn done(&mut self, action: &Action, outcome: Result<bool, bool>) {
        let (key, addr) = action.target();
        let adding = !matches!(action, Action::Remove { .. });
        let Some(w) = self.watches.get_mut(key) else {
            return;
        };
        match (outcome, adding) {
            (Ok(true), true) => {
                w.recorded.insert(addr);
                w.added.insert(addr);
            }
            (Ok(true), false) => {
                w.recorded.remove(&addr);
                w.added.remove(&addr);
            }
            (Ok(false), _) | (Err(false), _) => {}
            // The write-ahead record keeps it: assign it again on the next tick.
            (Err(true), _) => {
                if adding {
                    w.recorded.insert(addr);
                    w.added.insert(addr);
                }
                self.retry.insert((key.clone(), addr, adding));
            }
        }
    }
}

/// Carries one watch's changes to the agent's loop until the watch ends.
/// A full queue holds this watch back (the kernel buffers its events meanwhile), never the loop.
async fn forward<W: AddressWatch>(mut watch: W, key: AttachmentKey, tx: Sender<Event>) {
    loop {
        match watch.next().await {
            Ok(changes) => {
                if tx.send(Event::Changes(key.clone(), changes)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Event::Lost(key, e.to_string())).await;
                return;
            }
        }
    }
}
