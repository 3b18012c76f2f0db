use super::{format_mac, Host, HostError, MasterLink};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::path::Path;

/// rtnetlink over a plain socket: one RTM_GETLINK per lookup, no async runtime needed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetlinkHost;

struct Link {
    name: String,
    mac: Option<Vec<u8>>,
    parent: Option<u32>,
    parent_netnsid: Option<i32>,
    up: bool,
}

fn netlink(e: impl std::fmt::Display) -> HostError {
    HostError::Netlink(e.to_string())
}

fn open_socket() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// A socket opened inside `netns` stays bound to it; the thread that entered it just ends.
fn open_socket_in(netns: &Path) -> Result<Socket, HostError> {
    let failed = |reason: String| HostError::Netns {
        netns: netns.display().to_string(),
        reason,
    };
    let ns = super::open_netns(netns)?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        open_socket().map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(0)))
    })
    .join()
    .map_err(|_| failed("the netlink thread died".into()))?
    .map_err(|e| failed(e.to_string()))
}

/// What to ask the kernel for: one link by name or index (a dump would read every link on the node).
enum Query<'a> {
    Name(&'a str),
    Index(u32),
}

/// RTM_GETLINK for one link; `None` when it does not exist.
fn get_link(socket: &Socket, query: Query) -> std::io::Result<Option<Link>> {
    let mut message = LinkMessage::default();
    match query {
        Query::Name(name) => message
            .attributes
            .push(LinkAttribute::IfName(name.to_string())),
        Query::Index(index) => message.header.index = index,
    }
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(message)),
    );
    request.header.flags = NLM_F_REQUEST;
    request.header.sequence_number = 1;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut rx = vec![0u8; 1 << 16];
    let size = socket.recv(&mut &mut rx[..], 0)?;
    let reply: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&rx[..size])
        .map_err(|e| std::io::Error::other(format!("bad netlink reply: {e}")))?;
    match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => Ok(Some(to_link(m))),
        NetlinkPayload::Error(e) if e.raw_code() == -libc_enodev() => Ok(None),
        NetlinkPayload::Error(e) => Err(e.to_io()),
        other => Err(std::io::Error::other(format!(
            "unexpected netlink reply {other:?}"
        ))),
    }
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

fn to_link(m: LinkMessage) -> Link {
    let mut link = Link {
        name: String::new(),
        mac: None,
        parent: None,
        parent_netnsid: None,
        up: m
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up),
    };
    for attr in m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = Some(a),
            LinkAttribute::Link(i) => link.parent = Some(i),
            LinkAttribute::LinkNetNsId(id) => link.parent_netnsid = Some(id),
            _ => {}
        }
    }
    link
}

fn as_master(link: &Link) -> Result<MasterLink, HostError> {
    match &link.mac {
        // Loopback and tunnels have no (or an all-zero) MAC: never an ENI.
        Some(mac) if mac.len() == 6 && mac.iter().any(|b| *b != 0) => Ok(MasterLink {
            name: link.name.clone(),
            mac: format_mac(mac),
            up: link.up,
        }),
        _ => Err(HostError::NotEthernet {
            name: link.name.clone(),
        }),
    }
}

impl Host for NetlinkHost {
    fn link_by_name(&self, name: &str) -> Result<MasterLink, HostError> {
        let socket = open_socket().map_err(netlink)?;
        let link = get_link(&socket, Query::Name(name))
            .map_err(netlink)?
            .ok_or_else(|| HostError::NoSuchLink { name: name.into() })?;
        as_master(&link)
    }

    fn parent_of(&self, netns: &Path, ifname: &str) -> Result<MasterLink, HostError> {
        let pod_socket = open_socket_in(netns)?;
        let pod_link = get_link(&pod_socket, Query::Name(ifname))
            .map_err(netlink)?
            .ok_or_else(|| HostError::NoPodInterface {
                ifname: ifname.into(),
                netns: netns.display().to_string(),
            })?;
        let parent = match (pod_link.parent, pod_link.parent_netnsid) {
            (Some(p), Some(_)) if p != 0 => p,
            _ => {
                return Err(HostError::NoParent {
                    ifname: ifname.into(),
                    netns: netns.display().to_string(),
                })
            }
        };
        let host = open_socket().map_err(netlink)?;
        let master = get_link(&host, Query::Index(parent))
            .map_err(netlink)?
            .ok_or_else(|| HostError::ParentElsewhere {
                ifname: ifname.into(),
                index: parent,
            })?;
        as_master(&master)
    }
}
