//! Launch: for each Multus subnet of the instance's zone, find or create its ENI (tagged
//! no_manage and with the instance), attach it at its device index with DeleteOnTermination, then
//! CONTINUE; on any failure remove what this invocation handled and ABANDON. EC2's eventual
//! consistency right after launch is retried (settle). Terminate: wait (bounded) for the node to
//! drain, detach and delete the instance's ENIs, then CONTINUE.

use crate::aws::{Completion, HookEni, NodeGroupAws, DEVICE_TAG, INSTANCE_TAG};
use crate::config::{HookConfig, WorkerIpMode, REMOVAL_RESERVE};
use crate::drain::{self, Drain};
use crate::event::{LifecycleDetail, LAUNCHING, TERMINATING};
use crate::settle::{settled, AFTER_LAUNCH};
use crate::worker_ip::lowest_free;
use aws_eni_ip::cloud::subnet::SubnetEc2;
use aws_eni_ip::cloud::{CloudError, NO_MANAGE_TAG};
use serde::Serialize;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How many lowest free addresses a static-mode launch tries when others take them first.
const STATIC_ATTEMPTS: usize = 64;

/// One Multus ENI of the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Placed {
    pub eni_id: String,
    pub subnet_id: String,
    pub device_index: i32,
    pub address: Option<Ipv4Addr>,
    /// This invocation created it (false: an earlier delivery did).
    pub created: bool,
}

/// What one invocation did: the function's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub instance_id: String,
    pub transition: &'static str,
    /// CONTINUE or ABANDON.
    pub result: &'static str,
    pub already_completed: bool,
    pub enis: Vec<Placed>,
    pub removed: Vec<String>,
    pub error: Option<String>,
    pub cleanup_errors: Vec<String>,
    /// Terminate only: how the wait for the node to drain ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
}

fn client_token(parts: &[&str]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    format!("aws-eni-ip-{:016x}", h.finish())
}

fn failed(what: String, e: CloudError) -> String {
    format!("{what}: {e}")
}

async fn create(
    cfg: &HookConfig,
    aws: &NodeGroupAws,
    d: &LifecycleDetail,
    subnet_id: &str,
    device: i32,
) -> Result<HookEni, String> {
    let mut tags = cfg.extra_tags.clone();
    tags.insert(NO_MANAGE_TAG.into(), "true".into());
    tags.insert(INSTANCE_TAG.into(), d.instance_id.clone());
    tags.insert(DEVICE_TAG.into(), device.to_string());
    let description = format!(
        "aws-eni-ip Multus ENI of {} (device {device})",
        d.instance_id
    );
    let make = |address: Option<Ipv4Addr>| {
        let a = address.map(|a| a.to_string()).unwrap_or_default();
        let token = client_token(&[&d.lifecycle_action_token, subnet_id, &a]);
        let (tags, description) = (&tags, &description);
        async move {
            aws.create_eni(
                subnet_id,
                address,
                &cfg.security_groups,
                tags,
                description,
                &token,
            )
            .await
        }
    };
    let what = || format!("creating the ENI in {subnet_id} for {}", d.instance_id);
    if cfg.worker_ip_mode == WorkerIpMode::Dhcp {
        return make(None).await.map_err(|e| failed(what(), e));
    }
    let view = aws.subnets();
    let facts = view
        .subnet(subnet_id)
        .await
        .map_err(|e| failed(what(), e))?;
    let (enis, reservations) =
        tokio::join!(view.interfaces(subnet_id), view.reservations(subnet_id));
    let enis = enis.map_err(|e| failed(what(), e))?;
    let reservations = reservations.map_err(|e| failed(what(), e))?;
    for address in lowest_free(facts.ipv4_cidr, &enis, &reservations).take(STATIC_ATTEMPTS) {
        match make(Some(address)).await {
            Ok(eni) => return Ok(eni),
            // Another launch (or DHCP) took it since we looked: the next one.
            Err(e) if e.is_in_use() => {
                tracing::info!(%address, subnet_id, "address taken meanwhile, trying the next");
            }
            Err(e) => return Err(failed(what(), e)),
        }
    }
    Err(format!(
        "{}: no free address outside the reservations of {subnet_id} ({}) among the lowest {STATIC_ATTEMPTS} tried",
        what(),
        facts.ipv4_cidr
    ))
}

/// Every Multus ENI of the instance, attached; `handled` collects what to remove on failure.
async fn place(
    cfg: &HookConfig,
    aws: &NodeGroupAws,
    d: &LifecycleDetail,
    handled: &mut Vec<String>,
) -> Result<Vec<Placed>, String> {
    let i = &d.instance_id;
    let zone = settled(AFTER_LAUNCH, aws.deadline(), "zone", || {
        aws.instance_zone(i)
    })
    .await
    .map_err(|e| failed(format!("reading the zone of {i}"), e))?;
    let mut wanted = Vec::new();
    for s in &cfg.subnets {
        let facts = aws
            .subnets()
            .subnet(&s.subnet_id)
            .await
            .map_err(|e| failed(format!("reading Multus subnet {}", s.subnet_id), e))?;
        if facts.availability_zone == zone {
            if let Some(o) = wanted
                .iter()
                .find(|w: &&crate::config::MultusSubnet| w.device_index == s.device_index)
            {
                return Err(format!(
                    "Multus subnets {} and {} of zone {zone} both want device index {}: give each its own in MULTUS_DEVICE_INDEXES",
                    o.subnet_id, s.subnet_id, s.device_index
                ));
            }
            wanted.push(s.clone());
        }
    }
    if wanted.is_empty() {
        let ids: Vec<&str> = cfg.subnets.iter().map(|s| s.subnet_id.as_str()).collect();
        return Err(format!(
            "none of the Multus subnets ({}) is in {zone}, the zone of {i}: add one per zone the group spans",
            ids.join(", ")
        ));
    }
    let existing = aws
        .enis_for(i)
        .await
        .map_err(|e| failed(format!("looking for ENIs made earlier for {i}"), e))?;
    let mut placed = Vec::new();
    for s in wanted {
        let found = existing
            .iter()
            .find(|e| e.subnet_id == s.subnet_id && e.for_device == Some(s.device_index))
            .cloned();
        let created = found.is_none();
        let eni = match found {
            Some(e) => e,
            None => create(cfg, aws, d, &s.subnet_id, s.device_index).await?,
        };
        handled.push(eni.eni_id.clone());
        let attachment = match &eni.attachment {
            Some((att, inst, dev)) if inst == i && *dev == s.device_index => att.clone(),
            Some((_, inst, dev)) => {
                return Err(format!(
                    "{} is attached to {inst} at device {dev}, not to {i} at {}",
                    eni.eni_id, s.device_index
                ))
            }
            None => match settled(AFTER_LAUNCH, aws.deadline(), "attach", || {
                aws.attach(&eni.eni_id, i, s.device_index)
            })
            .await
            {
                Ok(att) => att,
                Err(e) => attached_meanwhile(aws, &eni.eni_id, i, s.device_index)
                    .await
                    .ok_or_else(|| {
                        failed(
                            format!(
                                "attaching {} to {i} at device {}",
                                eni.eni_id, s.device_index
                            ),
                            e,
                        )
                    })?,
            },
        };
        if !eni.delete_on_termination {
            settled(AFTER_LAUNCH, aws.deadline(), "DeleteOnTermination", || {
                aws.delete_on_termination(&eni.eni_id, &attachment)
            })
            .await
            .map_err(|e| failed(format!("setting DeleteOnTermination on {}", eni.eni_id), e))?;
        }
        placed.push(Placed {
            eni_id: eni.eni_id,
            subnet_id: s.subnet_id,
            device_index: s.device_index,
            address: eni.primary_ipv4,
            created,
        });
    }
    Ok(placed)
}

/// The attachment when a concurrent delivery of the same event attached the ENI first.
async fn attached_meanwhile(
    aws: &NodeGroupAws,
    eni_id: &str,
    instance: &str,
    device: i32,
) -> Option<String> {
    match aws.eni(eni_id).await {
        Ok(Some(HookEni {
            attachment: Some((att, inst, dev)),
            ..
        })) if inst == instance && dev == device => Some(att),
        _ => None,
    }
}

/// Detaches (waiting for EC2 to finish) and deletes each ENI; the errors of those that stay.
async fn remove(aws: &NodeGroupAws, eni_ids: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut removed, mut errors) = (Vec::new(), Vec::new());
    for id in eni_ids {
        let r: Result<(), CloudError> = async {
            while let Some(eni) = aws.eni(id).await? {
                match eni.attachment {
                    Some((att, _, _)) => {
                        aws.detach(&att).await?;
                        // Detaching is asynchronous in EC2: look again until it is done.
                        if Instant::now() + Duration::from_millis(500) >= aws.deadline() {
                            return Err(CloudError::Transient {
                                action: "DetachNetworkInterface",
                                reason: format!("{id} was still attached at the deadline"),
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => return aws.delete(id).await,
                }
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => removed.push(id.clone()),
            Err(e) => errors.push(format!("removing {id}: {e}")),
        }
    }
    (removed, errors)
}

async fn finish(
    aws: &NodeGroupAws,
    d: &LifecycleDetail,
    result: &'static str,
) -> Result<bool, String> {
    aws.complete(
        &d.auto_scaling_group_name,
        &d.lifecycle_hook_name,
        &d.lifecycle_action_token,
        &d.instance_id,
        result,
    )
    .await
    .map(|c| c == Completion::AlreadyCompleted)
    .map_err(|e| {
        format!(
            "completing lifecycle action {} of {} with {result}: {e}",
            d.lifecycle_hook_name, d.instance_id
        )
    })
}

/// The launch hook; `Err` only when the lifecycle action could not be completed (a retry helps).
pub async fn launch(
    cfg: &HookConfig,
    aws: &NodeGroupAws,
    d: &LifecycleDetail,
) -> Result<Report, String> {
    let mut handled = Vec::new();
    let mut report = Report {
        instance_id: d.instance_id.clone(),
        transition: LAUNCHING,
        result: "CONTINUE",
        already_completed: false,
        enis: Vec::new(),
        removed: Vec::new(),
        error: None,
        cleanup_errors: Vec::new(),
        drain: None,
    };
    match place(cfg, aws, d, &mut handled).await {
        Ok(enis) => report.enis = enis,
        Err(e) => {
            tracing::error!(instance = %d.instance_id, error = %e, "launch failed; removing its ENIs and abandoning");
            let (removed, errors) = remove(aws, &handled).await;
            report.result = "ABANDON";
            report.error = Some(e);
            report.removed = removed;
            report.cleanup_errors = errors;
        }
    }
    report.already_completed = finish(aws, d, report.result).await?;
    Ok(report)
}

/// The terminate hook: waits (bounded) for the node to drain, then its ENIs go, and termination
/// always continues.
pub async fn terminate(
    cfg: &HookConfig,
    aws: &NodeGroupAws,
    d: &LifecycleDetail,
) -> Result<Report, String> {
    let mut report = Report {
        instance_id: d.instance_id.clone(),
        transition: TERMINATING,
        result: "CONTINUE",
        already_completed: false,
        enis: Vec::new(),
        removed: Vec::new(),
        error: None,
        cleanup_errors: Vec::new(),
        drain: None,
    };
    let until = (Instant::now() + cfg.drain_timeout).min(
        aws.deadline()
            .checked_sub(REMOVAL_RESERVE)
            .unwrap_or_else(Instant::now),
    );
    let waited = drain::wait(
        aws,
        &d.instance_id,
        until,
        drain::poll_interval(cfg.drain_timeout),
    )
    .await;
    tracing::info!(instance = %d.instance_id, drain = ?waited, "drain wait over; removing the ENIs");
    report.drain = Some(waited);
    match aws.enis_for(&d.instance_id).await {
        Ok(enis) => {
            let ids: Vec<String> = enis.into_iter().map(|e| e.eni_id).collect();
            let (removed, errors) = remove(aws, &ids).await;
            report.removed = removed;
            report.cleanup_errors = errors;
        }
        Err(e) => {
            report.error = Some(failed(
                format!("looking for the ENIs of {}", d.instance_id),
                e,
            ))
        }
    }
    report.already_completed = finish(aws, d, report.result).await?;
    Ok(report)
}
