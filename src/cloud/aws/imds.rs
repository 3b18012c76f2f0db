//! IMDSv2 through aws-config's client, driven by our retry policy.

use super::causes;
use crate::cloud::retry::{Outcome, RetryPolicy, Verdict};
use crate::cloud::{AttachedEni, AwsSettings, CloudError, EniFacts, Metadata};
use aws_config::imds;
use ipnetwork::{Ipv4Network, Ipv6Network};

/// IMDSv2 through aws-config's client (token first, token cached for the process).
#[derive(Clone, Debug)]
pub struct AwsMetadata {
    client: imds::Client,
    policy: RetryPolicy,
}

impl AwsMetadata {
    /// `imdsEndpoint` wins; otherwise the client honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn new(settings: &AwsSettings, policy: RetryPolicy) -> Result<AwsMetadata, CloudError> {
        let mut builder = imds::Client::builder().max_attempts(1);
        if let Some(url) = &settings.imds_endpoint {
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
        let (eni_id, device, subnet_id, vpc_id, v4, v6, local, instance) = tokio::join!(
            self.get(&id_path),
            self.get(&dev_path),
            self.get(&subnet_path),
            self.get(&vpc_path),
            self.get_list(&v4_path),
            self.get_list(&v6_path),
            self.get_list(&local_path),
            self.get("instance-id"),
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
            instance_id: Some(instance?.trim().to_string()),
        })
    }

    async fn attached_eni(&self, mac: &str) -> Result<Option<AttachedEni>, CloudError> {
        let id_path = format!("network/interfaces/macs/{mac}/interface-id");
        let local_path = format!("network/interfaces/macs/{mac}/local-ipv4s");
        let (id, local) = tokio::join!(self.get(&id_path), self.get_list(&local_path));
        match id {
            Ok(id) => Ok(Some(AttachedEni {
                eni_id: id.trim().to_string(),
                primary_ipv4: local?.first().and_then(|a| a.parse().ok()),
            })),
            Err(CloudError::Metadata {
                status: Some(404), ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn attached_macs(&self) -> Result<Vec<String>, CloudError> {
        Ok(self
            .get_list("network/interfaces/macs/")
            .await?
            .into_iter()
            .map(|m| m.trim_end_matches('/').to_ascii_lowercase())
            .collect())
    }

    async fn instance_id(&self) -> Result<String, CloudError> {
        Ok(self.get("instance-id").await?.trim().to_string())
    }

    async fn eni_addresses(&self, mac: &str) -> Result<Vec<std::net::IpAddr>, CloudError> {
        let v4 = format!("network/interfaces/macs/{mac}/local-ipv4s");
        let v6 = format!("network/interfaces/macs/{mac}/ipv6s");
        let (v4, v6) = tokio::join!(self.get_list(&v4), self.get_list(&v6));
        Ok(v4?
            .iter()
            .chain(v6?.iter())
            .filter_map(|a| a.parse().ok())
            .collect())
    }

    async fn instance_type(&self) -> Result<Option<String>, CloudError> {
        Ok(Some(self.get("instance-type").await?.trim().to_string()))
    }
}
