use crate::cni::CniError;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::net::IpAddr;
use std::path::Path;

/// Exclusive flocks on a set of addresses, released on drop (or by the kernel when the process dies).
#[derive(Debug)]
pub struct AddressLocks {
    _held: Vec<Flock<File>>,
}

impl AddressLocks {
    pub fn acquire(dir: &Path, addresses: &[IpAddr]) -> Result<AddressLocks, CniError> {
        let mut sorted = addresses.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut held = Vec::with_capacity(sorted.len());
        for addr in sorted {
            let path = dir.join(format!("{addr}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| CniError::io(format!("cannot open lock {}: {e}", path.display())))?;
            let lock = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| CniError::io(format!("cannot lock {}: {e}", path.display())))?;
            held.push(lock);
        }
        Ok(AddressLocks { _held: held })
    }
}
