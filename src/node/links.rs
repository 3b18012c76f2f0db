//! The host's links as the agent needs them: which exist with which MAC and whether they are up,
//! setting one up (IFF_UP, nothing else), and a route socket that wakes on any link change.

use super::addrwatch::{parse, send};
use super::{format_mac, HostError};
use netlink_packet_core::{NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// `RTNLGRP_LINK` of `linux/rtnetlink.h`.
const RTNLGRP_LINK: u32 = 1;

/// One link of this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    pub index: u32,
    pub name: String,
    /// Lowercase, colon-separated; `None` for links without an Ethernet address.
    pub mac: Option<String>,
    /// Administratively up (IFF_UP).
    pub up: bool,
}

fn netlink(e: impl std::fmt::Display) -> HostError {
    HostError::Netlink(e.to_string())
}

fn request_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Every link of the namespace (RTM_GETLINK dump).
pub fn host_links() -> Result<Vec<HostLink>, HostError> {
    let socket = request_socket().map_err(netlink)?;
    let seq = 7;
    send(
        &socket,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
    )
    .map_err(netlink)?;
    let mut out = Vec::new();
    loop {
        let mut buf = vec![0u8; 1 << 16];
        let n = socket.recv(&mut &mut buf[..], 0).map_err(netlink)?;
        for m in parse(&buf[..n]).map_err(netlink)? {
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => return Err(netlink(e.to_io())),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    out.push(host_link(l))
                }
                _ => {}
            }
        }
    }
}

fn host_link(m: LinkMessage) -> HostLink {
    let mut link = HostLink {
        index: m.header.index,
        name: String::new(),
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for attr in m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) if a.len() == 6 && a.iter().any(|b| *b != 0) => {
                link.mac = Some(format_mac(&a))
            }
            _ => {}
        }
    }
    link
}

/// Sets IFF_UP on the link, and changes nothing else (no address, route or other flag).
pub fn set_link_up(index: u32) -> Result<(), HostError> {
    let socket = request_socket().map_err(netlink)?;
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    send(
        &socket,
        RouteNetlinkMessage::SetLink(m),
        NLM_F_REQUEST | NLM_F_ACK,
        8,
    )
    .map_err(netlink)?;
    let mut buf = vec![0u8; 1 << 16];
    let n = socket.recv(&mut &mut buf[..], 0).map_err(netlink)?;
    for m in parse(&buf[..n]).map_err(netlink)? {
        if let NetlinkPayload::Error(e) = m.payload {
            if e.code.is_some() {
                return Err(netlink(e.to_io()));
            }
        }
    }
    Ok(())
}

/// A non-blocking route socket subscribed to link changes (a link added, removed, up or down).
#[derive(Debug)]
pub struct LinkEvents {
    socket: Socket,
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl LinkEvents {
    pub fn open() -> Result<LinkEvents, HostError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(netlink)?;
        socket.bind_auto().map_err(netlink)?;
        socket.add_membership(RTNLGRP_LINK).map_err(netlink)?;
        socket.set_non_blocking(true).map_err(netlink)?;
        Ok(LinkEvents { socket })
    }

    /// Drains what is queued; `WouldBlock` when nothing was.
    pub fn drain(&self) -> io::Result<usize> {
        let mut n = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match self.socket.recv(&mut &mut buf[..], 0) {
                Ok(_) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => return Ok(n),
                // The kernel dropped events (ENOBUFS): the caller looks at every link anyway.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => n += 1,
                Err(e) => return Err(e),
            }
        }
    }
}
