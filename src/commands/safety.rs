//! The rules that must hold before any address is touched (DESIGN.md, "Rules that keep users safe").

use super::eni::ec2_for;
use super::errors::from_cloud;
use super::list;
use crate::cloud::{Aws, Ec2, EniFacts, EniView, NO_MANAGE_TAG};
use crate::cni::{CniError, ErrorCode};
use crate::config::PluginConfig;
use crate::store::{Attachment, CachedEni, Store};
use std::net::IpAddr;

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
                _ => format!("addresses {} are", list(&outside)),
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
    let ec2 = ec2_for(aws, eni).await?;
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
    store.cache_eni(cached);
    Ok(())
}

/// Guarded reassignment: an address another ENI holds is taken only from an ENI that the VPC CNI
/// leaves alone (tagged no_manage) or that this node records, never its primary IP, and only with
/// `allowReassignment`.
pub fn check_takeover(
    config: &PluginConfig,
    node_records: &[Attachment],
    holder: &EniView,
    addr: IpAddr,
    eni: &str,
) -> Result<(), CniError> {
    let who = describe_holder(holder);
    let refuse = |why: String, fix: &str| {
        Err(CniError::new(
            ErrorCode::AddressInUse,
            format!("cannot assign {addr} to {eni}: it is held by {who}; {why}"),
        )
        .with_details(fix.to_string()))
    };
    if holder.primary_ipv4.map(IpAddr::V4) == Some(addr) {
        return refuse(
            "it is that ENI's primary IP, which never moves".into(),
            "exclude it from the IPAM range",
        );
    }
    if !config.allow_reassignment {
        return refuse(
            "\"allowReassignment\" is false".into(),
            "set \"allowReassignment\": true to move floating addresses, or fix the IPAM range",
        );
    }
    let ours = node_records.iter().any(|r| r.eni_id == holder.eni_id);
    if !holder.unmanaged_by_vpc_cni() && !ours {
        return refuse(
            format!(
                "that ENI lacks {NO_MANAGE_TAG}=true, so a VPC CNI pod may be using the address"
            ),
            "refusing to take it over: pick an address outside the VPC CNI's ENIs",
        );
    }
    Ok(())
}

/// "eni-… (instance i-…, \"description\")" for messages.
pub fn describe_holder(h: &EniView) -> String {
    let mut parts = vec![h.eni_id.clone()];
    match &h.instance_id {
        Some(i) => parts.push(format!("instance {i}")),
        None => parts.push("not attached".into()),
    }
    if !h.description.is_empty() {
        parts.push(format!("{:?}", h.description));
    }
    format!("{} ({})", parts[0], parts[1..].join(", "))
}

/// An address found on the ENI before this attachment assigned it: adopted unless this attachment's
/// earlier record lists it as its own, or another record on the node holds it as its own.
pub fn is_adopted(
    record: &Attachment,
    previous: Option<&Attachment>,
    node_records: &[Attachment],
    addr: IpAddr,
) -> bool {
    if let Some(p) = previous.filter(|p| p.eni_id == record.eni_id) {
        if p.addresses.contains(&addr) {
            return p.adopted.contains(&addr);
        }
    }
    let key = record.key();
    let holders: Vec<&Attachment> = node_records
        .iter()
        .filter(|r| r.key() != key && r.eni_id == record.eni_id && r.addresses.contains(&addr))
        .collect();
    holders.is_empty() || holders.iter().any(|r| r.adopted.contains(&addr))
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
            instance_id: Some("i-0a1b2c3d4e5f60001".into()),
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
