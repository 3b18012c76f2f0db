//! Giving addresses back: shared by DEL, GC, the agent and a repeated ADD that moved ENI. Only the
//! recorded ENI is touched, only while it is still attached to this instance, never its primary
//! IP, never an adopted address, never one another record on the node still holds; an address
//! that has already left the ENI (taken over by another node) is left alone.

use super::eni::batched_ec2;
use super::errors::from_cloud;
use super::{list, split_families};
use crate::cloud::{Aws, CloudError, Ec2, Metadata};
use crate::cni::CniError;
use crate::store::{Attachment, Store};
use std::net::IpAddr;
use std::time::Instant;

/// What a release did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Released {
    pub addresses: Vec<IpAddr>,
    /// The ENI is no longer attached to this instance: the record was dropped, EC2 untouched.
    pub eni_detached: bool,
}

/// Releases what the record may release, then forgets the record.
pub async fn release(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
    deadline: Instant,
) -> Result<Released, CniError> {
    let _locks = store.lock_addresses(&record.addresses, deadline)?;
    release_locked(store, aws, record, deadline).await
}

/// [`release`] for a caller that already holds the locks of the record's addresses.
pub async fn release_locked(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
    deadline: Instant,
) -> Result<Released, CniError> {
    let primary = match still_attached(store, aws, record).await? {
        Some(primary) => primary,
        None => {
            tracing::warn!(eni = %record.eni_id, mac = %record.mac, container = %record.container_id,
                addresses = %list(&record.addresses),
                "the ENI is no longer attached to this instance: record dropped, EC2 untouched");
            store.remove(&record.key())?;
            return Ok(Released {
                eni_detached: true,
                ..Released::default()
            });
        }
    };
    let releasable: Vec<IpAddr> = store
        .releasable(record)?
        .into_iter()
        .filter(|a| Some(*a) != primary)
        .collect();
    crate::crash::point("release:before-ec2");
    let addresses = if releasable.is_empty() {
        Vec::new()
    } else {
        let ec2 = batched_ec2(store, aws, &record.eni_id, deadline).await?;
        unassign_held(&ec2, &record.eni_id, &releasable).await?
    };
    crate::crash::point("release:after-ec2");
    store.remove(&record.key())?;
    crate::crash::point("release:after-record");
    Ok(Released {
        addresses,
        eni_detached: false,
    })
}

/// `Some(the ENI's primary IP)` while the record's MAC is still attached to this instance (one
/// IMDS request; the primary comes from the ENI cache, which holds it for that MAC), `None` once
/// it is not.
async fn still_attached(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
) -> Result<Option<Option<IpAddr>>, CniError> {
    let subject = format!(
        "check that {} (MAC {}) is still attached to this instance",
        record.eni_id, record.mac
    );
    let macs = aws
        .metadata()
        .attached_macs()
        .await
        .map_err(|e| from_cloud(&e, &subject))?;
    if !macs.iter().any(|m| m.eq_ignore_ascii_case(&record.mac)) {
        return Ok(None);
    }
    if let Some(cached) = store
        .cached_eni(&record.mac)
        .filter(|c| c.facts.eni_id == record.eni_id && c.facts.primary_ipv4.is_some())
    {
        return Ok(Some(cached.facts.primary_ipv4.map(IpAddr::V4)));
    }
    match aws.metadata().attached_eni(&record.mac).await {
        Ok(Some(a)) if a.eni_id == record.eni_id => Ok(Some(a.primary_ipv4.map(IpAddr::V4))),
        Ok(_) => Ok(None),
        Err(e) => Err(from_cloud(&e, &subject)),
    }
}

/// Unassigns what `eni` still holds of `addrs`; returns what it unassigned.
pub async fn unassign_held(
    ec2: &impl Ec2,
    eni: &str,
    addrs: &[IpAddr],
) -> Result<Vec<IpAddr>, CniError> {
    let (v4, v6) = split_families(addrs);
    let mut released = Vec::new();
    for family in [to_ip(&v4), to_ip(&v6)] {
        if family.is_empty() {
            continue;
        }
        match unassign(ec2, eni, &family).await {
            Ok(()) => released.extend(family),
            // Some already left the ENI (moved elsewhere, or removed by hand): release the rest only.
            Err(e) if e.is_not_assigned() => {
                let view = match ec2.describe_eni(eni).await {
                    Ok(v) => v,
                    Err(e) if e.is_eni_not_found() => continue,
                    Err(e) => return Err(from_cloud(&e, &format!("read the addresses of {eni}"))),
                };
                let still: Vec<IpAddr> =
                    family.iter().copied().filter(|a| view.holds(*a)).collect();
                if still.is_empty() {
                    continue;
                }
                match unassign(ec2, eni, &still).await {
                    Ok(()) => released.extend(still),
                    Err(e) if e.is_not_assigned() || e.is_eni_not_found() => {}
                    Err(e) => {
                        return Err(from_cloud(
                            &e,
                            &format!("unassign {} from {eni}", list(&still)),
                        ))
                    }
                }
            }
            // The ENI is gone and its addresses with it.
            Err(e) if e.is_eni_not_found() => {}
            Err(e) => {
                return Err(from_cloud(
                    &e,
                    &format!("unassign {} from {eni}", list(&family)),
                ))
            }
        }
    }
    Ok(released)
}

async fn unassign(ec2: &impl Ec2, eni: &str, family: &[IpAddr]) -> Result<(), CloudError> {
    let (v4, v6) = split_families(family);
    if !v4.is_empty() {
        ec2.unassign_ipv4(eni, &v4).await
    } else {
        ec2.unassign_ipv6(eni, &v6).await
    }
}

fn to_ip<T: Into<IpAddr> + Copy>(addrs: &[T]) -> Vec<IpAddr> {
    addrs.iter().map(|a| (*a).into()).collect()
}
