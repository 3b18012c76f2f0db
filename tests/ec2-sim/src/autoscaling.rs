//! The Auto Scaling Query API (awsQuery, version 2011-01-01) on its own listener: only
//! CompleteLifecycleAction, against lifecycle actions that tests open through the admin API.
//!
//! From the SDK model (aws-sdk-autoscaling `CompleteLifecycleActionInput`):
//! `lifecycle_action_result`: "The action for the group to take. You can specify either
//! `CONTINUE` or `ABANDON`."; `lifecycle_action_token`: "A universally unique identifier (UUID)
//! that identifies a specific lifecycle action associated with an instance. Amazon EC2 Auto
//! Scaling sends this token to the notification target you specified when you created the
//! lifecycle hook."; `instance_id`: "The ID of the instance." An action completes once: a second
//! completion finds no active action, which Auto Scaling reports as `ValidationError`
//! ("No active Lifecycle Action found with instance ID …").

use crate::ec2::{Params, Reply};
use crate::engine::{Ec2Error, Engine};
use crate::util::{iso8601, uuid, xml_escape};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

const XMLNS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

/// Every Auto Scaling action the simulator implements; fault maps may name these too.
pub const AUTOSCALING_ACTIONS: &[&str] = &["CompleteLifecycleAction"];

/// A lifecycle action: the instance waits in `Pending:Wait` / `Terminating:Wait` until completed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleAction {
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    pub instance_id: String,
    /// `autoscaling:EC2_INSTANCE_LAUNCHING` or `autoscaling:EC2_INSTANCE_TERMINATING`.
    pub lifecycle_transition: String,
    pub lifecycle_action_token: String,
    /// `CONTINUE` or `ABANDON` once completed.
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
}

/// What the admin API needs to open an action; a token is made up when none is given.
#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OpenAction {
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    pub instance_id: String,
    pub lifecycle_transition: String,
    #[serde(default)]
    pub lifecycle_action_token: Option<String>,
}

const TRANSITIONS: [&str; 2] = [
    "autoscaling:EC2_INSTANCE_LAUNCHING",
    "autoscaling:EC2_INSTANCE_TERMINATING",
];

fn validation(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new("ValidationError", message)
}

impl Engine {
    /// Opens a lifecycle action (admin API); refuses unknown instances and transitions.
    pub(crate) fn open_lifecycle_action(&self, a: OpenAction) -> Result<LifecycleAction, String> {
        if !self
            .model
            .world
            .instances
            .iter()
            .any(|i| i.id == a.instance_id)
        {
            return Err(format!("unknown instance {}", a.instance_id));
        }
        if !TRANSITIONS.contains(&a.lifecycle_transition.as_str()) {
            return Err(format!(
                "lifecycleTransition {:?} is not one of {TRANSITIONS:?}",
                a.lifecycle_transition
            ));
        }
        if a.auto_scaling_group_name.is_empty() || a.lifecycle_hook_name.is_empty() {
            return Err("autoScalingGroupName and lifecycleHookName must not be empty".into());
        }
        let action = LifecycleAction {
            auto_scaling_group_name: a.auto_scaling_group_name,
            lifecycle_hook_name: a.lifecycle_hook_name,
            instance_id: a.instance_id,
            lifecycle_transition: a.lifecycle_transition,
            lifecycle_action_token: a.lifecycle_action_token.unwrap_or_else(uuid),
            result: None,
            completed_at: None,
        };
        self.lock().lifecycle.push(action.clone());
        Ok(action)
    }

    pub(crate) fn lifecycle_actions(&self) -> Vec<LifecycleAction> {
        self.lock().lifecycle.clone()
    }

    fn complete_lifecycle_action(&self, p: &Params) -> Result<(), Ec2Error> {
        let group = p.require("AutoScalingGroupName")?;
        let hook = p.require("LifecycleHookName")?;
        let result = p.require("LifecycleActionResult")?;
        if result != "CONTINUE" && result != "ABANDON" {
            return Err(validation(format!(
                "Invalid value '{result}' for LifecycleActionResult: expected CONTINUE or ABANDON"
            )));
        }
        let token = p.get("LifecycleActionToken").filter(|t| !t.is_empty());
        let instance = p.get("InstanceId").filter(|t| !t.is_empty());
        if token.is_none() && instance.is_none() {
            return Err(validation(
                "Either LifecycleActionToken or InstanceId must be specified",
            ));
        }
        let mut inner = self.lock();
        let open = inner.lifecycle.iter_mut().find(|a| {
            a.result.is_none()
                && a.auto_scaling_group_name == group
                && a.lifecycle_hook_name == hook
                && token.is_none_or(|t| a.lifecycle_action_token == t)
                && instance.is_none_or(|i| a.instance_id == i)
        });
        match open {
            Some(a) => {
                a.result = Some(result.to_string());
                a.completed_at = Some(iso8601(SystemTime::now(), true));
                Ok(())
            }
            None => Err(validation(match (instance, token) {
                (Some(i), _) => format!("No active Lifecycle Action found with instance ID {i}"),
                (None, Some(t)) => format!("No active Lifecycle Action found with token {t}"),
                (None, None) => unreachable!("checked above"),
            })),
        }
    }
}

fn error_body(e: &Ec2Error, request_id: &str) -> String {
    let kind = if e.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>",
        xml_escape(&e.code),
        xml_escape(&e.message)
    )
}

/// Runs one Auto Scaling call in the EC2 side's order: count, latency, auth, throttle, injected
/// error, deny, execute.
pub(crate) async fn handle(engine: &Engine, authorization: Option<&str>, p: Params) -> Reply {
    let request_id = uuid();
    let action: String = p.get("Action").unwrap_or("").chars().take(64).collect();
    let latency = engine.begin_autoscaling(&action);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let result = match authorization {
        None => Err(Ec2Error::new(
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
        .status(401)),
        Some(a) if !a.trim_start().starts_with("AWS4-HMAC-SHA256") => Err(Ec2Error::new(
            "IncompleteSignature",
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm",
        )),
        Some(_) if !engine.admit(&action) => {
            Err(Ec2Error::new("Throttling", "Rate exceeded").status(400))
        }
        Some(_) => match engine.injected_error(&action) {
            Some(e) => Err(e),
            None if engine.denies(&action) => Err(Ec2Error::new(
                "AccessDenied",
                format!("User is not authorized to perform: autoscaling:{action}"),
            )
            .status(403)),
            None => match action.as_str() {
                "CompleteLifecycleAction" => engine.complete_lifecycle_action(&p),
                "" => Err(Ec2Error::new(
                    "MissingAction",
                    "The request must contain the parameter Action",
                )),
                other => Err(Ec2Error::new(
                    "InvalidAction",
                    format!("The action {other} is not valid for this web service. The simulator implements: {}", AUTOSCALING_ACTIONS.join(", ")),
                )),
            },
        },
    };
    match result {
        Ok(()) => Reply {
            status: 200,
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{XMLNS}\">\n  <{action}Result/>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{action}Response>"
            ),
            request_id,
            action,
            outcome: "ok".into(),
        },
        Err(e) => Reply {
            status: e.status,
            body: error_body(&e, &request_id),
            request_id,
            action,
            outcome: e.code,
        },
    }
}
