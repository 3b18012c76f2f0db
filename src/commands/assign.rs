//! Putting addresses on an ENI. The common case is one call per family, without reassignment.
//! When EC2 refuses, the plugin decides from a describe of who holds each address, never from the
//! error's text: already on this ENI (a repeated ADD, or adopted), held by an ENI that may lose it
//! (tagged no_manage, guarded reassignment), held by one that may not (refused), or free again.

use super::errors::from_cloud;
use super::list;
use super::release::unassign_held;
use super::safety::{check_takeover, is_adopted};
use crate::cloud::{CloudError, Ec2, EniView};
use crate::cni::CniError;
use crate::config::PluginConfig;
use crate::store::{Attachment, Store};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Rounds of assign → describe → decide before an address that keeps changing hands is refused.
const ROUNDS: u32 = 6;
/// First wait for EC2's asynchronous remapping after a move; doubles each round.
const SETTLE: Duration = Duration::from_millis(100);

/// One assign, with what the safety rules need to know.
pub struct Assignment<'a> {
    pub store: &'a Store,
    pub config: &'a PluginConfig,
    /// The write-ahead record: its ENI is the target.
    pub record: &'a Attachment,
    /// The record of the same attachment before this ADD, if any: what it lists is ours.
    pub previous: Option<&'a Attachment>,
    pub deadline: Instant,
}

/// What an assign did beyond assigning.
#[derive(Debug, Default)]
pub struct Assigned {
    /// "ADDRESS from ENI" for every address taken over from another ENI.
    pub moved: Vec<String>,
    /// Addresses already on the ENI that no record of this node put there.
    pub adopted: Vec<IpAddr>,
}

/// Why an assign failed, and whether the write-ahead record must stay for DEL to finish the job.
#[derive(Debug)]
pub struct AssignFailure {
    pub error: CniError,
    pub keep_record: bool,
}

impl AssignFailure {
    fn new(error: CniError) -> Self {
        AssignFailure {
            keep_record: error.is_transient(),
            error,
        }
    }
}

/// Assigns `addrs` (IPv4 first, then IPv6) to the record's ENI; nothing half-done stays when the
/// second family fails for good.
pub async fn assign_addresses(
    a: &Assignment<'_>,
    ec2: &impl Ec2,
    addrs: &[IpAddr],
) -> Result<Assigned, AssignFailure> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addrs.iter().partition(|a| a.is_ipv4());
    let mut done = Assigned::default();
    if !v4.is_empty() {
        done = assign_family(a, ec2, &v4)
            .await
            .map_err(AssignFailure::new)?;
    }
    if v6.is_empty() {
        return Ok(done);
    }
    match assign_family(a, ec2, &v6).await {
        Ok(more) => {
            done.moved.extend(more.moved);
            done.adopted.extend(more.adopted);
            Ok(done)
        }
        Err(e) if e.is_transient() => Err(AssignFailure::new(e)),
        Err(e) => {
            // Take back the IPv4 this ADD assigned (not adopted, not shared) before failing.
            let ours: Vec<IpAddr> = a
                .store
                .releasable(a.record)
                .map_err(|s| AssignFailure::new(s.into()))?
                .into_iter()
                .filter(|x| v4.contains(x) && !done.adopted.contains(x))
                .collect();
            if let Err(rollback) = unassign_held(ec2, &a.record.eni_id, &ours).await {
                tracing::warn!(error = %rollback, "could not take back IPv4 after the IPv6 failure");
                return Err(AssignFailure {
                    error: rollback,
                    keep_record: true,
                });
            }
            Err(AssignFailure::new(e))
        }
    }
}

/// Answers that a describe cannot change: slow down, not allowed, no room, no such ENI.
fn settles_nothing(e: &CloudError) -> bool {
    matches!(
        e,
        CloudError::Transient { .. } | CloudError::Metadata { .. }
    ) || matches!(
        e.api_code(),
        Some(
            "UnauthorizedOperation"
                | "AuthFailure"
                | "PrivateIpAddressLimitExceeded"
                | "AddressLimitExceeded"
                | "InvalidNetworkInterfaceID.NotFound"
                | "InvalidNetworkInterfaceID.Malformed"
        )
    )
}

/// One family: assign, and on a refusal look at the holders and decide, for a few rounds.
async fn assign_family(
    a: &Assignment<'_>,
    ec2: &impl Ec2,
    addrs: &[IpAddr],
) -> Result<Assigned, CniError> {
    let eni = a.record.eni_id.as_str();
    let mut out = Assigned::default();
    let mut pending = addrs.to_vec();
    let mut taking: Vec<(IpAddr, String)> = Vec::new();
    let mut node_records: Option<Vec<Attachment>> = None;
    // Once one of our sends may have been carried out, what is on the ENI may be ours: no adoption.
    let mut uncertain = false;
    for round in 0..ROUNDS {
        let subject = format!("assign {} to {eni}", list(&pending));
        let refusal = match send(ec2, eni, &pending, !taking.is_empty()).await {
            Ok(()) => {
                out.moved.extend(
                    taking
                        .iter()
                        .map(|(addr, from)| format!("{addr} from {from}")),
                );
                return Ok(out);
            }
            Err(e) if settles_nothing(&e) => return Err(from_cloud(&e, &subject)),
            Err(e) => e,
        };
        uncertain |= refusal.maybe_applied();
        let holders = ec2
            .holders(&pending)
            .await
            .map_err(|e| from_cloud(&e, &format!("find the ENIs that hold {}", list(&pending))))?;
        let mut next = Vec::new();
        let mut moving = false;
        let pending_len = pending.len();
        for addr in pending {
            match holder_of(&holders, addr) {
                Some(h) if h.eni_id == eni => {
                    let records = match &node_records {
                        Some(r) => r,
                        None => node_records.insert(a.store.all_on_node()?),
                    };
                    if !uncertain && is_adopted(a.record, a.previous, records, addr) {
                        out.adopted.push(addr);
                    }
                }
                Some(h) => {
                    let records = match &node_records {
                        Some(r) => r,
                        None => node_records.insert(a.store.all_on_node()?),
                    };
                    check_takeover(a.config, records, h, addr, eni)?;
                    if addr.is_ipv6() {
                        release_from(ec2, &h.eni_id, addr, eni).await?;
                    }
                    if !taking.iter().any(|(x, _)| *x == addr) {
                        taking.push((addr, h.eni_id.clone()));
                    }
                    moving = true;
                    next.push(addr);
                }
                None => next.push(addr),
            }
        }
        if next.is_empty() {
            out.moved.extend(
                taking
                    .iter()
                    .map(|(addr, from)| format!("{addr} from {from}")),
            );
            return Ok(out);
        }
        let progressed = moving || next.len() < pending_len;
        // Nobody holds them and nothing moved: the refusal was about the request itself.
        if !progressed && taking.is_empty() {
            return Err(from_cloud(&refusal, &subject));
        }
        // EC2 remaps a moved address asynchronously: let it settle before asking again.
        if !progressed || (moving && next.iter().any(IpAddr::is_ipv6)) {
            let wait = SETTLE * 2u32.pow(round.min(4));
            if Instant::now() + wait >= a.deadline {
                return Err(from_cloud(&refusal, &subject));
            }
            tokio::time::sleep(wait).await;
        }
        pending = next;
    }
    Err(from_cloud(
        &CloudError::Api {
            action: "AssignPrivateIpAddresses",
            code: "InvalidIPAddress.InUse".into(),
            message: format!(
                "{} kept changing hands over {ROUNDS} rounds of assign and describe",
                list(addrs)
            ),
            maybe_applied: false,
        },
        &format!("assign {} to {eni}", list(addrs)),
    ))
}

fn holder_of(holders: &[EniView], addr: IpAddr) -> Option<&EniView> {
    holders.iter().find(|h| h.holds(addr))
}

/// IPv4 moves with AllowReassignment, and only once the rules allowed it; IPv6 has no such flag.
async fn send(
    ec2: &impl Ec2,
    eni: &str,
    addrs: &[IpAddr],
    reassign: bool,
) -> Result<(), CloudError> {
    let (v4, v6) = super::split_families(addrs);
    if !v4.is_empty() {
        ec2.assign_ipv4(eni, &v4, reassign).await
    } else {
        ec2.assign_ipv6(eni, &v6).await
    }
}

/// IPv6 cannot be reassigned in one call: unassign it from the holder the rules let us take it from.
async fn release_from(
    ec2: &impl Ec2,
    holder: &str,
    addr: IpAddr,
    eni: &str,
) -> Result<(), CniError> {
    let IpAddr::V6(v6) = addr else {
        return Ok(());
    };
    match ec2.unassign_ipv6(holder, &[v6]).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_assigned() => Ok(()),
        Err(e) => Err(from_cloud(
            &e,
            &format!("unassign {addr} from {holder} to move it to {eni}"),
        )),
    }
}
