//! The `CNI_*` environment: which command, for which container, netns and interface.

use super::CniError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// ADD, DEL and CHECK act on one attachment and need its identity.
    fn needs_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// The validated environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub args: Vec<(String, String)>,
}

impl Environment {
    /// Reads and validates the environment; `get` is `std::env::var` outside tests.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Environment, CniError> {
        let raw = get("CNI_COMMAND").unwrap_or_default();
        let command = Command::parse(&raw).ok_or_else(|| {
            CniError::invalid_env(format!("CNI_COMMAND {raw:?} is not a CNI command"))
                .with_details("expected ADD, DEL, CHECK, STATUS, GC or VERSION")
        })?;
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        let require = |k: &str| {
            nonempty(k).ok_or_else(|| {
                CniError::invalid_env(format!("{k} is required for {}", command.as_str()))
                    .with_details(
                        "the container runtime must set it; see the CNI spec, section 'Parameters'",
                    )
            })
        };
        let mut env = Environment {
            command,
            container_id: String::new(),
            netns: nonempty("CNI_NETNS"),
            ifname: String::new(),
            args: parse_args(&get("CNI_ARGS").unwrap_or_default())?,
        };
        if command.needs_attachment() {
            env.container_id = require("CNI_CONTAINERID")?;
            validate_container_id(&env.container_id)?;
            env.ifname = require("CNI_IFNAME")?;
            validate_ifname(&env.ifname)?;
            if matches!(command, Command::Add | Command::Check) && env.netns.is_none() {
                require("CNI_NETNS")?;
            }
        }
        Ok(env)
    }

    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `namespace/name` of the pod, when Kubernetes said so in CNI_ARGS.
    pub fn pod(&self) -> Option<String> {
        match (self.arg("K8S_POD_NAMESPACE"), self.arg("K8S_POD_NAME")) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            _ => None,
        }
    }
}

/// `CNI_ARGS` is `K=V;K=V`; an empty value is allowed, a pair without `=` is not.
pub fn parse_args(raw: &str) -> Result<Vec<(String, String)>, CniError> {
    raw.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(
                CniError::invalid_env(format!("CNI_ARGS pair {pair:?} is not KEY=VALUE"))
                    .with_details("CNI_ARGS must be KEY=VALUE pairs separated by ';'"),
            ),
        })
        .collect()
}

/// The id is part of a state file name (NAME_MAX 255, with ifname and a temp suffix); runtimes use 64.
pub const MAX_CONTAINER_ID_BYTES: usize = 200;

/// libcni's rule: alphanumeric first, then alphanumerics, `_`, `.`, `-`; at most 200 bytes.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && id.len() <= MAX_CONTAINER_ID_BYTES {
        Ok(())
    } else {
        Err(CniError::invalid_env(format!(
            "CNI_CONTAINERID {id:?} is not a valid container id"
        ))
        .with_details(
            "it must start with a letter or digit and hold only letters, digits, '_', '.', '-'",
        ))
    }
}

/// The kernel's rule for link names: 1–15 bytes, no '/', ':' or whitespace, not "." or "..".
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        Err(
            CniError::invalid_env(format!("CNI_IFNAME {name:?} is not a valid interface name"))
                .with_details("use 1-15 characters without '/', ':' or spaces"),
        )
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::ErrorCode;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Environment, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Environment::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn add_needs_container_netns_and_ifname() {
        let ok = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "net1"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=ran;K8S_POD_NAME=upf-0",
            ),
        ])
        .unwrap();
        assert_eq!(ok.pod().as_deref(), Some("ran/upf-0"));
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let mut pairs = vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "net1"),
            ];
            pairs.retain(|(k, _)| *k != missing);
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidEnvironment);
            assert!(e.msg.contains(missing), "{}", e.msg);
        }
    }

    #[test]
    fn del_may_lack_netns_and_status_needs_nothing() {
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "net1"),
        ])
        .unwrap();
        assert_eq!(del.netns, None);
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "GC")]).is_ok());
    }

    #[test]
    fn bad_values_are_code_4() {
        for (k, v) in [
            ("CNI_COMMAND", "ADDD"),
            ("CNI_CONTAINERID", "-leading-dash"),
            ("CNI_CONTAINERID", "has/slash"),
            ("CNI_IFNAME", "much-too-long-name0"),
            ("CNI_IFNAME", "../etc"),
            ("CNI_ARGS", "novalue;K=V"),
        ] {
            let mut pairs = vec![
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "net1"),
            ];
            pairs.retain(|(key, _)| *key != k);
            pairs.push((k, v));
            assert_eq!(
                env(&pairs).unwrap_err().code,
                ErrorCode::InvalidEnvironment,
                "{k}={v}"
            );
        }
    }
}
