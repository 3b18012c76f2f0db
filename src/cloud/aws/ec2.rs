//! EC2 through aws-sdk-ec2, driven by our retry policy.

use super::causes;
use crate::cloud::error::THROTTLING_CODES;
use crate::cloud::retry::{Outcome, RetryPolicy, Verdict};
use crate::cloud::{AwsSettings, CallBudget, CloudError, Ec2, EniView};
use aws_config::imds;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

const SERVER_CODES: [&str; 4] = [
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

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

    async fn call<T, E, F, Fut>(&self, action: &'static str, mut op: F) -> Result<T, CloudError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: std::future::Future<
            Output = Result<T, SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
        >,
    {
        let started = std::time::Instant::now();
        let mutating = !action.starts_with("Describe");
        let budget = self.budget.as_deref().filter(|_| mutating);
        let uncertain = std::cell::Cell::new(false);
        let last_refusal: std::cell::RefCell<Option<String>> = Default::default();
        let deadline = self.policy.deadline;
        let outcome = self
            .policy
            .run(
                || {
                    // Lazy: nothing is sent until the budget's wait is over.
                    let request = op();
                    let wait = match budget {
                        Some(b) => b.reserve(action, deadline),
                        None => Some(std::time::Duration::ZERO),
                    };
                    async move {
                        let wait = wait.ok_or(Attempt::OverBudget)?;
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        request.await.map_err(Attempt::Sdk)
                    }
                },
                |e| match e {
                    Attempt::OverBudget => Verdict::Fail,
                    Attempt::Sdk(e) => {
                        if is_throttled(e) {
                            if let Some(b) = budget {
                                b.throttled();
                            }
                        }
                        if let SdkError::ServiceError(ctx) = e {
                            *last_refusal.borrow_mut() = Some(format!(
                                "{}: {}",
                                ctx.err().code().unwrap_or("HTTP error"),
                                ctx.err().message().unwrap_or_default()
                            ));
                        }
                        if may_have_applied(e) {
                            uncertain.set(true);
                        }
                        classify_ec2(e)
                    }
                },
            )
            .await;
        tracing::debug!(
            action,
            ok = matches!(outcome, Outcome::Done(_)),
            ms = started.elapsed().as_millis() as u64,
            "EC2"
        );
        let over_budget = || {
            CloudError::Transient {
            action,
            reason: match last_refusal.borrow().as_deref() {
                Some(last) => format!("{last}; the node's EC2 budget, slowed by throttling, allows no further attempt before the deadline (timeoutMs)"),
                None => "the node's EC2 budget has no token before the deadline (timeoutMs): other calls from this node came first".into(),
            },
        }
        };
        let uncertain = uncertain.get();
        match outcome {
            Outcome::Done(v) => Ok(v),
            Outcome::Failed(Attempt::Sdk(e)) => Err(ec2_error(action, &e, false, uncertain)),
            Outcome::OutOfTime(Some(Attempt::Sdk(e))) => {
                Err(ec2_error(action, &e, true, uncertain))
            }
            Outcome::Failed(Attempt::OverBudget)
            | Outcome::OutOfTime(Some(Attempt::OverBudget)) => Err(over_budget()),
            Outcome::OutOfTime(None) => Err(CloudError::Transient {
                action,
                reason: "no answer before the deadline (timeoutMs)".into(),
            }),
        }
    }
}

/// The SDK's shared config from the standard chain, with the SDK's own retries off.
pub async fn standard_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}

/// One call of any AWS SDK (EC2, Auto Scaling) under the retry policy, its failure classified
/// into a [`CloudError`] the same way for every caller.
pub async fn sdk_call<T, E, F, Fut>(
    policy: &RetryPolicy,
    action: &'static str,
    op: F,
) -> Result<T, CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
    >,
{
    let started = std::time::Instant::now();
    let uncertain = std::cell::Cell::new(false);
    let outcome = policy
        .run(op, |e| {
            if may_have_applied(e) {
                uncertain.set(true);
            }
            classify_ec2(e)
        })
        .await;
    tracing::debug!(
        action,
        ok = matches!(outcome, Outcome::Done(_)),
        ms = started.elapsed().as_millis() as u64,
        "AWS"
    );
    match outcome {
        Outcome::Done(v) => Ok(v),
        Outcome::Failed(e) => Err(ec2_error(action, &e, false, uncertain.get())),
        Outcome::OutOfTime(Some(e)) => Err(ec2_error(action, &e, true, uncertain.get())),
        Outcome::OutOfTime(None) => Err(CloudError::Transient {
            action,
            reason: "no answer before the deadline".into(),
        }),
    }
}

/// One attempt's failure: EC2's (or the transport's), or the node budget's refusal to wait that long.
enum Attempt<E> {
    Sdk(E),
    OverBudget,
}

fn is_throttled<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> bool {
    matches!(e, SdkError::ServiceError(ctx) if THROTTLING_CODES.contains(&ctx.err().code().unwrap_or_default()))
}

/// A request that timed out, broke mid-flight or failed on the server may still have been carried
/// out; one that was throttled or refused was not.
fn may_have_applied<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default();
            !THROTTLING_CODES.contains(&code)
                && (SERVER_CODES.contains(&code) || ctx.raw().status().as_u16() >= 500)
        }
        _ => false,
    }
}

fn classify_ec2<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> Verdict {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Verdict::Retry
        }
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default();
            if THROTTLING_CODES.contains(&code)
                || SERVER_CODES.contains(&code)
                || ctx.raw().status().as_u16() >= 500
            {
                Verdict::Retry
            } else if code == "InvalidNetworkInterfaceID.NotFound" {
                // EC2 is eventually consistent: a fresh ENI can be briefly unknown.
                Verdict::RetryBriefly
            } else {
                Verdict::Fail
            }
        }
        _ => Verdict::Fail,
    }
}

fn ec2_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    action: &'static str,
    e: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    out_of_time: bool,
    maybe_applied: bool,
) -> CloudError {
    let transient = out_of_time || classify_ec2(e) == Verdict::Retry;
    match e {
        SdkError::ServiceError(ctx) if !transient => CloudError::Api {
            action,
            code: ctx.err().code().unwrap_or("Unknown").to_string(),
            message: ctx.err().message().unwrap_or_default().to_string(),
            maybe_applied,
        },
        SdkError::ServiceError(ctx) => CloudError::Transient {
            action,
            reason: format!(
                "{}: {}",
                ctx.err().code().unwrap_or("HTTP error"),
                ctx.err().message().unwrap_or_default()
            ),
        },
        other if transient => CloudError::Transient {
            action,
            reason: causes(other),
        },
        other => CloudError::Api {
            action,
            code: "ClientError".into(),
            message: causes(other),
            maybe_applied,
        },
    }
}

fn strings<T: ToString>(addrs: &[T]) -> Vec<String> {
    addrs.iter().map(ToString::to_string).collect()
}

impl Ec2 for AwsEc2 {
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
            .call("AssignPrivateIpAddresses", || {
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
            .call("AssignIpv6Addresses", || {
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
