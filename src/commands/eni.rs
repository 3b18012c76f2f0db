//! From the pod interface to a checked ENI: master link → MAC → ENI facts (IMDS, cached) → the
//! safety rules of `safety.rs`.

use super::batch::Batched;
use super::errors::from_cloud;
use super::safety::{
    check_not_primary, check_not_primary_ip, check_subnet, check_unmanaged, outside_subnet,
};
use crate::cloud::{Aws, CloudError, Ec2, EniFacts, Metadata};
use crate::cni::{CniError, ErrorCode};
use crate::config::PluginConfig;
use crate::node::{Host, HostError, MasterLink};
use crate::store::{CachedEni, Store};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// `master` from the config, else the parent of the pod interface inside its netns.
pub fn find_master(
    host: &impl Host,
    config: &PluginConfig,
    netns: Option<&str>,
    ifname: &str,
) -> Result<MasterLink, CniError> {
    let master = match (&config.master, netns) {
        (Some(name), _) => host.link_by_name(name)?,
        (None, Some(ns)) => host.parent_of(Path::new(ns), ifname)?,
        (None, None) => Err(CniError::new(
            ErrorCode::MasterNotFound,
            format!(
                "cannot find the master of {ifname}: no CNI_NETNS and no \"master\" in the config"
            ),
        )
        .with_details("set \"master\" to the host link of the secondary ENI"))?,
    };
    // Checked before any EC2 call: a failed ADD leaves no address behind.
    if !master.up {
        return Err(HostError::MasterDown {
            name: master.name,
            mac: master.mac,
        }
        .into());
    }
    Ok(master)
}

/// The EC2 client, for a call about `eni`.
pub async fn ec2_for<'a, A: Aws>(aws: &'a A, eni: &str) -> Result<&'a A::Ec2, CniError> {
    aws.ec2()
        .await
        .map_err(|e| from_cloud(&e, &format!("prepare the EC2 client for {eni}")))
}

/// The EC2 client for changing `eni`'s addresses: its calls are batched with the node's other
/// plugin processes (group commit) and paced by the node budget.
pub async fn batched_ec2<'a, A: Aws>(
    store: &'a Store,
    aws: &'a A,
    eni: &str,
    deadline: Instant,
) -> Result<Batched<'a, A::Ec2>, CniError> {
    Ok(Batched::new(
        ec2_for(aws, eni).await?,
        store.node(),
        deadline,
    ))
}

/// The ENI behind `mac`, from the cache or IMDS (`refresh` skips the cache). A cache written
/// before every fact the rules need was read is refreshed.
pub async fn eni_for_mac(
    store: &Store,
    aws: &impl Aws,
    mac: &str,
    refresh: bool,
    deadline: Instant,
) -> Result<CachedEni, CniError> {
    let previous = store.cached_eni(mac);
    if !refresh {
        if let Some(cached) = previous.as_ref().filter(|c| c.facts.is_complete()) {
            return Ok(cached.clone());
        }
    }
    let facts = imds_facts(aws, mac, deadline).await?;
    let cached = CachedEni {
        unmanaged_verified: previous
            .is_some_and(|p| p.unmanaged_verified && p.facts.eni_id == facts.eni_id),
        facts,
    };
    store.cache_eni(&cached);
    Ok(cached)
}

/// IMDS lags behind a fresh attachment: a 404 for a MAC that EC2 shows attached to this instance
/// is retried until the deadline (then 11); one EC2 does not know here is 102 at once.
async fn imds_facts(aws: &impl Aws, mac: &str, deadline: Instant) -> Result<EniFacts, CniError> {
    let subject = format!("look up the ENI of MAC {mac} in IMDS");
    let mut wait = Duration::from_millis(200);
    let mut attached_here: Option<String> = None;
    loop {
        let not_listed = match aws.metadata().eni_facts(mac).await {
            Ok(f) => return Ok(f),
            Err(
                e @ CloudError::Metadata {
                    status: Some(404), ..
                },
            ) => e,
            Err(e) => return Err(from_cloud(&e, &subject)),
        };
        if attached_here.is_none() {
            let me = aws
                .metadata()
                .instance_id()
                .await
                .map_err(|e| from_cloud(&e, "read this instance's id from IMDS"))?;
            let seen = ec2_for(aws, mac)
                .await?
                .eni_by_mac(mac)
                .await
                .map_err(|e| from_cloud(&e, &format!("find the ENI with MAC {mac} in EC2")))?;
            match seen {
                Some(v) if v.instance_id.as_deref() == Some(me.as_str()) => {
                    attached_here = Some(v.eni_id)
                }
                Some(v) => {
                    return Err(CniError::new(
                        ErrorCode::EniNotFound,
                        format!(
                            "MAC {mac} is {}, which is {}, not this instance {me}",
                            v.eni_id,
                            v.instance_id
                                .map(|i| format!("attached to {i}"))
                                .unwrap_or_else(|| "not attached".into())
                        ),
                    )
                    .with_details("set \"master\" to the link of an ENI attached to this node"))
                }
                None => return Err(from_cloud(&not_listed, &subject)),
            }
        }
        if Instant::now() + wait >= deadline {
            return Err(CniError::new(
                ErrorCode::TryAgainLater,
                format!(
                    "IMDS does not list MAC {mac} yet, though EC2 shows {} attached to this instance",
                    attached_here.unwrap_or_default()
                ),
            )
            .with_details("a freshly attached ENI takes a moment to appear in IMDS; the runtime's retry completes the operation"));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// A cached ENI that already passed every check these addresses need.
fn ready_in_cache(
    store: &Store,
    mac: &str,
    config: &PluginConfig,
    addrs: &[IpAddr],
) -> Option<CachedEni> {
    let cached = store.cached_eni(mac)?;
    let ready = outside_subnet(&cached.facts, addrs).is_empty()
        && cached.facts.is_complete()
        && (cached.unmanaged_verified || config.allow_managed_eni);
    ready.then_some(cached)
}

/// The whole chain for ADD: a subnet miss re-reads IMDS once, since a subnet can gain an IPv6 CIDR.
pub async fn checked_eni(
    store: &Store,
    aws: &impl Aws,
    master: &MasterLink,
    config: &PluginConfig,
    addrs: &[IpAddr],
    deadline: Instant,
) -> Result<CachedEni, CniError> {
    if let Some(cached) = ready_in_cache(store, &master.mac, config, addrs) {
        check_not_primary(&cached.facts, config)?;
        check_not_primary_ip(&cached.facts, addrs)?;
        return Ok(cached);
    }
    // Concurrent first ADDs on one ENI: one asks IMDS and EC2, the others then read its cache.
    let _lookup = store.lock_eni_lookup(&master.mac, deadline)?;
    let mut cached = eni_for_mac(store, aws, &master.mac, false, deadline).await?;
    if !outside_subnet(&cached.facts, addrs).is_empty() {
        cached = eni_for_mac(store, aws, &master.mac, true, deadline).await?;
    }
    check_not_primary(&cached.facts, config)?;
    check_not_primary_ip(&cached.facts, addrs)?;
    check_subnet(&cached.facts, addrs)?;
    check_unmanaged(store, aws, &mut cached, config).await?;
    Ok(cached)
}
