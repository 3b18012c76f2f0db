//! Brings up the links of this instance's Multus ENIs: EKS AMIs leave a hot-attached ENI DOWN,
//! and pods behind a DOWN master are unreachable. Only a link whose MAC IMDS lists for this
//! instance, that is not the primary ENI (device 0), and whose ENI carries the no_manage tag; only
//! IFF_UP is set (no address, no route, no sysctl), so the host never answers for pod addresses.

use crate::cloud::{Aws, Ec2, Metadata};
use crate::node::{HostError, HostLink};
use std::collections::HashMap;

/// The host side, with a fake in tests.
pub trait LinkHost {
    fn links(&self) -> Result<Vec<HostLink>, HostError>;
    fn set_up(&self, index: u32) -> Result<(), HostError>;
}

/// The host's own links, over rtnetlink.
pub struct NetlinkLinks;

impl LinkHost for NetlinkLinks {
    fn links(&self) -> Result<Vec<HostLink>, HostError> {
        crate::node::host_links()
    }

    fn set_up(&self, index: u32) -> Result<(), HostError> {
        crate::node::set_link_up(index)
    }
}

/// What the keeper learned of each MAC: whether its link is ours to bring up. An ENI's device
/// index and its tag do not change while it is attached, so each MAC is described once.
#[derive(Default)]
pub struct LinkKeeper {
    ours: HashMap<String, bool>,
}

impl LinkKeeper {
    /// Brings up every DOWN link of a no_manage ENI of this instance; returns their names.
    pub async fn ensure<A: Aws>(&mut self, aws: &A, host: &dyn LinkHost) -> Vec<String> {
        let down: Vec<HostLink> = match host.links() {
            Ok(links) => links
                .into_iter()
                .filter(|l| !l.up && l.mac.is_some())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the host's links");
                return Vec::new();
            }
        };
        if down.is_empty() {
            return Vec::new();
        }
        let attached = match aws.metadata().attached_macs().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "IMDS does not list this instance's ENIs: no link brought up");
                return Vec::new();
            }
        };
        let mut up = Vec::new();
        for link in down {
            let Some(mac) = link.mac.as_deref() else {
                continue;
            };
            if !attached.iter().any(|m| m == mac) {
                continue;
            }
            let ours = match self.ours.get(mac) {
                Some(known) => *known,
                None => match self.decide(aws, mac).await {
                    Some(known) => *self.ours.entry(mac.to_string()).or_insert(known),
                    None => continue,
                },
            };
            if !ours {
                continue;
            }
            match host.set_up(link.index) {
                Ok(()) => {
                    tracing::info!(link = %link.name, mac, "brought up the link of a no_manage ENI");
                    up.push(link.name);
                }
                Err(e) => {
                    tracing::warn!(link = %link.name, mac, error = %e, "cannot bring the ENI's link up")
                }
            }
        }
        up
    }

    /// Whether the ENI behind `mac` is a secondary ENI tagged no_manage; `None` when IMDS or EC2
    /// cannot say now (asked again at the next change or pass).
    async fn decide<A: Aws>(&self, aws: &A, mac: &str) -> Option<bool> {
        let facts = match aws.metadata().eni_facts(mac).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(mac, error = %e, "cannot read the ENI's facts from IMDS");
                return None;
            }
        };
        if facts.device_number == 0 {
            return Some(false);
        }
        let ec2 = match aws.ec2().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(mac, error = %e, "no EC2 client to read the ENI's tags");
                return None;
            }
        };
        match ec2.eni_by_mac(mac).await {
            Ok(Some(view)) => Some(view.unmanaged_by_vpc_cni()),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(mac, eni = %facts.eni_id, error = %e, "cannot read the ENI's tags");
                None
            }
        }
    }
}
