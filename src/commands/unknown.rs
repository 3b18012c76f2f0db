//! IPAM mode's count-based assign whose outcome is unknown (a timeout, or a crash between EC2's
//! answer and the record): EC2 chose an address we never heard of. It is found from the ENI's
//! listing, never by asking again: what the ENI holds now that it did not hold before the
//! write-ahead record, and that no record of this node holds, is this attachment's. Count-based
//! assigns on one ENI are serialised on the node (the count lock), so nothing else of ours could
//! have added it meanwhile.

use super::eni::ec2_for;
use super::errors::from_cloud;
use crate::cloud::{Aws, Ec2, EniView};
use crate::cni::CniError;
use crate::store::{Attachment, Phase, Store};
use std::net::IpAddr;

/// The record still waits for a count-based assign's answer.
pub fn is_unresolved(record: &Attachment) -> bool {
    record.phase == Phase::Assigning && record.eni_before.is_some()
}

/// Every address of the ENI as EC2 lists it now (its primary included).
pub fn listed(view: &EniView) -> Vec<IpAddr> {
    view.ipv4
        .iter()
        .map(|a| IpAddr::V4(*a))
        .chain(view.ipv6.iter().map(|a| IpAddr::V6(*a)))
        .collect()
}

/// What appeared on `record`'s ENI since its write-ahead snapshot and no other record of this
/// node holds: the unknown outcome's addresses. The caller holds the ENI's count lock.
pub async fn appeared<A: Aws>(
    store: &Store,
    aws: &A,
    record: &Attachment,
) -> Result<Vec<IpAddr>, CniError> {
    let Some(before) = &record.eni_before else {
        return Ok(Vec::new());
    };
    let eni = record.eni_id.as_str();
    let view = ec2_for(aws, eni)
        .await?
        .describe_eni(eni)
        .await
        .map_err(|e| from_cloud(&e, &format!("list the addresses {eni} holds")))?;
    let key = record.key();
    let others = store.all_on_node()?;
    Ok(listed(&view)
        .into_iter()
        .filter(|a| !before.contains(a) && Some(*a) != view.primary_ipv4.map(IpAddr::V4))
        .filter(|a| {
            !others
                .iter()
                .any(|o| o.key() != key && o.eni_id == record.eni_id && o.addresses.contains(a))
        })
        .collect())
}

/// One address per family is the attachment's; more means an attempt was carried out twice.
pub fn keep_one_per_family(found: &[IpAddr]) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let mut keep: Vec<IpAddr> = Vec::new();
    let mut extra = Vec::new();
    for a in found {
        if keep.iter().any(|k| k.is_ipv4() == a.is_ipv4()) {
            extra.push(*a);
        } else {
            keep.push(*a);
        }
    }
    (keep, extra)
}
