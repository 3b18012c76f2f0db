//! What the plugin asks of AWS, as two traits (IMDS and EC2) so command logic runs against fakes,
//! the aws-sdk implementation, and the retry policy both share.

pub mod aws;
pub mod calls;
pub mod error;
pub mod gate;
pub mod retry;
pub mod subnet;

pub use error::CloudError;

use ipnetwork::{Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The ENI behind a MAC, as IMDS describes it; none of it changes while the ENI is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EniFacts {
    pub eni_id: String,
    pub mac: String,
    pub device_number: u32,
    pub subnet_id: String,
    pub vpc_id: String,
    pub subnet_ipv4_cidrs: Vec<Ipv4Network>,
    pub subnet_ipv6_cidrs: Vec<Ipv6Network>,
    /// EC2 cannot unassign it, so a pod given it could never be deleted cleanly.
    #[serde(default)]
    pub primary_ipv4: Option<Ipv4Addr>,
    /// The instance it is attached to (IMDS `instance-id`).
    #[serde(default)]
    pub instance_id: Option<String>,
}

impl EniFacts {
    /// Written by a version that did not read every fact the safety rules need: read IMDS again.
    pub fn is_complete(&self) -> bool {
        self.primary_ipv4.is_some() && self.instance_id.is_some()
    }
}

/// What IMDS says of a MAC now: the ENI behind it while it is attached to this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedEni {
    pub eni_id: String,
    pub primary_ipv4: Option<Ipv4Addr>,
}

/// An ENI as EC2 sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EniView {
    pub eni_id: String,
    pub primary_ipv4: Option<Ipv4Addr>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub tags: BTreeMap<String, String>,
    /// The instance it is attached to, if any.
    pub instance_id: Option<String>,
    pub description: String,
}

/// The tag that tells the VPC CNI to leave an ENI alone.
pub const NO_MANAGE_TAG: &str = "node.k8s.amazonaws.com/no_manage";

impl EniView {
    pub fn unmanaged_by_vpc_cni(&self) -> bool {
        self.tags.get(NO_MANAGE_TAG).map(String::as_str) == Some("true")
    }

    pub fn holds(&self, addr: std::net::IpAddr) -> bool {
        match addr {
            std::net::IpAddr::V4(a) => self.ipv4.contains(&a),
            std::net::IpAddr::V6(a) => self.ipv6.contains(&a),
        }
    }
}

/// Instance metadata (IMDSv2).
#[allow(async_fn_in_trait)]
pub trait Metadata {
    async fn region(&self) -> Result<String, CloudError>;
    async fn eni_facts(&self, mac: &str) -> Result<EniFacts, CloudError>;
    /// The ENI behind `mac` if it is attached to this instance now; `None` when IMDS no longer
    /// lists the MAC (detached, or moved to another instance).
    async fn attached_eni(&self, mac: &str) -> Result<Option<AttachedEni>, CloudError>;
    /// The MACs of every ENI attached to this instance now: one request.
    async fn attached_macs(&self) -> Result<Vec<String>, CloudError>;
    /// This instance's id; also the cheap call that proves IMDS answers (STATUS).
    async fn instance_id(&self) -> Result<String, CloudError>;
    /// The addresses IMDS lists for the ENI behind `mac` (`local-ipv4s`, `ipv6s`): no EC2 call,
    /// but it lags behind a change. Empty where the source cannot tell.
    async fn eni_addresses(&self, mac: &str) -> Result<Vec<std::net::IpAddr>, CloudError> {
        let _ = mac;
        Ok(Vec::new())
    }
    /// This instance's type (IMDS `instance-type`), for its per-ENI address limit; `None` where
    /// the source cannot tell.
    async fn instance_type(&self) -> Result<Option<String>, CloudError> {
        Ok(None)
    }
}

/// The EC2 calls the plugin makes; every call is retried inside the command's deadline.
#[allow(async_fn_in_trait)]
pub trait Ec2 {
    async fn assign_ipv4(
        &self,
        eni: &str,
        addrs: &[Ipv4Addr],
        allow_reassignment: bool,
    ) -> Result<(), CloudError>;
    async fn unassign_ipv4(&self, eni: &str, addrs: &[Ipv4Addr]) -> Result<(), CloudError>;
    async fn assign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError>;
    async fn unassign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError>;
    /// Waits until the node's budget has a token for `action`, or until `until`, taking none:
    /// a batch leader claims its requests after this wait, so that those who come meanwhile share the call.
    async fn pace(&self, action: &'static str, until: std::time::Instant) {
        let _ = (action, until);
    }
    /// EC2 chooses `count` free IPv4 addresses of the ENI's subnet and assigns them.
    async fn assign_ipv4_count(&self, eni: &str, count: u32) -> Result<Vec<Ipv4Addr>, CloudError>;
    /// EC2 chooses `count` free IPv6 addresses of the ENI's subnet and assigns them.
    async fn assign_ipv6_count(&self, eni: &str, count: u32) -> Result<Vec<Ipv6Addr>, CloudError>;
    async fn describe_eni(&self, eni: &str) -> Result<EniView, CloudError>;
    /// Every ENI that holds one of `addrs` now (DescribeNetworkInterfaces by address filter).
    async fn holders(&self, addrs: &[std::net::IpAddr]) -> Result<Vec<EniView>, CloudError>;
    /// The ENI with this MAC, as EC2 sees it (IMDS may lag behind a fresh attachment).
    async fn eni_by_mac(&self, mac: &str) -> Result<Option<EniView>, CloudError>;
    /// IPv4 addresses an ENI of `instance_type` may hold, its primary included
    /// (DescribeInstanceTypes); `None` where the source cannot tell.
    async fn eni_address_limit(&self, instance_type: &str) -> Result<Option<u32>, CloudError> {
        let _ = instance_type;
        Ok(None)
    }
}

/// Where the region read from IMDS is kept between processes; the cloud layer is handed one.
pub trait RegionCache {
    fn load(&self) -> Option<String>;
    fn save(&self, region: &str);
}

/// No cache (the state dir is unusable): every process asks IMDS.
impl<C: RegionCache> RegionCache for Option<C> {
    fn load(&self) -> Option<String> {
        self.as_ref()?.load()
    }

    fn save(&self, region: &str) {
        if let Some(c) = self {
            c.save(region)
        }
    }
}

/// The node's pace for mutating EC2 calls, shared by every process on the node; the cloud layer
/// asks it before each attempt and tells it about throttled answers.
pub trait CallBudget: Send + Sync {
    /// Takes one token for `action`, a call begun at `started`: how long to wait before sending,
    /// or `None` when the wait would end past `deadline` (nothing taken).
    fn reserve(
        &self,
        action: &'static str,
        started: std::time::Instant,
        deadline: std::time::Instant,
    ) -> Option<std::time::Duration>;
    /// [`CallBudget::reserve`] for a call its runtime would make again if refused (a plugin
    /// command's): a token that would come too late may be lent, the call going just before
    /// `deadline`, and repaid by the node's next calls.
    fn lend(
        &self,
        action: &'static str,
        started: std::time::Instant,
        deadline: std::time::Instant,
    ) -> Option<std::time::Duration> {
        self.reserve(action, started, deadline)
    }
    /// How long until `action` has a token, taking none.
    fn ready_in(&self, action: &'static str) -> std::time::Duration;
    /// EC2 answered "slow down" to `action`'s attempt sent at `sent`: once per congestion episode, slow the node down.
    fn throttled(&self, action: &'static str, sent: std::time::Instant);
    /// EC2 took the call (whatever its answer): it counts towards what the account grants the node.
    fn accepted(&self, action: &'static str);
}

/// Sleeps until `budget` has a token for `action`, or until `until`, taking none.
pub async fn wait_for_token(
    budget: &dyn CallBudget,
    action: &'static str,
    until: std::time::Instant,
) {
    let left = until.saturating_duration_since(std::time::Instant::now());
    let wait = budget.ready_in(action).min(left);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// What the AWS clients need to know: where to call, and by when every call must be done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `None`: the region cache, else IMDS.
    pub region: Option<String>,
    /// `None`: `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL`, else the regional default.
    pub ec2_endpoint: Option<String>,
    /// `None`: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the link-local default.
    pub imds_endpoint: Option<String>,
}

/// Both clients, the EC2 one built on first use (it needs the region, which may need IMDS).
#[allow(async_fn_in_trait)]
pub trait Aws {
    type Metadata: Metadata;
    type Ec2: Ec2;
    fn metadata(&self) -> &Self::Metadata;
    async fn ec2(&self) -> Result<&Self::Ec2, CloudError>;
}
