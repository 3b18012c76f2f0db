//! The records of every state dir on the node, and a wake-up when any of them changes: inotify on
//! the directories the store names (a plugin's ADD or DEL renames or removes a file there), so a
//! new followed attachment is watched at once without polling.

use crate::store::{Attachment, AttachmentKey, NodeDir, Store};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Every record on the node at one moment, and which state dir holds each.
#[derive(Debug, Default)]
pub struct NodeRecords {
    pub stores: Vec<Store>,
    pub records: Vec<Attachment>,
    pub homes: HashMap<AttachmentKey, usize>,
}

impl NodeRecords {
    pub fn read(node: &NodeDir) -> NodeRecords {
        let mut out = NodeRecords::default();
        for dir in node.state_dirs() {
            let store = match Store::open(&dir, node.clone()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "state dir skipped");
                    continue;
                }
            };
            match store.all() {
                Ok(records) => {
                    for r in records {
                        out.homes.insert(r.key(), out.stores.len());
                        out.records.push(r);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list records; skipped"),
            }
            out.stores.push(store);
        }
        out
    }

    /// The state dir that holds `key`'s record.
    pub fn store_of(&self, key: &AttachmentKey) -> Option<&Store> {
        self.homes.get(key).map(|i| &self.stores[*i])
    }

    /// Every directory whose change means a record came or went.
    pub fn dirs(&self, node: &NodeDir) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.stores.iter().flat_map(Store::record_dirs).collect();
        dirs.push(node.registry_dir());
        dirs
    }
}

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Wakes the agent when a record changes.
pub struct RecordWatcher {
    fd: AsyncFd<InotifyFd>,
}

impl RecordWatcher {
    pub fn new() -> io::Result<RecordWatcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: the Inotify owns its fd, keeps it open until dropped with the AsyncFd, and
        // as_raw_fd always returns that one fd.
        let fd = unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(RecordWatcher { fd })
    }

    /// Watches `dirs` (again: a directory already watched keeps its one watch).
    pub fn watch(&self, dirs: &[PathBuf]) {
        let flags = AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_ONLYDIR;
        for dir in dirs {
            if let Err(e) = self.fd.get_ref().0.add_watch(dir.as_path(), flags) {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch");
            }
        }
    }

    /// Waits until something changed, then takes every event queued (one wake-up for a burst).
    pub async fn changed(&self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                Ok(Ok(events)) if !events.is_empty() => {
                    while let Ok(more) = self.fd.get_ref().0.read_events() {
                        if more.is_empty() {
                            break;
                        }
                    }
                    return Ok(());
                }
                Ok(Ok(_)) | Err(_) => continue,
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}
