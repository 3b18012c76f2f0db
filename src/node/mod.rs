//! Host side: which link is the master, its MAC (the key to the ENI in IMDS), and the address
//! events of a pod interface (for the agent).

mod addrwatch;
mod error;
mod links;
mod netlink;

pub use addrwatch::{AddressChange, AddressSocket};
pub use error::HostError;
pub use links::{host_links, set_link_up, HostLink, LinkEvents};
pub use netlink::NetlinkHost;

use std::path::Path;

/// The host link whose ENI receives the pod's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterLink {
    pub name: String,
    /// Lowercase, colon-separated, as IMDS spells it.
    pub mac: String,
    /// Administratively up: a DOWN master (a hot-attached ENI) carries no pod traffic.
    pub up: bool,
}

pub trait Host {
    /// The host link called `name`.
    fn link_by_name(&self, name: &str) -> Result<MasterLink, HostError>;
    /// The parent (IFLA_LINK) of `ifname` inside `netns`: the ipvlan/macvlan master.
    fn parent_of(&self, netns: &Path, ifname: &str) -> Result<MasterLink, HostError>;
}

/// Opens a network namespace handle named by a record or the runtime: never blocks (a FIFO at the
/// path would hang the caller), and only a namespace file (nsfs) is accepted.
pub fn open_netns(netns: &Path) -> Result<std::fs::File, HostError> {
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |reason: String| HostError::Netns {
        netns: netns.display().to_string(),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(netns)
        .map_err(|e| refuse(e.to_string()))?;
    let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| refuse(e.to_string()))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(refuse("not a network namespace (nsfs) file".into()));
    }
    Ok(file)
}

pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_are_lowercase_colon_separated() {
        assert_eq!(
            super::format_mac(&[0x02, 0x00, 0xC6, 0x12, 0x01, 0x0A]),
            "02:00:c6:12:01:0a"
        );
    }
}

#[cfg(test)]
mod netns_tests {
    #[test]
    fn a_fifo_or_a_plain_file_named_as_a_netns_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR).unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        for path in [fifo, plain] {
            let (tx, rx) = std::sync::mpsc::channel();
            let p = path.clone();
            std::thread::spawn(move || tx.send(super::open_netns(&p).is_err()).unwrap());
            assert!(
                rx.recv_timeout(std::time::Duration::from_secs(5))
                    .expect("never blocks"),
                "{} refused",
                path.display()
            );
        }
    }
}
