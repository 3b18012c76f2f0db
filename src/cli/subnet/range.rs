//! What a pod range holds: which addresses are in use (and by whom), which reservations cover it,
//! how many addresses are free. Pure: built from what EC2 said, so it is tested without EC2.

use crate::cloud::subnet::{CidrReservation, SubnetEni, SubnetFacts};
use ipnetwork::IpNetwork;
use serde::Serialize;
use std::net::IpAddr;

/// One address of the range that an ENI holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InUse {
    pub address: IpAddr,
    pub eni_id: String,
    pub instance_id: Option<String>,
    /// An ENI's primary IP: DHCP (or a person) gave the ENI an address of the pod range.
    pub primary: bool,
}

/// A reservation that overlaps the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overlap {
    #[serde(flatten)]
    pub reservation: CidrReservation,
    /// It contains the whole range.
    pub covers_range: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeReport {
    pub subnet: SubnetFacts,
    pub cidr: IpNetwork,
    /// Addresses of the range EC2 lets anyone use (the subnet's first four and last excluded).
    pub usable: u128,
    pub in_use: Vec<InUse>,
    pub free: u128,
    pub reservations: Vec<Overlap>,
    /// Explicit reservations together cover every address of the range.
    pub explicitly_reserved: bool,
}

impl RangeReport {
    /// ENI primary IPs inside the range: what a reservation cannot undo.
    pub fn collisions(&self) -> impl Iterator<Item = &InUse> {
        self.in_use.iter().filter(|u| u.primary)
    }
}

/// Why a range cannot be checked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cidr} is not inside subnet {subnet_id} ({blocks}): pick a range of the subnet's blocks")]
pub struct OutsideSubnet {
    pub cidr: IpNetwork,
    pub subnet_id: String,
    pub blocks: String,
}

fn bounds(n: IpNetwork) -> (u128, u128) {
    let to = |ip: IpAddr| match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let lo = to(n.network());
    let host_bits = if n.is_ipv4() { 32u32 } else { 128 } - u32::from(n.prefix());
    let span = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    (lo, lo + span)
}

fn inside(inner: IpNetwork, outer: IpNetwork) -> bool {
    inner.is_ipv4() == outer.is_ipv4() && {
        let ((a, b), (c, d)) = (bounds(inner), bounds(outer));
        c <= a && b <= d
    }
}

/// Inclusive intervals of `range` that none of `cuts` covers.
fn uncovered(range: (u128, u128), cuts: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let mut left = vec![range];
    for &(clo, chi) in cuts {
        left = left
            .into_iter()
            .flat_map(|(lo, hi)| {
                let mut parts = Vec::new();
                if chi < lo || clo > hi {
                    parts.push((lo, hi));
                } else {
                    if clo > lo {
                        parts.push((lo, clo - 1));
                    }
                    if chi < hi {
                        parts.push((chi + 1, hi));
                    }
                }
                parts
            })
            .collect();
    }
    left
}

fn size(parts: &[(u128, u128)]) -> u128 {
    parts.iter().fold(0u128, |n, (lo, hi)| {
        n.saturating_add((hi - lo).saturating_add(1))
    })
}

/// The report for `cidr` in the subnet, from its ENIs and reservations.
pub fn analyse(
    subnet: SubnetFacts,
    cidr: IpNetwork,
    enis: &[SubnetEni],
    reservations: &[CidrReservation],
) -> Result<RangeReport, OutsideSubnet> {
    let block = match cidr {
        IpNetwork::V4(_) => Some(IpNetwork::V4(subnet.ipv4_cidr)),
        IpNetwork::V6(_) => subnet
            .ipv6_cidrs
            .iter()
            .map(|b| IpNetwork::V6(*b))
            .find(|b| inside(cidr, *b)),
    };
    let Some(block) = block.filter(|b| inside(cidr, *b)) else {
        let mut blocks = vec![subnet.ipv4_cidr.to_string()];
        blocks.extend(subnet.ipv6_cidrs.iter().map(|b| b.to_string()));
        return Err(OutsideSubnet {
            cidr,
            subnet_id: subnet.subnet_id,
            blocks: blocks.join(", "),
        });
    };
    // EC2 keeps the first four and the last address of every subnet block for itself.
    let (blo, bhi) = bounds(block);
    let usable = uncovered(bounds(cidr), &[(blo, blo + 3), (bhi, bhi)]);
    let mut in_use: Vec<InUse> = enis
        .iter()
        .flat_map(|e| {
            e.addresses()
                .filter(|(a, _)| cidr.contains(*a))
                .map(|(address, primary)| InUse {
                    address,
                    eni_id: e.eni_id.clone(),
                    instance_id: e.instance_id.clone(),
                    primary,
                })
        })
        .collect();
    in_use.sort_by_key(|u| u.address);
    let overlapping: Vec<Overlap> = reservations
        .iter()
        .filter(|r| r.cidr.is_ipv4() == cidr.is_ipv4())
        .filter(|r| {
            let ((a, b), (c, d)) = (bounds(r.cidr), bounds(cidr));
            a <= d && c <= b
        })
        .map(|r| Overlap {
            reservation: r.clone(),
            covers_range: inside(cidr, r.cidr),
        })
        .collect();
    let explicit: Vec<(u128, u128)> = overlapping
        .iter()
        .filter(|o| o.reservation.reservation_type == "explicit")
        .map(|o| bounds(o.reservation.cidr))
        .collect();
    Ok(RangeReport {
        usable: size(&usable),
        free: size(&usable).saturating_sub(in_use.len() as u128),
        explicitly_reserved: uncovered(bounds(cidr), &explicit).is_empty(),
        subnet,
        cidr,
        in_use,
        reservations: overlapping,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> SubnetFacts {
        SubnetFacts {
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            availability_zone: "us-west-2a".into(),
            ipv4_cidr: "192.0.2.0/24".parse().unwrap(),
            ipv6_cidrs: vec!["2001:db8:1::/64".parse().unwrap()],
        }
    }

    fn eni(id: &str, primary: &str, secondary: &[&str]) -> SubnetEni {
        SubnetEni {
            eni_id: id.into(),
            instance_id: Some(format!("i-{id}")),
            primary_ipv4: primary.parse().unwrap(),
            secondary_ipv4: secondary.iter().map(|a| a.parse().unwrap()).collect(),
            ipv6: Vec::new(),
            description: String::new(),
        }
    }

    fn reservation(cidr: &str, kind: &str) -> CidrReservation {
        CidrReservation {
            reservation_id: format!("scr-{cidr}"),
            cidr: cidr.parse().unwrap(),
            reservation_type: kind.into(),
            description: String::new(),
        }
    }

    #[test]
    fn a_primary_ip_in_the_range_is_a_collision_and_secondaries_are_not() {
        let enis = [
            eni("a", "192.0.2.130", &["192.0.2.140", "192.0.2.10"]),
            eni("b", "192.0.2.20", &[]),
        ];
        let r = analyse(subnet(), "192.0.2.128/25".parse().unwrap(), &enis, &[]).unwrap();
        assert_eq!(r.usable, 127, "the broadcast address is EC2's");
        assert_eq!(r.in_use.len(), 2);
        assert_eq!(r.free, 125);
        let c: Vec<&InUse> = r.collisions().collect();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].eni_id, "a");
        assert!(!r.explicitly_reserved);
    }

    #[test]
    fn explicit_reservations_together_may_cover_the_range_and_prefix_ones_do_not() {
        let res = [
            reservation("192.0.2.128/26", "explicit"),
            reservation("192.0.2.192/26", "explicit"),
            reservation("192.0.2.0/28", "prefix"),
        ];
        let r = analyse(subnet(), "192.0.2.128/25".parse().unwrap(), &[], &res).unwrap();
        assert!(r.explicitly_reserved);
        assert_eq!(r.reservations.len(), 2, "the /28 does not overlap");
        assert!(r.reservations.iter().all(|o| !o.covers_range));
        let r = analyse(subnet(), "192.0.2.0/29".parse().unwrap(), &[], &res).unwrap();
        assert!(!r.explicitly_reserved);
        assert!(r.reservations[0].covers_range);
        assert_eq!(r.usable, 4, "the first four addresses are EC2's");
    }

    #[test]
    fn a_range_outside_every_block_of_the_subnet_is_refused() {
        for cidr in ["198.18.0.0/24", "192.0.2.0/23", "2001:db8:2::/120"] {
            let e = analyse(subnet(), cidr.parse().unwrap(), &[], &[]).unwrap_err();
            assert!(
                e.to_string().contains("192.0.2.0/24, 2001:db8:1::/64"),
                "{e}"
            );
        }
        let r = analyse(subnet(), "2001:db8:1::ff00/120".parse().unwrap(), &[], &[]).unwrap();
        assert_eq!(r.usable, 256);
    }
}
