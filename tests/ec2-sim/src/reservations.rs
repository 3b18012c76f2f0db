//! Subnet CIDR reservations: CreateSubnetCidrReservation, GetSubnetCidrReservations,
//! DeleteSubnetCidrReservation, and what they keep EC2 from choosing.
//!
//! The SDK model (aws-sdk-ec2 `CreateSubnetCidrReservationInput::reservation_type`): "The type of
//! reservation. The reservation type determines how the reserved IP addresses are assigned to
//! resources. `prefix` - Amazon Web Services assigns the reserved IP addresses to network
//! interfaces. `explicit` - You assign the reserved IP addresses to network interfaces." So an
//! address inside either kind is never one EC2 picks for a single address (DHCP primary, `…Count`):
//! explicit ones are only assigned by the caller, prefix ones only as delegated prefixes (which the
//! simulator does not implement). Explicit assignment into a reservation is allowed.

use crate::addresses::Candidates;
use crate::ec2::{matches_any, page, paging, tag_set_xml, Params};
use crate::engine::{Ec2Error, Engine, Inner};
use crate::util::xml_escape;
use crate::EniState;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

/// One subnet CIDR reservation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub id: String,
    pub subnet_id: String,
    pub cidr: IpNetwork,
    /// `explicit` or `prefix`.
    pub reservation_type: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

type R<T> = Result<T, Ec2Error>;

impl Engine {
    /// Draws `n` addresses EC2 would choose in the subnet now: outside the reserved ends, every
    /// reservation of the subnet, and every address any ENI holds.
    pub(crate) fn auto_pick(
        &self,
        inner: &mut Inner,
        enis: &[EniState],
        subnet_id: &str,
        v6: bool,
        n: usize,
    ) -> R<Vec<IpAddr>> {
        let sub = &self.model.subnets[subnet_id];
        let block = match (v6, sub.v6) {
            (false, _) => IpNetwork::V4(sub.v4),
            (true, Some(b)) => IpNetwork::V6(b),
            (true, None) => {
                return Err(Ec2Error::invalid(format!(
                    "Subnet {subnet_id} has no IPv6 CIDR block"
                )))
            }
        };
        let candidates = inner
            .reservations
            .iter()
            .filter(|r| r.subnet_id == subnet_id)
            .fold(Candidates::of_subnet(block), |c, r| c.without(r.cidr));
        let held = enis.iter().flat_map(|e| {
            std::iter::once(IpAddr::V4(e.primary_ip))
                .chain(e.private_ips.iter().map(|a| IpAddr::V4(*a)))
                .chain(e.ipv6s.iter().map(|a| IpAddr::V6(*a)))
        });
        candidates.pick(held, n, &mut inner.picker).ok_or_else(|| {
            Ec2Error::new(
                "InsufficientFreeAddressesInSubnet",
                format!("The specified subnet {subnet_id} does not have enough free addresses to satisfy the request."),
            )
        })
    }

    fn subnet_known(&self, subnet_id: &str) -> R<()> {
        if self.model.subnets.contains_key(subnet_id) {
            Ok(())
        } else {
            Err(Ec2Error::new(
                "InvalidSubnetID.NotFound",
                format!("The subnet ID '{subnet_id}' does not exist"),
            ))
        }
    }

    fn create_reservation(&self, p: &Params) -> R<Reservation> {
        let subnet_id = p.require("SubnetId")?;
        let cidr_text = p.require("Cidr")?;
        let kind = p.require("ReservationType")?;
        self.subnet_known(subnet_id)?;
        if kind != "explicit" && kind != "prefix" {
            return Err(Ec2Error::invalid(format!(
                "Value ({kind}) for parameter reservationType is invalid. Expected 'prefix' or 'explicit'."
            )));
        }
        let cidr: IpNetwork = cidr_text.parse().map_err(|_| {
            Ec2Error::invalid(format!(
                "Value ({cidr_text}) for parameter cidr is invalid. Not a valid CIDR."
            ))
        })?;
        if cidr.network() != cidr.ip() {
            return Err(Ec2Error::invalid(format!(
                "Value ({cidr_text}) for parameter cidr is invalid. The CIDR has host bits set; use {}/{}.",
                cidr.network(),
                cidr.prefix()
            )));
        }
        let sub = &self.model.subnets[subnet_id];
        let inside = match cidr {
            IpNetwork::V4(c) => c.is_subnet_of(sub.v4),
            IpNetwork::V6(c) => sub.v6.is_some_and(|b| c.is_subnet_of(b)),
        };
        if !inside {
            return Err(Ec2Error::invalid(format!(
                "The CIDR {cidr} is not within the CIDR blocks of subnet {subnet_id}"
            )));
        }
        let tags = p.tag_specifications("subnet-cidr-reservation")?;
        let mut inner = self.lock();
        if let Some(o) = inner
            .reservations
            .iter()
            .find(|r| r.subnet_id == subnet_id && r.cidr.is_ipv6() == cidr.is_ipv6())
            .filter(|r| overlaps(r.cidr, cidr))
        {
            return Err(Ec2Error::invalid(format!(
                "The CIDR {cidr} overlaps the subnet CIDR reservation {} ({})",
                o.id, o.cidr
            )));
        }
        inner.serial += 1;
        let r = Reservation {
            id: format!("scr-0{:016x}", inner.serial),
            subnet_id: subnet_id.to_string(),
            cidr,
            reservation_type: kind.to_string(),
            description: p.get("Description").unwrap_or("").to_string(),
            tags,
        };
        inner.reservations.push(r.clone());
        Ok(r)
    }

    fn get_reservations(&self, p: &Params) -> R<String> {
        let subnet_id = p.require("SubnetId")?;
        self.subnet_known(subnet_id)?;
        let filters = p.filters()?;
        let (start, max) = paging(p, false)?;
        let all = self.lock().reservations.clone();
        let mut selected = Vec::new();
        for r in all.into_iter().filter(|r| r.subnet_id == subnet_id) {
            let mut keep = true;
            for (name, values) in &filters {
                let have: Vec<String> = match name.as_str() {
                    "reservationType" => vec![r.reservation_type.clone()],
                    "subnet-id" => vec![r.subnet_id.clone()],
                    "tag-key" => r.tags.keys().cloned().collect(),
                    n => match n.strip_prefix("tag:") {
                        Some(k) => r.tags.get(k).cloned().into_iter().collect(),
                        None => return Err(crate::ec2::invalid_filter(n)),
                    },
                };
                keep &= matches_any(values, &have);
            }
            if keep {
                selected.push(r);
            }
        }
        let (items, next) = page(selected, start, max);
        let owner = &self.model.world.account_id;
        let mut x = String::new();
        for (v6, set) in [
            (false, "subnetIpv4CidrReservationSet"),
            (true, "subnetIpv6CidrReservationSet"),
        ] {
            let _ = writeln!(x, "    <{set}>");
            for r in items.iter().filter(|r| r.cidr.is_ipv6() == v6) {
                x.push_str("        <item>\n");
                reservation_fields(&mut x, "            ", r, owner);
                x.push_str("        </item>\n");
            }
            let _ = writeln!(x, "    </{set}>");
        }
        if let Some(t) = next {
            let _ = writeln!(x, "    <nextToken>{t}</nextToken>");
        }
        Ok(x)
    }

    fn delete_reservation(&self, p: &Params) -> R<Reservation> {
        let id = p.require("SubnetCidrReservationId")?;
        let mut inner = self.lock();
        let Some(i) = inner.reservations.iter().position(|r| r.id == id) else {
            return Err(Ec2Error::new(
                "InvalidSubnetCidrReservationID.NotFound",
                format!("The subnet CIDR reservation ID '{id}' does not exist"),
            ));
        };
        Ok(inner.reservations.remove(i))
    }
}

fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

fn reservation_fields(x: &mut String, indent: &str, r: &Reservation, owner: &str) {
    let _ = write!(
        x,
        "{indent}<subnetCidrReservationId>{}</subnetCidrReservationId>\n{indent}<subnetId>{}</subnetId>\n{indent}<cidr>{}</cidr>\n{indent}<reservationType>{}</reservationType>\n{indent}<ownerId>{owner}</ownerId>\n",
        xml_escape(&r.id),
        xml_escape(&r.subnet_id),
        r.cidr,
        xml_escape(&r.reservation_type),
    );
    if !r.description.is_empty() {
        let _ = writeln!(
            x,
            "{indent}<description>{}</description>",
            xml_escape(&r.description)
        );
    }
    tag_set_xml(x, indent, &r.tags);
}

/// The reservation actions; `None` for any other action.
pub(crate) fn execute(engine: &Engine, action: &str, p: &Params) -> Option<R<String>> {
    let owner = &engine.model.world.account_id;
    let one = |tag: &str, r: Reservation| {
        let mut x = format!("    <{tag}>\n");
        reservation_fields(&mut x, "        ", &r, owner);
        let _ = writeln!(x, "    </{tag}>");
        x
    };
    Some(match action {
        "CreateSubnetCidrReservation" => engine
            .create_reservation(p)
            .map(|r| one("subnetCidrReservation", r)),
        "GetSubnetCidrReservations" => engine.get_reservations(p),
        "DeleteSubnetCidrReservation" => engine
            .delete_reservation(p)
            .map(|r| one("deletedSubnetCidrReservation", r)),
        _ => return None,
    })
}
