//! CNI mode: read env and stdin, validate everything, run one command, print the reply.

use crate::cloud::aws::AwsClients;
use crate::cloud::retry::RetryPolicy;
use crate::cloud::CallBudget;
use crate::cni::version::{supported_list, SUPPORTED};
use crate::cni::{CniError, CniVersion, Command, Environment, ErrorCode, NetConf};
use crate::commands::{self, Ctx, Summary};
use crate::config::ipam::IpamConfig;
use crate::config::PluginConfig;
use crate::node::NetlinkHost;
use crate::store::{Ec2Count, NodeDir, Store};
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

/// What the process prints and how it exits.
pub struct Reply {
    pub stdout: String,
    pub exit_code: u8,
}

pub fn run(env_get: impl Fn(&str) -> Option<String>, stdin: &mut impl Read) -> Reply {
    let started = Instant::now();
    let mut input = Vec::new();
    let read = stdin
        .take(crate::cni::netconf::MAX_STDIN_BYTES as u64 + 1)
        .read_to_end(&mut input);
    let reply_version = raw_version(&input);
    if let Err(e) = read {
        return error_reply(
            &CniError::io(format!("cannot read stdin: {e}")),
            &reply_version,
        );
    }
    let env = match Environment::from_vars(&env_get) {
        Ok(env) => env,
        Err(e) => return error_reply(&e, &reply_version),
    };
    if env.command == Command::Version {
        return version_reply(&reply_version);
    }
    let conf = match NetConf::parse(&input) {
        Ok(c) => c,
        Err(e) => return error_reply(&e, &reply_version),
    };
    let version = conf.cni_version.as_str().to_string();
    let (config, ipam) = match load(&env, &conf) {
        Ok(loaded) => loaded,
        Err(e) => {
            crate::log::init(&PluginConfig::default());
            log_outcome(&env, &conf, started, &Err(e.clone()));
            count_run(env.command, &Err(e.clone()));
            return error_reply(&e, &version);
        }
    };
    let outcome =
        gate(&env, &conf).and_then(|()| execute(&env, &conf, &config, ipam.as_ref(), started));
    log_outcome(
        &env,
        &conf,
        started,
        &outcome
            .as_ref()
            .map(|(_, s)| s.clone())
            .map_err(Clone::clone),
    );
    count_run(env.command, &outcome);
    match outcome {
        Ok((stdout, _)) => Reply {
            stdout,
            exit_code: 0,
        },
        Err(e) => error_reply(&e, &version),
    }
}

/// The plugin's keys: beside `"type": "aws-eni-ip"` when chained, in the `ipam` object in IPAM
/// mode. DEL needs only its key: broken keys fall back to their defaults, and are logged.
fn load(env: &Environment, conf: &NetConf) -> Result<(PluginConfig, Option<IpamConfig>), CniError> {
    let ipam_block = match conf.plugin_type.as_str() {
        "aws-eni-ip" => None,
        _ => IpamConfig::find(&conf.raw),
    };
    if env.command == Command::Del {
        let (config, problems) = PluginConfig::lenient(ipam_block.unwrap_or(&conf.raw));
        crate::log::init(&config);
        for p in problems {
            tracing::warn!(network = %conf.name, problem = %p, "DEL goes on with the default for a broken key");
        }
        return Ok((config, None));
    }
    let loaded = match ipam_block {
        Some(_) => {
            let ipam = IpamConfig::from_netconf(&conf.raw)?;
            (ipam.plugin.clone(), Some(ipam))
        }
        None => (PluginConfig::from_map(&conf.raw)?, None),
    };
    crate::log::init(&loaded.0);
    Ok(loaded)
}

/// CHECK arrived in 0.4.0, STATUS and GC in 1.1.0: older configs may not use them.
fn gate(env: &Environment, conf: &NetConf) -> Result<(), CniError> {
    let v = conf.cni_version;
    let allowed = match env.command {
        Command::Check => v.has_check(),
        Command::Status | Command::Gc => v.has_status_and_gc(),
        _ => true,
    };
    if allowed {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!("config version {v} does not allow {}", env.command.as_str()),
        ))
    }
}

fn execute(
    env: &Environment,
    conf: &NetConf,
    config: &PluginConfig,
    ipam: Option<&IpamConfig>,
    started: Instant,
) -> Result<(String, Summary), CniError> {
    let deadline = started + config.timeout;
    let policy = RetryPolicy::new(deadline);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::io(format!("cannot start the async runtime: {e}")))?;
    let store = Store::open(&config.state_dir, NodeDir::from_env());
    let region_cache = store.as_ref().ok().map(Store::region_cache);
    let budget = store
        .as_ref()
        .ok()
        .map(|s| Arc::new(s.node().budget()) as Arc<dyn CallBudget>);
    let aws = AwsClients::new(config.aws_settings(), region_cache, budget, policy)
        .map_err(|e| CniError::invalid_config(format!("\"imdsEndpoint\": {e}")))?;
    if env.command == Command::Status {
        return runtime
            .block_on(commands::status::status(store, &aws))
            .map(|()| (String::new(), Summary::note("ready")));
    }
    let store = store?;
    let host = NetlinkHost;
    let ctx = Ctx {
        env,
        conf,
        config,
        store: &store,
        aws: &aws,
        host: &host,
        deadline,
    };
    let work = async {
        match env.command {
            Command::Add => match ipam {
                None => commands::add::add(&ctx).await,
                Some(ipam) => commands::ipam::add(&ctx, ipam).await,
            }
            .map(|(result, s)| (result.to_string(), s)),
            Command::Del => commands::del::del(&ctx).await.map(|s| (String::new(), s)),
            Command::Check => commands::check::check(&ctx)
                .await
                .map(|s| (String::new(), s)),
            Command::Gc => commands::gc::gc(&ctx).await.map(|s| (String::new(), s)),
            Command::Status | Command::Version => unreachable!("handled above"),
        }
    };
    runtime.block_on(async {
        match tokio::time::timeout(config.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(CniError::new(
                ErrorCode::TryAgainLater,
                format!(
                    "{} did not finish within timeoutMs ({} ms)",
                    env.command.as_str(),
                    config.timeout.as_millis()
                ),
            )
            .with_details(
                "EC2 or IMDS is slow or throttling; the runtime's retry completes the operation",
            )),
        }
    })
}

fn log_outcome(
    env: &Environment,
    conf: &NetConf,
    started: Instant,
    outcome: &Result<Summary, CniError>,
) {
    let ms = started.elapsed().as_millis() as u64;
    let cmd = env.command.as_str();
    let pod = env.pod().unwrap_or_default();
    match outcome {
        Ok(s) => tracing::info!(
            cmd, network = %conf.name, container = %env.container_id, ifname = %env.ifname, pod = %pod,
            eni = %s.eni.as_deref().unwrap_or("-"), addresses = %commands::list(&s.addresses),
            outcome = %s.note, ms, "ok"
        ),
        Err(e) => tracing::error!(
            cmd, network = %conf.name, container = %env.container_id, ifname = %env.ifname, pod = %pod,
            code = e.code.as_u32(), error = %e, ms, "failed"
        ),
    }
}

/// Adds this run to the node's counters for the agent's metrics; never delays or fails the pod.
fn count_run(command: Command, outcome: &Result<(String, Summary), CniError>) {
    let (label, code) = match outcome {
        Ok((_, s)) if s.handed_off => ("handed_off", 0),
        Ok(_) => ("ok", 0),
        Err(e) => ("error", e.code.as_u32()),
    };
    let ec2: Vec<Ec2Count> = crate::cloud::calls::snapshot()
        .into_iter()
        .map(|(action, c)| Ec2Count {
            action: action.to_string(),
            calls: c.calls,
            throttled: c.throttled,
        })
        .collect();
    if let Err(e) =
        NodeDir::from_env().count_plugin_run(command.as_str(), label, code, &ec2, COUNTERS_WAIT)
    {
        tracing::debug!(error = %e, "run not counted");
    }
}

/// The longest a plugin run waits to add itself to the node's counters.
const COUNTERS_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The version to answer in when the config cannot be parsed: the one it names, if we speak it.
fn raw_version(input: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| CniVersion::parse(v).is_some())
        .unwrap_or_else(|| CniVersion::V1_1_0.as_str().to_string())
}

fn version_reply(version: &str) -> Reply {
    let versions: Vec<&str> = SUPPORTED.iter().map(|v| v.as_str()).collect();
    let body = serde_json::json!({"cniVersion": version, "supportedVersions": versions});
    Reply {
        stdout: body.to_string(),
        exit_code: 0,
    }
}

fn error_reply(e: &CniError, version: &str) -> Reply {
    Reply {
        stdout: e.to_json(version),
        exit_code: 1,
    }
}

/// `aws-eni-ip version`.
pub fn version_text() -> String {
    format!(
        "aws-eni-ip {}\nCNI spec versions: {}",
        crate::VERSION,
        supported_list()
    )
}
