//! ADD, in DESIGN.md's order: prevResult's addresses → master → ENI (IMDS, cached) → safety →
//! write-ahead record → assign (one call per family in the common case) → record → prevResult out.

use super::assign::{assign_addresses, Assignment};
use super::eni::{batched_ec2, checked_eni, ec2_for, find_master};
use super::errors::from_cloud;
use super::release::release_locked;
use super::safety::is_adopted;
use super::{Ctx, Summary};
use crate::cloud::{Aws, Ec2, Metadata};
use crate::cni::{CniError, ErrorCode};
use crate::node::Host;
use crate::node::MasterLink;
use crate::store::{now_unix, now_unix_ms, Attachment, CachedEni, Follow, Phase, Store};
use serde_json::Value;
use std::net::IpAddr;

/// More addresses than this on one pod interface is not a pod network: refuse before any call.
pub const MAX_POD_ADDRESSES: usize = 64;

pub async fn add<A: Aws, H: Host>(ctx: &Ctx<'_, A, H>) -> Result<(Value, Summary), CniError> {
    let (env, config, store) = (ctx.env, ctx.config, ctx.store);
    let prev = ctx.conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            ErrorCode::NotChained,
            "aws-eni-ip must be called as a chained plugin: ADD has no prevResult",
        )
        .with_details(
            "put it after ipvlan/macvlan in the NetworkAttachmentDefinition's \"plugins\" list",
        )
    })?;
    let output = prev.convert_to(ctx.conf.cni_version);
    let addrs = prev.pod_addresses(&env.ifname);
    if addrs.is_empty() {
        return Ok((
            output,
            Summary::note(format!("prevResult has no address on {}", env.ifname)),
        ));
    }
    check_count(addrs.len(), &env.ifname)?;
    let master = find_master(ctx.host, config, env.netns.as_deref(), &env.ifname)?;
    let eni = checked_eni(store, ctx.aws, &master, config, &addrs, ctx.deadline).await?;
    let summary = attach(ctx, &master, &eni, &addrs, Caller::Chained).await?;
    Ok((output, summary))
}

/// More addresses than [`MAX_POD_ADDRESSES`] on one pod interface is code 7, before any call.
pub fn check_count(count: usize, ifname: &str) -> Result<(), CniError> {
    if count <= MAX_POD_ADDRESSES {
        return Ok(());
    }
    Err(CniError::invalid_config(format!(
        "{count} addresses asked for on {ifname}; aws-eni-ip assigns at most {MAX_POD_ADDRESSES} per pod interface"
    ))
    .with_details("check the IPAM configuration of this network"))
}

/// Which plugin of the chain is attaching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Chained,
    Ipam,
}

/// Records and assigns `addrs` on `eni` for this attachment — the write-ahead record, the
/// assign, the final record — and says what it did. Chained ADD and IPAM mode share it.
pub async fn attach<A: Aws, H: Host>(
    ctx: &Ctx<'_, A, H>,
    master: &MasterLink,
    eni: &CachedEni,
    addrs: &[IpAddr],
    caller: Caller,
) -> Result<Summary, CniError> {
    let (env, config, store) = (ctx.env, ctx.config, ctx.store);
    check_count(addrs.len(), &env.ifname)?;
    let eni_id = eni.facts.eni_id.clone();
    let (_locks, previous) = store.lock_record(&ctx.key(), addrs, ctx.deadline)?;
    // A chained aws-eni-ip after IPAM mode in one chain: the IPAM call just assigned them. Any
    // other repeated ADD assigns again, since a floating address may have moved meanwhile.
    if let Some(done) = previous.as_ref().filter(|p| {
        caller == Caller::Chained
            && p.by_ipam
            && p.phase == Phase::Assigned
            && p.eni_id == eni_id
            && addrs.iter().all(|a| p.addresses.contains(a))
    }) {
        return Ok(Summary {
            eni: Some(eni_id),
            addresses: done.addresses.clone(),
            note: "already assigned by this attachment".into(),
            ..Summary::default()
        });
    }
    // A repeated ADD on another ENI: what the earlier one assigned there would leak otherwise.
    let previous = match previous {
        Some(old) if old.eni_id != eni_id => {
            release_locked(store, ctx.aws, &old, ctx.deadline).await?;
            None
        }
        p => p,
    };
    let mut record = Attachment {
        network: ctx.conf.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        eni_id: eni_id.clone(),
        mac: master.mac.clone(),
        addresses: addrs.to_vec(),
        phase: Phase::Assigning,
        created_unix: now_unix(),
        netns: env.netns.clone(),
        pod: env.pod(),
        instance_id: eni.facts.instance_id.clone(),
        adopted: Vec::new(),
        by_ipam: caller == Caller::Ipam,
        follow: config.follow_addresses.then(|| Follow {
            allow_reassignment: config.allow_reassignment,
            added: Vec::new(),
        }),
        release_error: None,
        committed_unix_ms: None,
        eni_before: None,
    };
    // A repeated ADD keeps what the earlier one recorded, so DEL releases it all.
    if let Some(old) = &previous {
        for a in &old.addresses {
            if !record.addresses.contains(a) {
                record.addresses.push(*a);
            }
        }
        record.adopted = old.adopted.clone();
        if let (Some(f), Some(old_f)) = (record.follow.as_mut(), old.follow.as_ref()) {
            f.added = old_f.added.clone();
        }
    }
    // Adopted before the write-ahead record: even a failed ADD's record never claims them.
    let found = on_eni_already(ctx.aws, store, &record, previous.as_ref(), addrs).await?;
    for a in &found {
        if !record.adopted.contains(a) {
            record.adopted.push(*a);
        }
    }
    crate::crash::point("add:before-record");
    store.put(&record)?;
    crate::crash::point("add:before-ec2");

    let ec2 = batched_ec2(store, ctx.aws, &eni_id, ctx.deadline).await?;
    let assignment = Assignment {
        store,
        config,
        record: &record,
        previous: previous.as_ref(),
        deadline: ctx.deadline,
    };
    let to_assign: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|a| !found.contains(a))
        .collect();
    let assigned = match assign_addresses(&assignment, &ec2, &to_assign).await {
        Ok(a) => a,
        // The kept record lets DEL finish the job.
        Err(f) if f.keep_record => return Err(f.error),
        Err(f) => {
            match previous {
                Some(old) => store.put(&old)?,
                None => store.remove(&record.key())?,
            }
            return Err(f.error);
        }
    };
    crate::crash::point("add:after-ec2");
    record.phase = Phase::Assigned;
    record.committed_unix_ms = Some(now_unix_ms());
    if assigned.adopted.is_empty() {
        store.update(&record)?;
    } else {
        // DEL must never release an adopted address: that fact may not be lost in a crash.
        record.adopted.extend(&assigned.adopted);
        store.put(&record)?;
    }
    crate::crash::point("add:after-record");
    let mut note = String::from("assigned");
    if !assigned.moved.is_empty() {
        note.push_str(&format!("; moved {}", assigned.moved.join(", ")));
    }
    let adopted: Vec<IpAddr> = found.iter().chain(&assigned.adopted).copied().collect();
    if !adopted.is_empty() {
        note.push_str(&format!(
            "; adopted {} (already on the ENI: never released)",
            super::list(&adopted)
        ));
    }
    Ok(Summary {
        eni: Some(eni_id),
        addresses: addrs.to_vec(),
        note,
        ..Summary::default()
    })
}

/// Which of `addrs` the ENI already holds for someone else, decided from the ENI's own listing and
/// never from whether EC2 accepts a re-assign (undocumented). IMDS is asked first (local, no EC2
/// call); an address it lists is confirmed by a describe, since IMDS lags behind a removal. The
/// caller holds the addresses' locks, so no record of this node can come or go meanwhile.
async fn on_eni_already<A: Aws>(
    aws: &A,
    store: &Store,
    record: &Attachment,
    previous: Option<&Attachment>,
    addrs: &[IpAddr],
) -> Result<Vec<IpAddr>, CniError> {
    let eni = record.eni_id.as_str();
    let listed = match aws.metadata().eni_addresses(&record.mac).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(eni, error = %e, "IMDS does not list the ENI's addresses: EC2 decides");
            addrs.to_vec()
        }
    };
    let candidates: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|a| listed.contains(a))
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let view = ec2_for(aws, eni)
        .await?
        .describe_eni(eni)
        .await
        .map_err(|e| from_cloud(&e, &format!("list the addresses {eni} holds")))?;
    let records = store.all_on_node()?;
    Ok(candidates
        .into_iter()
        .filter(|a| view.holds(*a) && is_adopted(record, previous, &records, *a))
        .collect())
}
