//! From the pod interface to a checked ENI: master link → MAC → ENI facts (IMDS, cached) → the
//! safety rules that must hold before any address is touched.

use super::errors::from_cloud;
use crate::cloud::{Aws, Ec2, EniFacts, Metadata};
use crate::cni::{CniError, ErrorCode};
use crate::config::PluginConfig;
use crate::node::{Host, MasterLink};
use crate::store::{read_json, write_json_atomic, Durability, Store};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

/// What the state dir remembers about an ENI: its IMDS facts and whether its tag was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedEni {
    pub facts: EniFacts,
    /// Set once DescribeNetworkInterfaces showed the no_manage tag; only a pass is cached.
    pub unmanaged_verified: bool,
}

fn cache_name(mac: &str) -> String {
    format!("eni-{}.json", mac.replace(':', ""))
}

/// `master` from the config, else the parent of the pod interface inside its netns.
pub fn find_master(
    host: &impl Host,
    config: &PluginConfig,
    netns: Option<&str>,
    ifname: &str,
) -> Result<MasterLink, CniError> {
    match (&config.master, netns) {
        (Some(name), _) => host.link_by_name(name),
        (None, Some(ns)) => host.parent_of(Path::new(ns), ifname),
        (None, None) => Err(CniError::new(
            ErrorCode::MasterNotFound,
            format!(
                "cannot find the master of {ifname}: no CNI_NETNS and no \"master\" in the config"
            ),
        )
        .with_details("set \"master\" to the host link of the secondary ENI")),
    }
}

/// The ENI behind `mac`, from the cache or IMDS (`refresh` skips the cache).
pub async fn eni_for_mac(
    store: &Store,
    aws: &impl Aws,
    mac: &str,
    refresh: bool,
) -> Result<CachedEni, CniError> {
    let path = store.cache_path(&cache_name(mac));
    if !refresh {
        if let Ok(Some(cached)) = read_json::<CachedEni>(&path) {
            return Ok(cached);
        }
    }
    let facts = aws
        .metadata()
        .eni_facts(mac)
        .await
        .map_err(|e| from_cloud(&e, &format!("look up the ENI of MAC {mac} in IMDS")))?;
    let previous = read_json::<CachedEni>(&path).ok().flatten();
    let cached = CachedEni {
        unmanaged_verified: previous
            .is_some_and(|p| p.unmanaged_verified && p.facts.eni_id == facts.eni_id),
        facts,
    };
    save(store, &cached);
    Ok(cached)
}

fn save(store: &Store, cached: &CachedEni) {
    // The cache only saves calls; failing to write it must not fail the pod.
    let _ = write_json_atomic(
        &store.cache_path(&cache_name(&cached.facts.mac)),
        cached,
        Durability::ProcessCrashSafe,
    );
}

/// Addresses outside every subnet CIDR of the ENI.
pub fn outside_subnet(facts: &EniFacts, addrs: &[IpAddr]) -> Vec<IpAddr> {
    addrs
        .iter()
        .copied()
        .filter(|a| match a {
            IpAddr::V4(v4) => !facts.subnet_ipv4_cidrs.iter().any(|c| c.contains(*v4)),
            IpAddr::V6(v6) => !facts.subnet_ipv6_cidrs.iter().any(|c| c.contains(*v6)),
        })
        .collect()
}

pub fn check_subnet(facts: &EniFacts, addrs: &[IpAddr]) -> Result<(), CniError> {
    let outside = outside_subnet(facts, addrs);
    if outside.is_empty() {
        return Ok(());
    }
    let cidrs: Vec<String> = facts
        .subnet_ipv4_cidrs
        .iter()
        .map(ToString::to_string)
        .chain(facts.subnet_ipv6_cidrs.iter().map(ToString::to_string))
        .collect();
    Err(CniError::new(
        ErrorCode::OutsideSubnet,
        format!(
            "{} outside the subnet {} ({}) of {}",
            match outside.len() {
                1 => format!("address {} is", outside[0]),
                _ => format!("addresses {} are", super::list(&outside)),
            },
            facts.subnet_id,
            cidrs.join(", "),
            facts.eni_id
        ),
    )
    .with_details(
        "the VPC can only route addresses of the ENI's subnet; make the IPAM range a part of it",
    ))
}

pub fn check_not_primary(facts: &EniFacts, config: &PluginConfig) -> Result<(), CniError> {
    if facts.device_number == 0 && !config.allow_primary_eni {
        return Err(CniError::new(
            ErrorCode::PrimaryEni,
            format!(
                "refusing to manage {} (MAC {}): it is the instance's primary ENI (device index 0)",
                facts.eni_id, facts.mac
            ),
        )
        .with_details("use a secondary ENI as the master, or set \"allowPrimaryEni\": true if no VPC CNI runs on this node"));
    }
    Ok(())
}

/// The ENI's primary address is the node's own; EC2 would accept it as "already assigned" and
/// then refuse to unassign it, so DEL could never finish.
pub fn check_not_primary_ip(facts: &EniFacts, addrs: &[IpAddr]) -> Result<(), CniError> {
    match facts.primary_ipv4 {
        Some(primary) if addrs.contains(&IpAddr::V4(primary)) => Err(CniError::new(
            ErrorCode::AddressInUse,
            format!(
                "address {primary} is the primary IP of {} (the node's own address on {})",
                facts.eni_id, facts.mac
            ),
        )
        .with_details(
            "exclude it from the IPAM range (whereabouts \"exclude\", host-local \"rangeStart\")",
        )),
        _ => Ok(()),
    }
}

/// The VPC CNI hands out addresses of every ENI without the no_manage tag: ours would be reused.
pub async fn check_unmanaged(
    store: &Store,
    aws: &impl Aws,
    cached: &mut CachedEni,
    config: &PluginConfig,
) -> Result<(), CniError> {
    if config.allow_managed_eni || cached.unmanaged_verified {
        return Ok(());
    }
    let eni = &cached.facts.eni_id;
    let ec2 = aws
        .ec2()
        .await
        .map_err(|e| from_cloud(&e, &format!("prepare the EC2 client for {eni}")))?;
    let view = ec2
        .describe_eni(eni)
        .await
        .map_err(|e| from_cloud(&e, &format!("read the tags of {eni}")))?;
    if !view.unmanaged_by_vpc_cni() {
        return Err(CniError::new(
            ErrorCode::ManagedEni,
            format!(
                "refusing to manage {eni}: it lacks the tag {}=true, so the VPC CNI manages its addresses",
                crate::cloud::NO_MANAGE_TAG
            ),
        )
        .with_details(format!(
            "tag it: aws ec2 create-tags --resources {eni} --tags Key={},Value=true (or set \"allowManagedEni\": true)",
            crate::cloud::NO_MANAGE_TAG
        )));
    }
    cached.unmanaged_verified = true;
    save(store, cached);
    Ok(())
}

/// A cached ENI that already passed every check these addresses need.
fn ready_in_cache(
    store: &Store,
    mac: &str,
    config: &PluginConfig,
    addrs: &[IpAddr],
) -> Option<CachedEni> {
    let cached = read_json::<CachedEni>(&store.cache_path(&cache_name(mac))).ok()??;
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
    let _eni_lock = store.lock_eni(&master.mac)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(device: u32) -> EniFacts {
        EniFacts {
            eni_id: "eni-0b000000000000001".into(),
            mac: "02:00:c6:12:01:01".into(),
            device_number: device,
            subnet_id: "subnet-0sim000000000002".into(),
            vpc_id: "vpc-0sim0000000000001".into(),
            subnet_ipv4_cidrs: vec!["198.18.1.0/24".parse().unwrap()],
            subnet_ipv6_cidrs: vec!["2001:db8:100:1::/64".parse().unwrap()],
            primary_ipv4: Some("198.18.1.10".parse().unwrap()),
        }
    }

    #[test]
    fn the_enis_primary_ip_is_refused_by_name() {
        let pod: Vec<IpAddr> = vec![
            "198.18.1.11".parse().unwrap(),
            "198.18.1.10".parse().unwrap(),
        ];
        let e = check_not_primary_ip(&facts(1), &pod).unwrap_err();
        assert_eq!(e.code, ErrorCode::AddressInUse);
        assert!(
            e.msg.contains("198.18.1.10") && e.msg.contains("eni-0b000000000000001"),
            "{}",
            e.msg
        );
        assert!(check_not_primary_ip(&facts(1), &pod[..1]).is_ok());
    }

    #[test]
    fn addresses_outside_the_subnet_are_refused_by_name() {
        let f = facts(1);
        let ok: Vec<IpAddr> = vec![
            "198.18.1.80".parse().unwrap(),
            "2001:db8:100:1::5".parse().unwrap(),
        ];
        assert!(check_subnet(&f, &ok).is_ok());
        let bad: Vec<IpAddr> = vec![
            "198.18.2.80".parse().unwrap(),
            "2001:db8:100:2::5".parse().unwrap(),
        ];
        let e = check_subnet(&f, &bad).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutsideSubnet);
        assert!(
            e.msg.contains("198.18.2.80") && e.msg.contains("2001:db8:100:2::5"),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("eni-0b000000000000001") && e.msg.contains("198.18.1.0/24"));
    }

    #[test]
    fn ipv6_needs_an_ipv6_cidr() {
        let mut f = facts(1);
        f.subnet_ipv6_cidrs.clear();
        let v6: Vec<IpAddr> = vec!["2001:db8:100:1::5".parse().unwrap()];
        assert_eq!(
            check_subnet(&f, &v6).unwrap_err().code,
            ErrorCode::OutsideSubnet
        );
    }

    #[test]
    fn the_primary_eni_is_refused_unless_allowed() {
        let config = PluginConfig::default();
        let e = check_not_primary(&facts(0), &config).unwrap_err();
        assert_eq!(e.code, ErrorCode::PrimaryEni);
        assert!(e.msg.contains("eni-0b000000000000001"));
        assert!(check_not_primary(&facts(1), &config).is_ok());
        let allowed = PluginConfig {
            allow_primary_eni: true,
            ..PluginConfig::default()
        };
        assert!(check_not_primary(&facts(0), &allowed).is_ok());
    }
}
