use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Where an attachment's assignment stands; `Assigning` is written before the EC2 call so that a
/// crash between the call and the record still leaves DEL something to release. `Releasing`: DEL
/// failed for a reason its retry would not fix and handed the release to the node agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Assigning,
    Assigned,
    Releasing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Assigning => "assigning",
            Phase::Assigned => "assigned",
            Phase::Releasing => "releasing",
        }
    }
}

/// The network asked the agent to follow addresses added in the pod at run time (`followAddresses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Follow {
    /// The network's `allowReassignment` at ADD: a followed address is taken over by the same rule.
    pub allow_reassignment: bool,
    /// Addresses the agent added to `addresses` at run time; only these are given back on removal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttachmentKey {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

/// One pod interface's addresses on one ENI, as this node assigned them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub eni_id: String,
    pub mac: String,
    pub addresses: Vec<IpAddr>,
    pub phase: Phase,
    pub created_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The instance the ENI was attached to at ADD; release touches EC2 only while it still is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Addresses that were on the ENI before this attachment's first assign: never released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<IpAddr>,
    /// Written by IPAM mode: a chained aws-eni-ip later in the same chain has nothing to do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_ipam: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<Follow>,
    /// Why DEL handed the release to the agent (phase `releasing`), for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_error: Option<String>,
    /// When ADD committed (phase `assigned`): the agent's grace runs from here, not from the
    /// write-ahead record, since a throttled ADD may take longer than the grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_unix_ms: Option<u64>,
    /// IPAM mode's count-based assign: what the ENI held before EC2 chose, so that an unknown
    /// outcome (timeout, crash) is resolved from the ENI's listing, never by asking again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eni_before: Option<Vec<IpAddr>>,
}

/// Longest network name, container id or ifname a record may carry (a file name is 255 bytes).
pub const MAX_KEY_PART: usize = 200;

impl AttachmentKey {
    /// Records are read back as root by the agent: a part that could name another path is refused.
    pub fn check(&self) -> Result<(), String> {
        for (what, part) in [
            ("network", &self.network),
            ("container id", &self.container_id),
            ("ifname", &self.ifname),
        ] {
            if part.is_empty() || part.len() > MAX_KEY_PART {
                return Err(format!(
                    "{what} {part:?} is empty or longer than {MAX_KEY_PART} bytes"
                ));
            }
            if part == "." || part == ".." || part.contains(['/', '\\', '\0']) {
                return Err(format!("{what} {part:?} could name another path"));
            }
        }
        if self.container_id.contains(':') {
            return Err(format!(
                "container id {:?} contains ':', which separates it from the ifname",
                self.container_id
            ));
        }
        Ok(())
    }
}

impl Attachment {
    /// Since when the agent may count this record's sandbox as missing: the commit, else (an
    /// older version's record, or one still assigning) the write-ahead record.
    pub fn committed_ms(&self) -> u64 {
        self.committed_unix_ms
            .unwrap_or(self.created_unix.saturating_mul(1000))
    }

    pub fn key(&self) -> AttachmentKey {
        AttachmentKey {
            network: self.network.clone(),
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}
