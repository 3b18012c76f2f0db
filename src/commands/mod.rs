//! The CNI commands, written against the `Aws` and `Host` traits. Each file reads top to bottom
//! in the order of DESIGN.md's flow for that command.

pub mod add;
pub mod assign;
pub mod batch;
pub mod check;
pub mod del;
pub mod drift;
pub mod eni;
pub mod errors;
pub mod follow;
pub mod gc;
pub mod ipam;
pub mod release;
pub mod safety;
pub mod status;
pub mod unknown;

#[cfg(test)]
pub(crate) mod tests;

use crate::cni::{Environment, NetConf};
use crate::config::PluginConfig;
use crate::store::{AttachmentKey, Store};
use std::net::IpAddr;

/// Everything a command needs, validated before any side effect.
pub struct Ctx<'a, A, H> {
    pub env: &'a Environment,
    pub conf: &'a NetConf,
    pub config: &'a PluginConfig,
    pub store: &'a Store,
    pub aws: &'a A,
    pub host: &'a H,
    /// When the command must be done (timeoutMs from its start): lock waits end here too.
    pub deadline: std::time::Instant,
}

impl<A, H> Ctx<'_, A, H> {
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey {
            network: self.conf.name.clone(),
            container_id: self.env.container_id.clone(),
            ifname: self.env.ifname.clone(),
        }
    }
}

/// What a command did, for the one log line per operation.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub eni: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub note: String,
    /// DEL left the release to the node agent (see `del.rs`).
    pub handed_off: bool,
}

impl Summary {
    pub fn note(note: impl Into<String>) -> Summary {
        Summary {
            note: note.into(),
            ..Summary::default()
        }
    }
}

pub fn split_families(addrs: &[IpAddr]) -> (Vec<std::net::Ipv4Addr>, Vec<std::net::Ipv6Addr>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for a in addrs {
        match a {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    (v4, v6)
}

pub fn list<T: ToString>(addrs: &[T]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
