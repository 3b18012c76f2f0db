//! IMDSv2 for one instance: token handling and the metadata paths the plugin reads.

use crate::engine::Engine;
use crate::util::iso8601;
use crate::world::Instance;
use crate::EniState;
use std::time::{Duration, SystemTime};

pub(crate) const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
pub(crate) const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    /// Set on a successful token PUT: the TTL header echoed back.
    pub ttl: Option<u64>,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        body: body.into(),
        ttl: None,
    }
}

fn not_found() -> Reply {
    reply(404, NOT_FOUND_HTML)
}

const NOT_FOUND_HTML: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n <head>\n  <title>404 - Not Found</title>\n </head>\n <body>\n  <h1>404 - Not Found</h1>\n </body>\n</html>\n";

/// Request facts the handler needs, already pulled out of the HTTP request.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub ttl_header: Option<&'a str>,
    pub token: Option<&'a str>,
}

pub(crate) async fn handle(engine: &Engine, instance_id: &str, req: Request<'_>) -> Reply {
    let (latency, down, token_refused) = engine.begin_imds(instance_id);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if down {
        return reply(503, "Service Unavailable");
    }
    if req.path == "/latest/api/token" {
        if req.method != "PUT" {
            return reply(405, "Method Not Allowed");
        }
        if token_refused {
            return reply(403, "Forbidden");
        }
        let ttl = req
            .ttl_header
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|t| (1..=21_600).contains(t));
        return match ttl {
            None => reply(400, "Bad Request"),
            Some(t) => Reply {
                status: 200,
                body: engine.issue_token(instance_id, Duration::from_secs(t)),
                ttl: Some(t),
            },
        };
    }
    if req.method != "GET" && req.method != "HEAD" {
        return reply(405, "Method Not Allowed");
    }
    if !req
        .token
        .is_some_and(|t| engine.token_valid(instance_id, t))
    {
        return reply(401, "Unauthorized");
    }
    let Some(inst) = engine
        .model
        .world
        .instances
        .iter()
        .find(|i| i.id == instance_id)
    else {
        return not_found();
    };
    match metadata(engine, inst, req.path) {
        Some(body) => reply(200, body),
        None => not_found(),
    }
}

fn lines<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn hostname(ip: std::net::Ipv4Addr, region: &str) -> String {
    format!(
        "ip-{}.{region}.compute.internal",
        ip.to_string().replace('.', "-")
    )
}

/// The access key id of the instance role's credentials; also how the EC2 side recognises the caller.
pub(crate) fn imds_access_key(inst: &Instance) -> String {
    let hex = format!(
        "{:0>16}",
        inst.id.trim_start_matches("i-").to_ascii_uppercase()
    );
    format!("ASIA{}", &hex[hex.len() - 16..])
}

fn credentials_json(inst: &Instance) -> String {
    let now = SystemTime::now();
    serde_json::json!({
        "Code": "Success",
        "LastUpdated": iso8601(now, false),
        "Type": "AWS-HMAC",
        "AccessKeyId": imds_access_key(inst),
        "SecretAccessKey": format!("simulatedSecretAccessKeyFor{}", inst.id),
        "Token": format!("SimulatedSessionToken/{}/{}", inst.id, inst.role.as_deref().unwrap_or("")),
        "Expiration": iso8601(now + Duration::from_secs(6 * 3600), false),
    })
    .to_string()
}

fn metadata(engine: &Engine, inst: &Instance, path: &str) -> Option<String> {
    let world = &engine.model.world;
    let view = engine.view();
    let mut enis: Vec<&EniState> = view
        .iter()
        .filter(|e| e.instance_id.as_deref() == Some(inst.id.as_str()))
        .collect();
    enis.sort_by_key(|e| e.device_index);
    let primary = enis.iter().find(|e| e.device_index == Some(0)).copied()?;
    let trimmed = path.trim_end_matches('/');
    if trimmed == "/latest/dynamic/instance-identity/document" {
        let doc = serde_json::json!({
            "accountId": world.account_id,
            "architecture": "x86_64",
            "availabilityZone": inst.availability_zone,
            "billingProducts": null,
            "devpayProductCodes": null,
            "marketplaceProductCodes": null,
            "imageId": "ami-0sim00000000000001",
            "instanceId": inst.id,
            "instanceType": inst.instance_type,
            "kernelId": null,
            "pendingTime": "2024-01-01T00:00:00Z",
            "privateIp": primary.primary_ip.to_string(),
            "ramdiskId": null,
            "region": inst.region,
            "version": "2017-09-30",
        });
        return serde_json::to_string_pretty(&doc).ok();
    }
    if trimmed == "/latest/dynamic" {
        return Some("instance-identity/".into());
    }
    if trimmed == "/latest/dynamic/instance-identity" {
        return Some("document".into());
    }
    if trimmed == "/latest" {
        return Some(lines(["api/", "dynamic/", "meta-data/"]));
    }
    let rest = if trimmed == "/latest/meta-data" {
        ""
    } else {
        trimmed.strip_prefix("/latest/meta-data/")?
    };
    let host = hostname(primary.primary_ip, &inst.region);
    Some(match rest {
        "" => lines([
            "ami-id",
            "hostname",
            "iam/",
            "instance-id",
            "instance-type",
            "local-hostname",
            "local-ipv4",
            "mac",
            "network/",
            "placement/",
        ]),
        "ami-id" => "ami-0sim00000000000001".into(),
        "instance-id" => inst.id.clone(),
        "instance-type" => inst.instance_type.clone(),
        "hostname" | "local-hostname" => host,
        "local-ipv4" => primary.primary_ip.to_string(),
        "mac" => primary.mac.clone(),
        "placement" => lines(["availability-zone", "region"]),
        "placement/region" => inst.region.clone(),
        "placement/availability-zone" => inst.availability_zone.clone(),
        "network" => "interfaces/".into(),
        "network/interfaces" => "macs/".into(),
        "network/interfaces/macs" => lines(enis.iter().map(|e| format!("{}/", e.mac))),
        "iam" => lines(["info", "security-credentials/"]),
        "iam/info" => {
            let role = inst.role.as_ref()?;
            serde_json::json!({
                "Code": "Success",
                "LastUpdated": iso8601(SystemTime::now(), false),
                "InstanceProfileArn": format!("arn:aws:iam::{}:instance-profile/{role}", world.account_id),
                "InstanceProfileId": "AIPASIMULATED0000001",
            })
            .to_string()
        }
        "iam/security-credentials" => inst.role.clone()?,
        r => {
            if let Some(role) = r.strip_prefix("iam/security-credentials/") {
                if inst.role.as_deref() != Some(role) {
                    return None;
                }
                return Some(credentials_json(inst));
            }
            let per_mac = r.strip_prefix("network/interfaces/macs/")?;
            let (mac, key) = per_mac.split_once('/').unwrap_or((per_mac, ""));
            let e = enis.iter().find(|e| e.mac == mac)?;
            return mac_key(engine, e, key, &inst.region);
        }
    })
}

fn mac_key(engine: &Engine, e: &EniState, key: &str, region: &str) -> Option<String> {
    let sub = &engine.model.subnets[&e.subnet_id];
    let vpc = engine
        .model
        .world
        .vpcs
        .iter()
        .find(|v| v.id == sub.vpc_id)?;
    Some(match key {
        "" => {
            let mut keys = vec![
                "device-number",
                "interface-id",
                "local-hostname",
                "local-ipv4s",
                "mac",
                "owner-id",
                "subnet-id",
                "subnet-ipv4-cidr-block",
                "vpc-id",
                "vpc-ipv4-cidr-block",
                "vpc-ipv4-cidr-blocks",
            ];
            if !e.ipv6s.is_empty() {
                keys.push("ipv6s");
            }
            if sub.v6.is_some() {
                keys.push("subnet-ipv6-cidr-blocks");
            }
            if vpc.ipv6_cidr.is_some() {
                keys.push("vpc-ipv6-cidr-blocks");
            }
            keys.sort_unstable();
            lines(keys)
        }
        "device-number" => e.device_index?.to_string(),
        "interface-id" => e.id.clone(),
        "local-hostname" => hostname(e.primary_ip, region),
        "local-ipv4s" => lines(
            std::iter::once(e.primary_ip)
                .chain(e.private_ips.iter().copied())
                .map(|a| a.to_string()),
        ),
        "ipv6s" if e.ipv6s.is_empty() => return None,
        "ipv6s" => lines(e.ipv6s.iter().map(|a| a.to_string())),
        "mac" => e.mac.clone(),
        "owner-id" => engine.model.world.account_id.clone(),
        "subnet-id" => e.subnet_id.clone(),
        "subnet-ipv4-cidr-block" => sub.v4.to_string(),
        "subnet-ipv6-cidr-blocks" => sub.v6?.to_string(),
        "vpc-id" => sub.vpc_id.clone(),
        "vpc-ipv4-cidr-block" | "vpc-ipv4-cidr-blocks" => vpc.cidr.clone(),
        "vpc-ipv6-cidr-blocks" => vpc.ipv6_cidr.clone()?,
        _ => return None,
    })
}
