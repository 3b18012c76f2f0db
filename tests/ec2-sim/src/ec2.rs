//! EC2 Query protocol: parameters in, XML out.

use crate::engine::{region_of, Ec2Error, Engine};
use crate::util::{glob_match, uuid, xml_escape};
use crate::world::{is_hex_id, ACTIONS};
use crate::EniState;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// A finished EC2 reply plus what the log line needs.
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub request_id: String,
    pub action: String,
    pub outcome: String,
}

/// Query parameters after decoding; a repeated key keeps its last value.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params(pairs.into_iter().collect())
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// Values of `prefix.1`, `prefix.2`, … ordered by index.
    pub(crate) fn list(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, val)| {
                let n = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
                Some((n, val.clone()))
            })
            .collect();
        v.sort_by_key(|(n, _)| *n);
        v.into_iter().map(|(_, s)| s).collect()
    }

    pub(crate) fn bool(&self, k: &str) -> Result<Option<bool>, Ec2Error> {
        match self.get(k) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(Ec2Error::invalid(format!(
                "Value ({v}) for parameter {k} is invalid. Expected 'true' or 'false'."
            ))),
        }
    }

    /// `Filter.N.Name` with `Filter.N.Value.M`, ordered by N.
    pub(crate) fn filters(&self) -> Result<Vec<(String, Vec<String>)>, Ec2Error> {
        let mut idx: Vec<u32> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix("Filter.")?.split('.').next()?.parse().ok())
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|n| {
                let name = self.get(&format!("Filter.{n}.Name")).ok_or_else(|| {
                    Ec2Error::new(
                        "MissingParameter",
                        format!("The request must contain the parameter Filter.{n}.Name"),
                    )
                })?;
                Ok((name.to_string(), self.list(&format!("Filter.{n}.Value"))))
            })
            .collect()
    }

    /// Tags of `TagSpecification.N` whose `ResourceType` is `resource_type`; any other type is
    /// `InvalidParameterValue`, as EC2 tags only the resource the action creates.
    pub(crate) fn tag_specifications(
        &self,
        resource_type: &str,
    ) -> Result<BTreeMap<String, String>, Ec2Error> {
        let mut tags = BTreeMap::new();
        for n in 1.. {
            let prefix = format!("TagSpecification.{n}");
            if !self.0.keys().any(|k| k.starts_with(&format!("{prefix}."))) {
                break;
            }
            let rt = self.get(&format!("{prefix}.ResourceType")).unwrap_or("");
            if rt != resource_type {
                return Err(Ec2Error::invalid(format!(
                    "'{rt}' is not a valid taggable resource type for this operation; expected '{resource_type}'"
                )));
            }
            for m in 1.. {
                let Some(k) = self.get(&format!("{prefix}.Tag.{m}.Key")) else {
                    break;
                };
                if k.is_empty() || k.starts_with("aws:") {
                    return Err(Ec2Error::invalid(format!(
                        "Tag key '{k}' is invalid: empty, or in the reserved aws: namespace"
                    )));
                }
                let v = self.get(&format!("{prefix}.Tag.{m}.Value")).unwrap_or("");
                tags.insert(k.to_string(), v.to_string());
            }
        }
        Ok(tags)
    }

    pub(crate) fn require(&self, k: &str) -> Result<&str, Ec2Error> {
        self.get(k).filter(|v| !v.is_empty()).ok_or_else(|| {
            Ec2Error::new(
                "MissingParameter",
                format!("The request must contain the parameter {k}"),
            )
        })
    }
}

fn ok_body(action: &str, request_id: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{XMLNS}\">\n    <requestId>{request_id}</requestId>\n{inner}</{action}Response>"
    )
}

pub(crate) fn error_body(e: &Ec2Error, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
        xml_escape(&e.code),
        xml_escape(&e.message)
    )
}

/// Runs one EC2 call in the documented order: count, latency, auth, throttle, injected error, deny, execute.
pub(crate) async fn handle(engine: &Engine, authorization: Option<&str>, params: Params) -> Reply {
    let request_id = uuid();
    let action: String = params
        .get("Action")
        .unwrap_or("")
        .chars()
        .take(64)
        .collect();
    let latency = engine.begin_ec2(&action);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let result = match authorization {
        None => Err(Ec2Error::new(
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
        .status(401)),
        Some(a) if !a.trim_start().starts_with("AWS4-HMAC-SHA256") => Err(Ec2Error::new(
            "IncompleteSignature",
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm",
        )),
        Some(a) => {
            if !engine.admit(&action) {
                Err(Ec2Error::new("RequestLimitExceeded", "Request limit exceeded.").status(503))
            } else if let Some(e) = engine.injected_error(&action) {
                Err(e)
            } else if let Some(e) = engine.denied(&action, a, eni_resource(&action, &params)) {
                Err(e)
            } else {
                execute(engine, &action, &params)
            }
        }
    };
    match result {
        Ok(inner) => Reply {
            status: 200,
            body: ok_body(&action, &request_id, &inner),
            request_id,
            action,
            outcome: "ok".into(),
        },
        Err(e) => Reply {
            status: e.status,
            body: error_body(&e, &request_id),
            request_id,
            action,
            outcome: e.code,
        },
    }
}

/// The ENI an action is authorised against; Describe* take no resource-level permissions in EC2.
fn eni_resource<'a>(action: &str, p: &'a Params) -> Option<&'a str> {
    let on_eni = action.ends_with("Addresses")
        || matches!(
            action,
            "AttachNetworkInterface" | "DeleteNetworkInterface" | "ModifyNetworkInterfaceAttribute"
        );
    on_eni.then(|| p.get("NetworkInterfaceId").unwrap_or("*"))
}

fn execute(engine: &Engine, action: &str, p: &Params) -> Result<String, Ec2Error> {
    if let Some(r) = crate::reservations::execute(engine, action, p) {
        return r;
    }
    if let Some(r) = crate::interfaces::execute(engine, action, p) {
        return r;
    }
    match action {
        "AssignPrivateIpAddresses" => {
            let eni = p.require("NetworkInterfaceId")?;
            if !p.list("Ipv4Prefix").is_empty() || p.get("Ipv4PrefixCount").is_some() {
                return Err(unsupported_prefixes());
            }
            let allow = p.bool("AllowReassignment")?.unwrap_or(false);
            let addrs = p.list("PrivateIpAddress");
            let got = engine.assign_private(
                eni,
                &addrs,
                p.get("SecondaryPrivateIpAddressCount"),
                allow,
            )?;
            let mut x = format!(
                "    <networkInterfaceId>{}</networkInterfaceId>\n    <assignedPrivateIpAddressesSet>\n",
                xml_escape(eni)
            );
            for a in got {
                let _ = writeln!(
                    x,
                    "        <item><privateIpAddress>{a}</privateIpAddress></item>"
                );
            }
            x.push_str("    </assignedPrivateIpAddressesSet>\n    <assignedIpv4PrefixSet/>\n");
            Ok(x)
        }
        "UnassignPrivateIpAddresses" => {
            let eni = p.require("NetworkInterfaceId")?;
            if !p.list("Ipv4Prefix").is_empty() {
                return Err(unsupported_prefixes());
            }
            engine.unassign_private(eni, &p.list("PrivateIpAddress"))?;
            Ok("    <return>true</return>\n".into())
        }
        "AssignIpv6Addresses" => {
            let eni = p.require("NetworkInterfaceId")?;
            if !p.list("Ipv6Prefix").is_empty() || p.get("Ipv6PrefixCount").is_some() {
                return Err(unsupported_prefixes());
            }
            let got =
                engine.assign_ipv6(eni, &p.list("Ipv6Addresses"), p.get("Ipv6AddressCount"))?;
            let mut x = String::from("    <assignedIpv6Addresses>\n");
            for a in got {
                let _ = writeln!(x, "        <item>{a}</item>");
            }
            let _ = write!(
                x,
                "    </assignedIpv6Addresses>\n    <assignedIpv6PrefixSet/>\n    <networkInterfaceId>{}</networkInterfaceId>\n",
                xml_escape(eni)
            );
            Ok(x)
        }
        "UnassignIpv6Addresses" => {
            let eni = p.require("NetworkInterfaceId")?;
            if !p.list("Ipv6Prefix").is_empty() {
                return Err(unsupported_prefixes());
            }
            let got = engine.unassign_ipv6(eni, &p.list("Ipv6Addresses"))?;
            let mut x = format!(
                "    <networkInterfaceId>{}</networkInterfaceId>\n    <unassignedIpv6Addresses>\n",
                xml_escape(eni)
            );
            for a in got {
                let _ = writeln!(x, "        <item>{a}</item>");
            }
            x.push_str("    </unassignedIpv6Addresses>\n    <unassignedIpv6PrefixSet/>\n");
            Ok(x)
        }
        "DescribeNetworkInterfaces" => describe_network_interfaces(engine, p),
        "DescribeInstances" => describe_instances(engine, p),
        "DescribeSubnets" => describe_subnets(engine, p),
        "DescribeInstanceTypes" => crate::types::describe_instance_types(&p.list("InstanceType")),
        "" => Err(Ec2Error::new(
            "MissingAction",
            "The request must contain the parameter Action",
        )),
        other => Err(Ec2Error::new(
            "InvalidAction",
            format!(
                "The action {other} is not valid for this web service. The simulator implements: {}",
                ACTIONS.join(", ")
            ),
        )),
    }
}

/// A `<tagSet>` at the given indentation.
pub(crate) fn tag_set_xml(x: &mut String, indent: &str, tags: &BTreeMap<String, String>) {
    if tags.is_empty() {
        let _ = writeln!(x, "{indent}<tagSet/>");
        return;
    }
    let _ = writeln!(x, "{indent}<tagSet>");
    for (k, v) in tags {
        let _ = writeln!(
            x,
            "{indent}    <item><key>{}</key><value>{}</value></item>",
            xml_escape(k),
            xml_escape(v)
        );
    }
    let _ = writeln!(x, "{indent}</tagSet>");
}

fn unsupported_prefixes() -> Ec2Error {
    Ec2Error::new(
        "UnsupportedOperation",
        "The simulator does not implement prefix delegation",
    )
}

/// Checks `MaxResults`/`NextToken`; returns (offset, page size).
pub(crate) fn paging(p: &Params, with_ids: bool) -> Result<(usize, Option<usize>), Ec2Error> {
    let max = match p.get("MaxResults") {
        None => None,
        Some(v) => {
            if with_ids {
                return Err(Ec2Error::new(
                    "InvalidParameterCombination",
                    "The parameter MaxResults cannot be used with explicit resource ids",
                ));
            }
            match v.parse::<usize>() {
                Ok(n) if (5..=1000).contains(&n) => Some(n),
                _ => {
                    return Err(Ec2Error::invalid(format!(
                        "Value ({v}) for parameter maxResults is invalid. Expecting a value between 5 and 1000."
                    )))
                }
            }
        }
    };
    let start = match p.get("NextToken") {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("sim-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                Ec2Error::new("InvalidPaginationToken", format!("Invalid NextToken: {t}"))
            })?,
    };
    Ok((start, max))
}

pub(crate) fn page<T>(items: Vec<T>, start: usize, max: Option<usize>) -> (Vec<T>, Option<String>) {
    let total = items.len();
    let end = max.map_or(total, |m| start.saturating_add(m).min(total));
    let next = (end < total).then(|| format!("sim-{end}"));
    (
        items
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect(),
        next,
    )
}

pub(crate) fn matches_any(values: &[String], candidates: &[String]) -> bool {
    values
        .iter()
        .any(|v| candidates.iter().any(|c| glob_match(v, c)))
}

fn dns_name(ip: Ipv4Addr, az: &str) -> String {
    format!(
        "ip-{}.{}.compute.internal",
        ip.to_string().replace('.', "-"),
        region_of(az)
    )
}

fn eni_filter_values(engine: &Engine, e: &EniState, name: &str) -> Option<Vec<String>> {
    let sub = &engine.model.subnets[&e.subnet_id];
    let all_v4 = || {
        std::iter::once(e.primary_ip)
            .chain(e.private_ips.iter().copied())
            .map(|a| a.to_string())
            .collect()
    };
    Some(match name {
        "network-interface-id" => vec![e.id.clone()],
        "mac-address" => vec![e.mac.clone()],
        "attachment.instance-id" => e.instance_id.iter().cloned().collect(),
        "attachment.device-index" => e.device_index.iter().map(|d| d.to_string()).collect(),
        "attachment.status" => vec![if e.instance_id.is_some() {
            "attached"
        } else {
            "detached"
        }
        .into()],
        "addresses.private-ip-address" | "private-ip-address" => all_v4(),
        "ipv6-addresses.ipv6-address" | "ipv6-address" => {
            e.ipv6s.iter().map(|a| a.to_string()).collect()
        }
        "subnet-id" => vec![e.subnet_id.clone()],
        "vpc-id" => vec![sub.vpc_id.clone()],
        "availability-zone" => vec![sub.az.clone()],
        "status" => vec![if e.instance_id.is_some() {
            "in-use"
        } else {
            "available"
        }
        .into()],
        "interface-type" => vec!["interface".into()],
        "owner-id" => vec![engine.model.world.account_id.clone()],
        "tag-key" => e.tags.keys().cloned().collect(),
        n => match n.strip_prefix("tag:") {
            Some(k) => e.tags.get(k).cloned().into_iter().collect(),
            None => return None,
        },
    })
}

pub(crate) fn invalid_filter(name: &str) -> Ec2Error {
    Ec2Error::invalid(format!("The filter '{name}' is invalid"))
}

fn describe_network_interfaces(engine: &Engine, p: &Params) -> Result<String, Ec2Error> {
    let ids = p.list("NetworkInterfaceId");
    // Ids are checked against the lagged view, so a deleted ENI is NotFound only once readers see it gone.
    let view = engine.view();
    for id in &ids {
        engine.find_eni(&view, id)?;
    }
    let filters = p.filters()?;
    let (start, max) = paging(p, !ids.is_empty())?;
    let mut selected = Vec::new();
    for e in view.iter() {
        if !ids.is_empty() && !ids.contains(&e.id) {
            continue;
        }
        let mut keep = true;
        for (name, values) in &filters {
            let have = eni_filter_values(engine, e, name).ok_or_else(|| invalid_filter(name))?;
            keep &= matches_any(values, &have);
        }
        if keep {
            selected.push(e);
        }
    }
    let (items, next) = page(selected, start, max);
    let mut x = String::from("    <networkInterfaceSet>\n");
    for e in items {
        eni_xml(engine, &mut x, e, false);
    }
    x.push_str("    </networkInterfaceSet>\n");
    if let Some(t) = next {
        let _ = writeln!(x, "    <nextToken>{t}</nextToken>");
    }
    Ok(x)
}

/// One ENI as an `<item>`; `in_instance` selects DescribeInstances' InstanceNetworkInterface shape.
pub(crate) fn eni_xml(engine: &Engine, x: &mut String, e: &EniState, in_instance: bool) {
    let sub = &engine.model.subnets[&e.subnet_id];
    let owner = &engine.model.world.account_id;
    let hexpart = e.id.trim_start_matches("eni-");
    let attached = e.instance_id.is_some();
    let _ = write!(
        x,
        "        <item>\n            <networkInterfaceId>{}</networkInterfaceId>\n            <subnetId>{}</subnetId>\n            <vpcId>{}</vpcId>\n",
        xml_escape(&e.id),
        xml_escape(&e.subnet_id),
        xml_escape(&sub.vpc_id)
    );
    if !in_instance {
        let _ = writeln!(
            x,
            "            <availabilityZone>{}</availabilityZone>\n            <requesterManaged>false</requesterManaged>",
            xml_escape(&sub.az)
        );
    }
    let _ = write!(
        x,
        "            <ownerId>{owner}</ownerId>\n            <status>{}</status>\n            <macAddress>{}</macAddress>\n            <privateIpAddress>{}</privateIpAddress>\n            <privateDnsName>{}</privateDnsName>\n            <sourceDestCheck>true</sourceDestCheck>\n            <interfaceType>interface</interfaceType>\n",
        if attached { "in-use" } else { "available" },
        xml_escape(&e.mac),
        e.primary_ip,
        dns_name(e.primary_ip, &sub.az)
    );
    if e.description.is_empty() {
        x.push_str("            <description/>\n");
    } else {
        let _ = writeln!(
            x,
            "            <description>{}</description>",
            xml_escape(&e.description)
        );
    }
    if e.security_groups.is_empty() {
        x.push_str("            <groupSet/>\n");
    } else {
        x.push_str("            <groupSet>\n");
        for g in &e.security_groups {
            let _ = writeln!(
                x,
                "                <item><groupId>{}</groupId><groupName>{}</groupName></item>",
                xml_escape(g),
                xml_escape(g)
            );
        }
        x.push_str("            </groupSet>\n");
    }
    if let (Some(iid), Some(dev)) = (&e.instance_id, e.device_index) {
        let attachment = e
            .attachment_id
            .clone()
            .unwrap_or_else(|| format!("eni-attach-{hexpart}"));
        let _ = write!(
            x,
            "            <attachment>\n                <attachmentId>{}</attachmentId>\n",
            xml_escape(&attachment)
        );
        if !in_instance {
            let _ = write!(
                x,
                "                <instanceId>{}</instanceId>\n                <instanceOwnerId>{owner}</instanceOwnerId>\n",
                xml_escape(iid)
            );
        }
        let _ = write!(
            x,
            "                <deviceIndex>{dev}</deviceIndex>\n                <networkCardIndex>0</networkCardIndex>\n                <status>attached</status>\n                <attachTime>2024-01-01T00:00:00.000Z</attachTime>\n                <deleteOnTermination>{}</deleteOnTermination>\n            </attachment>\n",
            e.delete_on_termination
        );
    }
    if !in_instance {
        tag_set_xml(x, "            ", &e.tags);
    }
    x.push_str("            <privateIpAddressesSet>\n");
    let v4 = std::iter::once((e.primary_ip, true)).chain(e.private_ips.iter().map(|a| (*a, false)));
    for (a, primary) in v4 {
        let _ = writeln!(
            x,
            "                <item><privateIpAddress>{a}</privateIpAddress><privateDnsName>{}</privateDnsName><primary>{primary}</primary></item>",
            dns_name(a, &sub.az)
        );
    }
    x.push_str("            </privateIpAddressesSet>\n");
    if e.ipv6s.is_empty() {
        x.push_str("            <ipv6AddressesSet/>\n");
    } else {
        x.push_str("            <ipv6AddressesSet>\n");
        for a in &e.ipv6s {
            let _ = writeln!(
                x,
                "                <item><ipv6Address>{a}</ipv6Address><isPrimaryIpv6>false</isPrimaryIpv6></item>"
            );
        }
        x.push_str("            </ipv6AddressesSet>\n");
    }
    x.push_str("        </item>\n");
}

fn describe_instances(engine: &Engine, p: &Params) -> Result<String, Ec2Error> {
    let world = &engine.model.world;
    let ids = p.list("InstanceId");
    for id in &ids {
        if !is_hex_id(id, "i-") {
            return Err(Ec2Error::new(
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{id}\" (expecting \"i-...\")"),
            ));
        }
        if !world.instances.iter().any(|i| &i.id == id) {
            return Err(Ec2Error::new(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{id}' does not exist"),
            ));
        }
    }
    let filters = p.filters()?;
    let (start, max) = paging(p, !ids.is_empty())?;
    let view = engine.view();
    let mut selected = Vec::new();
    for inst in &world.instances {
        if !ids.is_empty() && !ids.contains(&inst.id) {
            continue;
        }
        let mut enis: Vec<&EniState> = view
            .iter()
            .filter(|e| e.instance_id.as_deref() == Some(inst.id.as_str()))
            .collect();
        enis.sort_by_key(|e| e.device_index);
        let mut keep = true;
        for (name, values) in &filters {
            let per_eni = |f: &str| -> Vec<String> {
                enis.iter()
                    .flat_map(|e| eni_filter_values(engine, e, f).unwrap_or_default())
                    .collect()
            };
            let have: Vec<String> = match name.as_str() {
                "instance-id" => vec![inst.id.clone()],
                "instance-type" => vec![inst.instance_type.clone()],
                "availability-zone" => vec![inst.availability_zone.clone()],
                "instance-state-name" => vec!["running".into()],
                "private-ip-address" => enis
                    .first()
                    .map(|e| e.primary_ip.to_string())
                    .into_iter()
                    .collect(),
                "vpc-id" => per_eni("vpc-id"),
                "subnet-id" => per_eni("subnet-id"),
                "network-interface.network-interface-id" => per_eni("network-interface-id"),
                "network-interface.mac-address" => per_eni("mac-address"),
                "network-interface.addresses.private-ip-address" => per_eni("private-ip-address"),
                "network-interface.ipv6-addresses.ipv6-address" => per_eni("ipv6-address"),
                n => return Err(invalid_filter(n)),
            };
            keep &= matches_any(values, &have);
        }
        if keep {
            selected.push((inst, enis));
        }
    }
    let (items, next) = page(selected, start, max);
    let owner = &world.account_id;
    let mut x = String::from("    <reservationSet>\n");
    for (inst, enis) in items {
        let hexpart = inst.id.trim_start_matches("i-");
        let primary = enis.iter().find(|e| e.device_index == Some(0));
        let _ = write!(
            x,
            "        <item>\n            <reservationId>r-{hexpart}</reservationId>\n            <ownerId>{owner}</ownerId>\n            <groupSet/>\n            <instancesSet>\n                <item>\n                    <instanceId>{}</instanceId>\n                    <imageId>ami-0sim00000000000001</imageId>\n                    <instanceState><code>16</code><name>running</name></instanceState>\n                    <instanceType>{}</instanceType>\n                    <placement><availabilityZone>{}</availabilityZone><tenancy>default</tenancy></placement>\n                    <architecture>x86_64</architecture>\n",
            xml_escape(&inst.id),
            xml_escape(&inst.instance_type),
            xml_escape(&inst.availability_zone)
        );
        if let Some(e) = primary {
            let _ = write!(
                x,
                "                    <privateDnsName>{}</privateDnsName>\n                    <privateIpAddress>{}</privateIpAddress>\n                    <subnetId>{}</subnetId>\n                    <vpcId>{}</vpcId>\n",
                dns_name(e.primary_ip, &inst.availability_zone),
                e.primary_ip,
                xml_escape(&e.subnet_id),
                xml_escape(&engine.model.subnets[&e.subnet_id].vpc_id)
            );
        }
        x.push_str("                    <networkInterfaceSet>\n");
        for e in &enis {
            eni_xml(engine, &mut x, e, true);
        }
        x.push_str("                    </networkInterfaceSet>\n                </item>\n            </instancesSet>\n        </item>\n");
    }
    x.push_str("    </reservationSet>\n");
    if let Some(t) = next {
        let _ = writeln!(x, "    <nextToken>{t}</nextToken>");
    }
    Ok(x)
}

fn describe_subnets(engine: &Engine, p: &Params) -> Result<String, Ec2Error> {
    let world = &engine.model.world;
    let ids = p.list("SubnetId");
    for id in &ids {
        if !world.subnets.iter().any(|s| &s.id == id) {
            return Err(Ec2Error::new(
                "InvalidSubnetID.NotFound",
                format!("The subnet ID '{id}' does not exist"),
            ));
        }
    }
    let filters = p.filters()?;
    let (start, max) = paging(p, !ids.is_empty())?;
    let current = engine.current();
    let mut used: BTreeMap<&str, u64> = BTreeMap::new();
    for e in current.iter() {
        *used.entry(e.subnet_id.as_str()).or_default() += 1 + e.private_ips.len() as u64;
    }
    let mut selected = Vec::new();
    for s in &world.subnets {
        if !ids.is_empty() && !ids.contains(&s.id) {
            continue;
        }
        let mut keep = true;
        for (name, values) in &filters {
            let have: Vec<String> = match name.as_str() {
                "subnet-id" => vec![s.id.clone()],
                "vpc-id" => vec![s.vpc_id.clone()],
                "availability-zone" => vec![s.availability_zone.clone()],
                "cidr-block" | "cidr" | "cidrBlock" => vec![s.ipv4_cidr.clone()],
                "ipv6-cidr-block-association.ipv6-cidr-block" => {
                    s.ipv6_cidr.iter().cloned().collect()
                }
                "state" => vec!["available".into()],
                "owner-id" => vec![world.account_id.clone()],
                n => return Err(invalid_filter(n)),
            };
            keep &= matches_any(values, &have);
        }
        if keep {
            selected.push(s);
        }
    }
    let (items, next) = page(selected, start, max);
    let mut x = String::from("    <subnetSet>\n");
    for s in items {
        let info = &engine.model.subnets[&s.id];
        let size = 1u64 << (32 - u32::from(info.v4.prefix()));
        let free = size
            .saturating_sub(5)
            .saturating_sub(used.get(s.id.as_str()).copied().unwrap_or(0));
        let _ = write!(
            x,
            "        <item>\n            <subnetId>{}</subnetId>\n            <subnetArn>arn:aws:ec2:{}:{}:subnet/{}</subnetArn>\n            <state>available</state>\n            <ownerId>{}</ownerId>\n            <vpcId>{}</vpcId>\n            <cidrBlock>{}</cidrBlock>\n            <availableIpAddressCount>{free}</availableIpAddressCount>\n            <availabilityZone>{}</availabilityZone>\n            <defaultForAz>false</defaultForAz>\n            <mapPublicIpOnLaunch>false</mapPublicIpOnLaunch>\n            <assignIpv6AddressOnCreation>false</assignIpv6AddressOnCreation>\n",
            xml_escape(&s.id),
            xml_escape(region_of(&s.availability_zone)),
            world.account_id,
            xml_escape(&s.id),
            world.account_id,
            xml_escape(&s.vpc_id),
            info.v4,
            xml_escape(&s.availability_zone),
        );
        match info.v6 {
            Some(n) => {
                let _ = write!(
                    x,
                    "            <ipv6CidrBlockAssociationSet>\n                <item>\n                    <ipv6CidrBlock>{n}</ipv6CidrBlock>\n                    <associationId>subnet-cidr-assoc-{}</associationId>\n                    <ipv6CidrBlockState><state>associated</state></ipv6CidrBlockState>\n                </item>\n            </ipv6CidrBlockAssociationSet>\n",
                    xml_escape(s.id.trim_start_matches("subnet-"))
                );
            }
            None => x.push_str("            <ipv6CidrBlockAssociationSet/>\n"),
        }
        x.push_str("            <tagSet/>\n        </item>\n");
    }
    x.push_str("    </subnetSet>\n");
    if let Some(t) = next {
        let _ = writeln!(x, "    <nextToken>{t}</nextToken>");
    }
    Ok(x)
}

/// Parses an admin address list (both families).
pub(crate) fn parse_ips(v: &[String]) -> Result<Vec<IpAddr>, String> {
    v.iter()
        .map(|s| s.parse().map_err(|_| format!("{s:?} is not an IP address")))
        .collect()
}
