//! The aws-sdk implementation: aws-sdk-ec2 for EC2 and aws-config's IMDSv2 client, both driven by
//! our retry policy (the SDK's own retries are off so one deadline bounds the whole command).

mod call;
mod ec2;
mod imds;
mod subnet;

pub use call::{sdk_call, standard_config};
pub use ec2::AwsEc2;
pub use imds::AwsMetadata;

use super::retry::RetryPolicy;
use super::{Aws, AwsSettings, CallBudget, CloudError, Metadata, RegionCache};
use std::sync::Arc;

/// The real clients. The region comes from the settings, else the region cache, else IMDS.
pub struct AwsClients<R> {
    settings: AwsSettings,
    metadata: AwsMetadata,
    region_cache: R,
    budget: Option<Arc<dyn CallBudget>>,
    policy: RetryPolicy,
    ec2: tokio::sync::OnceCell<AwsEc2>,
}

impl<R: RegionCache> AwsClients<R> {
    /// `budget` paces every mutating EC2 call of the node; `None` sends at once.
    pub fn new(
        settings: AwsSettings,
        region_cache: R,
        budget: Option<Arc<dyn CallBudget>>,
        policy: RetryPolicy,
    ) -> Result<AwsClients<R>, CloudError> {
        Ok(AwsClients {
            metadata: AwsMetadata::new(&settings, policy)?,
            settings,
            region_cache,
            budget,
            policy,
            ec2: tokio::sync::OnceCell::new(),
        })
    }

    async fn region(&self) -> Result<String, CloudError> {
        if let Some(r) = &self.settings.region {
            return Ok(r.clone());
        }
        if let Some(r) = self.region_cache.load() {
            return Ok(r);
        }
        let region = self.metadata.region().await?;
        self.region_cache.save(&region);
        Ok(region)
    }
}

impl<R: RegionCache> Aws for AwsClients<R> {
    type Metadata = AwsMetadata;
    type Ec2 = AwsEc2;

    fn metadata(&self) -> &AwsMetadata {
        &self.metadata
    }

    async fn ec2(&self) -> Result<&AwsEc2, CloudError> {
        self.ec2
            .get_or_try_init(|| async {
                let region = self.region().await?;
                Ok(AwsEc2::new(
                    &self.settings,
                    &region,
                    self.metadata.client(),
                    self.policy,
                    self.budget.clone(),
                )
                .await)
            })
            .await
    }
}

/// The error and its causes on one line, without the SDK's Debug dump.
pub(crate) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
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
