//! `bootstrap` of the Lambda function (custom runtime, provided.al2023): configuration and AWS
//! config once at cold start, then one lifecycle event per invocation.

use aws_eni_ip_hook::aws::NodeGroupAws;
use aws_eni_ip_hook::config::HookConfig;
use aws_eni_ip_hook::event::{self, Transition};
use aws_eni_ip_hook::lifecycle;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Kept back from the invocation's deadline so the lifecycle action is completed before it.
const MARGIN: Duration = Duration::from_secs(2);

/// The invocation's deadline (ms since the epoch, from the Runtime API) as an `Instant`, and no
/// later than the lifecycle hooks' heartbeat timeout: past it Auto Scaling has moved on.
fn deadline(deadline_ms: u64, heartbeat: Duration) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms)).min(heartbeat);
    Instant::now() + left.saturating_sub(MARGIN)
}

async fn handle(
    cfg: &HookConfig,
    shared: &aws_config::SdkConfig,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let transition = event::parse(&event.payload)?;
    let d = transition.detail();
    if !cfg.owns(&d.lifecycle_hook_name) {
        // Another tool's hook (EKS, Karpenter, a drain controller): completing it would skip its work.
        tracing::warn!(
            hook = %d.lifecycle_hook_name,
            instance = %d.instance_id,
            own = %cfg.own_hooks.join(","),
            "ignoring a lifecycle action of a hook that is not this function's (LIFECYCLE_HOOK_NAMES)"
        );
        return Ok(serde_json::json!({
            "instanceId": d.instance_id,
            "transition": d.lifecycle_transition,
            "ignored": format!("lifecycle hook {} is not one of {}", d.lifecycle_hook_name, cfg.own_hooks.join(", ")),
        }));
    }
    let aws = NodeGroupAws::new(
        shared,
        deadline(event.context.deadline, cfg.heartbeat_timeout),
    );
    let report = match &transition {
        Transition::Launching(d) => lifecycle::launch(cfg, &aws, d).await?,
        Transition::Terminating(d) => lifecycle::terminate(cfg, &aws, d).await?,
    };
    tracing::info!(
        instance = %report.instance_id,
        transition = report.transition,
        result = report.result,
        enis = report.enis.len(),
        removed = report.removed.len(),
        error = report.error.as_deref().unwrap_or(""),
        "lifecycle action done"
    );
    Ok(serde_json::to_value(&report)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .init();
    let cfg = HookConfig::from_env(|k| std::env::var(k).ok())?;
    let shared = aws_eni_ip::cloud::aws::standard_config(None).await;
    lambda_runtime::run(service_fn(|e| handle(&cfg, &shared, e))).await
}
