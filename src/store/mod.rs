//! State on disk, readable by other processes (a node agent, `aws-eni-ip state`):
//!
//! ```text
//! <stateDir>/attachments/<network>/<containerId>:<ifname>.json      one record per attachment
//! <stateDir>/attachments/<network>/<containerId>:<ifname>.json.wal  its last durable version
//! <stateDir>/quarantine/<network>/...                               records that could not be read
//! <stateDir>/cache/eni-<mac>.json, region.json                      facts that never change for an ENI
//! <node>/...                                                        node-wide: see node.rs,
//!                                                                   agent.rs, counters.rs
//! ```
//! Records are replaced atomically (temp file, rename; fsync where a node crash matters). Changes
//! to an address's assignment happen under that address's node-wide lock, so a DEL's "does another
//! record hold it?" and its unassign cannot interleave with an ADD of the same address, whatever
//! state dir either uses. No other module spells a path inside the state dir.

mod agent;
mod budget;
mod cache;
mod clock;
mod counters;
mod error;
mod fs;
mod lock;
mod node;
mod record;
mod spool;

pub use agent::{Heartbeat, NoHandOff, HEARTBEAT_MISSES};
pub use budget::law::{Law as PaceLaw, Pace, LAST_CALL_ROOM_MS};
pub use budget::{validate_node_rate, BudgetLimits, BudgetState, NodeBudget, NodeSettings};
pub use cache::{CachedEni, RegionFile};
pub use clock::{monotonic_ms, monotonic_ms_at};
pub use counters::{Ec2Count, OperationCount, PluginCounters};
pub use error::StoreError;
pub use lock::Locks;
pub use node::{NodeDir, DEFAULT_NODE_DIR, NODE_DIR_ENV};
pub use record::{Attachment, AttachmentKey, Follow, Phase};
pub use spool::{BatchOp, BatchOutcome, BatchRequest, Spool, Ticket, Withdrawn};

use fs::{read_json, write_json_atomic, Durability};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    node: NodeDir,
    /// Opened read-only: an unreadable record is skipped, not moved aside.
    read_only: bool,
}

impl Store {
    /// Opens the state dir, creating (mode 0700) what is missing, and registers it node-wide.
    pub fn open(root: &Path, node: NodeDir) -> Result<Store, StoreError> {
        for dir in [root.join("attachments"), root.join("cache")] {
            fs::create_private_dir(&dir)?;
        }
        node.create()?;
        node.register(root)?;
        Ok(Store {
            root: root.to_path_buf(),
            node,
            read_only: false,
        })
    }

    /// Opens a state dir that exists, creating and changing nothing (operators' read-only view).
    pub fn open_existing(root: &Path, node: NodeDir) -> Result<Store, StoreError> {
        if !root.is_dir() {
            return Err(StoreError::io(
                "open state dir",
                root,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        Ok(Store {
            root: root.to_path_buf(),
            node,
            read_only: true,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn node(&self) -> &NodeDir {
        &self.node
    }

    fn record_path(&self, key: &AttachmentKey) -> Result<PathBuf, StoreError> {
        key.check().map_err(|reason| StoreError::BadKey {
            network: key.network.clone(),
            container_id: key.container_id.clone(),
            ifname: key.ifname.clone(),
            reason,
        })?;
        Ok(self
            .root
            .join("attachments")
            .join(&key.network)
            .join(format!("{}:{}.json", key.container_id, key.ifname)))
    }

    fn eni_cache_path(&self, mac: &str) -> PathBuf {
        self.root
            .join("cache")
            .join(format!("{}.json", mac_key(mac)))
    }

    /// Takes the node-wide locks of `addresses`, sorted so two commands never wait in a cycle.
    pub fn lock_addresses(
        &self,
        addresses: &[IpAddr],
        deadline: Instant,
    ) -> Result<Locks, StoreError> {
        let mut sorted = addresses.to_vec();
        sorted.sort();
        sorted.dedup();
        let paths: Vec<PathBuf> = sorted
            .iter()
            .map(|a| self.node.locks().join(format!("{a}.lock")))
            .collect();
        Locks::acquire(&paths, deadline)
    }

    /// Locks `extra` and every address of `key`'s record, then reads the record: one that grew
    /// while we waited is locked again, so what is returned cannot change until the locks drop.
    pub fn lock_record(
        &self,
        key: &AttachmentKey,
        extra: &[IpAddr],
        deadline: Instant,
    ) -> Result<(Locks, Option<Attachment>), StoreError> {
        let mut want = extra.to_vec();
        loop {
            let locks = self.lock_addresses(&want, deadline)?;
            let record = self.get(key)?;
            let missing: Vec<IpAddr> = record
                .iter()
                .flat_map(|r| r.addresses.iter().copied())
                .filter(|a| !want.contains(a))
                .collect();
            if missing.is_empty() {
                return Ok((locks, record));
            }
            drop(locks);
            want.extend(missing);
        }
    }

    /// Serialises the first lookups of the ENI behind `mac`, so that one asks IMDS and EC2 and the
    /// others read its cache.
    pub fn lock_eni_lookup(&self, mac: &str, deadline: Instant) -> Result<Locks, StoreError> {
        let path = self.node.locks().join(format!("{}.lock", mac_key(mac)));
        Locks::acquire(&[path], deadline)
    }

    /// Serialises IPAM mode's count-based assigns on the ENI behind `mac` (and the release of one
    /// whose outcome is unknown), so that what appears on the ENI meanwhile is attributable.
    pub fn lock_count_assign(&self, mac: &str, deadline: Instant) -> Result<Locks, StoreError> {
        let path = self
            .node
            .locks()
            .join(format!("count-{}.lock", mac_key(mac)));
        Locks::acquire(&[path], deadline)
    }

    /// The record of `key`. One that cannot be read falls back to its last durable version, or is
    /// quarantined (moved aside, logged) and reads as absent, so it blocks no DEL.
    pub fn get(&self, key: &AttachmentKey) -> Result<Option<Attachment>, StoreError> {
        Ok(self.read_record(&self.record_path(key)?))
    }

    /// Writes a record so that it survives a node crash: it is what lets DEL release an address.
    /// Its `.wal` twin keeps this version when a later [`Store::update`] is torn by a power loss.
    pub fn put(&self, record: &Attachment) -> Result<(), StoreError> {
        let path = self.prepare(record)?;
        write_json_atomic(&path, record, Durability::Durable)?;
        let wal = wal_path(&path);
        let staged = path.with_extension("json.wal-new");
        let _ = std::fs::remove_file(&staged);
        std::fs::hard_link(&path, &staged)
            .and_then(|()| std::fs::rename(&staged, &wal))
            .map_err(|e| StoreError::io("keep the write-ahead copy of", &path, e))
    }

    /// Rewrites an existing record without fsync: after a node crash the reader finds this
    /// version, or the durable one [`Store::put`] kept.
    pub fn update(&self, record: &Attachment) -> Result<(), StoreError> {
        let path = self.prepare(record)?;
        write_json_atomic(&path, record, Durability::ProcessCrashSafe)
    }

    fn prepare(&self, record: &Attachment) -> Result<PathBuf, StoreError> {
        let path = self.record_path(&record.key())?;
        if let Some(dir) = path.parent() {
            fs::create_private_dir(dir)?;
        }
        Ok(path)
    }

    pub fn remove(&self, key: &AttachmentKey) -> Result<(), StoreError> {
        let path = self.record_path(key)?;
        for p in [wal_path(&path), path] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", p, e)),
            }
        }
        Ok(())
    }

    /// Every readable record in this state dir, of every network; unreadable ones are quarantined.
    pub fn all(&self) -> Result<Vec<Attachment>, StoreError> {
        let mut out = Vec::new();
        for network in fs::list_dir(&self.root.join("attachments"))? {
            for file in fs::list_dir(&network)? {
                if file.extension().and_then(|e| e.to_str()) == Some("json") {
                    out.extend(self.read_record(&file));
                }
            }
        }
        out.sort_by_key(Attachment::key);
        Ok(out)
    }

    /// The directories whose entries change when a record is written or removed here, for a
    /// watcher (inotify) that must not poll.
    pub fn record_dirs(&self) -> Vec<PathBuf> {
        let attachments = self.root.join("attachments");
        let mut dirs = fs::list_dir(&attachments).unwrap_or_default();
        dirs.retain(|d| d.is_dir());
        dirs.push(attachments);
        dirs
    }

    /// Every record on the node: this state dir's and every other registered one's.
    pub fn all_on_node(&self) -> Result<Vec<Attachment>, StoreError> {
        let mut out = self.all()?;
        for dir in self.node.state_dirs() {
            if dir == self.root {
                continue;
            }
            // Another network's files are read, never moved: a bad one there is its DEL's to handle.
            for network in fs::list_dir(&dir.join("attachments"))? {
                for file in fs::list_dir(&network)? {
                    if file.extension().and_then(|e| e.to_str()) == Some("json") {
                        if let Ok(Some(r)) = read_record_at(&file) {
                            out.push(r);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Addresses of `record` that it may release: not adopted, and held by no other record on the
    /// node for the same ENI.
    pub fn releasable(&self, record: &Attachment) -> Result<Vec<IpAddr>, StoreError> {
        Ok(releasable_among(record, &self.all_on_node()?))
    }

    /// How many records were moved aside since the state dir was made.
    pub fn quarantined(&self) -> usize {
        let mut n = 0;
        for network in fs::list_dir(&self.root.join("quarantine")).unwrap_or_default() {
            n += fs::list_dir(&network)
                .unwrap_or_default()
                .iter()
                .filter(|f| !f.to_string_lossy().contains(".json.wal."))
                .count();
        }
        n
    }

    fn read_record(&self, path: &Path) -> Option<Attachment> {
        let err = match read_record_at(path) {
            Ok(r) => return r,
            Err(e) => e,
        };
        if let Ok(Some(r)) = read_record_at(&wal_path(path)) {
            tracing::warn!(file = %path.display(), error = %err, "record unreadable; using its last durable version");
            return Some(r);
        }
        if self.read_only {
            tracing::warn!(file = %path.display(), error = %err, "record unreadable; skipped");
            return None;
        }
        let network = path
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let into = self.root.join("quarantine").join(network);
        match fs::quarantine(path, &into) {
            Ok(moved) => {
                let _ = fs::quarantine(&wal_path(path), &into);
                tracing::warn!(file = %path.display(), moved_to = %moved.display(), error = %err,
                    "record quarantined: its addresses are no longer tracked; `aws-eni-ip state --check` shows them as unrecorded");
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %err, quarantine_error = %e, "record unreadable and could not be moved aside; skipped");
            }
        }
        None
    }
}

/// [`Store::releasable`] against records already read (by a caller that holds the locks of the
/// record's addresses, so that no record holding them can come or go meanwhile).
pub fn releasable_among(record: &Attachment, node_records: &[Attachment]) -> Vec<IpAddr> {
    let key = record.key();
    record
        .addresses
        .iter()
        .copied()
        .filter(|a| !record.adopted.contains(a))
        .filter(|addr| {
            !node_records
                .iter()
                .any(|o| o.key() != key && o.eni_id == record.eni_id && o.addresses.contains(addr))
        })
        .collect()
}

/// A record is trusted only where it lies: its key must be valid and name the file it was read
/// from (`<network>/<container>:<ifname>.json`, or its `.wal`).
fn read_record_at(path: &Path) -> Result<Option<Attachment>, StoreError> {
    let Some(record) = read_json::<Attachment>(path)? else {
        return Ok(None);
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let key = record.key();
    key.check().map_err(corrupt)?;
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let network = path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let named = format!("{}:{}.json", key.container_id, key.ifname);
    let matches = network.as_deref() == Some(key.network.as_str())
        && file
            .as_deref()
            .is_some_and(|f| f == named || f == format!("{named}.wal"));
    if !matches {
        return Err(corrupt(format!(
            "it names attachment {}/{}:{}, not the file it is in",
            key.network, key.container_id, key.ifname
        )));
    }
    Ok(Some(record))
}

fn wal_path(record: &Path) -> PathBuf {
    record.with_extension("json.wal")
}

pub fn now_unix() -> u64 {
    now_unix_ms() / 1000
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `eni-<mac without colons>`: the name of everything the store keeps per ENI.
fn mac_key(mac: &str) -> String {
    format!("eni-{}", mac.replace(':', ""))
}

#[cfg(test)]
pub(crate) mod tests;
