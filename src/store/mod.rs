//! State on disk, readable by other processes (a node agent, `aws-eni-ip state`):
//!
//! ```text
//! <stateDir>/attachments/<network>/<containerId>:<ifname>.json   one record per attachment
//! <stateDir>/locks/<address>.lock                                 flock per pod address
//! <stateDir>/locks/eni-<mac>.lock                                 first lookup of an ENI
//! <stateDir>/cache/eni-<mac>.json, region.json                    facts that never change for an ENI
//! ```
//! No other module spells a path inside the state dir.
//! Records are replaced atomically (temp file, rename; fsync where a node crash matters). Changes
//! to an address's assignment happen under that address's lock, so a DEL's "does another record
//! hold it?" and its unassign cannot interleave with an ADD of the same address.

mod cache;
mod error;
mod fs;
mod lock;
mod record;

pub use cache::{CachedEni, RegionFile};
pub use error::StoreError;
pub use lock::Locks;
pub use record::{Attachment, AttachmentKey, Phase};

use fs::{read_json, write_json_atomic, Durability};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating, mode 0700) the state dir.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for dir in [
            root.to_path_buf(),
            root.join("attachments"),
            root.join("locks"),
            root.join("cache"),
        ] {
            fs::create_private_dir(&dir)?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn record_path(&self, key: &AttachmentKey) -> PathBuf {
        self.root
            .join("attachments")
            .join(&key.network)
            .join(format!("{}:{}.json", key.container_id, key.ifname))
    }

    fn eni_cache_path(&self, mac: &str) -> PathBuf {
        self.root
            .join("cache")
            .join(format!("{}.json", mac_key(mac)))
    }

    /// Takes the locks of `addresses` (sorted, so two commands never wait on each other in a cycle).
    pub fn lock_addresses(&self, addresses: &[IpAddr]) -> Result<Locks, StoreError> {
        let mut sorted = addresses.to_vec();
        sorted.sort();
        sorted.dedup();
        let paths: Vec<PathBuf> = sorted
            .iter()
            .map(|a| self.root.join("locks").join(format!("{a}.lock")))
            .collect();
        Locks::acquire(&paths)
    }

    /// Serialises the first lookups of the ENI behind `mac`, so that one asks IMDS and EC2 and the
    /// others read its cache.
    pub fn lock_eni_lookup(&self, mac: &str) -> Result<Locks, StoreError> {
        Locks::acquire(&[self
            .root
            .join("locks")
            .join(format!("{}.lock", mac_key(mac)))])
    }

    pub fn get(&self, key: &AttachmentKey) -> Result<Option<Attachment>, StoreError> {
        read_json(&self.record_path(key))
    }

    /// Writes a record so that it survives a node crash: it is what lets DEL release an address.
    pub fn put(&self, record: &Attachment) -> Result<(), StoreError> {
        self.write(record, Durability::Durable)
    }

    /// Rewrites an existing record without fsync: losing this write after a node crash only leaves
    /// the durable earlier version, which DEL and GC release the same way.
    pub fn update(&self, record: &Attachment) -> Result<(), StoreError> {
        self.write(record, Durability::ProcessCrashSafe)
    }

    fn write(&self, record: &Attachment, durability: Durability) -> Result<(), StoreError> {
        let path = self.record_path(&record.key());
        if let Some(dir) = path.parent() {
            fs::create_private_dir(dir)?;
        }
        write_json_atomic(&path, record, durability)
    }

    pub fn remove(&self, key: &AttachmentKey) -> Result<(), StoreError> {
        let path = self.record_path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", path, e)),
        }
    }

    /// Every record on this node, of every network; unreadable files are reported, not skipped.
    pub fn all(&self) -> Result<Vec<Attachment>, StoreError> {
        let mut out = Vec::new();
        let base = self.root.join("attachments");
        for network in fs::list_dir(&base)? {
            for file in fs::list_dir(&network)? {
                if file.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                if let Some(record) = read_json::<Attachment>(&file)? {
                    out.push(record);
                }
            }
        }
        out.sort_by_key(Attachment::key);
        Ok(out)
    }

    /// Addresses of `record` that no other record on this node holds on the same ENI.
    pub fn releasable(&self, record: &Attachment) -> Result<Vec<IpAddr>, StoreError> {
        let others = self.all()?;
        let key = record.key();
        Ok(record
            .addresses
            .iter()
            .copied()
            .filter(|addr| {
                !others.iter().any(|o| {
                    o.key() != key && o.eni_id == record.eni_id && o.addresses.contains(addr)
                })
            })
            .collect())
    }
}

/// `eni-<mac without colons>`: the name of everything the store keeps per ENI.
fn mac_key(mac: &str) -> String {
    format!("eni-{}", mac.replace(':', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(container: &str, eni: &str, addrs: &[&str]) -> Attachment {
        Attachment {
            network: "net-a".into(),
            container_id: container.into(),
            ifname: "net1".into(),
            eni_id: eni.into(),
            mac: "02:00:c6:12:01:01".into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            phase: Phase::Assigned,
            created_unix: 1,
            netns: None,
            pod: None,
        }
    }

    #[test]
    fn put_get_remove_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let r = record("c1", "eni-1", &["198.18.1.5"]);
        store.put(&r).unwrap();
        assert_eq!(store.get(&r.key()).unwrap(), Some(r.clone()));
        assert_eq!(store.all().unwrap(), vec![r.clone()]);
        store.remove(&r.key()).unwrap();
        store.remove(&r.key()).unwrap();
        assert_eq!(store.get(&r.key()).unwrap(), None);
    }

    #[test]
    fn state_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        Store::open(&root).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn an_address_held_by_another_record_on_the_same_eni_is_not_releasable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = record("c1", "eni-1", &["198.18.1.5", "198.18.1.6"]);
        let b = record("c2", "eni-1", &["198.18.1.5"]);
        let c = record("c3", "eni-2", &["198.18.1.6"]);
        for r in [&a, &b, &c] {
            store.put(r).unwrap();
        }
        assert_eq!(
            store.releasable(&a).unwrap(),
            vec!["198.18.1.6".parse::<IpAddr>().unwrap()]
        );
        store.remove(&b.key()).unwrap();
        assert_eq!(store.releasable(&a).unwrap().len(), 2);
    }

    #[test]
    fn a_corrupt_record_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = record("c1", "eni-1", &["198.18.1.5"]);
        store.put(&r).unwrap();
        std::fs::write(store.record_path(&r.key()), b"{not json").unwrap();
        let e = store.get(&r.key()).unwrap_err();
        assert!(e.to_string().contains("c1:net1.json"), "{e}");
    }
}
