//! Giving addresses back: shared by DEL, GC and ADD's rollback. Only the recorded ENI is touched,
//! and an address that has already left it (taken over by another node) is left alone.

use super::eni::ec2_for;
use super::errors::from_cloud;
use super::{list, split_families};
use crate::cloud::{Aws, CloudError, Ec2};
use crate::cni::CniError;
use crate::store::{Attachment, Store};
use std::net::IpAddr;

/// Releases a record's addresses that no other record holds, then forgets the record.
pub async fn release(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
) -> Result<Vec<IpAddr>, CniError> {
    let _locks = store.lock_addresses(&record.addresses)?;
    let releasable = store.releasable(record)?;
    crate::crash::point("release:before-ec2");
    let released = if releasable.is_empty() {
        Vec::new()
    } else {
        let ec2 = ec2_for(aws, &record.eni_id).await?;
        unassign_held(ec2, &record.eni_id, &releasable).await?
    };
    crate::crash::point("release:after-ec2");
    store.remove(&record.key())?;
    crate::crash::point("release:after-record");
    Ok(released)
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
