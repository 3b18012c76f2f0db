//! ADD, in DESIGN.md's order: prevResult's addresses → master → ENI (IMDS, cached) → safety →
//! write-ahead record → one Assign call per family → record → prevResult out.

use super::assign::assign_addresses;
use super::eni::{checked_eni, ec2_for, find_master};
use super::{now_unix, Ctx, Summary};
use crate::cloud::Aws;
use crate::cni::{CniError, ErrorCode};
use crate::node::Host;
use crate::store::{Attachment, Phase};
use serde_json::Value;

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

    let ec2 = ec2_for(ctx.aws, &eni_id).await?;
    let moved = match assign_addresses(store, ec2, &record, &addrs, config.allow_reassignment).await
    {
        Ok(moved) => moved,
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
    store.update(&record)?;
    crate::crash::point("add:after-record");
    Ok((
        output,
        Summary {
            eni: Some(eni_id),
            addresses: addrs,
            note: match moved.is_empty() {
                true => "assigned".into(),
                false => format!("assigned; moved {}", moved.join(", ")),
            },
        },
    ))
}
