//! Address events of one interface inside a pod's netns (RTM_NEWADDR / RTM_DELADDR). A route
//! socket opened by a thread that entered the netns stays bound to it; the caller reads it from
//! its own event loop (the socket is non-blocking), so no thread waits per pod.

use super::HostError;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

/// Multicast groups of `linux/rtnetlink.h`.
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;

/// One change of the watched interface's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressChange {
    Added(IpAddr),
    Removed(IpAddr),
}

/// A subscribed route socket in a pod's netns, for one interface.
#[derive(Debug)]
pub struct AddressSocket {
    socket: Socket,
    index: u32,
}

impl AsRawFd for AddressSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

fn netns_error(netns: &Path, reason: impl std::fmt::Display) -> HostError {
    HostError::Netns {
        netns: netns.display().to_string(),
        reason: reason.to_string(),
    }
}

impl AddressSocket {
    /// Subscribes to address events inside `netns`, then lists what `ifname` has now: subscribing
    /// first means nothing added in between is missed. Returns the socket (non-blocking) and the
    /// addresses present once the events that arrived during the listing are applied.
    pub fn open(netns: &Path, ifname: &str) -> Result<(AddressSocket, Vec<IpAddr>), HostError> {
        let ns = super::open_netns(netns)?;
        // setns changes the calling thread: never one of the runtime's, so a thread of its own.
        let socket = std::thread::spawn(move || -> io::Result<Socket> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let mut s = Socket::new(NETLINK_ROUTE)?;
            s.bind_auto()?;
            s.add_membership(RTNLGRP_IPV4_IFADDR)?;
            s.add_membership(RTNLGRP_IPV6_IFADDR)?;
            Ok(s)
        })
        .join()
        .map_err(|_| netns_error(netns, "the thread entering the netns died"))?
        .map_err(|e| netns_error(netns, e))?;
        let mut queued = Vec::new();
        let index = link_index(&socket, ifname, &mut queued)
            .map_err(|e| HostError::Netlink(e.to_string()))?
            .ok_or_else(|| HostError::NoPodInterface {
                ifname: ifname.into(),
                netns: netns.display().to_string(),
            })?;
        let watch = AddressSocket { socket, index };
        let mut present = watch
            .dump(&mut queued)
            .map_err(|e| HostError::Netlink(e.to_string()))?;
        for change in watch.mine(queued) {
            apply(&mut present, change);
        }
        watch
            .socket
            .set_non_blocking(true)
            .map_err(|e| HostError::Netlink(e.to_string()))?;
        Ok((watch, present))
    }

    /// The changes in one datagram; `WouldBlock` when none is queued.
    pub fn read(&self) -> io::Result<Vec<AddressChange>> {
        let mut buf = vec![0u8; 1 << 16];
        let n = self.socket.recv(&mut &mut buf[..], 0)?;
        let mut out = Vec::new();
        for m in parse(&buf[..n])? {
            if let Some(c) = change_of(m) {
                out.push(c);
            }
        }
        Ok(self.mine(out))
    }

    fn mine(&self, changes: Vec<(u32, AddressChange)>) -> Vec<AddressChange> {
        changes
            .into_iter()
            .filter(|(i, _)| *i == self.index)
            .map(|(_, c)| c)
            .collect()
    }

    /// RTM_GETADDR dump: the interface's addresses now; events seen meanwhile go to `queued`.
    fn dump(&self, queued: &mut Vec<(u32, AddressChange)>) -> io::Result<Vec<IpAddr>> {
        let seq = 2;
        send(
            &self.socket,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
        )?;
        let mut present = Vec::new();
        loop {
            let mut buf = vec![0u8; 1 << 16];
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
            for m in parse(&buf[..n])? {
                let ours = m.header.sequence_number == seq;
                match m.payload {
                    NetlinkPayload::Done(_) if ours => return Ok(present),
                    NetlinkPayload::Error(e) if ours => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) if ours => {
                        if a.header.index == self.index {
                            present.extend(address_of(&a));
                        }
                    }
                    _ => queued.extend(change_of(m)),
                }
            }
        }
    }
}

fn apply(present: &mut Vec<IpAddr>, change: AddressChange) {
    match change {
        AddressChange::Added(a) if !present.contains(&a) => present.push(a),
        AddressChange::Removed(a) => present.retain(|x| *x != a),
        AddressChange::Added(_) => {}
    }
}

/// The interface index of `ifname`; address events seen meanwhile go to `queued`.
fn link_index(
    socket: &Socket,
    ifname: &str,
    queued: &mut Vec<(u32, AddressChange)>,
) -> io::Result<Option<u32>> {
    let seq = 1;
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(ifname.to_string()));
    send(
        socket,
        RouteNetlinkMessage::GetLink(message),
        NLM_F_REQUEST,
        seq,
    )?;
    loop {
        let mut buf = vec![0u8; 1 << 16];
        let n = socket.recv(&mut &mut buf[..], 0)?;
        for m in parse(&buf[..n])? {
            if m.header.sequence_number != seq {
                queued.extend(change_of(m));
                continue;
            }
            return match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    Ok(Some(l.header.index))
                }
                NetlinkPayload::Error(e) if e.raw_code() == -(nix::errno::Errno::ENODEV as i32) => {
                    Ok(None)
                }
                NetlinkPayload::Error(e) => Err(e.to_io()),
                other => Err(io::Error::other(format!(
                    "unexpected netlink reply {other:?}"
                ))),
            };
        }
    }
}

pub(super) fn send(
    socket: &Socket,
    msg: RouteNetlinkMessage,
    flags: u16,
    seq: u32,
) -> io::Result<()> {
    let mut request = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
    request.header.flags = flags;
    request.header.sequence_number = seq;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0).map(|_| ())
}

/// Every netlink message in one datagram.
pub(super) fn parse(mut buf: &[u8]) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len])
            .map_err(|e| io::Error::other(format!("bad netlink message: {e}")))?;
        out.push(m);
        // Messages are aligned to 4 bytes.
        let step = (len + 3) & !3;
        buf = &buf[step.min(buf.len())..];
    }
    Ok(out)
}

fn address_of(a: &AddressMessage) -> Option<IpAddr> {
    let local = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

fn change_of(m: NetlinkMessage<RouteNetlinkMessage>) -> Option<(u32, AddressChange)> {
    match m.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => {
            address_of(&a).map(|ip| (a.header.index, AddressChange::Added(ip)))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => {
            address_of(&a).map(|ip| (a.header.index, AddressChange::Removed(ip)))
        }
        _ => None,
    }
}
