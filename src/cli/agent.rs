//! `aws-eni-ip agent`: its flags, parsed and checked before anything starts.

use crate::agent::AgentConfig;
use crate::config::LogLevel;
use crate::store::NodeDir;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: aws-eni-ip agent [FLAGS]

The node agent: releases what lost DELs left on the ENIs (asking the container runtime over CRI
which sandboxes live), finishes releases that DEL handed over, follows addresses added at run time
in pods of networks with \"followAddresses\", and serves metrics and health. Stops on SIGTERM.

  --interval SECONDS         reconcile every SECONDS (default 60)
  --grace SECONDS            a record younger than this is never released for a missing sandbox (default 120)
  --max-releases N           at most N releases per pass (default 20; halved after a throttled pass)
  --runtime-endpoint PATH    CRI socket (default: /run/containerd/containerd.sock, else /var/run/crio/crio.sock)
  --metrics-bind ADDR:PORT   /metrics, /healthz, /readyz (default 0.0.0.0:61690)
  --state-dir DIR            the node's state dir (default /var/lib/cni/aws-eni-ip, or $AWS_ENI_IP_NODE_DIR)
  --debounce MS              wait before giving back an address that left a pod (default 2000)
  --drift-interval SECONDS   describe the ENIs for the drift report every SECONDS (default 300; 0 = never)
  --timeout-ms MS            deadline of one EC2/IMDS call with its retries, and of one operation (default 10000)
  --region NAME              EC2 region (default: from IMDS)
  --ec2-endpoint URL         EC2 endpoint (default: $AWS_ENDPOINT_URL_EC2, else the regional one)
  --imds-endpoint URL        IMDS endpoint (default: $AWS_EC2_METADATA_SERVICE_ENDPOINT, else 169.254.169.254)
  --log-level LEVEL          error, warn, info, debug (default info)
  --node-ec2-rate RATE       calls per second per EC2 action this node may use: its share of the
                             account bucket, e.g. 4 / nodes (default: derived from what the node
                             observed); written to the node dir, read by every plugin process";

pub fn run(args: &[String]) -> ExitCode {
    let parsed = node_ec2_rate(args).and_then(|(rate, rest)| Ok((rate, parse(&rest)?)));
    match parsed {
        Ok((rate, Some(config))) => {
            // Unset clears an earlier share: the node derives its own again.
            if let Err(e) = config.node.set_node_ec2_rate(rate) {
                eprintln!("aws-eni-ip agent: cannot record --node-ec2-rate: {e}");
                return ExitCode::from(1);
            }
            crate::agent::run(config)
        }
        Ok((_, None)) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("aws-eni-ip agent: {problem}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{flag} {v:?} is not a number of seconds from 0 to 86400"))
}

fn number(flag: &str, v: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "{flag} {v:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// Takes `--node-ec2-rate RATE` out of `args`: the rate, and the other flags.
pub fn node_ec2_rate(args: &[String]) -> Result<(Option<f64>, Vec<String>), String> {
    let (mut rate, mut rest) = (None, Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg != "--node-ec2-rate" {
            rest.push(arg.clone());
            continue;
        }
        let v = it.next().ok_or("--node-ec2-rate needs a value")?;
        let r = v
            .parse::<f64>()
            .map_err(|_| format!("--node-ec2-rate {v:?} is not a number"))?;
        crate::store::validate_node_rate(r).map_err(|e| format!("--node-ec2-rate: {e}"))?;
        rate = Some(r);
    }
    Ok((rate, rest))
}

/// `Ok(None)`: help was asked for.
pub fn parse(args: &[String]) -> Result<Option<AgentConfig>, String> {
    let mut c = AgentConfig {
        node: NodeDir::from_env(),
        ..AgentConfig::default()
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if matches!(flag.as_str(), "-h" | "--help") {
            return Ok(None);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value (or unknown flag)"))?;
        match flag.as_str() {
            "--interval" => {
                c.interval = seconds(flag, value)?;
                if c.interval < Duration::from_millis(100) {
                    return Err("--interval must be at least 0.1 s".into());
                }
            }
            "--grace" => c.grace = seconds(flag, value)?,
            "--max-releases" => c.max_releases = number(flag, value, 1..=1000)? as usize,
            "--runtime-endpoint" => c.runtime_endpoint = Some(PathBuf::from(value)),
            "--metrics-bind" => {
                c.metrics_bind = value.parse::<SocketAddr>().map_err(|_| {
                    format!("--metrics-bind {value:?} is not ADDR:PORT (e.g. 0.0.0.0:61690)")
                })?
            }
            "--state-dir" => c.node = NodeDir::new(value),
            "--debounce" => c.debounce = Duration::from_millis(number(flag, value, 0..=600_000)?),
            "--drift-interval" => {
                let every = seconds(flag, value)?;
                c.drift_interval = (!every.is_zero()).then_some(every);
            }
            "--timeout-ms" => {
                c.timeout = Duration::from_millis(number(flag, value, 1_000..=300_000)?)
            }
            "--region" => c.aws.region = Some(value.clone()),
            "--ec2-endpoint" => c.aws.ec2_endpoint = Some(value.trim_end_matches('/').into()),
            "--imds-endpoint" => c.aws.imds_endpoint = Some(value.trim_end_matches('/').into()),
            "--log-level" => {
                c.log_level = LogLevel::parse(value).ok_or_else(|| {
                    format!("--log-level {value:?}: use error, warn, info or debug")
                })?
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(&[]).unwrap().unwrap();
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.grace, Duration::from_secs(120));
        assert_eq!(c.max_releases, 20);
        assert_eq!(c.debounce, Duration::from_secs(2));
        assert_eq!(c.metrics_bind, "0.0.0.0:61690".parse().unwrap());
        assert_eq!(c.drift_interval, Some(Duration::from_secs(300)));
    }

    #[test]
    fn every_flag_is_read() {
        let c = parse(&args(&[
            "--interval",
            "0.5",
            "--grace",
            "3",
            "--max-releases",
            "7",
            "--runtime-endpoint",
            "/tmp/cri.sock",
            "--metrics-bind",
            "127.0.0.1:0",
            "--state-dir",
            "/var/lib/x",
            "--debounce",
            "250",
            "--drift-interval",
            "0",
            "--timeout-ms",
            "5000",
            "--region",
            "us-west-2",
            "--log-level",
            "debug",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.grace, Duration::from_secs(3));
        assert_eq!(c.max_releases, 7);
        assert_eq!(c.runtime_endpoint, Some(PathBuf::from("/tmp/cri.sock")));
        assert_eq!(c.node.root(), std::path::Path::new("/var/lib/x"));
        assert_eq!(c.debounce, Duration::from_millis(250));
        assert_eq!(c.drift_interval, None);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.log_level, LogLevel::Debug);
    }

    #[test]
    fn the_node_ec2_rate_is_taken_out_and_checked() {
        let (rate, rest) =
            node_ec2_rate(&args(&["--interval", "5", "--node-ec2-rate", "0.02"])).unwrap();
        assert_eq!(rate, Some(0.02));
        assert_eq!(rest, args(&["--interval", "5"]));
        assert_eq!(node_ec2_rate(&args(&["--grace", "1"])).unwrap().0, None);
        for bad in [
            &["--node-ec2-rate", "x"][..],
            &["--node-ec2-rate", "0"],
            &["--node-ec2-rate"],
        ] {
            let e = node_ec2_rate(&args(bad)).unwrap_err();
            assert!(e.contains("--node-ec2-rate"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (bad, flag) in [
            (vec!["--interval", "x"], "--interval"),
            (vec!["--interval", "0"], "--interval"),
            (vec!["--metrics-bind", "61690"], "--metrics-bind"),
            (vec!["--max-releases", "0"], "--max-releases"),
            (vec!["--timeout-ms", "10"], "--timeout-ms"),
            (vec!["--bogus", "1"], "--bogus"),
            (vec!["--grace"], "--grace"),
        ] {
            let e = parse(&args(&bad)).unwrap_err();
            assert!(e.contains(flag), "{bad:?}: {e}");
        }
    }
}
