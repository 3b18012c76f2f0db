//! EC2 through aws-sdk-ec2, driven by our retry policy.

use super::call::{budgeted_call, standard_config, Repeat};
use crate::cloud::retry::RetryPolicy;
use crate::cloud::{AwsSettings, CallBudget, CloudError, Ec2, EniView};
use aws_config::imds;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// EC2 through aws-sdk-ec2.
#[derive(Clone)]
pub struct AwsEc2 {
    client: aws_sdk_ec2::Client,
    policy: RetryPolicy,
    /// Paces mutating calls node-wide; `None` sends at once.
    budget: Option<Arc<dyn CallBudget>>,
}

impl AwsEc2 {
    /// Credentials: the SDK's default chain (env, profile, web identity, ECS, then the instance
    /// profile through the same IMDS client). Endpoint: `ec2Endpoint`, else `AWS_ENDPOINT_URL_EC2`
    /// / `AWS_ENDPOINT_URL`, else the regional default.
    pub async fn new(
        settings: &AwsSettings,
        region: &str,
        imds: imds::Client,
        policy: RetryPolicy,
        budget: Option<Arc<dyn CallBudget>>,
    ) -> AwsEc2 {
        let region = Region::new(region.to_string());
        let credentials = aws_config::default_provider::credentials::Builder::default()
            .region(region.clone())
            .imds_client(imds)
            .build()
            .await;
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        let mut ec2 = aws_sdk_ec2::config::Builder::from(&shared);
        if let Some(url) = &settings.ec2_endpoint {
            ec2 = ec2.endpoint_url(url);
        }
        AwsEc2 {
            client: aws_sdk_ec2::Client::from_conf(ec2.build()),
            policy,
            budget,
        }
    }

    /// Credentials and region from the standard chain (env, shared config and credentials files
    /// with their profiles, SSO when built with the `sso` feature, web identity, ECS, IMDS), as an
    /// operator's shell or a Lambda function has them; endpoint from `AWS_ENDPOINT_URL_EC2` /
    /// `AWS_ENDPOINT_URL`. `region` overrides the chain's.
    pub async fn from_standard_chain(region: Option<&str>, policy: RetryPolicy) -> AwsEc2 {
        let shared = standard_config(region).await;
        AwsEc2 {
            client: aws_sdk_ec2::Client::new(&shared),
            policy,
            budget: None,
        }
    }

    /// Wraps a client built elsewhere (a Lambda builds one per invocation deadline).
    pub fn from_client(client: aws_sdk_ec2::Client, policy: RetryPolicy) -> AwsEc2 {
        AwsEc2 {
            client,
            policy,
            budget: None,
        }
    }

    /// The SDK client, for callers with actions of their own; run them through [`sdk_call`].
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    async fn call<T, E, F, Fut>(&self, action: &'static str, op: F) -> Result<T, CloudError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: std::future::Future<
            Output = Result<T, SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
        >,
    {
        self.call_with(action, Repeat::Safe, op).await
    }

    async fn call_with<T, E, F, Fut>(
        &self,
        action: &'static str,
        repeat: Repeat,
        op: F,
    ) -> Result<T, CloudError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: std::future::Future<
            Output = Result<T, SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
        >,
    {
        // Describes draw from their own, larger EC2 bucket: the node budget paces changes only.
        let budget = self
            .budget
            .as_deref()
            .filter(|_| !action.starts_with("Describe"));
        budgeted_call(&self.policy, budget, action, repeat, op).await
    }
}

fn strings<T: ToString>(addrs: &[T]) -> Vec<String> {
    addrs.iter().map(ToString::to_string).collect()
}

impl Ec2 for AwsEc2 {
    async fn pace(&self, action: &'static str, until: std::time::Instant) {
        if let Some(b) = &self.budget {
            crate::cloud::wait_for_token(b.as_ref(), action, until).await;
        }
    }

    async fn assign_ipv4(
        &self,
        eni: &str,
        addrs: &[Ipv4Addr],
        allow_reassignment: bool,
    ) -> Result<(), CloudError> {
        self.call("AssignPrivateIpAddresses", || {
            self.client
                .assign_private_ip_addresses()
                .network_interface_id(eni)
                .set_private_ip_addresses(Some(strings(addrs)))
                .allow_reassignment(allow_reassignment)
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn unassign_ipv4(&self, eni: &str, addrs: &[Ipv4Addr]) -> Result<(), CloudError> {
        self.call("UnassignPrivateIpAddresses", || {
            self.client
                .unassign_private_ip_addresses()
                .network_interface_id(eni)
                .set_private_ip_addresses(Some(strings(addrs)))
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn assign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError> {
        self.call("AssignIpv6Addresses", || {
            self.client
                .assign_ipv6_addresses()
                .network_interface_id(eni)
                .set_ipv6_addresses(Some(strings(addrs)))
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn unassign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError> {
        self.call("UnassignIpv6Addresses", || {
            self.client
                .unassign_ipv6_addresses()
                .network_interface_id(eni)
                .set_ipv6_addresses(Some(strings(addrs)))
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn assign_ipv4_count(&self, eni: &str, count: u32) -> Result<Vec<Ipv4Addr>, CloudError> {
        let out = self
            .call_with("AssignPrivateIpAddresses", Repeat::NotAfterUnknown, || {
                self.client
                    .assign_private_ip_addresses()
                    .network_interface_id(eni)
                    .secondary_private_ip_address_count(count as i32)
                    .send()
            })
            .await?;
        Ok(out
            .assigned_private_ip_addresses()
            .iter()
            .filter_map(|a| a.private_ip_address()?.parse().ok())
            .collect())
    }

    async fn assign_ipv6_count(&self, eni: &str, count: u32) -> Result<Vec<Ipv6Addr>, CloudError> {
        let out = self
            .call_with("AssignIpv6Addresses", Repeat::NotAfterUnknown, || {
                self.client
                    .assign_ipv6_addresses()
                    .network_interface_id(eni)
                    .ipv6_address_count(count as i32)
                    .send()
            })
            .await?;
        Ok(out
            .assigned_ipv6_addresses()
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect())
    }

    async fn describe_eni(&self, eni: &str) -> Result<EniView, CloudError> {
        let out = self
            .call("DescribeNetworkInterfaces", || {
                self.client
                    .describe_network_interfaces()
                    .network_interface_ids(eni)
                    .send()
            })
            .await?;
        out.network_interfaces()
            .first()
            .map(to_view)
            .ok_or_else(|| CloudError::Api {
                action: "DescribeNetworkInterfaces",
                code: "InvalidNetworkInterfaceID.NotFound".into(),
                message: format!("The networkInterface ID '{eni}' does not exist"),
                maybe_applied: false,
            })
    }

    async fn holders(&self, addrs: &[IpAddr]) -> Result<Vec<EniView>, CloudError> {
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addrs.iter().partition(|a| a.is_ipv4());
        let mut out = Vec::new();
        for (filter, values) in [
            ("addresses.private-ip-address", v4),
            ("ipv6-addresses.ipv6-address", v6),
        ] {
            if values.is_empty() {
                continue;
            }
            out.extend(self.describe_filtered(filter, strings(&values)).await?);
        }
        Ok(out)
    }

    async fn eni_address_limit(&self, instance_type: &str) -> Result<Option<u32>, CloudError> {
        let wanted = aws_sdk_ec2::types::InstanceType::from(instance_type);
        let out = self
            .call("DescribeInstanceTypes", || {
                self.client
                    .describe_instance_types()
                    .instance_types(wanted.clone())
                    .send()
            })
            .await?;
        Ok(out
            .instance_types()
            .iter()
            .filter_map(|t| t.network_info()?.ipv4_addresses_per_interface())
            .find_map(|n| u32::try_from(n).ok()))
    }

    async fn eni_by_mac(&self, mac: &str) -> Result<Option<EniView>, CloudError> {
        Ok(self
            .describe_filtered("mac-address", vec![mac.to_string()])
            .await?
            .into_iter()
            .next())
    }
}

impl AwsEc2 {
    /// DescribeNetworkInterfaces with one filter, every page.
    async fn describe_filtered(
        &self,
        name: &str,
        values: Vec<String>,
    ) -> Result<Vec<EniView>, CloudError> {
        let mut views = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .call("DescribeNetworkInterfaces", || {
                    self.client
                        .describe_network_interfaces()
                        .filters(
                            Filter::builder()
                                .name(name)
                                .set_values(Some(values.clone()))
                                .build(),
                        )
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            views.extend(out.network_interfaces().iter().map(to_view));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(views),
            }
        }
    }
}

fn to_view(ni: &aws_sdk_ec2::types::NetworkInterface) -> EniView {
    let mut view = EniView {
        eni_id: ni.network_interface_id().unwrap_or_default().to_string(),
        instance_id: ni
            .attachment()
            .and_then(|a| a.instance_id())
            .map(str::to_string),
        description: ni.description().unwrap_or_default().to_string(),
        ..EniView::default()
    };
    for p in ni.private_ip_addresses() {
        if let Some(addr) = p.private_ip_address().and_then(|a| a.parse().ok()) {
            if p.primary() == Some(true) {
                view.primary_ipv4 = Some(addr);
            }
            view.ipv4.push(addr);
        }
    }
    view.ipv6 = ni
        .ipv6_addresses()
        .iter()
        .filter_map(|a| a.ipv6_address()?.parse().ok())
        .collect();
    view.tags = ni
        .tag_set()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    view
}
