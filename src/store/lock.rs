use super::StoreError;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;

/// Exclusive flocks, released on drop (or by the kernel when the process dies).
#[derive(Debug)]
pub struct Locks {
    _held: Vec<Flock<File>>,
}

impl Locks {
    /// Takes `paths` in the order given; callers sort them so two commands never wait in a cycle.
    pub(crate) fn acquire(paths: &[std::path::PathBuf]) -> Result<Locks, StoreError> {
        let held = paths.iter().map(|p| lock(p)).collect::<Result<_, _>>()?;
        Ok(Locks { _held: held })
    }
}

fn lock(path: &Path) -> Result<Flock<File>, StoreError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open lock", path, e))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| StoreError::io("lock", path, std::io::Error::from(e)))
}
