//! From the pod interface to a checked ENI: master link → MAC → ENI facts (IMDS, cached) → the
//! safety rules of `safety.rs`.

use super::errors::from_cloud;
use super::safety::{
    check_not_primary, check_not_primary_ip, check_subnet, check_unmanaged, outside_subnet,
};
use crate::cloud::{Aws, Metadata};
use crate::cni::{CniError, ErrorCode};
use crate::config::PluginConfig;
use crate::node::{Host, MasterLink};
use crate::store::{CachedEni, Store};
use std::net::IpAddr;
use std::path::Path;

/// `master` from the config, else the parent of the pod interface inside its netns.
pub fn find_master(
    host: &impl Host,
    config: &PluginConfig,
    netns: Option<&str>,
    ifname: &str,
) -> Result<MasterLink, CniError> {
    match (&config.master, netns) {
        (Some(name), _) => Ok(host.link_by_name(name)?),
        (None, Some(ns)) => Ok(host.parent_of(Path::new(ns), ifname)?),
        (None, None) => Err(CniError::new(
            ErrorCode::MasterNotFound,
            format!(
                "cannot find the master of {ifname}: no CNI_NETNS and no \"master\" in the config"
            ),
        )
        .with_details("set \"master\" to the host link of the secondary ENI")),
    }
}

/// The EC2 client, for a call about `eni`.
pub async fn ec2_for<'a, A: Aws>(aws: &'a A, eni: &str) -> Result<&'a A::Ec2, CniError> {
    aws.ec2()
        .await
        .map_err(|e| from_cloud(&e, &format!("prepare the EC2 client for {eni}")))
}

/// The ENI behind `mac`, from the cache or IMDS (`refresh` skips the cache).
pub async fn eni_for_mac(
    store: &Store,
    aws: &impl Aws,
    mac: &str,
    refresh: bool,
) -> Result<CachedEni, CniError> {
    let previous = store.cached_eni(mac);
    if !refresh {
        if let Some(cached) = previous {
            return Ok(cached);
        }
    }
    let facts = aws
        .metadata()
        .eni_facts(mac)
        .await
        .map_err(|e| from_cloud(&e, &format!("look up the ENI of MAC {mac} in IMDS")))?;
    let cached = CachedEni {
        unmanaged_verified: previous
            .is_some_and(|p| p.unmanaged_verified && p.facts.eni_id == facts.eni_id),
        facts,
    };
    store.cache_eni(&cached);
    Ok(cached)
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
        && cached.facts.primary_ipv4.is_some()
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
) -> Result<CachedEni, CniError> {
    if let Some(cached) = ready_in_cache(store, &master.mac, config, addrs) {
        check_not_primary(&cached.facts, config)?;
        check_not_primary_ip(&cached.facts, addrs)?;
        return Ok(cached);
    }
    // Concurrent first ADDs on one ENI: one asks IMDS and EC2, the others then read its cache.
    let _lookup = store.lock_eni_lookup(&master.mac)?;
    let mut cached = eni_for_mac(store, aws, &master.mac, false).await?;
    if !outside_subnet(&cached.facts, addrs).is_empty() {
        cached = eni_for_mac(store, aws, &master.mac, true).await?;
    }
    check_not_primary(&cached.facts, config)?;
    check_not_primary_ip(&cached.facts, addrs)?;
    check_subnet(&cached.facts, addrs)?;
    check_unmanaged(store, aws, &mut cached, config).await?;
    Ok(cached)
}
