use super::StoreError;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// Exclusive flocks, released on drop (or by the kernel when the process dies).
#[derive(Debug)]
pub struct Locks {
    _held: Vec<Flock<File>>,
}

impl Locks {
    /// Takes `paths` in the order given (callers sort them, so two commands never wait in a cycle),
    /// waiting for each no later than `deadline`.
    pub(crate) fn acquire(paths: &[PathBuf], deadline: Instant) -> Result<Locks, StoreError> {
        let held = paths
            .iter()
            .map(|p| lock_until(p, deadline))
            .collect::<Result<_, _>>()?;
        Ok(Locks { _held: held })
    }

    /// Takes `path` if nobody holds it, without waiting: `None` when someone does.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Locks>, StoreError> {
        match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(Locks { _held: vec![l] })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(StoreError::io("lock", path, e.into())),
        }
    }
}

fn open(path: &Path) -> Result<File, StoreError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open lock", path, e))
}

/// A blocking flock cannot be cancelled, and would stall the async runtime past its deadline: a
/// thread waits in it, and a lock it gets after we gave up is dropped with the channel.
fn lock_until(path: &Path, deadline: Instant) -> Result<Flock<File>, StoreError> {
    let file = match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(l) => return Ok(l),
        Err((file, Errno::EWOULDBLOCK)) => file,
        Err((_, e)) => return Err(StoreError::io("lock", path, e.into())),
    };
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let _ = tx.send(Flock::lock(file, FlockArg::LockExclusive));
    });
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(l)) => Ok(l),
        Ok(Err((_, e))) => Err(StoreError::io("lock", path, e.into())),
        Err(_) => Err(StoreError::LockTimeout {
            path: path.to_path_buf(),
        }),
    }
}
