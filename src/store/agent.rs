//! The node agent's marks in the node dir: its heartbeat, which DEL reads to decide whether it may
//! hand a release over.
//!
//! ```text
//! <node>/agent/heartbeat.json   {"pid": 4242, "unixMs": 1764400000000, "intervalMs": 60000}
//! ```

use super::fs::{create_private_dir, read_json, write_json_atomic, Durability};
use super::{now_unix_ms, NodeDir, StoreError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// An agent is alive while its heartbeat is younger than this many of its intervals.
pub const HEARTBEAT_MISSES: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    pub pid: u32,
    pub unix_ms: u64,
    pub interval_ms: u64,
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
    pub fn write_heartbeat(&self, interval: Duration) -> Result<(), StoreError> {
        let path = self.heartbeat_path();
        create_private_dir(path.parent().unwrap_or(self.root()))?;
        let beat = Heartbeat {
            pid: std::process::id(),
            unix_ms: now_unix_ms(),
            interval_ms: interval.as_millis() as u64,
        };
        write_json_atomic(&path, &beat, Durability::ProcessCrashSafe)
    }

    /// A clean stop: DEL must not hand anything to an agent that is gone.
    pub fn clear_heartbeat(&self) {
        let _ = std::fs::remove_file(self.heartbeat_path());
    }

    pub fn heartbeat(&self) -> Option<Heartbeat> {
        read_json(&self.heartbeat_path()).ok().flatten()
    }

    /// Whether an agent on this node would take over a release now.
    pub fn agent_alive(&self) -> bool {
        self.heartbeat().is_some_and(|h| h.is_fresh(now_unix_ms()))
    }
}
