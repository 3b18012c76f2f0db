//! A requester's ticket: a flock on `<ticket>.live`, held for as long as the requester waits.
//! The kernel drops it when the process dies, in whatever PID namespace it ran: liveness by flock,
//! never by pid.

use crate::store::StoreError;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A request's name in the spool, and the lock that says its requester still waits for it.
#[derive(Debug)]
pub struct Ticket {
    name: String,
    _live: Flock<File>,
}

impl Ticket {
    /// Creates and locks `<dir>/<name>.live`; a name already taken is an error, never shared.
    pub(super) fn take(dir: &Path, name: String) -> Result<Ticket, StoreError> {
        let path = dir.join(format!("{name}.live"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::io("create the ticket", &path, e))?;
        let live = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| StoreError::io("lock the ticket", &path, e.into()))?;
        Ok(Ticket { name, _live: live })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What the flock of a `.live` file says about its requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Liveness {
    /// Someone holds it: the requester waits.
    Waiting,
    /// Nobody holds it, or it is gone: the requester died or gave up.
    Gone,
}

/// Probes without blocking; a probe that wins the lock releases it at once.
pub(super) fn liveness(live: &Path) -> Liveness {
    let Ok(file) = File::open(live) else {
        return Liveness::Gone;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => Liveness::Gone,
        Err((_, Errno::EWOULDBLOCK)) => Liveness::Waiting,
        // A lock that cannot be probed is taken as held: dropping a live request costs a pod.
        Err(_) => Liveness::Waiting,
    }
}
