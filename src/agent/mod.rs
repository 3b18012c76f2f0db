//! The node agent (`aws-eni-ip agent`), one module per job, each behind a trait with a fake:
//! `cri` (which sandboxes live), `reconcile` (release what DEL missed or handed over), `watch` and
//! `follow` (addresses added in pods at run time), `records` (the node's records, and inotify on
//! them), `metrics` and `http` (Prometheus text, health), `run` (the loop that owns the decisions).
//! It acts only through the commands' release and assign paths, under their locks.

pub mod cri;
pub mod cri_api;
pub mod follow;
pub mod http;
pub mod links;
pub mod metrics;
pub mod reconcile;
pub mod records;
pub mod run;
pub mod watch;

use crate::cloud::aws::{AwsClients, AwsMetadata};
use crate::cloud::retry::RetryPolicy;
use crate::cloud::{AwsSettings, CallBudget};
use crate::config::LogLevel;
use crate::store::{NodeDir, Store};
use cri::CriRuntime;
use follow::Follower;
use reconcile::{ReconcileSettings, Reconciler};
use run::{Agent, LoopSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use watch::NetlinkSource;

/// Everything `aws-eni-ip agent` was told; see `cli/agent.rs` for the flags.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: NodeDir,
    pub interval: Duration,
    pub grace: Duration,
    pub max_releases: usize,
    pub runtime_endpoint: Option<PathBuf>,
    pub metrics_bind: SocketAddr,
    pub debounce: Duration,
    pub drift_interval: Option<Duration>,
    pub timeout: Duration,
    pub aws: AwsSettings,
    pub log_level: LogLevel,
}

/// The metrics port: next to the VPC CNI's 61678 (metrics) and 61679 (introspection).
pub const DEFAULT_METRICS_PORT: u16 = 61690;

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node: NodeDir::new(crate::store::DEFAULT_NODE_DIR),
            interval: Duration::from_secs(60),
            grace: Duration::from_secs(120),
            max_releases: 20,
            runtime_endpoint: None,
            metrics_bind: SocketAddr::from(([0, 0, 0, 0], DEFAULT_METRICS_PORT)),
            debounce: Duration::from_secs(2),
            drift_interval: Some(Duration::from_secs(300)),
            timeout: Duration::from_secs(10),
            aws: AwsSettings::default(),
            log_level: LogLevel::Info,
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(config: AgentConfig) -> ExitCode {
    crate::log::init_stdout(config.log_level);
    match start(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            tracing::error!("{problem}");
            eprintln!("aws-eni-ip agent: {problem}");
            ExitCode::from(1)
        }
    }
}

fn start(config: AgentConfig) -> Result<(), String> {
    let node = config.node.clone();
    let store = Store::open(node.root(), node.clone())
        .map_err(|e| format!("{e} (the agent needs the node's state dir, read-write)"))?;
    let policy = RetryPolicy::per_call(config.timeout);
    // Checked here so a bad endpoint stops the start, not the metrics thread.
    AwsMetadata::new(&config.aws, policy).map_err(|e| format!("--imds-endpoint: {e}"))?;
    let metrics = metrics::SharedMetrics::default();
    let runtime = CriRuntime {
        endpoint: config.runtime_endpoint.clone(),
    };
    let probe = (
        runtime.clone(),
        config.aws.clone(),
        node.clone(),
        metrics.clone(),
    );
    let bound = http::start(
        config.metrics_bind,
        metrics.clone(),
        node.clone(),
        move || {
            let (runtime, aws, node, metrics) = probe;
            http::NodeReadiness {
                runtime,
                metadata: AwsMetadata::new(&aws, RetryPolicy::per_call(Duration::from_secs(2)))
                    .expect("checked at start"),
                node,
                metrics,
                imds: Default::default(),
            }
        },
    )
    .map_err(|e| format!("cannot serve metrics on {}: {e}", config.metrics_bind))?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // The agent's unassigns draw from the same node budget as the plugin's calls.
    let budget = Arc::new(node.budget()) as Arc<dyn CallBudget>;
    let aws = AwsClients::new(
        config.aws.clone(),
        store.region_cache(),
        Some(budget),
        policy,
    )
    .map_err(|e| format!("--imds-endpoint: {e}"))?;
    tracing::info!(interval_s = config.interval.as_secs_f64(), grace_s = config.grace.as_secs_f64(),
        runtime = %runtime.socket().map(|p| p.display().to_string()).unwrap_or_else(|e| e.to_string()),
        metrics = %bound, state_dir = %node.root().display(), version = crate::VERSION, "agent started");
    let agent = Agent::new(
        node,
        aws,
        runtime,
        Follower::new(NetlinkSource, config.debounce),
        Reconciler::new(ReconcileSettings {
            grace: config.grace,
            max_releases: config.max_releases,
            lock_wait: Duration::from_secs(2),
            op_timeout: config.timeout,
        }),
        metrics,
        LoopSettings {
            interval: config.interval,
            drift_interval: config.drift_interval,
            op_timeout: config.timeout,
        },
    )
    .with_links(Box::new(links::NetlinkLinks));
    let local = tokio::task::LocalSet::new();
    local
        .block_on(&tokio, agent.run(stop_signal()))
        .map_err(|e| format!("cannot watch the state dir: {e}"))
}

/// SIGTERM (kubelet stopping the pod) or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
