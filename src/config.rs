//! The plugin's own keys beside `"type": "aws-eni-ip"`: parsed and validated once, before any side
//! effect. Unknown keys are ignored, as CNI convention expects.

use crate::cloud::AwsSettings;
use crate::cni::CniError;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/aws-eni-ip";
pub const DEFAULT_LOG_FILE: &str = "/var/log/aws-eni-ip.log";
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 1_000..=300_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// Host link whose ENI receives the addresses; `None` = parent link of the pod interface.
    pub master: Option<String>,
    pub region: Option<String>,
    pub ec2_endpoint: Option<String>,
    pub imds_endpoint: Option<String>,
    pub allow_reassignment: bool,
    pub allow_managed_eni: bool,
    pub allow_primary_eni: bool,
    pub state_dir: PathBuf,
    pub log_file: PathBuf,
    pub log_level: LogLevel,
    pub timeout: Duration,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            master: None,
            region: None,
            ec2_endpoint: None,
            imds_endpoint: None,
            allow_reassignment: true,
            allow_managed_eni: false,
            allow_primary_eni: false,
            state_dir: DEFAULT_STATE_DIR.into(),
            log_file: DEFAULT_LOG_FILE.into(),
            log_level: LogLevel::Info,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        }
    }
}

impl PluginConfig {
    pub fn from_map(raw: &Map<String, Value>) -> Result<PluginConfig, CniError> {
        let mut c = PluginConfig::default();
        if let Some(master) = string(raw, "master")? {
            crate::cni::env::validate_ifname(&master).map_err(|_| {
                CniError::invalid_config(format!(
                    "\"master\" {master:?} is not a valid interface name"
                ))
                .with_details(
                    "name the host link of the secondary ENI, e.g. \"eth1\", or omit the key",
                )
            })?;
            c.master = Some(master);
        }
        if let Some(region) = string(raw, "region")? {
            let ok = !region.is_empty()
                && region.len() <= 32
                && region
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
            if !ok {
                return Err(CniError::invalid_config(format!(
                    "\"region\" {region:?} is not an AWS region name"
                ))
                .with_details(
                    "use a name like \"us-west-2\", or omit it to read the region from IMDS",
                ));
            }
            c.region = Some(region);
        }
        c.ec2_endpoint = endpoint(raw, "ec2Endpoint")?;
        c.imds_endpoint = endpoint(raw, "imdsEndpoint")?;
        c.allow_reassignment = boolean(raw, "allowReassignment")?.unwrap_or(true);
        c.allow_managed_eni = boolean(raw, "allowManagedEni")?.unwrap_or(false);
        c.allow_primary_eni = boolean(raw, "allowPrimaryEni")?.unwrap_or(false);
        if let Some(dir) = string(raw, "stateDir")? {
            c.state_dir = absolute_path("stateDir", &dir)?;
        }
        if let Some(file) = string(raw, "logFile")? {
            c.log_file = absolute_path("logFile", &file)?;
        }
        if let Some(level) = string(raw, "logLevel")? {
            c.log_level = match level.to_ascii_lowercase().as_str() {
                "error" => LogLevel::Error,
                "warn" | "warning" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                _ => {
                    return Err(CniError::invalid_config(format!(
                        "\"logLevel\" {level:?} is not a log level"
                    ))
                    .with_details("use \"error\", \"warn\", \"info\" or \"debug\""))
                }
            };
        }
        if let Some(v) = raw.get("timeoutMs").filter(|v| !v.is_null()) {
            let ms = v
                .as_u64()
                .filter(|ms| TIMEOUT_RANGE_MS.contains(ms))
                .ok_or_else(|| {
                    CniError::invalid_config(format!("\"timeoutMs\" {v} is out of range"))
                        .with_details("use a whole number of milliseconds from 1000 to 300000")
                })?;
            c.timeout = Duration::from_millis(ms);
        }
        Ok(c)
    }

    /// What the cloud layer needs of this config.
    pub fn aws_settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.region.clone(),
            ec2_endpoint: self.ec2_endpoint.clone(),
            imds_endpoint: self.imds_endpoint.clone(),
        }
    }

    /// For operators and tests: is this plugin block (a JSON object) one the plugin would accept?
    pub fn validate_json(block: &Value) -> Result<(), String> {
        let map = block
            .as_object()
            .ok_or_else(|| "the aws-eni-ip block must be a JSON object".to_string())?;
        if map.get("type").and_then(Value::as_str) != Some("aws-eni-ip") {
            return Err("the block's \"type\" is not \"aws-eni-ip\"".into());
        }
        PluginConfig::from_map(map)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn string(raw: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CniError::invalid_config(format!(
            "\"{key}\" must be a string, not {other}"
        ))),
    }
}

fn boolean(raw: &Map<String, Value>, key: &str) -> Result<Option<bool>, CniError> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(CniError::invalid_config(format!(
            "\"{key}\" must be true or false, not {other}"
        ))),
    }
}

fn endpoint(raw: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    let Some(url) = string(raw, key)? else {
        return Ok(None);
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(Some(url.trim_end_matches('/').to_string()))
        }
        _ => Err(
            CniError::invalid_config(format!("\"{key}\" {url:?} is not an http(s) URL"))
                .with_details("write it like \"https://ec2.us-west-2.amazonaws.com\""),
        ),
    }
}

fn absolute_path(key: &str, path: &str) -> Result<PathBuf, CniError> {
    if path.starts_with('/') && !path.split('/').any(|part| part == "..") {
        Ok(PathBuf::from(path))
    } else {
        Err(CniError::invalid_config(format!(
            "\"{key}\" {path:?} must be an absolute path without '..'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::ErrorCode;
    use serde_json::json;

    fn parse(v: Value) -> Result<PluginConfig, CniError> {
        PluginConfig::from_map(v.as_object().unwrap())
    }

    #[test]
    fn defaults_are_safe() {
        let c = parse(json!({"type": "aws-eni-ip", "unknownKey": 1})).unwrap();
        assert_eq!(c, PluginConfig::default());
        assert!(c.allow_reassignment && !c.allow_managed_eni && !c.allow_primary_eni);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(json!({"master": "eth1", "region": "ap-northeast-1",
            "ec2Endpoint": "https://vpce-1.ec2.ap-northeast-1.vpce.amazonaws.com/",
            "imdsEndpoint": "http://[fd00:ec2::254]", "allowReassignment": false,
            "allowManagedEni": true, "allowPrimaryEni": true, "stateDir": "/run/aws-eni-ip",
            "logFile": "/tmp/x.log", "logLevel": "debug", "timeoutMs": 5000}))
        .unwrap();
        assert_eq!(c.master.as_deref(), Some("eth1"));
        assert_eq!(
            c.ec2_endpoint.as_deref(),
            Some("https://vpce-1.ec2.ap-northeast-1.vpce.amazonaws.com")
        );
        assert!(!c.allow_reassignment && c.allow_managed_eni && c.allow_primary_eni);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (bad, key) in [
            (json!({"master": 1}), "master"),
            (json!({"master": "eth1/x"}), "master"),
            (json!({"region": "US WEST"}), "region"),
            (json!({"ec2Endpoint": "ec2.local"}), "ec2Endpoint"),
            (json!({"allowReassignment": "yes"}), "allowReassignment"),
            (json!({"stateDir": "relative/dir"}), "stateDir"),
            (json!({"logFile": "/var/log/../x"}), "logFile"),
            (json!({"logLevel": "loud"}), "logLevel"),
            (json!({"timeoutMs": 10}), "timeoutMs"),
            (json!({"timeoutMs": "5000"}), "timeoutMs"),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig, "{bad}");
            assert!(e.msg.contains(key), "{bad}: {}", e.msg);
        }
    }

    #[test]
    fn validate_json_checks_type_and_keys() {
        assert!(PluginConfig::validate_json(&json!({"type": "aws-eni-ip"})).is_ok());
        assert!(PluginConfig::validate_json(&json!({"type": "ipvlan"})).is_err());
        assert!(
            PluginConfig::validate_json(&json!({"type": "aws-eni-ip", "timeoutMs": -1})).is_err()
        );
    }
}
