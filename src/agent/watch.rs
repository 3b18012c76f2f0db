//! Where address events come from: a netlink socket in each followed pod's netns, read through
//! the runtime's epoll (no polling, no thread per pod). The follower sees only the traits.

use crate::node::{AddressChange, AddressSocket, HostError};
use std::io;
use std::net::IpAddr;
use std::path::Path;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Opens watches on pod interfaces.
pub trait AddressSource {
    type Watch: AddressWatch + 'static;
    /// Subscribes, then returns what `ifname` in `netns` has now: nothing in between is missed.
    fn open(&self, netns: &Path, ifname: &str) -> Result<(Self::Watch, Vec<IpAddr>), HostError>;
}

/// The changes of one pod interface, as they come.
#[allow(async_fn_in_trait)]
pub trait AddressWatch {
    /// Waits for the next changes; an error ends the watch.
    async fn next(&mut self) -> io::Result<Vec<AddressChange>>;
}

/// The kernel's events, through a route socket bound to the pod's netns.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetlinkSource;

pub struct NetlinkWatch {
    socket: AsyncFd<AddressSocket>,
}

impl AddressSource for NetlinkSource {
    type Watch = NetlinkWatch;

    fn open(&self, netns: &Path, ifname: &str) -> Result<(NetlinkWatch, Vec<IpAddr>), HostError> {
        let (socket, present) = AddressSocket::open(netns, ifname)?;
        // SAFETY: the socket owns its fd, keeps it open until dropped with the AsyncFd, and
        // as_raw_fd always returns that one fd.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| HostError::Netlink(io::Error::from(e).to_string()))?;
        Ok((NetlinkWatch { socket }, present))
    }
}

impl AddressWatch for NetlinkWatch {
    async fn next(&mut self) -> io::Result<Vec<AddressChange>> {
        loop {
            let mut ready = self.socket.readable().await?;
            match ready.try_io(|s| s.get_ref().read()) {
                Ok(Ok(changes)) if changes.is_empty() => continue,
                Ok(result) => return result,
                // Woken, but another read took the data: wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Addresses no VPC routes to an ENI: never worth a lock or a call.
pub fn never_routed(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_multicast(),
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}
