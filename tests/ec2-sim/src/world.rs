//! The world file: VPCs, subnets, instances, ENIs and faults, with validation.

use ipnetwork::{Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Every EC2 action the simulator implements; fault maps may name these or `*`.
pub const ACTIONS: &[&str] = &[
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "AssignIpv6Addresses",
    "UnassignIpv6Addresses",
    "DescribeNetworkInterfaces",
    "DescribeInstances",
    "DescribeSubnets",
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "CreateSubnetCidrReservation",
    "GetSubnetCidrReservations",
    "DeleteSubnetCidrReservation",
    "DescribeInstanceTypes",
];

/// Whether `action` is one the simulator implements, on either API.
pub(crate) fn implemented(action: &str) -> bool {
    ACTIONS.contains(&action) || crate::autoscaling::AUTOSCALING_ACTIONS.contains(&action)
}

/// A simulated region: what exists at start-up and which faults apply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct World {
    pub account_id: String,
    #[serde(default)]
    pub vpcs: Vec<Vpc>,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    #[serde(default)]
    pub instances: Vec<Instance>,
    #[serde(default)]
    pub enis: Vec<Eni>,
    #[serde(default)]
    pub faults: Faults,
}

impl Default for World {
    fn default() -> Self {
        World {
            account_id: "111122223333".into(),
            vpcs: Vec::new(),
            subnets: Vec::new(),
            instances: Vec::new(),
            enis: Vec::new(),
            faults: Faults::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
    #[serde(default)]
    pub ipv6_cidr: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub ipv4_cidr: String,
    #[serde(default)]
    pub ipv6_cidr: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    pub id: String,
    #[serde(rename = "type")]
    pub instance_type: String,
    pub region: String,
    pub availability_zone: String,
    /// Fixed IMDS port on the bind address; 0 = ephemeral.
    #[serde(default)]
    pub imds_port: u16,
    /// IAM role served by IMDS iam/security-credentials/; none = 404 there.
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Eni {
    pub id: String,
    pub mac: String,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub device_index: Option<u32>,
    pub subnet_id: String,
    pub primary_ip: Ipv4Addr,
    /// Initial secondary IPv4 addresses.
    #[serde(default)]
    pub private_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    pub ipv6s: Vec<Ipv6Addr>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Faults; every field optional in JSON. Maps are keyed by Action, `*` = any action not listed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Faults {
    /// Seed of the RNG behind error injection; none = 0, so runs always repeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub throttle: BTreeMap<String, Throttle>,
    pub latency_ms: BTreeMap<String, u64>,
    /// Probability per EC2 call of `InternalError` (HTTP 500).
    pub error_rate: BTreeMap<String, f64>,
    /// Probability per EC2 call of `Unavailable` (HTTP 503), drawn after `errorRate`.
    pub unavailable_rate: BTreeMap<String, f64>,
    /// Actions refused with `UnauthorizedOperation` (HTTP 403), as if IAM denied them; `*` = all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    pub imds_latency_ms: u64,
    pub imds_down: bool,
    pub imds_token_refused: bool,
    pub consistency_lag_ms: u64,
    /// EC2 does not document whether an explicit assign (without AllowReassignment) of an
    /// address the ENI already holds is refused or accepted: this models the answer that accepts it.
    pub same_eni_assign_accepted: bool,
}

/// A token bucket: starts full, refills continuously.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Throttle {
    pub capacity: u32,
    pub refill_per_second: f64,
}

impl Faults {
    /// Checks ranges and action names.
    pub fn validate(&self) -> Result<(), String> {
        fn key_ok(what: &str, k: &str) -> Result<(), String> {
            if k == "*" || implemented(k) {
                Ok(())
            } else {
                Err(format!(
                    "faults.{what}: unknown action {k:?} (expected \"*\" or one of {}, {})",
                    ACTIONS.join(", "),
                    crate::autoscaling::AUTOSCALING_ACTIONS.join(", ")
                ))
            }
        }
        for (k, t) in &self.throttle {
            key_ok("throttle", k)?;
            if !t.refill_per_second.is_finite() || t.refill_per_second < 0.0 {
                return Err(format!(
                    "faults.throttle.{k}.refillPerSecond must be a finite number >= 0, got {}",
                    t.refill_per_second
                ));
            }
        }
        for k in self.latency_ms.keys() {
            key_ok("latencyMs", k)?;
        }
        for (name, map) in [
            ("errorRate", &self.error_rate),
            ("unavailableRate", &self.unavailable_rate),
        ] {
            for (k, p) in map {
                key_ok(name, k)?;
                if !(0.0..=1.0).contains(p) {
                    return Err(format!("faults.{name}.{k} must be within 0..=1, got {p}"));
                }
            }
        }
        for k in &self.deny {
            key_ok("deny", k)?;
        }
        Ok(())
    }

    /// Whether IAM refuses `action`; unimplemented actions stay `InvalidAction`, as EC2 parses first.
    pub(crate) fn denies(&self, action: &str) -> bool {
        implemented(action) && self.deny.iter().any(|d| d == action || d == "*")
    }

    /// The value for `action`, else the `*` entry.
    pub(crate) fn for_action<'a, T>(map: &'a BTreeMap<String, T>, action: &str) -> Option<&'a T> {
        map.get(action).or_else(|| map.get("*"))
    }
}

/// (ENIs per instance, IPv4 addresses per ENI including the primary) of the built-in instance types.
pub fn instance_type_limits(instance_type: &str) -> Option<(u32, u32)> {
    Some(match instance_type {
        "t3.medium" => (3, 6),
        "m5.large" => (3, 10),
        "m5.xlarge" => (4, 15),
        "c5.4xlarge" => (8, 30),
        "c5n.18xlarge" => (15, 50),
        _ => return None,
    })
}

const KNOWN_TYPES: &str = "t3.medium, m5.large, m5.xlarge, c5.4xlarge, c5n.18xlarge";

/// Per-ENI address limit for ENIs not attached to an instance: the largest built-in one.
pub(crate) const UNATTACHED_ENI_LIMIT: u32 = 50;

pub(crate) fn is_hex_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn is_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

pub(crate) fn parse_v4_cidr(s: &str) -> Result<Ipv4Network, String> {
    if !s.contains('/') {
        return Err(format!("{s:?} is not a CIDR block (missing /prefix)"));
    }
    let n: Ipv4Network = s
        .parse()
        .map_err(|e| format!("{s:?} is not an IPv4 CIDR block: {e}"))?;
    if n.ip() != n.network() {
        return Err(format!(
            "{s:?} has host bits set (network address is {}/{})",
            n.network(),
            n.prefix()
        ));
    }
    Ok(n)
}

pub(crate) fn parse_v6_cidr(s: &str) -> Result<Ipv6Network, String> {
    if !s.contains('/') {
        return Err(format!("{s:?} is not a CIDR block (missing /prefix)"));
    }
    let n: Ipv6Network = s
        .parse()
        .map_err(|e| format!("{s:?} is not an IPv6 CIDR block: {e}"))?;
    if n.ip() != n.network() {
        return Err(format!(
            "{s:?} has host bits set (network address is {}/{})",
            n.network(),
            n.prefix()
        ));
    }
    Ok(n)
}

/// EC2 reserves the first four addresses and the last one of every IPv4 subnet.
pub(crate) fn is_reserved_v4(net: Ipv4Network, ip: Ipv4Addr) -> bool {
    let off = u32::from(ip).wrapping_sub(u32::from(net.network()));
    off < 4 || ip == net.broadcast()
}

/// Validated, parsed view of a subnet.
#[derive(Clone, Debug)]
pub(crate) struct SubnetInfo {
    pub v4: Ipv4Network,
    pub v6: Option<Ipv6Network>,
    pub vpc_id: String,
    pub az: String,
}

/// Checks that an address may live in a subnet; the error is the EC2 message.
pub(crate) fn check_in_subnet(sub: &SubnetInfo, subnet_id: &str, ip: IpAddr) -> Result<(), String> {
    match ip {
        IpAddr::V4(a) => {
            if !sub.v4.contains(a) {
                Err(format!(
                    "Address {a} does not fall within the subnet's address range (subnet {subnet_id}, {})",
                    sub.v4
                ))
            } else if is_reserved_v4(sub.v4, a) {
                Err(format!(
                    "Address {a} is reserved in subnet {subnet_id} ({}): the first four addresses and the last one are not usable",
                    sub.v4
                ))
            } else {
                Ok(())
            }
        }
        IpAddr::V6(a) => match sub.v6 {
            None => Err(format!("Subnet {subnet_id} has no IPv6 CIDR block")),
            Some(n) if !n.contains(a) => Err(format!(
                "Address {a} does not fall within the subnet's address range (subnet {subnet_id}, {n})"
            )),
            Some(_) => Ok(()),
        },
    }
}

impl World {
    /// Parses and validates a world file.
    pub fn from_json(s: &str) -> Result<World, String> {
        let w: World = serde_json::from_str(s).map_err(|e| format!("world file: {e}"))?;
        w.validate()?;
        Ok(w)
    }

    /// The embedded default world: two m5.large nodes in one VPC.
    pub fn demo() -> World {
        World::from_json(DEMO_JSON).expect("embedded demo world is valid")
    }

    /// Checks every cross-reference and address; the error names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        self.validated().map(|_| ())
    }

    pub(crate) fn validated(&self) -> Result<HashMap<String, SubnetInfo>, String> {
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "accountId must be 12 digits, got {:?}",
                self.account_id
            ));
        }
        let mut vpcs: HashMap<&str, (Ipv4Network, Option<Ipv6Network>)> = HashMap::new();
        for (i, v) in self.vpcs.iter().enumerate() {
            let at = format!("vpcs[{i}] ({})", v.id);
            if !v.id.starts_with("vpc-") || v.id.len() < 5 {
                return Err(format!("{at}: id must start with \"vpc-\""));
            }
            let v4 = parse_v4_cidr(&v.cidr).map_err(|e| format!("{at}: cidr {e}"))?;
            let v6 = match &v.ipv6_cidr {
                Some(c) => Some(parse_v6_cidr(c).map_err(|e| format!("{at}: ipv6Cidr {e}"))?),
                None => None,
            };
            if vpcs.insert(&v.id, (v4, v6)).is_some() {
                return Err(format!("{at}: duplicate VPC id"));
            }
        }
        let mut subnets: HashMap<String, SubnetInfo> = HashMap::new();
        let mut subnet_azs: HashMap<&str, &str> = HashMap::new();
        for (i, s) in self.subnets.iter().enumerate() {
            let at = format!("subnets[{i}] ({})", s.id);
            if !s.id.starts_with("subnet-") || s.id.len() < 8 {
                return Err(format!("{at}: id must start with \"subnet-\""));
            }
            let Some((vpc4, vpc6)) = vpcs.get(s.vpc_id.as_str()) else {
                return Err(format!("{at}: vpcId {} is not in vpcs", s.vpc_id));
            };
            let v4 = parse_v4_cidr(&s.ipv4_cidr).map_err(|e| format!("{at}: ipv4Cidr {e}"))?;
            if !v4.is_subnet_of(*vpc4) {
                return Err(format!(
                    "{at}: ipv4Cidr {v4} is not inside the VPC's {vpc4}"
                ));
            }
            if !(16..=28).contains(&v4.prefix()) {
                return Err(format!(
                    "{at}: ipv4Cidr {v4} must be between /16 and /28, as in EC2"
                ));
            }
            let v6 = match &s.ipv6_cidr {
                Some(c) => {
                    let n = parse_v6_cidr(c).map_err(|e| format!("{at}: ipv6Cidr {e}"))?;
                    match vpc6 {
                        None => {
                            return Err(format!(
                                "{at}: ipv6Cidr set but VPC {} has no ipv6Cidr",
                                s.vpc_id
                            ))
                        }
                        Some(p) if !n.is_subnet_of(*p) => {
                            return Err(format!("{at}: ipv6Cidr {n} is not inside the VPC's {p}"))
                        }
                        Some(_) => Some(n),
                    }
                }
                None => None,
            };
            for (j, other) in self.subnets[..i].iter().enumerate() {
                if other.id == s.id {
                    return Err(format!("{at}: duplicate subnet id (also subnets[{j}])"));
                }
                if other.vpc_id == s.vpc_id {
                    let o = &subnets[&other.id];
                    if o.v4.overlaps(v4) {
                        return Err(format!(
                            "{at}: ipv4Cidr {v4} overlaps subnets[{j}] ({}) {}",
                            other.id, o.v4
                        ));
                    }
                    if let (Some(a), Some(b)) = (o.v6, v6) {
                        if a.overlaps(b) {
                            return Err(format!(
                                "{at}: ipv6Cidr {b} overlaps subnets[{j}] ({}) {a}",
                                other.id
                            ));
                        }
                    }
                }
            }
            if s.availability_zone.is_empty() {
                return Err(format!("{at}: availabilityZone is empty"));
            }
            subnets.insert(
                s.id.clone(),
                SubnetInfo {
                    v4,
                    v6,
                    vpc_id: s.vpc_id.clone(),
                    az: s.availability_zone.clone(),
                },
            );
            subnet_azs.insert(&s.id, &s.availability_zone);
        }
        let mut instances: HashMap<&str, (&Instance, u32, u32)> = HashMap::new();
        let mut ports = HashSet::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let at = format!("instances[{i}] ({})", inst.id);
            if !is_hex_id(&inst.id, "i-") {
                return Err(format!(
                    "{at}: id must be \"i-\" and 8 or 17 lowercase hex digits"
                ));
            }
            let Some((max_enis, per_eni)) = instance_type_limits(&inst.instance_type) else {
                return Err(format!(
                    "{at}: unknown instance type {:?} (known: {KNOWN_TYPES})",
                    inst.instance_type
                ));
            };
            if inst.region.is_empty() {
                return Err(format!("{at}: region is empty"));
            }
            let az_ok = inst
                .availability_zone
                .strip_prefix(inst.region.as_str())
                .is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase())
                });
            if !az_ok {
                return Err(format!(
                    "{at}: availabilityZone {:?} is not a zone of region {:?}",
                    inst.availability_zone, inst.region
                ));
            }
            if let Some(r) = &inst.role {
                if r.is_empty() || r.contains('/') {
                    return Err(format!("{at}: role {r:?} must be non-empty without '/'"));
                }
            }
            if inst.imds_port != 0 && !ports.insert(inst.imds_port) {
                return Err(format!("{at}: imdsPort {} used twice", inst.imds_port));
            }
            if instances
                .insert(&inst.id, (inst, max_enis, per_eni))
                .is_some()
            {
                return Err(format!("{at}: duplicate instance id"));
            }
        }
        let mut eni_ids = HashSet::new();
        let mut macs = HashSet::new();
        let mut addrs: HashMap<IpAddr, &str> = HashMap::new();
        let mut devices: HashMap<(&str, u32), &str> = HashMap::new();
        let mut per_instance: HashMap<&str, u32> = HashMap::new();
        for (i, e) in self.enis.iter().enumerate() {
            let at = format!("enis[{i}] ({})", e.id);
            if !is_hex_id(&e.id, "eni-") {
                return Err(format!(
                    "{at}: id must be \"eni-\" and 8 or 17 lowercase hex digits"
                ));
            }
            if !eni_ids.insert(e.id.as_str()) {
                return Err(format!("{at}: duplicate ENI id"));
            }
            if !is_mac(&e.mac) {
                return Err(format!(
                    "{at}: mac {:?} must be six lowercase hex pairs separated by ':'",
                    e.mac
                ));
            }
            if !macs.insert(e.mac.as_str()) {
                return Err(format!("{at}: duplicate mac {}", e.mac));
            }
            let Some(sub) = subnets.get(&e.subnet_id) else {
                return Err(format!("{at}: subnetId {} is not in subnets", e.subnet_id));
            };
            let limit = match (&e.instance_id, e.device_index) {
                (None, None) => UNATTACHED_ENI_LIMIT,
                (Some(iid), Some(dev)) => {
                    let Some((inst, max_enis, per_eni)) = instances.get(iid.as_str()) else {
                        return Err(format!("{at}: instanceId {iid} is not in instances"));
                    };
                    if subnet_azs[e.subnet_id.as_str()] != inst.availability_zone {
                        return Err(format!(
                            "{at}: subnet {} is in {}, instance {iid} in {}",
                            e.subnet_id,
                            subnet_azs[e.subnet_id.as_str()],
                            inst.availability_zone
                        ));
                    }
                    if let Some(other) = devices.insert((iid.as_str(), dev), &e.id) {
                        return Err(format!(
                            "{at}: deviceIndex {dev} of {iid} already used by {other}"
                        ));
                    }
                    let n = per_instance.entry(iid.as_str()).or_default();
                    *n += 1;
                    if *n > *max_enis {
                        return Err(format!(
                            "{at}: {iid} ({}) takes at most {max_enis} ENIs",
                            inst.instance_type
                        ));
                    }
                    *per_eni
                }
                _ => {
                    return Err(format!(
                        "{at}: instanceId and deviceIndex must be both set or both absent"
                    ))
                }
            };
            let all = std::iter::once(IpAddr::V4(e.primary_ip))
                .chain(e.private_ips.iter().map(|a| IpAddr::V4(*a)))
                .chain(e.ipv6s.iter().map(|a| IpAddr::V6(*a)));
            for ip in all {
                check_in_subnet(sub, &e.subnet_id, ip).map_err(|m| format!("{at}: {m}"))?;
                if let Some(other) = addrs.insert(ip, &e.id) {
                    return Err(format!("{at}: address {ip} is also held by {other}"));
                }
            }
            if e.private_ips.len() as u64 + 1 > u64::from(limit) {
                return Err(format!(
                    "{at}: {} IPv4 addresses exceed the limit of {limit} per ENI",
                    e.private_ips.len() + 1
                ));
            }
            if e.ipv6s.len() as u64 > u64::from(limit) {
                return Err(format!(
                    "{at}: {} IPv6 addresses exceed the limit of {limit} per ENI",
                    e.ipv6s.len()
                ));
            }
            for k in e.tags.keys() {
                if k.is_empty() {
                    return Err(format!("{at}: empty tag key"));
                }
            }
        }
        for inst in &self.instances {
            if !devices.contains_key(&(inst.id.as_str(), 0)) {
                return Err(format!(
                    "instance {} has no ENI with deviceIndex 0 (IMDS needs a primary ENI)",
                    inst.id
                ));
            }
        }
        self.faults.validate()?;
        Ok(subnets)
    }
}

const DEMO_JSON: &str = r#"{
  "accountId": "111122223333",
  "vpcs": [{"id": "vpc-0sim0000000000001", "cidr": "198.18.0.0/16", "ipv6Cidr": "2001:db8:100::/56"}],
  "subnets": [
    {"id": "subnet-0sim000000000001", "vpcId": "vpc-0sim0000000000001", "availabilityZone": "us-west-2a",
     "ipv4Cidr": "198.18.0.0/24", "ipv6Cidr": null},
    {"id": "subnet-0sim000000000002", "vpcId": "vpc-0sim0000000000001", "availabilityZone": "us-west-2a",
     "ipv4Cidr": "198.18.1.0/24", "ipv6Cidr": "2001:db8:100:1::/64"}],
  "instances": [
    {"id": "i-0a1b2c3d4e5f60001", "type": "m5.large", "region": "us-west-2", "availabilityZone": "us-west-2a", "imdsPort": 0, "role": "eks-node-role"},
    {"id": "i-0a1b2c3d4e5f60002", "type": "m5.large", "region": "us-west-2", "availabilityZone": "us-west-2a", "imdsPort": 0, "role": "eks-node-role"}],
  "enis": [
    {"id": "eni-0a000000000000001", "mac": "02:00:c6:12:00:01", "instanceId": "i-0a1b2c3d4e5f60001", "deviceIndex": 0,
     "subnetId": "subnet-0sim000000000001", "primaryIp": "198.18.0.10", "tags": {}},
    {"id": "eni-0b000000000000001", "mac": "02:00:c6:12:01:01", "instanceId": "i-0a1b2c3d4e5f60001", "deviceIndex": 1,
     "subnetId": "subnet-0sim000000000002", "primaryIp": "198.18.1.10", "tags": {"node.k8s.amazonaws.com/no_manage": "true"}},
    {"id": "eni-0a000000000000002", "mac": "02:00:c6:12:00:02", "instanceId": "i-0a1b2c3d4e5f60002", "deviceIndex": 0,
     "subnetId": "subnet-0sim000000000001", "primaryIp": "198.18.0.11", "tags": {}},
    {"id": "eni-0b000000000000002", "mac": "02:00:c6:12:01:02", "instanceId": "i-0a1b2c3d4e5f60002", "deviceIndex": 1,
     "subnetId": "subnet-0sim000000000002", "primaryIp": "198.18.1.11", "tags": {"node.k8s.amazonaws.com/no_manage": "true"}},
    {"id": "eni-0c000000000000001", "mac": "02:00:c6:12:01:03", "instanceId": "i-0a1b2c3d4e5f60001", "deviceIndex": 2,
     "subnetId": "subnet-0sim000000000002", "primaryIp": "198.18.1.12", "tags": {}}],
  "faults": {}
}"#;
