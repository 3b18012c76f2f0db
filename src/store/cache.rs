//! Facts that only save calls: the ENI behind a MAC, the region, and STATUS's writability probe.
//! A cache that cannot be read or written costs a call, never a pod.

use super::fs::{read_json, write_json_atomic, Durability};
use super::{Store, StoreError};
use crate::cloud::{EniFacts, RegionCache};
use serde::{Deserialize, Serialize};

/// What the state dir remembers about an ENI: its IMDS facts and whether its tag was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedEni {
    pub facts: EniFacts,
    /// Set once DescribeNetworkInterfaces showed the no_manage tag; only a pass is cached.
    pub unmanaged_verified: bool,
}

impl Store {
    /// The cached ENI behind `mac`; `None` when absent or unreadable.
    pub fn cached_eni(&self, mac: &str) -> Option<CachedEni> {
        read_json(&self.eni_cache_path(mac)).ok().flatten()
    }

    pub fn cache_eni(&self, eni: &CachedEni) {
        let _ = write_json_atomic(
            &self.eni_cache_path(&eni.facts.mac),
            eni,
            Durability::ProcessCrashSafe,
        );
    }

    /// The region cache handed to the cloud layer.
    pub fn region_cache(&self) -> RegionFile {
        RegionFile {
            path: self.root.join("cache").join("region.json"),
        }
    }

    /// STATUS: can this process create and remove a file in the state dir now?
    pub fn probe_writable(&self) -> Result<(), StoreError> {
        let probe = self
            .root
            .join(format!(".status-probe.{}", std::process::id()));
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| StoreError::io("write to state dir", &self.root, e))
    }
}

/// The region, read from IMDS once per node.
#[derive(Debug, Clone)]
pub struct RegionFile {
    path: std::path::PathBuf,
}

impl RegionCache for RegionFile {
    fn load(&self) -> Option<String> {
        read_json(&self.path).ok().flatten()
    }

    fn save(&self, region: &str) {
        let _ = write_json_atomic(&self.path, &region, Durability::ProcessCrashSafe);
    }
}
