//! The agent's loop: one task owns every decision, so two of its own operations never wait on each
//! other's locks. It wakes for the interval (listing, heartbeat, reconcile plan, drift), a record
//! change (inotify), an address event, a debounce coming due, a planned release, or the stop
//! signal; idle, it sleeps. The select is fair: a storm of address events cannot starve the
//! passes, and a pass's releases go one per turn, so an event waits for at most one EC2 call.

use super::cri::Liveness;
use super::follow::{Action, Event, Follower};
use super::links::{LinkHost, LinkKeeper};
use super::metrics::SharedMetrics;
use super::reconcile::{Due, Listing, Reconciler, Step};
use super::records::{NodeRecords, RecordWatcher};
use super::watch::AddressSource;
use crate::cloud::{Aws, Ec2, Metadata};
use crate::commands::drift::drift;
use crate::commands::eni::ec2_for;
use crate::commands::follow::{address_added, address_removed, address_returned, Added, Removed};
use crate::store::{now_unix, AttachmentKey, NodeDir, Phase};
use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{channel, Sender};

/// Address events waiting for the loop; a full queue holds the watches back, not the loop.
pub const EVENT_QUEUE: usize = 256;

#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub interval: Duration,
    /// How often ENIs are described for the drift report and usage; `None`: never.
    pub drift_interval: Option<Duration>,
    /// Deadline of one follow operation (locks, IMDS, EC2).
    pub op_timeout: Duration,
}

pub struct Agent<A, L, S> {
    pub node: NodeDir,
    pub aws: A,
    pub liveness: L,
    pub follower: Follower<S>,
    pub reconciler: Reconciler,
    pub metrics: SharedMetrics,
    pub settings: LoopSettings,
    /// The runtime's last successful answer; `None` until it answers (watches then follow every record).
    live: Option<Listing>,
    /// The releases this pass decided on and has not yet done, one per turn of the loop.
    releases: VecDeque<Due>,
    records: NodeRecords,
    last_drift: Option<Instant>,
    /// Addresses per ENI of this instance's type, once known: it never changes while we run.
    eni_limit: Option<u32>,
    /// The host's links, when this agent brings the no_manage ENIs' links up.
    links: Option<(Box<dyn LinkHost>, LinkKeeper)>,
}

impl<A: Aws, L: Liveness, S: AddressSource> Agent<A, L, S> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeDir,
        aws: A,
        liveness: L,
        follower: Follower<S>,
        reconciler: Reconciler,
        metrics: SharedMetrics,
        settings: LoopSettings,
    ) -> Self {
        Agent {
            node,
            aws,
            liveness,
            follower,
            reconciler,
            metrics,
            settings,
            live: None,
            releases: VecDeque::new(),
            records: NodeRecords::default(),
            last_drift: None,
            eni_limit: None,
            links: None,
        }
    }

    /// Brings the no_manage ENIs' links up at start, at each pass, and on every link change.
    pub fn with_links(mut self, host: Box<dyn LinkHost>) -> Self {
        self.links = Some((host, LinkKeeper::default()));
        self
    }

    async fn ensure_links(&mut self) {
        if let Some((host, keeper)) = self.links.as_mut() {
            let up = keeper.ensure(&self.aws, host.as_ref()).await;
            if !up.is_empty() {
                let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
                m.links_brought_up += up.len() as u64;
            }
        }
    }

    /// Runs until `stop` completes; a clean stop removes the heartbeat, so DEL stops handing over.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        let watcher = RecordWatcher::new()?;
        let link_events = match &self.links {
            Some(_) => Some(link_events()?),
            None => None,
        };
        let (tx, mut rx) = channel(EVENT_QUEUE);
        let mut ticker = tokio::time::interval(self.settings.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            let due = self.follower.next_due();
            // Unbiased: tokio picks among the ready branches at random, so none starves the rest.
            tokio::select! {
                () = &mut stop => break,
                _ = ticker.tick() => self.tick(&watcher, &tx).await,
                Some(event) = rx.recv() => {
                    let actions = self.follower.on_event(event);
                    self.act(actions).await;
                }
                () = std::future::ready(()), if !self.releases.is_empty() => self.release_next().await,
                () = link_changed(link_events.as_ref()) => self.ensure_links().await,
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                    let actions = self.follower.take_due(Instant::now());
                    self.act(actions).await;
                }
                changed = watcher.changed() => {
                    if let Err(e) = changed {
                        tracing::warn!(error = %e, "record watch failed; records are read each interval");
                    }
                    self.resync(&watcher, &tx).await;
                }
            }
        }
        self.node.clear_heartbeat();
        tracing::info!("stopped");
        Ok(())
    }

    async fn tick(&mut self, watcher: &RecordWatcher, tx: &Sender<Event>) {
        self.ensure_links().await;
        let asked_at = crate::store::now_unix_ms();
        let listing = match self.liveness.sandboxes().await {
            Ok(sandboxes) => Some(Listing {
                at_ms: asked_at,
                sandboxes,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the runtime which sandboxes live: only hand-offs are finished, and DEL hands nothing new over");
                let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
                m.runtime_failures += 1;
                m.runtime_error = Some(e.to_string());
                None
            }
        };
        if let Some(l) = &listing {
            let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            m.runtime_error = None;
            m.last_listing_unix_ms = l.at_ms;
            drop(m);
            self.live = Some(l.clone());
        }
        let records = NodeRecords::read(&self.node);
        let dirs: Vec<std::path::PathBuf> = records
            .stores
            .iter()
            .map(|s| s.root().to_path_buf())
            .collect();
        let listed = self.live.as_ref().map(|l| l.at_ms);
        if let Err(e) = self
            .node
            .write_heartbeat(self.settings.interval, listed, &dirs)
        {
            tracing::warn!(error = %e, "cannot write the heartbeat: DEL will not hand releases over");
        }
        // A new plan replaces what the last pass left undone: it is decided from newer facts.
        let (due, report) = self.reconciler.plan(&records.stores, listing);
        self.releases = due.into();
        {
            let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            m.passes += 1;
            m.last_pass_unix = now_unix();
            m.pending_releases = report.pending as u64;
        }
        let retries = self.follower.take_retries();
        self.act(retries).await;
        self.resync(watcher, tx).await;
        let drift_due = self.settings.drift_interval.is_some_and(|every| {
            self.last_drift
                .is_none_or(|at| at.elapsed() + Duration::from_millis(50) >= every)
        });
        if drift_due {
            self.last_drift = Some(Instant::now());
            self.drift().await;
        }
    }

    /// One planned release, through DEL's path; throttling leaves the rest to the next pass.
    async fn release_next(&mut self) {
        let Some(due) = self.releases.pop_front() else {
            return;
        };
        let step = self.reconciler.release(&self.aws, &due).await;
        let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        match step {
            Step::Released => {
                *m.releases.entry(due.reason.as_str()).or_default() += 1;
                m.pending_releases = m.pending_releases.saturating_sub(1);
            }
            Step::Skipped => {}
            Step::Failed => m.release_failures += 1,
            Step::Throttled => {
                m.throttled_passes += 1;
                self.releases.clear();
            }
        }
    }

    /// Reads the records again, watches what is new, and starts following new attachments.
    async fn resync(&mut self, watcher: &RecordWatcher, tx: &Sender<Event>) {
        self.records = NodeRecords::read(&self.node);
        watcher.watch(&self.records.dirs(&self.node));
        let actions = self
            .follower
            .sync(&self.records.records, self.live.as_ref(), tx);
        {
            let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            m.records = self.records.records.len() as u64;
            m.releasing = self
                .records
                .records
                .iter()
                .filter(|r| r.phase == Phase::Releasing)
                .count() as u64;
            m.watches = self.follower.watched() as u64;
        }
        self.act(actions).await;
    }

    /// Carries out the follower's decisions, one at a time, through the shared flows.
    async fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            let (key, addr) = action.target();
            let Some(store) = self.records.store_of(key).cloned() else {
                continue;
            };
            let deadline = Instant::now() + self.settings.op_timeout;
            let (label, outcome) = match &action {
                Action::Add { retry, .. } => {
                    let added = address_added(&store, &self.aws, key, addr, *retry, deadline).await;
                    added_outcome(key, addr, added)
                }
                Action::Confirm { .. } => {
                    let back = address_returned(&store, &self.aws, key, addr, deadline).await;
                    added_outcome(key, addr, back)
                }
                Action::Remove { .. } => {
                    match address_removed(&store, &self.aws, key, addr, deadline).await {
                        Ok(r @ (Removed::Released | Removed::Forgotten)) => {
                            let released = r == Removed::Released;
                            tracing::info!(container = %key.container_id, address = %addr, released,
                                "run-time address gone from the pod");
                            (if released { "released" } else { "forgotten" }, Ok(true))
                        }
                        Ok(Removed::Ignored(_)) => ("ignored", Ok(false)),
                        Err(e) => {
                            tracing::warn!(container = %key.container_id, address = %addr, error = %e,
                                "run-time address not released");
                            ("failed", Err(e.is_transient()))
                        }
                    }
                }
            };
            self.follower.done(&action, outcome);
            let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            *m.follow.entry(label).or_default() += 1;
        }
    }

    /// Whether the agent added `addr` to `key`'s record at run time.
    fn followed(&self, key: &AttachmentKey, addr: IpAddr) -> bool {
        self.records
            .records
            .iter()
            .any(|r| r.key() == *key && r.follow.as_ref().is_some_and(|f| f.added.contains(&addr)))
    }

    /// Describes each ENI named in the records: drift, usage, and the per-ENI limit.
    async fn drift(&mut self) {
        if self.records.records.is_empty() {
            return;
        }
        let Ok(ec2) = ec2_for(&self.aws, "the ENIs in the records").await else {
            return;
        };
        let report = drift(&self.records.records, ec2).await;
        if self.eni_limit.is_none() {
            self.eni_limit = match self.aws.metadata().instance_type().await {
                Ok(Some(t)) => ec2.eni_address_limit(&t).await.ok().flatten(),
                _ => None,
            };
        }
        let limit = self.eni_limit;
        // A followed address the pod still has but its ENI lost (a peer took it during a flap
        // that IMDS had not caught up with): assign it again.
        let lost: Vec<Action> = report
            .iter()
            .flat_map(|d| d.missing.iter())
            .filter(|(key, addr)| self.follower.present(key, *addr) && self.followed(key, *addr))
            .map(|(key, addr)| Action::Add {
                key: key.clone(),
                addr: *addr,
                retry: true,
            })
            .collect();
        {
            let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            m.eni_limits = match limit {
                Some(l) => report.iter().map(|d| (d.eni_id.clone(), l)).collect(),
                None => Default::default(),
            };
            m.drift = report;
        }
        self.act(lost).await;
    }
}

fn link_events() -> std::io::Result<tokio::io::unix::AsyncFd<crate::node::LinkEvents>> {
    let events = crate::node::LinkEvents::open().map_err(std::io::Error::other)?;
    // SAFETY: the socket owns its fd, keeps it open until dropped with the AsyncFd, and
    // as_raw_fd always returns that one fd.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE)
    }
    .map_err(std::io::Error::from)
}

/// Waits for a link change (never, without a socket); the events themselves are not needed.
async fn link_changed(events: Option<&tokio::io::unix::AsyncFd<crate::node::LinkEvents>>) {
    let Some(fd) = events else {
        return std::future::pending().await;
    };
    loop {
        let Ok(mut ready) = fd.readable().await else {
            return std::future::pending().await;
        };
        if let Ok(Ok(_)) = ready.try_io(|s| s.get_ref().drain()) {
            return;
        }
    }
}

/// The log line and the metric label of an add (or a confirmed flap).
fn added_outcome(
    key: &AttachmentKey,
    addr: IpAddr,
    result: Result<Added, crate::cni::CniError>,
) -> (&'static str, Result<bool, bool>) {
    match result {
        Ok(Added::Assigned(done)) => {
            tracing::info!(container = %key.container_id, ifname = %key.ifname, address = %addr,
                moved = %done.moved.join(", "), adopted = !done.adopted.is_empty(),
                "run-time address assigned");
            ("assigned", Ok(true))
        }
        Ok(Added::Recorded) => {
            tracing::info!(container = %key.container_id, address = %addr,
                "run-time address back within the debounce (or already on the ENI): kept");
            ("recorded", Ok(true))
        }
        Ok(Added::Ignored(why)) => {
            tracing::info!(container = %key.container_id, address = %addr, why, "run-time address ignored");
            ("ignored", Ok(false))
        }
        Err(e) => {
            tracing::warn!(container = %key.container_id, address = %addr, error = %e,
                "run-time address not assigned");
            ("failed", Err(e.is_transient()))
        }
    }
}
