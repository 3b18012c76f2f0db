//! [`SubnetEc2`] through aws-sdk-ec2.

use super::call::sdk_call;
use super::AwsEc2;
use crate::cloud::subnet::{CidrReservation, SubnetEc2, SubnetEni, SubnetFacts};
use crate::cloud::CloudError;
use aws_sdk_ec2::types::{Filter, SubnetCidrReservation, SubnetCidrReservationType};
use ipnetwork::IpNetwork;

fn bad_reply(action: &'static str, what: String) -> CloudError {
    CloudError::Api {
        action,
        code: "UnexpectedResponse".into(),
        message: what,
        maybe_applied: false,
    }
}

fn reservation(r: &SubnetCidrReservation) -> Result<CidrReservation, CloudError> {
    let cidr = r.cidr().unwrap_or_default();
    Ok(CidrReservation {
        reservation_id: r
            .subnet_cidr_reservation_id()
            .unwrap_or_default()
            .to_string(),
        cidr: cidr.parse().map_err(|_| {
            bad_reply(
                "GetSubnetCidrReservations",
                format!("reservation CIDR {cidr:?} is not a CIDR"),
            )
        })?,
        reservation_type: r
            .reservation_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        description: r.description().unwrap_or_default().to_string(),
    })
}

impl SubnetEc2 for AwsEc2 {
    async fn subnet(&self, subnet_id: &str) -> Result<SubnetFacts, CloudError> {
        let action = "DescribeSubnets";
        let out = sdk_call(&self.policy(), action, || {
            self.client()
                .describe_subnets()
                .subnet_ids(subnet_id)
                .send()
        })
        .await?;
        let Some(s) = out.subnets().first() else {
            return Err(CloudError::Api {
                action,
                code: "InvalidSubnetID.NotFound".into(),
                message: format!("The subnet ID '{subnet_id}' does not exist"),
                maybe_applied: false,
            });
        };
        let cidr = s.cidr_block().unwrap_or_default();
        Ok(SubnetFacts {
            subnet_id: subnet_id.to_string(),
            vpc_id: s.vpc_id().unwrap_or_default().to_string(),
            availability_zone: s.availability_zone().unwrap_or_default().to_string(),
            ipv4_cidr: cidr
                .parse()
                .map_err(|_| bad_reply(action, format!("{subnet_id} has CIDR {cidr:?}")))?,
            ipv6_cidrs: s
                .ipv6_cidr_block_association_set()
                .iter()
                .filter_map(|a| a.ipv6_cidr_block()?.parse().ok())
                .collect(),
        })
    }

    async fn interfaces(&self, subnet_id: &str) -> Result<Vec<SubnetEni>, CloudError> {
        let mut enis = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = sdk_call(&self.policy(), "DescribeNetworkInterfaces", || {
                self.client()
                    .describe_network_interfaces()
                    .filters(
                        Filter::builder()
                            .name("subnet-id")
                            .values(subnet_id)
                            .build(),
                    )
                    .max_results(1000)
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            for ni in out.network_interfaces() {
                let mut primary = None;
                let mut secondary = Vec::new();
                for p in ni.private_ip_addresses() {
                    let Some(a) = p.private_ip_address().and_then(|a| a.parse().ok()) else {
                        continue;
                    };
                    if p.primary() == Some(true) {
                        primary = Some(a);
                    } else {
                        secondary.push(a);
                    }
                }
                let primary = match primary.or_else(|| ni.private_ip_address()?.parse().ok()) {
                    Some(p) => p,
                    None => continue,
                };
                enis.push(SubnetEni {
                    eni_id: ni.network_interface_id().unwrap_or_default().to_string(),
                    instance_id: ni
                        .attachment()
                        .and_then(|a| a.instance_id())
                        .map(str::to_string),
                    primary_ipv4: primary,
                    secondary_ipv4: secondary,
                    ipv6: ni
                        .ipv6_addresses()
                        .iter()
                        .filter_map(|a| a.ipv6_address()?.parse().ok())
                        .collect(),
                    description: ni.description().unwrap_or_default().to_string(),
                });
            }
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(enis);
            }
        }
    }

    async fn reservations(&self, subnet_id: &str) -> Result<Vec<CidrReservation>, CloudError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = sdk_call(&self.policy(), "GetSubnetCidrReservations", || {
                self.client()
                    .get_subnet_cidr_reservations()
                    .subnet_id(subnet_id)
                    .max_results(1000)
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            for r in out
                .subnet_ipv4_cidr_reservations()
                .iter()
                .chain(out.subnet_ipv6_cidr_reservations())
            {
                all.push(reservation(r)?);
            }
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(all);
            }
        }
    }

    async fn reserve_explicit(
        &self,
        subnet_id: &str,
        cidr: IpNetwork,
        description: &str,
    ) -> Result<CidrReservation, CloudError> {
        let action = "CreateSubnetCidrReservation";
        let out = sdk_call(&self.policy(), action, || {
            self.client()
                .create_subnet_cidr_reservation()
                .subnet_id(subnet_id)
                .cidr(cidr.to_string())
                .reservation_type(SubnetCidrReservationType::Explicit)
                .description(description)
                .send()
        })
        .await?;
        match out.subnet_cidr_reservation() {
            Some(r) => reservation(r),
            None => Err(bad_reply(action, "the reply holds no reservation".into())),
        }
    }
}
