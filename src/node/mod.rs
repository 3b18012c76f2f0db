//! Host side: which link is the master, its MAC (the key to the ENI in IMDS), and the address
//! events of a pod interface (for the agent).

mod addrwatch;
mod error;
mod netlink;

pub use addrwatch::{AddressChange, AddressSocket};
pub use error::HostError;
pub use netlink::NetlinkHost;

use std::path::Path;

/// The host link whose ENI receives the pod's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterLink {
    pub name: String,
    /// Lowercase, colon-separated, as IMDS spells it.
    pub mac: String,
}

pub trait Host {
    /// The host link called `name`.
    fn link_by_name(&self, name: &str) -> Result<MasterLink, HostError>;
    /// The parent (IFLA_LINK) of `ifname` inside `netns`: the ipvlan/macvlan master.
    fn parent_of(&self, netns: &Path, ifname: &str) -> Result<MasterLink, HostError>;
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
