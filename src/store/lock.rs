use crate::cni::CniError;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::net::IpAddr;
use std::path::Path;

/// Exclusive flocks, released on drop (or by the kernel when the process dies).
#[derive(Debug)]
pub struct AddressLocks {
    _held: Vec<Flock<File>>,
}

impl AddressLocks {
    pub fn acquire(dir: &Path, addresses: &[IpAddr]) -> Result<AddressLocks, CniError> {
        let mut sorted = addresses.to_vec();
        sorted.sort();
        sorted.dedup();
        let held = sorted
            .iter()
            .map(|addr| lock(&dir.join(format!("{addr}.lock"))))
            .collect::<Result<_, _>>()?;
        Ok(AddressLocks { _held: held })
    }

    /// One named lock, e.g. for the first ADD on an ENI.
    pub fn acquire_named(dir: &Path, name: &str) -> Result<AddressLocks, CniError> {
        Ok(AddressLocks {
            _held: vec![lock(&dir.join(format!("{name}.lock")))?],
        })
    }
}

fn lock(path: &Path) -> Result<Flock<File>, CniError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| CniError::io(format!("cannot open lock {}: {e}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| CniError::io(format!("cannot lock {}: {e}", path.display())))
}
