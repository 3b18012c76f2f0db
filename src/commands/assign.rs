//! Putting addresses on an ENI: one call per family, an in-use answer checked against the ENI, an
//! IPv6 address moved from its holder, and nothing half-done left when the second family fails.

use super::errors::from_cloud;
use super::list;
use super::release::unassign_held;
use super::split_families;
use crate::cloud::Ec2;
use crate::cni::CniError;
use crate::store::{Attachment, Store};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// Assigns `addrs` to the record's ENI; returns a note on addresses moved from another ENI.
pub async fn assign_addresses(
    store: &Store,
    ec2: &impl Ec2,
    record: &Attachment,
    addrs: &[IpAddr],
    allow_reassignment: bool,
) -> Result<Vec<String>, AssignFailure> {
    let eni = &record.eni_id;
    let (v4, v6) = split_families(addrs);
    if !v4.is_empty() {
        assign_ipv4(ec2, eni, &v4, allow_reassignment)
            .await
            .map_err(AssignFailure::new)?;
    }
    if v6.is_empty() {
        return Ok(Vec::new());
    }
    match assign_ipv6(ec2, eni, &v6, allow_reassignment).await {
        Ok(moved) => Ok(moved),
        Err(e) if e.is_transient() => Err(AssignFailure::new(e)),
        Err(e) => {
            // Nothing half-done may stay: take back this ADD's IPv4 before failing.
            let ours: Vec<IpAddr> = store
                .releasable(record)
                .map_err(|s| AssignFailure::new(s.into()))?
                .into_iter()
                .filter(|a| a.is_ipv4() && addrs.contains(a))
                .collect();
            if let Err(rollback) = unassign_held(ec2, eni, &ours).await {
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

async fn assign_ipv4(
    ec2: &impl Ec2,
    eni: &str,
    v4: &[Ipv4Addr],
    allow: bool,
) -> Result<(), CniError> {
    let subject = |a: &[Ipv4Addr]| format!("assign {} to {eni}", list(a));
    let err = match ec2.assign_ipv4(eni, v4, allow).await {
        Ok(()) => return Ok(()),
        Err(e) if e.is_in_use() => e,
        Err(e) => return Err(from_cloud(&e, &subject(v4))),
    };
    // In use: a repeated ADD finds its own addresses there; anything else is another ENI's.
    let view = ec2
        .describe_eni(eni)
        .await
        .map_err(|e| from_cloud(&e, &format!("read the addresses of {eni}")))?;
    let rest: Vec<Ipv4Addr> = v4
        .iter()
        .copied()
        .filter(|a| !view.ipv4.contains(a))
        .collect();
    if rest.is_empty() {
        return Ok(());
    }
    if rest.len() == v4.len() {
        return Err(from_cloud(&err, &subject(&rest)));
    }
    ec2.assign_ipv4(eni, &rest, allow)
        .await
        .map_err(|e| from_cloud(&e, &subject(&rest)))
}

/// IPv6 has no AllowReassignment: a held address is unassigned from its holder first.
async fn assign_ipv6(
    ec2: &impl Ec2,
    eni: &str,
    v6: &[Ipv6Addr],
    allow: bool,
) -> Result<Vec<String>, CniError> {
    let subject = |a: &[Ipv6Addr]| format!("assign {} to {eni}", list(a));
    let err = match ec2.assign_ipv6(eni, v6).await {
        Ok(()) => return Ok(Vec::new()),
        Err(e) if e.is_in_use() => e,
        Err(e) => return Err(from_cloud(&e, &subject(v6))),
    };
    let view = ec2
        .describe_eni(eni)
        .await
        .map_err(|e| from_cloud(&e, &format!("read the addresses of {eni}")))?;
    let rest: Vec<Ipv6Addr> = v6
        .iter()
        .copied()
        .filter(|a| !view.ipv6.contains(a))
        .collect();
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut moved = Vec::new();
    for addr in &rest {
        let holder = ec2
            .ipv6_holder(*addr)
            .await
            .map_err(|e| from_cloud(&e, &format!("find the ENI that holds {addr}")))?;
        let Some(holder) = holder.filter(|h| h != eni) else {
            continue;
        };
        if !allow {
            return Err(from_cloud(&err, &subject(&rest)).with_details(format!(
                "{holder} holds {addr}; set \"allowReassignment\": true to move it"
            )));
        }
        match ec2.unassign_ipv6(&holder, &[*addr]).await {
            Ok(()) => moved.push(format!("{addr} from {holder}")),
            Err(e) if e.is_not_assigned() => {}
            Err(e) => {
                return Err(from_cloud(
                    &e,
                    &format!("unassign {addr} from {holder} to move it to {eni}"),
                ))
            }
        }
    }
    ec2.assign_ipv6(eni, &rest)
        .await
        .map_err(|e| from_cloud(&e, &subject(&rest)))?;
    Ok(moved)
}
