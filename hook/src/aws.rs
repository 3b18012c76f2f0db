//! The EC2 and Auto Scaling calls of the hook, each through the library's `sdk_call` (its retry
//! policy and error classification), bounded by the invocation's deadline.

use aws_eni_ip::cloud::aws::{sdk_call, AwsEc2};
use aws_eni_ip::cloud::retry::RetryPolicy;
use aws_eni_ip::cloud::CloudError;
use aws_sdk_ec2::types::{
    Filter, NetworkInterface, NetworkInterfaceAttachmentChanges, ResourceType, Tag,
    TagSpecification,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// The tag naming the instance an ENI was made for; how a later delivery finds it again.
pub const INSTANCE_TAG: &str = "aws-eni-ip/instance-id";
/// The device index the ENI was made for.
pub const DEVICE_TAG: &str = "aws-eni-ip/device-index";

/// An ENI as the hook needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEni {
    pub eni_id: String,
    pub subnet_id: String,
    pub primary_ipv4: Option<Ipv4Addr>,
    /// The device index it was made for (its tag).
    pub for_device: Option<i32>,
    /// (attachment id, instance, device index) while attached.
    pub attachment: Option<(String, String, i32)>,
    pub delete_on_termination: bool,
    /// Every address but the primary IPv4: what pods (through the plugin) hold on it.
    pub pod_addresses: Vec<IpAddr>,
}

fn hook_eni(ni: &NetworkInterface) -> HookEni {
    let tag = |k: &str| {
        ni.tag_set()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
    };
    let att = ni.attachment();
    HookEni {
        eni_id: ni.network_interface_id().unwrap_or_default().to_string(),
        subnet_id: ni.subnet_id().unwrap_or_default().to_string(),
        primary_ipv4: ni.private_ip_address().and_then(|a| a.parse().ok()),
        for_device: tag(DEVICE_TAG).and_then(|d| d.parse().ok()),
        attachment: att.and_then(|a| {
            Some((
                a.attachment_id()?.to_string(),
                a.instance_id()?.to_string(),
                a.device_index()?,
            ))
        }),
        delete_on_termination: att.and_then(|a| a.delete_on_termination()) == Some(true),
        pod_addresses: ni
            .private_ip_addresses()
            .iter()
            .filter(|a| {
                a.primary() != Some(true) && a.private_ip_address() != ni.private_ip_address()
            })
            .filter_map(|a| a.private_ip_address()?.parse().ok())
            .chain(
                ni.ipv6_addresses()
                    .iter()
                    .filter_map(|a| a.ipv6_address()?.parse().ok()),
            )
            .collect(),
    }
}

/// Whether CompleteLifecycleAction did it, or found the action already completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Completed,
    AlreadyCompleted,
}

/// The clients of one invocation, all bounded by its deadline.
pub struct NodeGroupAws {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    policy: RetryPolicy,
}

impl NodeGroupAws {
    pub fn new(shared: &aws_config::SdkConfig, deadline: Instant) -> NodeGroupAws {
        NodeGroupAws {
            ec2: aws_sdk_ec2::Client::new(shared),
            autoscaling: aws_sdk_autoscaling::Client::new(shared),
            policy: RetryPolicy::new(deadline),
        }
    }

    /// The library's EC2 view (subnets, their ENIs and reservations) over the same client.
    pub fn subnets(&self) -> AwsEc2 {
        AwsEc2::from_client(self.ec2.clone(), self.policy)
    }

    pub fn deadline(&self) -> Instant {
        self.policy.deadline
    }

    pub async fn instance_zone(&self, instance_id: &str) -> Result<String, CloudError> {
        let action = "DescribeInstances";
        let out = sdk_call(&self.policy, action, || {
            self.ec2
                .describe_instances()
                .instance_ids(instance_id)
                .send()
        })
        .await?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.placement()?.availability_zone())
            .map(str::to_string)
            .ok_or_else(|| CloudError::Api {
                action,
                code: "InvalidInstanceID.NotFound".into(),
                message: format!("{instance_id} has no placement in the reply"),
                maybe_applied: false,
            })
    }

    /// The instance's EC2 state (`running`, `stopping`, …); `None` once EC2 no longer knows it.
    pub async fn instance_state(&self, instance_id: &str) -> Result<Option<String>, CloudError> {
        let r = sdk_call(&self.policy, "DescribeInstances", || {
            self.ec2
                .describe_instances()
                .instance_ids(instance_id)
                .send()
        })
        .await;
        match r {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find_map(|i| i.state()?.name())
                .map(|n| n.as_str().to_string())),
            Err(e) if e.api_code() == Some("InvalidInstanceID.NotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every ENI this hook made for the instance, attached or not.
    pub async fn enis_for(&self, instance_id: &str) -> Result<Vec<HookEni>, CloudError> {
        let out = sdk_call(&self.policy, "DescribeNetworkInterfaces", || {
            self.ec2
                .describe_network_interfaces()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{INSTANCE_TAG}"))
                        .values(instance_id)
                        .build(),
                )
                .send()
        })
        .await?;
        Ok(out.network_interfaces().iter().map(hook_eni).collect())
    }

    /// The ENI now, `None` once it is gone.
    pub async fn eni(&self, eni_id: &str) -> Result<Option<HookEni>, CloudError> {
        let r = sdk_call(&self.policy, "DescribeNetworkInterfaces", || {
            self.ec2
                .describe_network_interfaces()
                .network_interface_ids(eni_id)
                .send()
        })
        .await;
        match r {
            Ok(out) => Ok(out.network_interfaces().first().map(hook_eni)),
            Err(e) if e.is_eni_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_eni(
        &self,
        subnet_id: &str,
        address: Option<Ipv4Addr>,
        groups: &[String],
        tags: &BTreeMap<String, String>,
        description: &str,
        client_token: &str,
    ) -> Result<HookEni, CloudError> {
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::NetworkInterface)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build();
        let action = "CreateNetworkInterface";
        let out = sdk_call(&self.policy, action, || {
            self.ec2
                .create_network_interface()
                .subnet_id(subnet_id)
                .set_private_ip_address(address.map(|a| a.to_string()))
                .set_groups((!groups.is_empty()).then(|| groups.to_vec()))
                .description(description)
                .tag_specifications(spec.clone())
                .client_token(client_token)
                .send()
        })
        .await?;
        out.network_interface()
            .map(hook_eni)
            .ok_or_else(|| CloudError::Api {
                action,
                code: "UnexpectedResponse".into(),
                message: "the reply holds no network interface".into(),
                maybe_applied: false,
            })
    }

    pub async fn attach(
        &self,
        eni_id: &str,
        instance_id: &str,
        device: i32,
    ) -> Result<String, CloudError> {
        let action = "AttachNetworkInterface";
        let out = sdk_call(&self.policy, action, || {
            self.ec2
                .attach_network_interface()
                .network_interface_id(eni_id)
                .instance_id(instance_id)
                .device_index(device)
                .send()
        })
        .await?;
        out.attachment_id()
            .map(str::to_string)
            .ok_or_else(|| CloudError::Api {
                action,
                code: "UnexpectedResponse".into(),
                message: format!("attaching {eni_id} returned no attachment id"),
                maybe_applied: false,
            })
    }

    pub async fn delete_on_termination(
        &self,
        eni_id: &str,
        attachment: &str,
    ) -> Result<(), CloudError> {
        sdk_call(&self.policy, "ModifyNetworkInterfaceAttribute", || {
            self.ec2
                .modify_network_interface_attribute()
                .network_interface_id(eni_id)
                .attachment(
                    NetworkInterfaceAttachmentChanges::builder()
                        .attachment_id(attachment)
                        .delete_on_termination(true)
                        .build(),
                )
                .send()
        })
        .await
        .map(|_| ())
    }

    pub async fn detach(&self, attachment: &str) -> Result<(), CloudError> {
        let r = sdk_call(&self.policy, "DetachNetworkInterface", || {
            self.ec2
                .detach_network_interface()
                .attachment_id(attachment)
                .send()
        })
        .await;
        match r {
            Err(e) if e.api_code() == Some("InvalidAttachmentID.NotFound") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Deletes it; already gone counts as done.
    pub async fn delete(&self, eni_id: &str) -> Result<(), CloudError> {
        let r = sdk_call(&self.policy, "DeleteNetworkInterface", || {
            self.ec2
                .delete_network_interface()
                .network_interface_id(eni_id)
                .send()
        })
        .await;
        match r {
            Err(e) if e.is_eni_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    pub async fn complete(
        &self,
        group: &str,
        hook: &str,
        token: &str,
        instance_id: &str,
        result: &str,
    ) -> Result<Completion, CloudError> {
        let r = sdk_call(&self.policy, "CompleteLifecycleAction", || {
            self.autoscaling
                .complete_lifecycle_action()
                .auto_scaling_group_name(group)
                .lifecycle_hook_name(hook)
                .lifecycle_action_token(token)
                .instance_id(instance_id)
                .lifecycle_action_result(result)
                .send()
        })
        .await;
        match r {
            Ok(_) => Ok(Completion::Completed),
            // A duplicate delivery of an event whose action an earlier delivery completed.
            Err(CloudError::Api { code, message, .. })
                if code == "ValidationError" && message.contains("No active Lifecycle Action") =>
            {
                Ok(Completion::AlreadyCompleted)
            }
            Err(e) => Err(e),
        }
    }
}
