//! The aws-sdk implementation: aws-sdk-ec2 for EC2 and aws-config's IMDSv2 client, both driven by
//! our retry policy (the SDK's own retries are off so one deadline bounds the whole command).

use super::retry::{Outcome, RetryPolicy, Verdict};
use super::{CloudError, Ec2, EniFacts, EniView, Metadata};
use crate::config::PluginConfig;
use aws_config::imds;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use ipnetwork::{Ipv4Network, Ipv6Network};
use std::net::{Ipv4Addr, Ipv6Addr};

/// EC2 error codes that mean "slow down", not "no".
const THROTTLING_CODES: [&str; 4] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "EC2ThrottledException",
];
const SERVER_CODES: [&str; 4] = [
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// IMDSv2 through aws-config's client (token first, token cached for the process).
#[derive(Clone, Debug)]
pub struct AwsMetadata {
    client: imds::Client,
    policy: RetryPolicy,
}

impl AwsMetadata {
    /// `imdsEndpoint` wins; otherwise the client honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn new(config: &PluginConfig, policy: RetryPolicy) -> Result<AwsMetadata, CloudError> {
        let mut builder = imds::Client::builder().max_attempts(1);
        if let Some(url) = &config.imds_endpoint {
            builder = builder.endpoint(url).map_err(|e| CloudError::Metadata {
                path: url.clone(),
                status: None,
                reason: format!("imdsEndpoint is not usable: {e}"),
                transient: false,
            })?;
        }
        Ok(AwsMetadata {
            client: builder.build(),
            policy,
        })
    }

    pub fn client(&self) -> imds::Client {
        self.client.clone()
    }

    async fn get(&self, path: &str) -> Result<String, CloudError> {
        let full = format!("/latest/meta-data/{path}");
        let started = std::time::Instant::now();
        let outcome = self
            .policy
            .run(|| self.client.get(full.clone()), classify_imds)
            .await;
        tracing::debug!(path = %full, ok = matches!(outcome, Outcome::Done(_)), ms = started.elapsed().as_millis() as u64, "IMDS");
        match outcome {
            Outcome::Done(v) => Ok(String::from(v)),
            Outcome::Failed(e) => Err(imds_error(&full, &e, false)),
            Outcome::OutOfTime(Some(e)) => Err(imds_error(&full, &e, true)),
            Outcome::OutOfTime(None) => Err(CloudError::Metadata {
                path: full,
                status: None,
                reason: "no answer before the deadline".into(),
                transient: true,
            }),
        }
    }

    /// A list key answers 404 when the list is empty.
    async fn get_list(&self, path: &str) -> Result<Vec<String>, CloudError> {
        match self.get(path).await {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()),
            Err(CloudError::Metadata {
                status: Some(404), ..
            }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

fn classify_imds(e: &imds::client::error::ImdsError) -> Verdict {
    use imds::client::error::ImdsError as E;
    match e {
        E::ErrorResponse(r) if r.response().status().as_u16() >= 500 => Verdict::Retry,
        E::ErrorResponse(_) => Verdict::Fail,
        E::FailedToLoadToken(_) if token_forbidden(e) => Verdict::Fail,
        _ => Verdict::Retry,
    }
}

/// A 403 on the token PUT means IMDS is disabled or out of hop reach: retrying cannot help.
/// The SDK keeps the kind private; its Display is the only public trace of it.
fn token_forbidden(e: &imds::client::error::ImdsError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<imds::client::error::TokenError>()
            .is_some_and(|t| t.to_string().contains("forbidden"))
        {
            return true;
        }
        cause = c.source();
    }
    false
}

fn imds_error(path: &str, e: &imds::client::error::ImdsError, out_of_time: bool) -> CloudError {
    use imds::client::error::ImdsError as E;
    let status = match e {
        E::ErrorResponse(r) => Some(r.response().status().as_u16()),
        _ => None,
    };
    let reason = match e {
        E::FailedToLoadToken(t) if !t.is_dispatch_failure() => {
            "IMDS refused a session token (IMDSv2 disabled, or the hop limit is too low)"
                .to_string()
        }
        _ => causes(e),
    };
    CloudError::Metadata {
        path: path.to_string(),
        status,
        reason,
        transient: out_of_time || classify_imds(e) == Verdict::Retry,
    }
}

impl Metadata for AwsMetadata {
    async fn region(&self) -> Result<String, CloudError> {
        Ok(self.get("placement/region").await?.trim().to_string())
    }

    async fn eni_facts(&self, mac: &str) -> Result<EniFacts, CloudError> {
        let base = format!("network/interfaces/macs/{mac}");
        let key = |k: &str| format!("{base}/{k}");
        let (id_path, dev_path, subnet_path, vpc_path, v4_path, v6_path, local_path) = (
            key("interface-id"),
            key("device-number"),
            key("subnet-id"),
            key("vpc-id"),
            key("subnet-ipv4-cidr-block"),
            key("subnet-ipv6-cidr-blocks"),
            key("local-ipv4s"),
        );
        let (eni_id, device, subnet_id, vpc_id, v4, v6, local) = tokio::join!(
            self.get(&id_path),
            self.get(&dev_path),
            self.get(&subnet_path),
            self.get(&vpc_path),
            self.get_list(&v4_path),
            self.get_list(&v6_path),
            self.get_list(&local_path),
        );
        let bad = |what: &str, value: &str| CloudError::Metadata {
            path: format!("/latest/meta-data/{base}/{what}"),
            status: Some(200),
            reason: format!("unexpected value {value:?}"),
            transient: false,
        };
        let device = device?;
        let device_number = device
            .trim()
            .parse()
            .map_err(|_| bad("device-number", &device))?;
        let subnet_ipv4_cidrs = v4?
            .iter()
            .map(|c| {
                c.parse::<Ipv4Network>()
                    .map_err(|_| bad("subnet-ipv4-cidr-block", c))
            })
            .collect::<Result<_, _>>()?;
        let subnet_ipv6_cidrs = v6?
            .iter()
            .map(|c| {
                c.parse::<Ipv6Network>()
                    .map_err(|_| bad("subnet-ipv6-cidr-blocks", c))
            })
            .collect::<Result<_, _>>()?;
        Ok(EniFacts {
            eni_id: eni_id?.trim().to_string(),
            mac: mac.to_string(),
            device_number,
            subnet_id: subnet_id?.trim().to_string(),
            vpc_id: vpc_id?.trim().to_string(),
            subnet_ipv4_cidrs,
            subnet_ipv6_cidrs,
            // IMDS lists the primary address first.
            primary_ipv4: local?.first().and_then(|a| a.parse().ok()),
        })
    }

    async fn ping(&self) -> Result<(), CloudError> {
        self.get("instance-id").await.map(|_| ())
    }
}

/// EC2 through aws-sdk-ec2.
#[derive(Clone, Debug)]
pub struct AwsEc2 {
    client: aws_sdk_ec2::Client,
    policy: RetryPolicy,
}

impl AwsEc2 {
    /// Credentials: the SDK's default chain (env, profile, web identity, ECS, then the instance
    /// profile through the same IMDS client). Endpoint: `ec2Endpoint`, else `AWS_ENDPOINT_URL_EC2`
    /// / `AWS_ENDPOINT_URL`, else the regional default.
    pub async fn new(
        config: &PluginConfig,
        region: &str,
        imds: imds::Client,
        policy: RetryPolicy,
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
        if let Some(url) = &config.ec2_endpoint {
            ec2 = ec2.endpoint_url(url);
        }
        AwsEc2 {
            client: aws_sdk_ec2::Client::from_conf(ec2.build()),
            policy,
        }
    }

    async fn call<T, E, F, Fut>(&self, action: &'static str, op: F) -> Result<T, CloudError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: std::future::Future<
            Output = Result<T, SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
        >,
    {
        let started = std::time::Instant::now();
        let outcome = self.policy.run(op, classify_ec2).await;
        tracing::debug!(
            action,
            ok = matches!(outcome, Outcome::Done(_)),
            ms = started.elapsed().as_millis() as u64,
            "EC2"
        );
        match outcome {
            Outcome::Done(v) => Ok(v),
            Outcome::Failed(e) => Err(ec2_error(action, &e, false)),
            Outcome::OutOfTime(Some(e)) => Err(ec2_error(action, &e, true)),
            Outcome::OutOfTime(None) => Err(CloudError::Transient {
                action,
                reason: "no answer before the deadline (timeoutMs)".into(),
            }),
        }
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
) -> CloudError {
    let transient = out_of_time || classify_ec2(e) == Verdict::Retry;
    match e {
        SdkError::ServiceError(ctx) if !transient => CloudError::Api {
            action,
            code: ctx.err().code().unwrap_or("Unknown").to_string(),
            message: ctx.err().message().unwrap_or_default().to_string(),
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
        },
    }
}

/// The error and its causes on one line, without the SDK's Debug dump.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
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

    async fn describe_eni(&self, eni: &str) -> Result<EniView, CloudError> {
        let out = self
            .call("DescribeNetworkInterfaces", || {
                self.client
                    .describe_network_interfaces()
                    .network_interface_ids(eni)
                    .send()
            })
            .await?;
        let Some(ni) = out.network_interfaces().first() else {
            return Err(CloudError::Api {
                action: "DescribeNetworkInterfaces",
                code: "InvalidNetworkInterfaceID.NotFound".into(),
                message: format!("The networkInterface ID '{eni}' does not exist"),
            });
        };
        let mut view = EniView {
            eni_id: ni.network_interface_id().unwrap_or(eni).to_string(),
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
        Ok(view)
    }

    async fn ipv6_holder(&self, addr: Ipv6Addr) -> Result<Option<String>, CloudError> {
        let out = self
            .call("DescribeNetworkInterfaces", || {
                self.client
                    .describe_network_interfaces()
                    .filters(
                        Filter::builder()
                            .name("ipv6-addresses.ipv6-address")
                            .values(addr.to_string())
                            .build(),
                    )
                    .send()
            })
            .await?;
        Ok(out
            .network_interfaces()
            .first()
            .and_then(|ni| ni.network_interface_id())
            .map(str::to_string))
    }
}

/// The real clients. The region comes from `region`, else the state dir's cache, else IMDS.
pub struct AwsClients {
    config: PluginConfig,
    metadata: AwsMetadata,
    region_cache: std::path::PathBuf,
    policy: RetryPolicy,
    ec2: tokio::sync::OnceCell<AwsEc2>,
}

impl AwsClients {
    pub fn new(
        config: &PluginConfig,
        region_cache: std::path::PathBuf,
        policy: RetryPolicy,
    ) -> Result<AwsClients, CloudError> {
        Ok(AwsClients {
            config: config.clone(),
            metadata: AwsMetadata::new(config, policy)?,
            region_cache,
            policy,
            ec2: tokio::sync::OnceCell::new(),
        })
    }

    async fn region(&self) -> Result<String, CloudError> {
        if let Some(r) = &self.config.region {
            return Ok(r.clone());
        }
        if let Ok(Some(r)) = crate::store::read_json::<String>(&self.region_cache) {
            return Ok(r);
        }
        let region = self.metadata.region().await?;
        // A cache that cannot be written only costs one IMDS call next time.
        let _ = crate::store::write_json_atomic(
            &self.region_cache,
            &region,
            crate::store::Durability::ProcessCrashSafe,
        );
        Ok(region)
    }
}

impl super::Aws for AwsClients {
    type Metadata = AwsMetadata;
    type Ec2 = AwsEc2;

    fn metadata(&self) -> &AwsMetadata {
        &self.metadata
    }

    async fn ec2(&self) -> Result<&AwsEc2, CloudError> {
        self.ec2
            .get_or_try_init(|| async {
                let region = self.region().await?;
                Ok(AwsEc2::new(&self.config, &region, self.metadata.client(), self.policy).await)
            })
            .await
    }
}
