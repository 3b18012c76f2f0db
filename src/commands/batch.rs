//! Group commit: the `Ec2` that ADD and release use for mutating calls. A call becomes a request in
//! the ENI's spool; the one leader (whoever takes the ENI's batch lock without waiting) sends every
//! pending request, one EC2 call per kind, and answers each requester; the others watch for their
//! answer and take the lock only when nobody holds it. A lone request goes out at once; requests
//! that come while a call is in flight share the next one, and the leader claims only once the node
//! budget has its token, so those that come while it waits share its call. When EC2 refuses a shared call for a
//! reason that may belong to one request (in use, outside the subnet, the limit), each request is
//! sent alone so that each pod gets its own answer. A request whose earlier send has an unknown
//! outcome (its leader died, or the call timed out) is settled from the ENI's listing first.
//! Safety stays with the callers: they hold the address locks and decide from describes.

use crate::cloud::{gate, CloudError, Ec2, EniView};
use crate::store::{monotonic_ms, BatchOp, BatchOutcome, BatchRequest, NodeDir, Spool, Withdrawn};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a waiter looks for its answer, at first and at most.
const WATCH_FIRST: Duration = Duration::from_millis(2);
const WATCH_MOST: Duration = Duration::from_millis(25);
/// What a leader leaves of a requester's time for the call itself after waiting for a token.
const CALL_ROOM: Duration = Duration::from_millis(crate::store::LAST_CALL_ROOM_MS);

pub struct Batched<'a, E> {
    inner: &'a E,
    node: &'a NodeDir,
    deadline: Instant,
}

impl<'a, E: Ec2> Batched<'a, E> {
    pub fn new(inner: &'a E, node: &'a NodeDir, deadline: Instant) -> Self {
        Batched {
            inner,
            node,
            deadline,
        }
    }

    async fn submit(&self, eni: &str, op: BatchOp, addrs: Vec<IpAddr>) -> Result<(), CloudError> {
        let spool = self.node.spool(eni);
        let ticket = match spool.submit(op, &addrs, self.deadline) {
            Ok(t) => t,
            Err(e) => {
                // A spool that cannot be written costs the batching, never the pod.
                tracing::warn!(error = %e, "batch spool unusable: sending alone");
                return send(self.inner, eni, op, &addrs).await;
            }
        };
        let mut watch = WATCH_FIRST;
        loop {
            if let Some(outcome) = spool.take_outcome(ticket.name()) {
                spool.finish(ticket);
                return into_result(op, outcome);
            }
            let lead = spool.try_lead().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "batch lock unusable: waiting for another leader");
                None
            });
            if let Some(_lead) = lead {
                // Answered between our look and the lock: nothing more to send for us.
                if let Some(outcome) = spool.take_outcome(ticket.name()) {
                    spool.finish(ticket);
                    return into_result(op, outcome);
                }
                let own = self.lead(&spool, eni, ticket.name()).await;
                spool.finish(ticket);
                return own;
            }
            if Instant::now() + watch >= self.deadline {
                return match spool.withdraw(ticket) {
                    Withdrawn::Answered(outcome) => into_result(op, outcome),
                    Withdrawn::Unsent => Err(CloudError::Transient {
                        action: op.action(),
                        reason: format!("another process on this node was still sending the batch for {eni} at the deadline; nothing was sent for this request"),
                    }),
                    Withdrawn::InFlight => Err(CloudError::Transient {
                        action: op.action(),
                        reason: format!("the batch carrying this request to {eni} had no answer by the deadline: the next attempt reads the ENI's listing"),
                    }),
                };
            }
            tokio::time::sleep(watch).await;
            watch = (watch * 2).min(WATCH_MOST);
        }
    }

    /// The latest a leader waits for a token: a call's length before the first requester's
    /// deadline or its own, whichever comes first (the kind of call may not be its own).
    fn pace_until(&self, first_deadline_ms: u64) -> Instant {
        let first = Duration::from_millis(first_deadline_ms.saturating_sub(monotonic_ms()));
        let own = self.deadline.saturating_duration_since(Instant::now());
        Instant::now() + first.min(own).saturating_sub(CALL_ROOM)
    }

    /// Sends everything pending on the ENI; returns what became of `own`.
    async fn lead(&self, spool: &Spool, eni: &str, own: &str) -> Result<(), CloudError> {
        let mut own_result = None;
        // A round ends early when a requester gave up while its call waited: the rest go again.
        while own_result.is_none() && self.lead_round(spool, eni, own, &mut own_result).await {}
        // Our request was dropped as past its deadline before it could be sent.
        own_result.unwrap_or_else(|| {
            Err(CloudError::Transient {
                action: "batch",
                reason: format!("the request for {eni} reached its deadline before it was sent"),
            })
        })
    }

    /// One look at the spool, one call per kind; true when a call went unsent and must be redone.
    async fn lead_round(
        &self,
        spool: &Spool,
        eni: &str,
        own: &str,
        own_result: &mut Option<Result<(), CloudError>>,
    ) -> bool {
        // Read once per round: a round's sends make an earlier listing stale.
        let mut listing: Option<Option<EniView>> = None;
        let mut firsts: BTreeMap<BatchOp, u64> = BTreeMap::new();
        for (_, req) in spool.pending() {
            let first = firsts.entry(req.op).or_insert(u64::MAX);
            *first = (*first).min(req.deadline_monotonic_ms);
        }
        let mut again = false;
        for (op, first_deadline) in firsts {
            // Claimed after the budget's wait, so that the requests that come meanwhile share the call.
            self.inner
                .pace(op.action(), self.pace_until(first_deadline))
                .await;
            let group: Vec<_> = spool
                .pending()
                .into_iter()
                .filter(|(_, r)| r.op == op)
                .collect();
            let mut to_send = Vec::new();
            for (ticket, mut req) in group {
                // An earlier send may have been carried out: the ENI's listing says, not a guess.
                if req.sends > 0 {
                    let view = match &listing {
                        Some(v) => v.clone(),
                        None => listing
                            .insert(self.inner.describe_eni(eni).await.ok())
                            .clone(),
                    };
                    if view.is_some_and(|v| settled_by(&v, op, &req.addresses)) {
                        settle(spool, own, &ticket, &req, Ok(()), own_result);
                        continue;
                    }
                }
                if spool.claim(&ticket, &mut req) {
                    to_send.push((ticket, req));
                }
            }
            if to_send.is_empty() {
                continue;
            }
            let all: Vec<IpAddr> = to_send
                .iter()
                .flat_map(|(_, r)| r.addresses.clone())
                .collect();
            let shared = to_send.len() > 1;
            let gate = Gate::new(spool, own, &to_send);
            let result = gate.around(send(self.inner, eni, op, &all)).await;
            if gate.closed() {
                // The last attempt did not go out: the requests still wanted are pending again.
                for (ticket, req) in &to_send {
                    spool.unclaim(ticket, req, gate.sent());
                }
                again = true;
                continue;
            }
            if shared {
                crate::crash::point("batch:after-shared-ec2");
            }
            match result {
                Err(e) if shared && !belongs_to_all(&e) => {
                    for (ticket, req) in &to_send {
                        let one = [(ticket.clone(), req.clone())];
                        let gate = Gate::new(spool, own, &one);
                        let alone = gate.around(send(self.inner, eni, op, &req.addresses)).await;
                        match gate.closed() {
                            true => spool.unclaim(ticket, req, gate.sent()),
                            false => settle(spool, own, ticket, req, alone, own_result),
                        }
                    }
                }
                r => {
                    for (ticket, req) in &to_send {
                        settle(spool, own, ticket, req, r.clone(), own_result);
                    }
                }
            }
        }
        again
    }
}

/// What the leader checks right before a call goes out: that each requester it carries still waits.
struct Gate {
    closed: Arc<AtomicBool>,
    /// An attempt went out before the gate closed (a retry's gate, say): its outcome is unknown.
    sent: Arc<AtomicBool>,
    spool: Spool,
    claimed: Vec<(String, u64)>,
}

impl Gate {
    /// The leader's own request is not watched: its call's deadline is its own already.
    fn new(spool: &Spool, own: &str, requests: &[(String, BatchRequest)]) -> Gate {
        Gate {
            closed: Arc::new(AtomicBool::new(false)),
            sent: Arc::new(AtomicBool::new(false)),
            spool: spool.clone(),
            claimed: requests
                .iter()
                .filter(|(t, _)| t != own)
                .map(|(t, r)| (t.clone(), r.deadline_monotonic_ms))
                .collect(),
        }
    }

    async fn around<F: std::future::Future>(&self, call: F) -> F::Output {
        // Only the leader's own request: nobody else can give up on it.
        if self.claimed.is_empty() {
            return call.await;
        }
        let (closed, sent) = (self.closed.clone(), self.sent.clone());
        let (spool, claimed) = (self.spool.clone(), self.claimed.clone());
        let first = claimed.iter().map(|(_, d)| *d).min().unwrap_or(u64::MAX);
        let send_by = Instant::now() + Duration::from_millis(first.saturating_sub(monotonic_ms()));
        gate::gated(
            move || {
                let open = spool.still_wanted(&claimed);
                match open {
                    true => sent.store(true, Ordering::SeqCst),
                    false => closed.store(true, Ordering::SeqCst),
                }
                open
            },
            Some(send_by),
            call,
        )
        .await
    }

    fn sent(&self) -> bool {
        self.sent.load(Ordering::SeqCst)
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Whether the ENI's listing shows the request carried out: every address on it (assign), or none (unassign).
fn settled_by(view: &EniView, op: BatchOp, addrs: &[IpAddr]) -> bool {
    match op.assigns() {
        true => addrs.iter().all(|a| view.holds(*a)),
        false => !addrs.iter().any(|a| view.holds(*a)),
    }
}

/// A refusal that no single request caused: every request of the call gets it.
fn belongs_to_all(e: &CloudError) -> bool {
    matches!(
        e,
        CloudError::Transient { .. } | CloudError::Metadata { .. }
    ) || matches!(
        e.api_code(),
        Some(
            "UnauthorizedOperation"
                | "AuthFailure"
                | "InvalidNetworkInterfaceID.NotFound"
                | "InvalidNetworkInterfaceID.Malformed"
        )
    )
}

/// Answers one request. A transient failure is answered only to ourselves: the others stay
/// claimed, with an unknown outcome that the next leader reads from the ENI's listing.
fn settle(
    spool: &Spool,
    own: &str,
    ticket: &str,
    req: &BatchRequest,
    result: Result<(), CloudError>,
    own_result: &mut Option<Result<(), CloudError>>,
) {
    // Sent before by a sender that died: what EC2 refuses now may be what that send did.
    let result = match result {
        Err(CloudError::Api {
            action,
            code,
            message,
            maybe_applied,
        }) => Err(CloudError::Api {
            action,
            code,
            message,
            maybe_applied: maybe_applied || req.sends > 1,
        }),
        other => other,
    };
    if ticket == own {
        *own_result = Some(result);
        return;
    }
    let outcome = match result {
        Ok(()) => BatchOutcome::Done,
        Err(CloudError::Transient { .. }) => return,
        Err(e) => BatchOutcome::Refused {
            code: e.api_code().unwrap_or("Unknown").to_string(),
            message: match &e {
                CloudError::Api { message, .. } => message.clone(),
                other => other.to_string(),
            },
            maybe_applied: e.maybe_applied(),
        },
    };
    spool.answer(ticket, &outcome);
}

fn into_result(op: BatchOp, outcome: BatchOutcome) -> Result<(), CloudError> {
    match outcome {
        BatchOutcome::Done => Ok(()),
        BatchOutcome::Refused {
            code,
            message,
            maybe_applied,
        } => Err(CloudError::Api {
            action: op.action(),
            code,
            message,
            maybe_applied,
        }),
    }
}

async fn send(ec2: &impl Ec2, eni: &str, op: BatchOp, addrs: &[IpAddr]) -> Result<(), CloudError> {
    let v4: Vec<Ipv4Addr> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v) => Some(*v),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<Ipv6Addr> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v) => Some(*v),
            IpAddr::V4(_) => None,
        })
        .collect();
    match op {
        BatchOp::AssignIpv4 { allow_reassignment } => {
            ec2.assign_ipv4(eni, &v4, allow_reassignment).await
        }
        BatchOp::UnassignIpv4 => ec2.unassign_ipv4(eni, &v4).await,
        BatchOp::AssignIpv6 => ec2.assign_ipv6(eni, &v6).await,
        BatchOp::UnassignIpv6 => ec2.unassign_ipv6(eni, &v6).await,
    }
}

fn v4s(addrs: &[Ipv4Addr]) -> Vec<IpAddr> {
    addrs.iter().map(|a| IpAddr::V4(*a)).collect()
}

fn v6s(addrs: &[Ipv6Addr]) -> Vec<IpAddr> {
    addrs.iter().map(|a| IpAddr::V6(*a)).collect()
}

impl<E: Ec2> Ec2 for Batched<'_, E> {
    async fn assign_ipv4(
        &self,
        eni: &str,
        addrs: &[Ipv4Addr],
        allow_reassignment: bool,
    ) -> Result<(), CloudError> {
        let op = BatchOp::AssignIpv4 { allow_reassignment };
        self.submit(eni, op, v4s(addrs)).await
    }

    async fn unassign_ipv4(&self, eni: &str, addrs: &[Ipv4Addr]) -> Result<(), CloudError> {
        self.submit(eni, BatchOp::UnassignIpv4, v4s(addrs)).await
    }

    async fn assign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError> {
        self.submit(eni, BatchOp::AssignIpv6, v6s(addrs)).await
    }

    async fn unassign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError> {
        self.submit(eni, BatchOp::UnassignIpv6, v6s(addrs)).await
    }

    // EC2 picks these addresses: nothing to share with another request, but the budget applies.
    async fn assign_ipv4_count(&self, eni: &str, count: u32) -> Result<Vec<Ipv4Addr>, CloudError> {
        self.inner.assign_ipv4_count(eni, count).await
    }

    async fn assign_ipv6_count(&self, eni: &str, count: u32) -> Result<Vec<Ipv6Addr>, CloudError> {
        self.inner.assign_ipv6_count(eni, count).await
    }

    async fn describe_eni(&self, eni: &str) -> Result<EniView, CloudError> {
        self.inner.describe_eni(eni).await
    }

    async fn holders(&self, addrs: &[IpAddr]) -> Result<Vec<EniView>, CloudError> {
        self.inner.holders(addrs).await
    }

    async fn eni_by_mac(&self, mac: &str) -> Result<Option<EniView>, CloudError> {
        self.inner.eni_by_mac(mac).await
    }

    async fn pace(&self, action: &'static str, until: Instant) {
        self.inner.pace(action, until).await
    }
}
