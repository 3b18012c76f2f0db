//! Terminate's wait for the node to drain. The function has no Kubernetes API; what it can see is
//! EC2: the plugin (or its agent, for a lost DEL) unassigns a pod's address from the Multus ENI
//! when the pod goes, so a node whose Multus ENIs hold nothing but their primary address runs no
//! Multus pod any more. An instance that is no longer running has nothing left to drain.

use crate::aws::NodeGroupAws;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How the wait ended; part of the function's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Drain {
    /// No pod address left on the node's Multus ENIs.
    #[serde(rename_all = "camelCase")]
    Drained { waited_ms: u64 },
    /// The node has no Multus ENI of ours.
    NoEnis,
    /// EC2 reports the instance past `running` (stopping, shutting-down, …) or gone.
    #[serde(rename_all = "camelCase")]
    NotRunning { state: String, waited_ms: u64 },
    /// The bound passed with addresses still held: per ENI, how many.
    #[serde(rename_all = "camelCase")]
    TimedOut {
        waited_ms: u64,
        held: BTreeMap<String, usize>,
    },
    /// EC2 could not be asked; the ENIs go now rather than never.
    Unobservable { error: String },
}

/// Polls until drained or `until`; every poll one filtered DescribeNetworkInterfaces, and a
/// DescribeInstances while addresses remain.
pub async fn wait(aws: &NodeGroupAws, instance_id: &str, until: Instant, poll: Duration) -> Drain {
    let start = Instant::now();
    let waited = || start.elapsed().as_millis() as u64;
    loop {
        let enis = match aws.enis_for(instance_id).await {
            Ok(e) => e,
            Err(e) => {
                return Drain::Unobservable {
                    error: e.to_string(),
                }
            }
        };
        if enis.is_empty() {
            return Drain::NoEnis;
        }
        let held: BTreeMap<String, usize> = enis
            .iter()
            .filter(|e| !e.pod_addresses.is_empty())
            .map(|e| (e.eni_id.clone(), e.pod_addresses.len()))
            .collect();
        if held.is_empty() {
            return Drain::Drained {
                waited_ms: waited(),
            };
        }
        match aws.instance_state(instance_id).await {
            Ok(Some(s)) if s == "running" => {}
            Ok(state) => {
                return Drain::NotRunning {
                    state: state.unwrap_or_else(|| "gone".into()),
                    waited_ms: waited(),
                }
            }
            Err(e) => {
                return Drain::Unobservable {
                    error: e.to_string(),
                }
            }
        }
        if Instant::now() + poll >= until {
            return Drain::TimedOut {
                waited_ms: waited(),
                held,
            };
        }
        tracing::info!(
            instance = instance_id,
            ?held,
            "waiting for the node's Multus pods to go"
        );
        tokio::time::sleep(poll).await;
    }
}

/// Often enough to notice a drain within seconds, rarely enough for EC2's filtered-describe bucket.
pub fn poll_interval(drain_timeout: Duration) -> Duration {
    (drain_timeout / 10).clamp(Duration::from_millis(200), Duration::from_secs(5))
}
