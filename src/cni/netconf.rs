//! The network configuration on stdin: the spec's keys; the plugin's own keys live in `config.rs`.

use super::result::CniResult;
use super::version::{negotiate, CniVersion};
use super::{CniError, ErrorCode};
use serde_json::{Map, Value};

/// Largest stdin accepted: a conflist entry with prevResult is a few KiB; more is not a config.
pub const MAX_STDIN_BYTES: usize = 1 << 20;

/// One attachment the runtime still uses, from GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValidAttachment {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: CniVersion,
    pub name: String,
    pub plugin_type: String,
    pub prev_result: Option<CniResult>,
    /// The whole object, for the plugin's own keys.
    pub raw: Map<String, Value>,
}

impl NetConf {
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        if bytes.len() > MAX_STDIN_BYTES {
            return Err(CniError::new(
                ErrorCode::Decode,
                format!(
                    "network config on stdin is larger than the {MAX_STDIN_BYTES} bytes accepted"
                ),
            ));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                format!("network config on stdin is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(raw) = value else {
            return Err(CniError::new(
                ErrorCode::Decode,
                "network config on stdin must be a JSON object",
            ));
        };
        let cni_version = negotiate(
            optional_str(&raw, "cniVersion")?,
            &string_list(&raw, "cniVersions")?,
        )?;
        let name = optional_str(&raw, "name")?.unwrap_or_default().to_string();
        validate_network_name(&name)?;
        let plugin_type = optional_str(&raw, "type")?.unwrap_or_default().to_string();
        let prev_result = match raw.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => Some(CniResult::from_value(v.clone())?),
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            prev_result,
            raw,
        })
    }

    /// GC's list of attachments to keep; `None` when the runtime sent no list at all.
    pub fn valid_attachments(&self) -> Result<Option<Vec<ValidAttachment>>, CniError> {
        // libcni sends both: the v1.1.0 tag's name and the later one.
        let lists: Vec<&Value> = ["cni.dev/valid-attachments", "cni.dev/attachments"]
            .iter()
            .filter_map(|k| self.raw.get(*k))
            .filter(|v| !v.is_null())
            .collect();
        if lists.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for list in lists {
            let items = list.as_array().ok_or_else(|| {
                CniError::invalid_config("\"cni.dev/valid-attachments\" must be a list")
            })?;
            for item in items {
                let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
                match (field("containerID"), field("ifname")) {
                    (Some(container_id), Some(ifname)) => out.push(ValidAttachment {
                        container_id,
                        ifname,
                    }),
                    _ => {
                        return Err(CniError::invalid_config(format!(
                            "valid attachment {item} lacks \"containerID\" or \"ifname\""
                        )))
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(Some(out))
    }
}

fn optional_str<'a>(raw: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, CniError> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(CniError::invalid_config(format!(
            "\"{key}\" must be a string, not {other}"
        ))),
    }
}

fn string_list(raw: &Map<String, Value>, key: &str) -> Result<Vec<String>, CniError> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    CniError::invalid_config(format!("\"{key}\" must be a list of strings"))
                })
            })
            .collect(),
        Some(_) => Err(CniError::invalid_config(format!(
            "\"{key}\" must be a list of strings"
        ))),
    }
}

/// libcni's rule for network names; the name is also part of our state file names.
fn validate_network_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 253;
    if ok {
        Ok(())
    } else {
        Err(CniError::invalid_config(format!(
            "network name {name:?} is missing or invalid"
        ))
        .with_details("\"name\" must start with a letter or digit and hold only letters, digits, '_', '.', '-'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_chained_entry() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"0.3.0","name":"ipvlan-multus","type":"aws-eni-ip","master":"eth1",
                "prevResult":{"cniVersion":"0.3.0","ips":[{"version":"4","address":"198.18.1.80/24"}]}}"#,
        )
        .unwrap();
        assert_eq!(conf.cni_version, CniVersion::V0_3_0);
        assert_eq!(conf.name, "ipvlan-multus");
        assert_eq!(conf.raw["master"], "eth1");
        assert!(conf.prev_result.is_some());
    }

    #[test]
    fn decode_and_config_errors_have_their_codes() {
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, ErrorCode::Decode);
        assert_eq!(NetConf::parse(b"[]").unwrap_err().code, ErrorCode::Decode);
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"0.3.1","name":"bad name"}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"0.1.0","name":"n"}"#)
                .unwrap_err()
                .code,
            ErrorCode::IncompatibleVersion
        );
        let big = vec![b' '; MAX_STDIN_BYTES + 1];
        assert_eq!(NetConf::parse(&big).unwrap_err().code, ErrorCode::Decode);
    }

    #[test]
    fn gc_reads_both_attachment_keys() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n",
                "cni.dev/valid-attachments":[{"containerID":"a","ifname":"net1"}],
                "cni.dev/attachments":[{"containerID":"a","ifname":"net1"},{"containerID":"b","ifname":"net2"}]}"#,
        )
        .unwrap();
        let list = conf.valid_attachments().unwrap().unwrap();
        assert_eq!(list.len(), 2);
        let none = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n"}"#).unwrap();
        assert_eq!(none.valid_attachments().unwrap(), None);
    }
}
