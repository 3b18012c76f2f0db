//! Counters that the short-lived plugin processes leave for the agent's metrics: one small JSON
//! file in the node dir, read, added to and replaced under its own flock. A process that cannot
//! get the lock in time skips its count rather than delay a pod.
//!
//! ```text
//! <node>/metrics/plugin-counters.json   {"operations": [{"command": "ADD", "outcome": "ok", "code": 0, "count": 12}],
//!                                        "ec2": [{"action": "AssignPrivateIpAddresses", "calls": 12, "throttled": 0}]}
//! <node>/locks/plugin-counters.lock
//! ```

use super::fs::{create_private_dir, read_json, write_json_atomic, Durability};
use super::lock::Locks;
use super::{NodeDir, StoreError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How many plugin runs ended this way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationCount {
    pub command: String,
    /// `ok`, `error`, or `handed_off` (a DEL that left its release to the agent).
    pub outcome: String,
    /// The CNI error code; 0 on success.
    pub code: u32,
    pub count: u64,
}

/// EC2 requests of one action sent by plugin processes, throttled ones included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ec2Count {
    pub action: String,
    pub calls: u64,
    pub throttled: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginCounters {
    #[serde(default)]
    pub operations: Vec<OperationCount>,
    #[serde(default)]
    pub ec2: Vec<Ec2Count>,
}

impl PluginCounters {
    /// Adds one run: its outcome and the EC2 requests it sent.
    pub fn add(&mut self, command: &str, outcome: &str, code: u32, ec2: &[Ec2Count]) {
        match self
            .operations
            .iter_mut()
            .find(|o| o.command == command && o.outcome == outcome && o.code == code)
        {
            Some(o) => o.count += 1,
            None => self.operations.push(OperationCount {
                command: command.into(),
                outcome: outcome.into(),
                code,
                count: 1,
            }),
        }
        for call in ec2 {
            match self.ec2.iter_mut().find(|c| c.action == call.action) {
                Some(c) => {
                    c.calls += call.calls;
                    c.throttled += call.throttled;
                }
                None => self.ec2.push(call.clone()),
            }
        }
    }
}

impl NodeDir {
    fn counters_path(&self) -> PathBuf {
        self.root().join("metrics").join("plugin-counters.json")
    }

    /// Adds one plugin run to the node's counters, waiting at most `wait` for the lock.
    pub fn count_plugin_run(
        &self,
        command: &str,
        outcome: &str,
        code: u32,
        ec2: &[Ec2Count],
        wait: Duration,
    ) -> Result<(), StoreError> {
        let path = self.counters_path();
        create_private_dir(path.parent().unwrap_or(self.root()))?;
        create_private_dir(&self.locks())?;
        let _lock = Locks::acquire(
            &[self.locks().join("plugin-counters.lock")],
            Instant::now() + wait,
        )?;
        // A damaged file restarts the count rather than stop every later run from counting.
        let mut counters = read_json::<PluginCounters>(&path)
            .ok()
            .flatten()
            .unwrap_or_default();
        counters.add(command, outcome, code, ec2);
        write_json_atomic(&path, &counters, Durability::ProcessCrashSafe)
    }

    /// The counters as the last plugin run left them (replaced atomically: no lock needed).
    pub fn plugin_counters(&self) -> PluginCounters {
        read_json(&self.counters_path())
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}
