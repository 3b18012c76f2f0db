//! The node agent's marks in the node dir: its heartbeat, which DEL reads to decide whether it may
//! hand a release over.
//!
//! ```text
//! <node>/agent/heartbeat.json   {"pid": 4242, "unixMs": …, "intervalMs": 60000,
//!                                "listedUnixMs": …, "stateDirs": ["/var/lib/cni/aws-eni-ip"]}
//! ```

use super::fs::{create_private_dir, read_json, write_json_atomic, Durability};
use super::{now_unix_ms, NodeDir, StoreError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An agent is alive while its heartbeat is younger than this many of its intervals.
pub const HEARTBEAT_MISSES: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// For operators only: a pid means nothing across the agent pod's PID namespace.
    pub pid: u32,
    pub unix_ms: u64,
    pub interval_ms: u64,
    /// The agent's last successful ListPodSandbox; `None`: the runtime never answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_unix_ms: Option<u64>,
    /// The state dirs the agent sees (mounted into its pod) and watches.
    #[serde(default)]
    pub state_dirs: Vec<PathBuf>,
}

/// Why DEL may not hand a release to the agent; each names what the operator can fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoHandOff {
    #[error("no aws-eni-ip agent runs on this node (no fresh heartbeat in {0})")]
    NoAgent(String),
    #[error("the aws-eni-ip agent cannot list the runtime's sandboxes (last successful listing: {last}); it could not act on a hand-off")]
    RuntimeUnreachable { last: String },
    #[error("the aws-eni-ip agent does not see state dir {dir}: mount it into the agent's pod (Helm value extraVolumes / extraVolumeMounts)")]
    StateDirNotMounted { dir: String },
}
impl Heartbeat {
    /// Fresh: written within the last [`HEARTBEAT_MISSES`] intervals (and not in the future).
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        let window = self.interval_ms.saturating_mul(HEARTBEAT_MISSES);
        self.unix_ms <= now_ms + 1_000 && now_ms.saturating_sub(self.unix_ms) <= window
    }
}

impl NodeDir {
    fn heartbeat_path(&self) -> PathBuf {
        self.root().join("agent").join("heartbeat.json")
    }

    /// The agent is alive and passes every `interval`; a process crash leaves the old one to age.
    pub fn write_heartbeat(
        &self,
        interval: Duration,
        listed_unix_ms: Option<u64>,
        state_dirs: &[PathBuf],
    ) -> Result<(), StoreError> {
        let path = self.heartbeat_path();
        create_private_dir(path.parent().unwrap_or(self.root()))?;
        let beat = Heartbeat {
            pid: std::process::id(),
            unix_ms: now_unix_ms(),
            interval_ms: interval.as_millis() as u64,
            listed_unix_ms,
            state_dirs: state_dirs.to_vec(),
        };
        write_json_atomic(&path, &beat, Durability::ProcessCrashSafe)
    }

    /// Whether an agent would take over a release of a record in `state_dir` now: its heartbeat
    /// is fresh, it listed the runtime's sandboxes within [`HEARTBEAT_MISSES`] intervals, and it
    /// watches that state dir.
    pub fn hand_off_to_agent(&self, state_dir: &Path) -> Result<(), NoHandOff> {
        let now = now_unix_ms();
        let beat = self
            .heartbeat()
            .filter(|h| h.is_fresh(now))
            .ok_or_else(|| NoHandOff::NoAgent(self.heartbeat_path().display().to_string()))?;
        let window = beat.interval_ms.saturating_mul(HEARTBEAT_MISSES);
        match beat.listed_unix_ms {
            Some(at) if now.saturating_sub(at) <= window => {}
            Some(at) => {
                return Err(NoHandOff::RuntimeUnreachable {
                    last: format!("{} s ago", now.saturating_sub(at) / 1000),
                })
            }
            None => {
                return Err(NoHandOff::RuntimeUnreachable {
                    last: "never".into(),
                })
            }
        }
        if !beat.state_dirs.iter().any(|d| d == state_dir) {
            return Err(NoHandOff::StateDirNotMounted {
                dir: state_dir.display().to_string(),
            });
        }
        Ok(())
    }

    /// A clean stop: DEL must not hand anything to an agent that is gone.
    pub fn clear_heartbeat(&self) {
        let _ = std::fs::remove_file(self.heartbeat_path());
    }

    pub fn heartbeat(&self) -> Option<Heartbeat> {
        read_json(&self.heartbeat_path()).ok().flatten()
    }
}
