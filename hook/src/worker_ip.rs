//! Static worker addresses from the start of the subnet: the lowest addresses that no ENI holds
//! and no subnet CIDR reservation covers, so pod ranges kept at the subnet's end (and reserved)
//! never meet a worker address.

use aws_eni_ip::cloud::subnet::{CidrReservation, SubnetEni};
use ipnetwork::{IpNetwork, Ipv4Network};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

/// Candidate primaries in ascending order: after EC2's first four, before the broadcast address.
pub fn lowest_free(
    block: Ipv4Network,
    enis: &[SubnetEni],
    reservations: &[CidrReservation],
) -> impl Iterator<Item = Ipv4Addr> {
    let held: BTreeSet<Ipv4Addr> = enis
        .iter()
        .flat_map(|e| e.addresses())
        .filter_map(|(a, _)| match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect();
    let reserved: Vec<Ipv4Network> = reservations
        .iter()
        .filter_map(|r| match r.cidr {
            IpNetwork::V4(n) => Some(n),
            IpNetwork::V6(_) => None,
        })
        .collect();
    let first = u32::from(block.network()).saturating_add(4);
    let last = u32::from(block.broadcast()).saturating_sub(1);
    (first..=last)
        .map(Ipv4Addr::from)
        .filter(move |a| !held.contains(a) && !reserved.iter().any(|r| r.contains(*a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_addresses_skip_ec2s_own_those_in_use_and_reserved_ones() {
        let eni = SubnetEni {
            eni_id: "eni-1".into(),
            instance_id: None,
            primary_ipv4: "192.0.2.4".parse().unwrap(),
            secondary_ipv4: vec!["192.0.2.6".parse().unwrap()],
            ipv6: Vec::new(),
            description: String::new(),
        };
        let res = CidrReservation {
            reservation_id: "scr-1".into(),
            cidr: "192.0.2.8/30".parse().unwrap(),
            reservation_type: "prefix".into(),
            description: String::new(),
        };
        let got: Vec<String> = lowest_free("192.0.2.0/28".parse().unwrap(), &[eni], &[res])
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "192.0.2.5",
                "192.0.2.7",
                "192.0.2.12",
                "192.0.2.13",
                "192.0.2.14"
            ]
        );
    }
}
