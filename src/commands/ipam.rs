//! IPAM mode ADD: the pod's addresses come from its own request — Multus's `ips` capability
//! (`runtimeConfig.ips`), then `CNI_ARGS` `IP=`, then the config's `addresses` — assigned exactly
//! as chained mode assigns them; without one, EC2 chooses a free address of the master's ENI
//! (count-based assign), which no DHCP lease or reserved range can collide with. Either way the
//! attachment is recorded in the same store, so DEL, CHECK, GC and the agent treat it alike.

use super::add::{attach, check_count, Caller};
use super::eni::{batched_ec2, checked_eni, find_master};
use super::errors::from_cloud;
use super::release::{release_locked, unassign_held};
use super::{list, unknown, Ctx, Summary};
use crate::cloud::{Aws, CloudError, Ec2, EniFacts};
use crate::cni::{CniError, CniVersion};
use crate::config::ipam::{IpamConfig, StaticAddress};
use crate::node::Host;
use crate::store::{now_unix, Attachment, Phase};
use serde_json::{json, Value};
use std::net::IpAddr;

pub async fn add<A: Aws, H: Host>(
    ctx: &Ctx<'_, A, H>,
    ipam: &IpamConfig,
) -> Result<(Value, Summary), CniError> {
    let (env, config, store) = (ctx.env, ctx.config, ctx.store);
    let wanted = requested(ctx, ipam)?;
    let master = find_master(ctx.host, config, env.netns.as_deref(), &env.ifname)?;
    let addrs: Vec<IpAddr> = wanted.iter().map(|s| s.ip).collect();
    let eni = checked_eni(store, ctx.aws, &master, config, &addrs, ctx.deadline).await?;
    let summary = if !wanted.is_empty() {
        attach(ctx, &master, &eni, &addrs, Caller::Ipam).await?
    } else if let Some(recorded) = recorded_on(ctx, &eni.facts.eni_id)? {
        // A repeated ADD re-asserts what EC2 chose the first time, as chained mode would.
        attach(ctx, &master, &eni, &recorded, Caller::Ipam).await?
    } else {
        check_families(&eni.facts, ipam)?;
        chosen_by_ec2(ctx, ipam, &master.mac, &eni.facts).await?
    };
    let result = ipam_result(
        ctx.conf.cni_version,
        &eni.facts,
        &wanted,
        &summary.addresses,
        ipam,
    );
    Ok((result, summary))
}

/// The static addresses the pod asked for, from the first source that names any.
fn requested<A, H>(ctx: &Ctx<'_, A, H>, ipam: &IpamConfig) -> Result<Vec<StaticAddress>, CniError> {
    let runtime: Vec<StaticAddress> =
        match ctx.conf.raw.get("runtimeConfig").and_then(|r| r.get("ips")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    let text = v.as_str().ok_or_else(|| {
                        CniError::invalid_config(format!(
                            "runtimeConfig \"ips\" entry {v} is not a string"
                        ))
                    })?;
                    StaticAddress::parse(text, "runtimeConfig \"ips\"")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(CniError::invalid_config(
                    "runtimeConfig \"ips\" must be a list",
                ))
            }
        };
    let from_args: Vec<StaticAddress> = match ctx.env.arg("IP") {
        Some(text) if !text.is_empty() => text
            .split(',')
            .map(|t| StaticAddress::parse(t.trim(), "CNI_ARGS IP"))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let chosen = [runtime, from_args, ipam.addresses.clone()]
        .into_iter()
        .find(|list| !list.is_empty())
        .unwrap_or_default();
    check_count(chosen.len(), &ctx.env.ifname)?;
    Ok(chosen)
}

/// What this attachment's record already holds on `eni`, from an earlier ADD.
fn recorded_on<A, H>(ctx: &Ctx<'_, A, H>, eni: &str) -> Result<Option<Vec<IpAddr>>, CniError> {
    Ok(ctx
        .store
        .get(&ctx.key())?
        .filter(|p| p.eni_id == eni && !p.addresses.is_empty())
        .map(|p| p.addresses))
}

/// A family asked for must exist in the ENI's subnet.
fn check_families(facts: &EniFacts, ipam: &IpamConfig) -> Result<(), CniError> {
    for (wanted, cidrs, family, key) in [
        (ipam.ipv4, facts.subnet_ipv4_cidrs.len(), "IPv4", "ipv4"),
        (ipam.ipv6, facts.subnet_ipv6_cidrs.len(), "IPv6", "ipv6"),
    ] {
        if wanted && cidrs == 0 {
            return Err(CniError::invalid_config(format!(
                "ipam \"{key}\" is true, but subnet {} of {} has no {family} CIDR",
                facts.subnet_id, facts.eni_id
            ))
            .with_details(format!(
                "set \"{key}\": false, or add an {family} CIDR to the subnet"
            )));
        }
    }
    Ok(())
}

/// Count-based assign: EC2 picks the addresses. The write-ahead record keeps what the ENI held
/// before, so that a retry after an unknown outcome finds what EC2 chose instead of asking for
/// another ([`super::unknown`]); the count call itself is never repeated after an unknown outcome.
async fn chosen_by_ec2<A: Aws, H: Host>(
    ctx: &Ctx<'_, A, H>,
    ipam: &IpamConfig,
    mac: &str,
    facts: &EniFacts,
) -> Result<Summary, CniError> {
    let store = ctx.store;
    let eni = facts.eni_id.clone();
    let _count = store.lock_count_assign(mac, ctx.deadline)?;
    let previous = store.get(&ctx.key())?;
    let unresolved = previous
        .as_ref()
        .filter(|p| unknown::is_unresolved(p) && p.eni_id == eni)
        .cloned();
    if let Some(old) = previous.filter(|p| !p.addresses.is_empty() && unresolved.is_none()) {
        let _locks = store.lock_addresses(&old.addresses, ctx.deadline)?;
        release_locked(store, ctx.aws, &old, ctx.deadline).await?;
    }
    let mut record = match unresolved {
        Some(old) => {
            // An earlier attempt's outcome is unknown: what it got is on the ENI now.
            let found = unknown::appeared(store, ctx.aws, &old).await?;
            let (keep, extra) = unknown::keep_one_per_family(&found);
            if !extra.is_empty() {
                let ec2 = super::eni::ec2_for(ctx.aws, &eni).await?;
                tracing::warn!(eni = %eni, extra = %list(&extra), "an unknown outcome was carried out more than once: giving the extra addresses back");
                unassign_held(ec2, &eni, &extra).await?;
            }
            let mut r = old;
            r.addresses = keep;
            r
        }
        None => {
            let view = super::eni::ec2_for(ctx.aws, &eni)
                .await?
                .describe_eni(&eni)
                .await
                .map_err(|e| from_cloud(&e, &format!("list the addresses {eni} holds")))?;
            Attachment {
                network: ctx.conf.name.clone(),
                container_id: ctx.env.container_id.clone(),
                ifname: ctx.env.ifname.clone(),
                eni_id: eni.clone(),
                mac: mac.to_string(),
                addresses: Vec::new(),
                phase: Phase::Assigning,
                created_unix: now_unix(),
                netns: ctx.env.netns.clone(),
                pod: ctx.env.pod(),
                instance_id: facts.instance_id.clone(),
                adopted: Vec::new(),
                by_ipam: true,
                follow: None,
                release_error: None,
                committed_unix_ms: None,
                eni_before: Some(unknown::listed(&view)),
            }
        }
    };
    crate::crash::point("add:before-record");
    store.put(&record)?;
    crate::crash::point("add:before-ec2");
    let ec2 = batched_ec2(store, ctx.aws, &eni, ctx.deadline).await?;
    let key = record.key();
    // Keep the record while the outcome is unknown: the retry, DEL or the agent resolves it.
    let fail = |e: &CloudError, subject: String| -> Result<Summary, CniError> {
        let error = from_cloud(e, &subject);
        if !matches!(e, CloudError::Transient { .. }) && !e.maybe_applied() {
            store.remove(&key)?;
        }
        Err(error)
    };
    if ipam.ipv4 && !record.addresses.iter().any(IpAddr::is_ipv4) {
        match ec2.assign_ipv4_count(&eni, 1).await {
            Ok(v4) => record.addresses.extend(v4.into_iter().map(IpAddr::V4)),
            Err(e) => return fail(&e, format!("have EC2 choose an IPv4 address on {eni}")),
        }
        store.put(&record)?;
    }
    if ipam.ipv6 && !record.addresses.iter().any(IpAddr::is_ipv6) {
        match ec2.assign_ipv6_count(&eni, 1).await {
            Ok(v6) => record.addresses.extend(v6.into_iter().map(IpAddr::V6)),
            Err(e) => {
                let subject = format!("have EC2 choose an IPv6 address on {eni}");
                if !matches!(e, CloudError::Transient { .. }) && !e.maybe_applied() {
                    // Nothing half-done may stay: give back the IPv4 EC2 chose for this pod.
                    unassign_held(&ec2, &eni, &record.addresses).await?;
                }
                return fail(&e, subject);
            }
        }
    }
    crate::crash::point("add:after-ec2");
    record.phase = Phase::Assigned;
    record.committed_unix_ms = Some(crate::store::now_unix_ms());
    record.eni_before = None;
    store.put(&record)?;
    crate::crash::point("add:after-record");
    Ok(Summary {
        eni: Some(eni),
        note: format!("EC2 chose {}", list(&record.addresses)),
        addresses: record.addresses,
        ..Summary::default()
    })
}

/// The IPAM result: each address with its prefix (the source's, else the subnet's), the VPC
/// router as IPv4 gateway (the subnet's first host), the config's routes.
fn ipam_result(
    version: CniVersion,
    facts: &EniFacts,
    wanted: &[StaticAddress],
    addrs: &[IpAddr],
    ipam: &IpamConfig,
) -> Value {
    let ips: Vec<Value> = addrs
        .iter()
        .map(|a| {
            let given = wanted.iter().find(|w| w.ip == *a).and_then(|w| w.prefix);
            let mut ip = match a {
                IpAddr::V4(v4) => {
                    let net = facts.subnet_ipv4_cidrs.iter().find(|c| c.contains(*v4));
                    let prefix = given.or(net.map(|n| n.prefix())).unwrap_or(32);
                    let mut ip = json!({"address": format!("{a}/{prefix}")});
                    if let Some(n) = net {
                        let router = std::net::Ipv4Addr::from(u32::from(n.network()) + 1);
                        ip["gateway"] = json!(router.to_string());
                    }
                    ip
                }
                IpAddr::V6(v6) => {
                    let net = facts.subnet_ipv6_cidrs.iter().find(|c| c.contains(*v6));
                    let prefix = given.or(net.map(|n| n.prefix())).unwrap_or(128);
                    json!({"address": format!("{a}/{prefix}")})
                }
            };
            if version.ips_carry_version() {
                ip["version"] = json!(if a.is_ipv4() { "4" } else { "6" });
            }
            ip
        })
        .collect();
    json!({
        "cniVersion": version.as_str(),
        "ips": ips,
        "routes": ipam.routes,
        "dns": {},
    })
}
