//! The plugin's own keys beside `"type": "aws-eni-ip"`: parsed and validated once, before any side
//! effect. Unknown keys are ignored, as CNI convention expects.

pub mod ipam;

use crate::cloud::AwsSettings;
use crate::cni::CniError;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/aws-eni-ip";
pub const DEFAULT_LOG_FILE: &str = "/var/log/aws-eni-ip.log";
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 1_000..=300_000;
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_MAX_FILES: u32 = 3;
const LOG_MAX_BYTES_RANGE: std::ops::RangeInclusive<u64> = 4_096..=1 << 30;
const LOG_MAX_FILES_RANGE: std::ops::RangeInclusive<u64> = 1..=100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    /// `error`, `warn` (or `warning`), `info`, `debug`, in any case.
    pub fn parse(name: &str) -> Option<LogLevel> {
        Some(match name.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => return None,
        })
    }
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
    /// The node agent follows addresses added in the pod's netns after ADD (a VRRP VIP).
    pub follow_addresses: bool,
    pub state_dir: PathBuf,
    pub log_file: PathBuf,
    pub log_level: LogLevel,
    /// The log file is rotated before a line would take it past this size.
    pub log_max_bytes: u64,
    /// Files kept, the live one included: `logFile`, `logFile.1`, … `logFile.<n-1>`.
    pub log_max_files: u32,
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
            follow_addresses: false,
            state_dir: DEFAULT_STATE_DIR.into(),
            log_file: DEFAULT_LOG_FILE.into(),
            log_level: LogLevel::Info,
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            log_max_files: DEFAULT_LOG_MAX_FILES,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        }
    }
}

/// Reads one key (or a few that belong together) into the config.
type KeyReader = fn(&Map<String, Value>, &mut PluginConfig) -> Result<(), CniError>;

const KEYS: [KeyReader; 9] = [
    read_master,
    read_region,
    read_endpoints,
    read_flags,
    read_state_dir,
    read_log_file,
    read_log_level,
    read_log_rotation,
    read_timeout,
];

impl PluginConfig {
    /// Every key valid, or the first problem: ADD, CHECK, GC and STATUS refuse a bad config.
    pub fn from_map(raw: &Map<String, Value>) -> Result<PluginConfig, CniError> {
        let mut c = PluginConfig::default();
        for read in KEYS {
            read(raw, &mut c)?;
        }
        Ok(c)
    }

    /// Defaults for the keys that are broken, and the problems: DEL needs only its record, so a
    /// NetworkAttachmentDefinition edited after its pods started must not stop their release.
    pub fn lenient(raw: &Map<String, Value>) -> (PluginConfig, Vec<CniError>) {
        let mut c = PluginConfig::default();
        let mut problems = Vec::new();
        for read in KEYS {
            let mut attempt = c.clone();
            match read(raw, &mut attempt) {
                Ok(()) => c = attempt,
                Err(e) => problems.push(e),
            }
        }
        (c, problems)
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

fn read_master(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
    if let Some(master) = string(raw, "master")? {
        crate::cni::env::validate_ifname(&master).map_err(|_| {
            CniError::invalid_config(format!(
                "\"master\" {master:?} is not a valid interface name"
            ))
            .with_details("name the host link of the secondary ENI, e.g. \"eth1\", or omit the key")
        })?;
        c.master = Some(master);
    }
    Ok(())
}

fn read_region(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
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
    Ok(())
}

fn read_endpoints(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
    c.ec2_endpoint = endpoint(raw, "ec2Endpoint")?;
    if let Some(url) = &c.ec2_endpoint {
        if url.starts_with("http://") && !is_loopback_url(url) {
            return Err(CniError::invalid_config(format!(
                "\"ec2Endpoint\" {url:?} is plain HTTP: the request signature and EC2's answers would cross the network unprotected"
            ))
            .with_details("use https:// (plain http:// is accepted only for loopback test endpoints)"));
        }
    }
    c.imds_endpoint = endpoint(raw, "imdsEndpoint")?;
    Ok(())
}

fn read_flags(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
    c.allow_reassignment = boolean(raw, "allowReassignment")?.unwrap_or(true);
    c.allow_managed_eni = boolean(raw, "allowManagedEni")?.unwrap_or(false);
    c.allow_primary_eni = boolean(raw, "allowPrimaryEni")?.unwrap_or(false);
    c.follow_addresses = boolean(raw, "followAddresses")?.unwrap_or(false);
    Ok(())
}

fn read_state_dir(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
    if let Some(dir) = string(raw, "stateDir")? {
        let dir = absolute_path("stateDir", &dir)?;
        refuse_system_path("stateDir", &dir, &dir)?;
        c.state_dir = dir;
    }
    Ok(())
}

fn read_log_file(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
    if let Some(file) = string(raw, "logFile")? {
        let file = absolute_path("logFile", &file)?;
        let parent = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        refuse_system_path("logFile", &file, &file)?;
        refuse_system_path("logFile", &file, &parent)?;
        c.log_file = file;
    }
    Ok(())
}

fn read_log_level(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
    if let Some(level) = string(raw, "logLevel")? {
        c.log_level = LogLevel::parse(&level).ok_or_else(|| {
            CniError::invalid_config(format!("\"logLevel\" {level:?} is not a log level"))
                .with_details("use \"error\", \"warn\", \"info\" or \"debug\"")
        })?;
    }
    Ok(())
}

fn read_log_rotation(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
    if let Some(bytes) = number_in(raw, "logMaxBytes", LOG_MAX_BYTES_RANGE)? {
        c.log_max_bytes = bytes;
    }
    if let Some(files) = number_in(raw, "logMaxFiles", LOG_MAX_FILES_RANGE)? {
        c.log_max_files = files as u32;
    }
    Ok(())
}

fn number_in(
    raw: &Map<String, Value>,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, CniError> {
    let Some(v) = raw.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let (low, high) = (range.start(), range.end());
    match v.as_u64().filter(|n| range.contains(n)) {
        Some(n) => Ok(Some(n)),
        None => Err(
            CniError::invalid_config(format!("\"{key}\" {v} is out of range"))
                .with_details(format!("use a whole number from {low} to {high}")),
        ),
    }
}

fn read_timeout(raw: &Map<String, Value>, c: &mut PluginConfig) -> Result<(), CniError> {
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
    Ok(())
}

/// Directories that hold the system itself: a tenant's config may not make root write there.
const SYSTEM_DIRS: [&str; 14] = [
    "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc",
    "/sys", "/dev", "/run",
];
/// Kernel interfaces: nothing below them is a place for state or logs.
const KERNEL_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

/// `key`'s value `path` may not be (or, via `checked`, sit directly in) a system directory.
fn refuse_system_path(key: &str, path: &Path, checked: &Path) -> Result<(), CniError> {
    let text = checked.to_string_lossy();
    let trimmed = match text.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    let system = SYSTEM_DIRS.contains(&trimmed)
        || trimmed == "/tmp"
        || KERNEL_TREES
            .iter()
            .any(|k| trimmed.starts_with(&format!("{k}/")));
    if system {
        return Err(CniError::invalid_config(format!(
            "\"{key}\" {} is a system path: the plugin runs as root and will not write there",
            path.display()
        ))
        .with_details(
            "use a directory of its own, e.g. /var/lib/cni/aws-eni-ip or /var/log/aws-eni-ip.log",
        ));
    }
    Ok(())
}

/// `http://127.0.0.1:…`, `http://[::1]:…`, `http://localhost:…`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
mod tests;
