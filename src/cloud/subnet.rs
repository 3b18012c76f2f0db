//! What the node side asks EC2 about a subnet: its blocks, the ENIs and addresses in it, and its
//! CIDR reservations (read by `aws-eni-ip subnet` and the node-group hook).

use super::CloudError;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};

/// A subnet as DescribeSubnets shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetFacts {
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub ipv4_cidr: Ipv4Network,
    pub ipv6_cidrs: Vec<Ipv6Network>,
}

/// An ENI of the subnet with every address it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetEni {
    pub eni_id: String,
    pub instance_id: Option<String>,
    pub primary_ipv4: Ipv4Addr,
    pub secondary_ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<std::net::Ipv6Addr>,
    pub description: String,
}

impl SubnetEni {
    /// Every address with whether it is the ENI's primary.
    pub fn addresses(&self) -> impl Iterator<Item = (IpAddr, bool)> + '_ {
        std::iter::once((IpAddr::V4(self.primary_ipv4), true))
            .chain(self.secondary_ipv4.iter().map(|a| (IpAddr::V4(*a), false)))
            .chain(self.ipv6.iter().map(|a| (IpAddr::V6(*a), false)))
    }
}

/// `explicit`: only explicit assignment may use it; `prefix`: only prefix delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CidrReservation {
    pub reservation_id: String,
    pub cidr: IpNetwork,
    pub reservation_type: String,
    pub description: String,
}

/// The EC2 calls about one subnet; every call runs under the retry policy.
#[allow(async_fn_in_trait)]
pub trait SubnetEc2 {
    async fn subnet(&self, subnet_id: &str) -> Result<SubnetFacts, CloudError>;
    /// Every ENI in the subnet, across pages.
    async fn interfaces(&self, subnet_id: &str) -> Result<Vec<SubnetEni>, CloudError>;
    /// Both families, across pages.
    async fn reservations(&self, subnet_id: &str) -> Result<Vec<CidrReservation>, CloudError>;
    async fn reserve_explicit(
        &self,
        subnet_id: &str,
        cidr: IpNetwork,
        description: &str,
    ) -> Result<CidrReservation, CloudError>;
}
