//! Giving addresses back: shared by DEL, GC, the agent and a repeated ADD that moved ENI. Only the
//! recorded ENI is touched, only while it is still attached to this instance, never its primary
//! IP, never an adopted address, never one another record on the node still holds; an address
//! that has already left the ENI (taken over by another node) is left alone.

use super::eni::{batched_ec2, ec2_for};
use super::errors::from_cloud;
use super::{list, split_families};
use crate::cloud::{Aws, CloudError, Ec2, Metadata};
use crate::cni::CniError;
use crate::store::{releasable_among, Attachment, AttachmentKey, Locks, Store, StoreError};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What a release did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Released {
    pub addresses: Vec<IpAddr>,
    /// The ENI is no longer attached to this instance: the record was dropped, EC2 untouched.
    pub eni_detached: bool,
    /// The release failed, but none of the record's addresses was left on its ENI (another node
    /// took them over): the record was dropped.
    pub nothing_left: bool,
}

/// Releases what the record may release, then forgets the record.
pub async fn release(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
    deadline: Instant,
) -> Result<Released, CniError> {
    // Read again under the locks: the agent may have added a run-time address meanwhile.
    let (_locks, fresh) = store.lock_record(&record.key(), &record.addresses, deadline)?;
    match fresh {
        Some(fresh) => release_locked(store, aws, &fresh, deadline).await,
        None => Ok(Released::default()),
    }
}

/// [`release`] for a caller that already holds the locks of the record's addresses.
pub async fn release_locked(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
    deadline: Instant,
) -> Result<Released, CniError> {
    release_among(store, aws, record, None, deadline).await
}

/// [`release_locked`], the node's records already read under the locks (`None`: read them now).
async fn release_among(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
    node_records: Option<&[Attachment]>,
    deadline: Instant,
) -> Result<Released, CniError> {
    // A count-based assign whose answer never came: find what EC2 chose before giving back.
    let _count;
    let resolved;
    let record = if super::unknown::is_unresolved(record) {
        _count = store.lock_count_assign(&record.mac, deadline)?;
        let mut r = record.clone();
        for a in super::unknown::appeared(store, aws, record).await? {
            if !r.addresses.contains(&a) {
                r.addresses.push(a);
            }
        }
        resolved = r;
        &resolved
    } else {
        record
    };
    let Some(addresses) = give_back(store, aws, record, None, node_records, deadline).await? else {
        tracing::warn!(eni = %record.eni_id, mac = %record.mac, container = %record.container_id,
            addresses = %list(&record.addresses),
            "the ENI is no longer attached to this instance: record dropped, EC2 untouched");
        store.remove(&record.key())?;
        return Ok(Released {
            eni_detached: true,
            ..Released::default()
        });
    };
    crate::crash::point("release:after-ec2");
    store.remove(&record.key())?;
    crate::crash::point("release:after-record");
    Ok(Released {
        addresses,
        ..Released::default()
    })
}

/// Unassigns what the record may give back (of `only`, when given) from its ENI: never its
/// primary IP, never an adopted address or one another record on the node holds (`node_records`,
/// or read now). `None`, EC2 untouched, once the ENI is no longer attached to this instance.
pub(super) async fn give_back(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
    only: Option<&[IpAddr]>,
    node_records: Option<&[Attachment]>,
    deadline: Instant,
) -> Result<Option<Vec<IpAddr>>, CniError> {
    let Some(primary) = still_attached(store, aws, record).await? else {
        return Ok(None);
    };
    let releasable = match node_records {
        Some(records) => releasable_among(record, records),
        None => store.releasable(record)?,
    };
    let releasable: Vec<IpAddr> = releasable
        .into_iter()
        .filter(|a| Some(*a) != primary && only.is_none_or(|o| o.contains(a)))
        .collect();
    crate::crash::point("release:before-ec2");
    if releasable.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let ec2 = batched_ec2(store, aws, &record.eni_id, deadline).await?;
    unassign_held(&ec2, &record.eni_id, &releasable)
        .await
        .map(Some)
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

/// The agent's releases in one state dir: each record is read again under its addresses' locks
/// and released only while `still` holds for it (an ADD may have finished, or a DEL released it,
/// since it was chosen). While we hold an address's lock no record holding it can come or go, so
/// the node's records are read once for every refcount. A record whose locks stay busy for
/// `lock_wait` (an ADD or DEL in flight) waits for the next pass, as does everything after the
/// first transient failure (throttling). When a release fails for good and none of the record's
/// addresses is left on its ENI, the record is dropped: there is nothing left to give back.
/// `Ok(None)`: not released this time, and not an error.
pub async fn release_batch(
    store: &Store,
    aws: &impl Aws,
    keys: &[AttachmentKey],
    (lock_wait, op_timeout): (Duration, Duration),
    still: impl Fn(&Attachment) -> bool,
) -> Vec<(AttachmentKey, Result<Option<Released>, CniError>)> {
    let mut out = Vec::new();
    let mut held: Vec<Attachment> = Vec::new();
    let mut locked = Held::default();
    for key in keys {
        match locked.record(store, key, Instant::now() + lock_wait) {
            Ok(Some(record)) if still(&record) => held.push(record),
            Ok(_) | Err(StoreError::LockTimeout { .. }) => out.push((key.clone(), Ok(None))),
            Err(e) => out.push((key.clone(), Err(e.into()))),
        }
    }
    if held.is_empty() {
        return out;
    }
    let mut node = match store.all_on_node() {
        Ok(n) => n,
        Err(e) => {
            let e = CniError::from(e);
            out.extend(held.iter().map(|r| (r.key(), Err(e.clone()))));
            return out;
        }
    };
    for record in &held {
        let deadline = Instant::now() + op_timeout;
        let result = release_held(store, aws, record, &node, deadline).await;
        let transient = matches!(&result, Err(e) if e.is_transient());
        if matches!(result, Ok(Some(_))) {
            // Gone: it no longer holds its addresses for the records after it.
            node.retain(|r| r != record);
        }
        out.push((record.key(), result));
        if transient {
            break;
        }
    }
    out
}

/// The address locks a batch holds; records that share an address share its one lock (a second
/// flock of the same file in this process would wait for the first).
#[derive(Default)]
struct Held {
    addresses: Vec<IpAddr>,
    locks: Vec<Locks>,
}

impl Held {
    /// Locks what `key`'s record holds beyond what is held already, then reads the record; one
    /// that grew while we waited is locked again.
    fn record(
        &mut self,
        store: &Store,
        key: &AttachmentKey,
        by: Instant,
    ) -> Result<Option<Attachment>, StoreError> {
        let mut want = match store.get(key)? {
            Some(r) => r.addresses,
            None => return Ok(None),
        };
        loop {
            let new: Vec<IpAddr> = want
                .iter()
                .copied()
                .filter(|a| !self.addresses.contains(a))
                .collect();
            self.locks.push(store.lock_addresses(&new, by)?);
            self.addresses.extend(new);
            match store.get(key)? {
                Some(r) if r.addresses.iter().all(|a| self.addresses.contains(a)) => {
                    return Ok(Some(r))
                }
                Some(r) => want = r.addresses,
                None => return Ok(None),
            }
        }
    }
}

async fn release_held(
    store: &Store,
    aws: &impl Aws,
    record: &Attachment,
    node: &[Attachment],
    deadline: Instant,
) -> Result<Option<Released>, CniError> {
    match release_among(store, aws, record, Some(node), deadline).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => match left_on_eni(store, aws, record).await {
            Ok(false) => {
                store.remove(&record.key())?;
                tracing::info!(eni = %record.eni_id, addresses = %list(&record.addresses), error = %e,
                    "none of the record's addresses is on its ENI any more: record dropped");
                Ok(Some(Released {
                    nothing_left: true,
                    ..Released::default()
                }))
            }
            _ => Err(e),
        },
    }
}

/// Whether the record's ENI still holds an address the record may release.
async fn left_on_eni(store: &Store, aws: &impl Aws, record: &Attachment) -> Result<bool, CniError> {
    let eni = &record.eni_id;
    let view = match ec2_for(aws, eni).await?.describe_eni(eni).await {
        Ok(v) => v,
        Err(e) if e.is_eni_not_found() => return Ok(false),
        Err(e) => return Err(from_cloud(&e, &format!("read the addresses of {eni}"))),
    };
    Ok(store.releasable(record)?.iter().any(|a| view.holds(*a)))
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
