//! Drift between the node's records and the ENIs they name: addresses an ENI holds that no record
//! holds (never removed automatically: they may be someone else's), and recorded addresses that are
//! no longer on their ENI. Read by `aws-eni-ip state --check` and the agent's metrics.

use super::errors::from_cloud;
use crate::cloud::Ec2;
use crate::store::{Attachment, AttachmentKey, Phase};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// One ENI named in the records, as EC2 sees it now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EniDrift {
    pub eni_id: String,
    /// IPv4 addresses on the ENI, its primary included (what the per-ENI limit counts).
    pub ipv4_in_use: usize,
    pub ipv6_in_use: usize,
    /// On the ENI, not its primary, held by no record on the node.
    pub unrecorded: Vec<IpAddr>,
    /// Recorded by a finished ADD (or a release in progress) but not on the ENI.
    pub missing: Vec<(AttachmentKey, IpAddr)>,
    /// The describe failed: nothing else here is known.
    pub error: Option<String>,
}

impl EniDrift {
    pub fn is_clean(&self) -> bool {
        self.unrecorded.is_empty() && self.missing.is_empty() && self.error.is_none()
    }
}

/// Describes each ENI named in `records` (one call per ENI) and compares.
pub async fn drift(records: &[Attachment], ec2: &impl Ec2) -> Vec<EniDrift> {
    let enis: BTreeSet<&str> = records.iter().map(|r| r.eni_id.as_str()).collect();
    let mut out = Vec::new();
    for eni in enis {
        let mut d = EniDrift {
            eni_id: eni.to_string(),
            ..EniDrift::default()
        };
        let view = match ec2.describe_eni(eni).await {
            Ok(v) => v,
            Err(e) => {
                d.error = Some(from_cloud(&e, &format!("read the addresses of {eni}")).msg);
                out.push(d);
                continue;
            }
        };
        let here: Vec<&Attachment> = records.iter().filter(|r| r.eni_id == eni).collect();
        let recorded = |a: IpAddr| here.iter().any(|r| r.addresses.contains(&a));
        d.ipv4_in_use = view.ipv4.len();
        d.ipv6_in_use = view.ipv6.len();
        d.unrecorded = view
            .ipv4
            .iter()
            .filter(|a| Some(**a) != view.primary_ipv4)
            .map(|a| IpAddr::V4(*a))
            .chain(view.ipv6.iter().map(|a| IpAddr::V6(*a)))
            .filter(|a| !recorded(*a))
            .collect();
        // An `assigning` record is an ADD in flight (or one the reconciler will release).
        for r in here.iter().filter(|r| r.phase != Phase::Assigning) {
            for a in r.addresses.iter().filter(|a| !view.holds(**a)) {
                d.missing.push((r.key(), *a));
            }
        }
        out.push(d);
    }
    out
}
