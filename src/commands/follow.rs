//! Addresses an application adds to its pod interface after ADD (a VRRP VIP), on networks with
//! `followAddresses`: the node agent sees them come and go and calls these. An added address gets
//! ADD's rules in ADD's order: in the ENI's subnet, not its primary IP → write-ahead record
//! (durable) → assign (guarded reassignment, adoption, IPv6 moved from its holder) → record. A
//! removed one is given back only while this node's ENI holds it and no other record on the node
//! does; when another ENI holds it a peer took it over, and only the record forgets it.

use super::add::check_count;
use super::assign::{assign_addresses, Assigned, Assignment};
use super::eni::{batched_ec2, eni_for_mac};
use super::errors::from_cloud;
use super::release::give_back;
use super::safety::{check_not_primary_ip, check_subnet};
use crate::cloud::{Aws, Metadata};
use crate::cni::CniError;
use crate::config::PluginConfig;
use crate::store::{Attachment, AttachmentKey, Phase, Store};
use std::net::IpAddr;
use std::time::Instant;

/// What became of an address that appeared in the pod.
#[derive(Debug)]
pub enum Added {
    /// Assigned to the record's ENI and recorded (moved from another ENI, or adopted, maybe).
    Assigned(Assigned),
    /// The record holds it already: nothing to do.
    Recorded,
    /// Not ours to assign; the reason is for the log.
    Ignored(&'static str),
}

/// What became of an address that left the pod.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// Unassigned from the record's ENI and forgotten.
    Released,
    /// Forgotten only: another ENI holds it now, another record on the node shares it, or it was adopted.
    Forgotten,
    /// Not an address the agent added.
    Ignored(&'static str),
}

/// The rules of the network at ADD, as far as an assign needs them.
fn config_of(record: &Attachment) -> PluginConfig {
    PluginConfig {
        allow_reassignment: record.follow.as_ref().is_some_and(|f| f.allow_reassignment),
        ..PluginConfig::default()
    }
}

/// `addr` appeared on the pod interface of `key`. With `retry`, an address already recorded is
/// assigned again (an earlier attempt ended transiently).
pub async fn address_added(
    store: &Store,
    aws: &impl Aws,
    key: &AttachmentKey,
    addr: IpAddr,
    retry: bool,
    deadline: Instant,
) -> Result<Added, CniError> {
    let (_locks, record) = store.lock_record(key, &[addr], deadline)?;
    let Some(record) = record else {
        return Ok(Added::Ignored("no record: the attachment is gone"));
    };
    if record.follow.is_none() {
        return Ok(Added::Ignored("the network does not follow addresses"));
    }
    if record.phase != Phase::Assigned {
        return Ok(Added::Ignored("ADD has not finished, or DEL has begun"));
    }
    let recorded = record.addresses.contains(&addr);
    if recorded && !retry {
        return Ok(Added::Recorded);
    }
    let eni = eni_for_mac(store, aws, &record.mac, false, deadline).await?;
    if eni.facts.eni_id != record.eni_id {
        return Ok(Added::Ignored("the master's MAC is another ENI now"));
    }
    // ADD's own checks; what they refuse is not an error here, only not ours to assign.
    if check_subnet(&eni.facts, &[addr]).is_err() {
        return Ok(Added::Ignored("outside the ENI's subnet"));
    }
    if check_not_primary_ip(&eni.facts, &[addr]).is_err() {
        return Ok(Added::Ignored("the ENI's primary IP"));
    }
    if !recorded && check_count(record.addresses.len() + 1, &key.ifname).is_err() {
        return Ok(Added::Ignored(
            "the attachment holds the most addresses one pod interface may (64)",
        ));
    }
    let previous = record.clone();
    let mut next = record;
    if !recorded {
        next.addresses.push(addr);
        if let Some(f) = next.follow.as_mut() {
            f.added.push(addr);
        }
        // Durable before the EC2 call, as ADD does: a crash still leaves DEL something to release.
        store.put(&next)?;
    }
    let config = config_of(&next);
    let ec2 = batched_ec2(store, aws, &next.eni_id, deadline).await?;
    let assignment = Assignment {
        store,
        config: &config,
        record: &next,
        previous: Some(&previous),
        deadline,
    };
    match assign_addresses(&assignment, &ec2, &[addr]).await {
        Ok(done) => {
            if !done.adopted.is_empty() {
                next.adopted.extend(&done.adopted);
                store.put(&next)?;
            }
            Ok(Added::Assigned(done))
        }
        // The kept record lets DEL or a retry finish the job.
        Err(f) if f.keep_record => Err(f.error),
        Err(f) => {
            if !recorded {
                store.put(&previous)?;
            }
            Err(f.error)
        }
    }
}

/// `addr` came back to the pod within the debounce: a flap costs no EC2 call while IMDS still
/// lists it on the record's ENI; if it does not (a peer took it over meanwhile), it is assigned
/// again by ADD's rules.
pub async fn address_returned(
    store: &Store,
    aws: &impl Aws,
    key: &AttachmentKey,
    addr: IpAddr,
    deadline: Instant,
) -> Result<Added, CniError> {
    let Some(record) = store.get(key)? else {
        return Ok(Added::Ignored("no record: the attachment is gone"));
    };
    let here = aws
        .metadata()
        .eni_addresses(&record.mac)
        .await
        .map_err(|e| {
            from_cloud(
                &e,
                &format!("read the addresses of {} from IMDS", record.eni_id),
            )
        })?;
    if here.contains(&addr) && record.addresses.contains(&addr) {
        return Ok(Added::Recorded);
    }
    address_added(store, aws, key, addr, true, deadline).await
}

/// `addr` left the pod interface of `key` (and stayed away through the debounce).
pub async fn address_removed(
    store: &Store,
    aws: &impl Aws,
    key: &AttachmentKey,
    addr: IpAddr,
    deadline: Instant,
) -> Result<Removed, CniError> {
    let (_locks, record) = store.lock_record(key, &[addr], deadline)?;
    let Some(record) = record else {
        return Ok(Removed::Ignored("no record: the attachment is gone"));
    };
    if !record
        .follow
        .as_ref()
        .is_some_and(|f| f.added.contains(&addr))
    {
        return Ok(Removed::Ignored("not added at run time"));
    }
    // DEL's rules; EC2 decides "still on this ENI" atomically (an address taken over is "not
    // assigned"), and an ENI no longer attached here is left untouched.
    let released = give_back(store, aws, &record, Some(&[addr]), None, deadline)
        .await?
        .unwrap_or_default();
    let mut next = record;
    next.addresses.retain(|a| *a != addr);
    next.adopted.retain(|a| *a != addr);
    if let Some(f) = next.follow.as_mut() {
        f.added.retain(|a| *a != addr);
    }
    store.put(&next)?;
    Ok(if released.is_empty() {
        Removed::Forgotten
    } else {
        Removed::Released
    })
}
