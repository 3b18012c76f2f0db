//! Why the master link could not be found; every variant names the link or namespace concerned.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("master interface {name:?} does not exist on this node")]
    NoSuchLink { name: String },
    #[error("link {name} has no Ethernet MAC address, so it cannot be an ENI")]
    NotEthernet { name: String },
    #[error("cannot enter network namespace {netns}: {reason}")]
    Netns { netns: String, reason: String },
    #[error("interface {ifname} does not exist in {netns}")]
    NoPodInterface { ifname: String, netns: String },
    #[error("interface {ifname} in {netns} has no parent link on the host")]
    NoParent { ifname: String, netns: String },
    #[error("parent link (index {index}) of {ifname} is not in this network namespace")]
    ParentElsewhere { ifname: String, index: u32 },
    #[error("master interface {name} (MAC {mac}) is DOWN, so pods behind it are unreachable")]
    MasterDown { name: String, mac: String },
    #[error("netlink: {0}")]
    Netlink(String),
}
