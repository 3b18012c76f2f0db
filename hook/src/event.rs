//! The Auto Scaling lifecycle events that EventBridge delivers (detail-type "EC2 Instance-launch
//! Lifecycle Action" / "EC2 Instance-terminate Lifecycle Action", source "aws.autoscaling").

use serde::Deserialize;

pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// The `detail` of a lifecycle event; EventBridge's envelope around it is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleDetail {
    pub lifecycle_action_token: String,
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    #[serde(rename = "EC2InstanceId")]
    pub instance_id: String,
    pub lifecycle_transition: String,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    detail: LifecycleDetail,
}

/// What the function was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Launching(LifecycleDetail),
    Terminating(LifecycleDetail),
}

impl Transition {
    pub fn detail(&self) -> &LifecycleDetail {
        match self {
            Transition::Launching(d) | Transition::Terminating(d) => d,
        }
    }
}

/// Parses an EventBridge event; the error says what was missing.
pub fn parse(event: &serde_json::Value) -> Result<Transition, String> {
    let e: Envelope = serde_json::from_value(event.clone())
        .map_err(|e| format!("not an Auto Scaling lifecycle event from EventBridge: {e}"))?;
    let d = e.detail;
    match d.lifecycle_transition.as_str() {
        LAUNCHING => Ok(Transition::Launching(d)),
        TERMINATING => Ok(Transition::Terminating(d)),
        other => Err(format!(
            "lifecycle transition {other:?} is neither {LAUNCHING} nor {TERMINATING}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventbridge_launch_event_parses() {
        let v = serde_json::json!({
            "version": "0", "id": "12345678-1234-1234-1234-123456789012",
            "detail-type": "EC2 Instance-launch Lifecycle Action", "source": "aws.autoscaling",
            "account": "123456789012", "time": "2024-01-01T00:00:00Z", "region": "us-west-2",
            "resources": ["arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:x:autoScalingGroupName/ng"],
            "detail": {
                "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
                "AutoScalingGroupName": "ng", "LifecycleHookName": "multus-launch",
                "EC2InstanceId": "i-1234567890abcdef0",
                "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                "NotificationMetadata": "", "Origin": "EC2", "Destination": "AutoScalingGroup"
            }
        });
        let Transition::Launching(d) = parse(&v).unwrap() else {
            panic!()
        };
        assert_eq!(d.instance_id, "i-1234567890abcdef0");
        assert_eq!(d.lifecycle_hook_name, "multus-launch");
    }

    #[test]
    fn other_events_are_refused_with_a_reason() {
        assert!(parse(&serde_json::json!({"detail": {}}))
            .unwrap_err()
            .contains("LifecycleActionToken"));
        let v = serde_json::json!({"detail": {"LifecycleActionToken": "t", "AutoScalingGroupName": "g",
            "LifecycleHookName": "h", "EC2InstanceId": "i-1", "LifecycleTransition": "autoscaling:TEST_NOTIFICATION"}});
        assert!(parse(&v).unwrap_err().contains("TEST_NOTIFICATION"));
    }
}
