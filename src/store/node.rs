//! The node-wide part of the store: what must be shared by every plugin process on the node,
//! whatever `stateDir` its network names — address locks, and the list of state dirs in use so
//! that a refcount sees every record on the node.
//!
//! ```text
//! <node>/locks/<address>.lock      flock per pod address, node-wide
//! <node>/state-dirs/<hash>.json    {"path": "/var/lib/other"}: a stateDir other than <node>
//! ```

use super::fs::{create_private_dir, list_dir, read_json, write_json_atomic, Durability};
use super::StoreError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the node-wide state lives; also the default `stateDir`.
pub const DEFAULT_NODE_DIR: &str = "/var/lib/cni/aws-eni-ip";
/// Overrides the node dir, for tests that run several simulated nodes on one machine. A
/// NetworkAttachmentDefinition cannot set it: the runtime's environment is not tenant input.
pub const NODE_DIR_ENV: &str = "AWS_ENI_IP_NODE_DIR";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDir {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StateDirEntry {
    path: PathBuf,
}

impl NodeDir {
    pub fn new(root: impl Into<PathBuf>) -> NodeDir {
        NodeDir { root: root.into() }
    }

    /// `$AWS_ENI_IP_NODE_DIR`, else the default.
    pub fn from_env() -> NodeDir {
        match std::env::var_os(NODE_DIR_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => NodeDir::new(dir),
            None => NodeDir::new(DEFAULT_NODE_DIR),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn create(&self) -> Result<(), StoreError> {
        create_private_dir(&self.locks())?;
        create_private_dir(&self.root.join("state-dirs"))
    }

    pub(crate) fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// Remembers a state dir other than the node dir, so that refcounts and the agent find it.
    pub(crate) fn register(&self, state_dir: &Path) -> Result<(), StoreError> {
        if state_dir == self.root {
            return Ok(());
        }
        let entry = self.entry_path(state_dir);
        if entry.exists() {
            return Ok(());
        }
        let value = StateDirEntry {
            path: state_dir.to_path_buf(),
        };
        write_json_atomic(&entry, &value, Durability::Durable)
    }

    /// Every state dir in use on the node: the node dir and the registered ones that still exist.
    pub fn state_dirs(&self) -> Vec<PathBuf> {
        let mut out = vec![self.root.clone()];
        for file in list_dir(&self.root.join("state-dirs")).unwrap_or_default() {
            if let Ok(Some(e)) = read_json::<StateDirEntry>(&file) {
                if e.path.is_dir() && !out.contains(&e.path) {
                    out.push(e.path);
                }
            }
        }
        out
    }

    /// The directory that changes when a state dir is registered, for a watcher.
    pub fn registry_dir(&self) -> PathBuf {
        self.root.join("state-dirs")
    }

    fn entry_path(&self, state_dir: &Path) -> PathBuf {
        // FNV-1a: a stable short name for a path of any length.
        let mut hash: u64 = 0xcbf29ce484222325;
        for b in state_dir.as_os_str().as_encoded_bytes() {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
        self.root
            .join("state-dirs")
            .join(format!("{hash:016x}.json"))
    }
}
