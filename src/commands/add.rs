//! ADD, in DESIGN.md's order: prevResult's addresses → master → ENI (IMDS, cached) → safety →
//! write-ahead record → one Assign call per family → record → prevResult out.

use super::eni::{checked_eni, find_master};
use super::errors::from_cloud;
use super::release::unassign_held;
use super::{list, now_unix, split_families, Ctx, Summary};
use crate::cloud::{Aws, Ec2};
use crate::cni::{CniError, ErrorCode};
use crate::node::Host;
use crate::store::{Attachment, Phase};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

    let master = find_master(ctx.host, config, env.netns.as_deref(), &env.ifname)?;
    let eni = checked_eni(store, ctx.aws, &master, config, &addrs).await?;
    let eni_id = eni.facts.eni_id.clone();

    let _locks = store.lock_addresses(&addrs)?;
    let previous = store.get(&ctx.key())?;
    let mut record = Attachment {
        network: ctx.conf.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        eni_id: eni_id.clone(),
        mac: master.mac.clone(),
        addresses: addrs.clone(),
        phase: Phase::Assigning,
        created_unix: now_unix(),
        netns: env.netns.clone(),
        pod: env.pod(),
    };
    // A repeated ADD keeps what the earlier one recorded on the same ENI, so DEL releases it all.
    if let Some(old) = previous.as_ref().filter(|o| o.eni_id == eni_id) {
        for a in &old.addresses {
            if !record.addresses.contains(a) {
                record.addresses.push(*a);
            }
        }
    }
    crate::crash::point("add:before-record");
    store.put(&record)?;
    crate::crash::point("add:before-ec2");

    let ec2 = ctx
        .aws
        .ec2()
        .await
        .map_err(|e| from_cloud(&e, &format!("prepare the EC2 client for {eni_id}")))?;
    let (v4, v6) = split_families(&addrs);
    let mut note = String::from("assigned");
    let mut result = Ok(());
    if !v4.is_empty() {
        result = assign_ipv4(ec2, &eni_id, &v4, config.allow_reassignment).await;
    }
    if result.is_ok() && !v6.is_empty() {
        match assign_ipv6(ec2, &eni_id, &v6, config.allow_reassignment).await {
            Ok(moved) if !moved.is_empty() => {
                note = format!("assigned; moved {}", moved.join(", "))
            }
            Ok(_) => {}
            Err(e) if e.is_transient() => result = Err(e),
            Err(e) => {
                // Nothing half-done may stay: take back this ADD's IPv4 before failing.
                let ours: Vec<IpAddr> = store
                    .releasable(&record)?
                    .into_iter()
                    .filter(|a| a.is_ipv4() && addrs.contains(a))
                    .collect();
                if let Err(rollback) = unassign_held(ec2, &eni_id, &ours).await {
                    tracing::warn!(error = %rollback, "could not take back IPv4 after the IPv6 failure");
                    return Err(rollback); // keep the record: DEL releases it
                }
                result = Err(e);
            }
        }
    }
    if let Err(e) = result {
        if e.is_transient() {
            return Err(e); // the kept record lets DEL finish the job
        }
        match previous {
            Some(old) => store.put(&old)?,
            None => store.remove(&record.key())?,
        }
        return Err(e);
    }
    crate::crash::point("add:after-ec2");
    record.phase = Phase::Assigned;
    store.update(&record)?;
    crate::crash::point("add:after-record");
    Ok((
        output,
        Summary {
            eni: Some(eni_id),
            addresses: addrs,
            note,
        },
    ))
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
