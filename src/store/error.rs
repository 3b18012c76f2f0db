//! What can go wrong with the state on disk; the commands turn it into a CNI reply, the agent into a
//! log line and a metric.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// Another plugin process held the lock until the command's deadline.
    #[error("timed out waiting for lock {}", path.display())]
    LockTimeout { path: PathBuf },
    /// A record key that would name a path outside its network's directory.
    #[error("refusing record key {network}/{container_id}:{ifname}: {reason}")]
    BadKey {
        network: String,
        container_id: String,
        ifname: String,
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
