use super::{format_mac, Host, MasterLink};
use crate::cni::{CniError, ErrorCode};
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
}

fn not_found(msg: String) -> CniError {
    CniError::new(ErrorCode::MasterNotFound, msg)
}

fn open_socket() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// A socket opened inside `netns` stays bound to it; the thread that entered it just ends.
fn open_socket_in(netns: &Path) -> Result<Socket, CniError> {
    let ns = std::fs::File::open(netns).map_err(|e| {
        not_found(format!(
            "cannot open network namespace {}: {e}",
            netns.display()
        ))
        .with_details("the pod sandbox is gone, or set \"master\" in the config")
    })?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        open_socket().map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(0)))
    })
    .join()
    .map_err(|_| not_found("netlink thread failed".into()))?
    .map_err(|e| {
        not_found(format!(
            "cannot enter network namespace {}: {e}",
            netns.display()
        ))
    })
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

fn as_master(link: &Link) -> Result<MasterLink, CniError> {
    match &link.mac {
        // Loopback and tunnels have no (or an all-zero) MAC: never an ENI.
        Some(mac) if mac.len() == 6 && mac.iter().any(|b| *b != 0) => Ok(MasterLink {
            name: link.name.clone(),
            mac: format_mac(mac),
        }),
        _ => Err(not_found(format!(
            "link {} has no Ethernet MAC address, so it cannot be an ENI",
            link.name
        ))
        .with_details("set \"master\" to the host link of a secondary ENI")),
    }
}

impl Host for NetlinkHost {
    fn link_by_name(&self, name: &str) -> Result<MasterLink, CniError> {
        let socket = open_socket().map_err(|e| not_found(format!("netlink: {e}")))?;
        let link = get_link(&socket, Query::Name(name))
            .map_err(|e| not_found(format!("netlink: {e}")))?
            .ok_or_else(|| {
                not_found(format!(
                "master interface {name:?} does not exist on this node"
            ))
            .with_details(
                "check \"master\" in the NetworkAttachmentDefinition against `ip link` on the node",
            )
            })?;
        as_master(&link)
    }

    fn parent_of(&self, netns: &Path, ifname: &str) -> Result<MasterLink, CniError> {
        let pod_socket = open_socket_in(netns)?;
        let pod_link = get_link(&pod_socket, Query::Name(ifname))
            .map_err(|e| not_found(format!("netlink: {e}")))?
            .ok_or_else(|| {
                not_found(format!(
                    "interface {ifname} does not exist in {}",
                    netns.display()
                ))
                .with_details("aws-eni-ip must come after the plugin that creates the interface")
            })?;
        let parent = match (pod_link.parent, pod_link.parent_netnsid) {
            (Some(p), Some(_)) if p != 0 => p,
            _ => {
                return Err(not_found(format!(
                    "interface {ifname} in {} has no parent link on the host",
                    netns.display()
                ))
                .with_details("it is not an ipvlan/macvlan link; set \"master\" in the config"))
            }
        };
        let host = open_socket().map_err(|e| not_found(format!("netlink: {e}")))?;
        let master = get_link(&host, Query::Index(parent))
            .map_err(|e| not_found(format!("netlink: {e}")))?
            .ok_or_else(|| {
                not_found(format!(
                    "parent link (index {parent}) of {ifname} is not in this network namespace"
                ))
                .with_details("run the plugin in the node's network namespace, or set \"master\"")
            })?;
        as_master(&master)
    }
}
