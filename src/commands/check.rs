//! CHECK: every prevResult address is recorded and is on the recorded ENI now. EC2 is eventually
//! consistent, so a missing address is re-read for a short while before CHECK fails.

use super::eni::ec2_for;
use super::errors::from_cloud;
use super::{list, Ctx, Summary};
use crate::cloud::{Aws, Ec2};
use crate::cni::{CniError, ErrorCode};
use crate::node::Host;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const CONVERGENCE: Duration = Duration::from_secs(3);

pub async fn check<A: Aws, H: Host>(ctx: &Ctx<'_, A, H>) -> Result<Summary, CniError> {
    let prev = ctx.conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(ErrorCode::NotChained, "CHECK has no prevResult")
            .with_details("aws-eni-ip must be called as a chained plugin")
    })?;
    let addrs = prev.pod_addresses(&ctx.env.ifname);
    if addrs.is_empty() {
        return Ok(Summary::note("no address to check"));
    }
    let key = ctx.key();
    let record = ctx.store.get(&key)?.ok_or_else(|| {
        CniError::new(
            ErrorCode::CheckFailed,
            format!(
                "no record of {}/{} in network {}: its addresses {} were never assigned by this node",
                key.container_id,
                key.ifname,
                key.network,
                list(&addrs)
            ),
        )
        .with_details("delete and re-create the pod so ADD assigns them")
    })?;
    let unrecorded: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|a| !record.addresses.contains(a))
        .collect();
    if !unrecorded.is_empty() {
        return Err(CniError::new(
            ErrorCode::CheckFailed,
            format!("{} not recorded for {}", list(&unrecorded), record.eni_id),
        )
        .with_details("the interface's addresses changed after ADD; re-create the pod"));
    }
    let ec2 = ec2_for(ctx.aws, &record.eni_id).await?;
    let settle_by = Instant::now() + CONVERGENCE;
    loop {
        let view = ec2
            .describe_eni(&record.eni_id)
            .await
            .map_err(|e| from_cloud(&e, &format!("read the addresses of {}", record.eni_id)))?;
        let missing: Vec<IpAddr> = addrs.iter().copied().filter(|a| !view.holds(*a)).collect();
        if missing.is_empty() {
            return Ok(Summary {
                eni: Some(record.eni_id.clone()),
                addresses: addrs,
                note: "all assigned".into(),
                ..Summary::default()
            });
        }
        if Instant::now() >= settle_by {
            return Err(CniError::new(
                ErrorCode::CheckFailed,
                format!(
                    "{} {} not assigned to {} (recorded for {}/{})",
                    list(&missing),
                    if missing.len() == 1 { "is" } else { "are" },
                    record.eni_id,
                    key.container_id,
                    key.ifname
                ),
            )
            .with_details("it was unassigned out of band or taken over by another ENI; the VPC does not route it to this pod"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
