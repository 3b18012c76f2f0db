//! IPAM mode: `"ipam": {"type": "aws-eni-ip", …}` under ipvlan or macvlan. The IPAM plugin gets
//! the parent plugin's whole config on stdin; its own keys are those of the `ipam` object: the
//! chained plugin's keys, plus which families EC2 should choose addresses for, static addresses,
//! and routes for the result.

use super::{boolean, PluginConfig};
use crate::cni::CniError;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// An address asked for by name, with its prefix length when the source gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticAddress {
    pub ip: IpAddr,
    pub prefix: Option<u8>,
}

impl StaticAddress {
    /// `198.18.1.5/24` or `198.18.1.5`; `what` names the source in the error.
    pub fn parse(text: &str, what: &str) -> Result<StaticAddress, CniError> {
        let bad = || {
            CniError::invalid_config(format!("{what}: {text:?} is not an IP address"))
                .with_details("write it like \"198.18.1.5/24\" or \"2001:db8::5/64\"")
        };
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, len)) => (ip, Some(len.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix.is_some_and(|p| p > max) {
            return Err(bad());
        }
        Ok(StaticAddress { ip, prefix })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IpamConfig {
    /// The chained plugin's keys, read from the `ipam` object (`master` falls back to the parent
    /// plugin's top-level `master`).
    pub plugin: PluginConfig,
    /// Families EC2 chooses an address for when no static address is given.
    pub ipv4: bool,
    pub ipv6: bool,
    /// The config's own static addresses (the lowest-priority source).
    pub addresses: Vec<StaticAddress>,
    /// Routes for the result, as CNI writes them (`{"dst": CIDR, "gw": IP}`).
    pub routes: Vec<Value>,
}

impl IpamConfig {
    /// The `ipam` object of `netconf` if it names this plugin.
    pub fn find(netconf: &Map<String, Value>) -> Option<&Map<String, Value>> {
        netconf
            .get("ipam")
            .and_then(Value::as_object)
            .filter(|ipam| ipam.get("type").and_then(Value::as_str) == Some("aws-eni-ip"))
    }

    pub fn from_netconf(netconf: &Map<String, Value>) -> Result<IpamConfig, CniError> {
        let ipam = IpamConfig::find(netconf).ok_or_else(|| {
            CniError::invalid_config("no \"ipam\" object with \"type\": \"aws-eni-ip\"")
        })?;
        let mut plugin = PluginConfig::from_map(ipam)?;
        if plugin.master.is_none() {
            // The parent plugin (ipvlan, macvlan) names its master at the top level.
            let mut parent = Map::new();
            if let Some(m) = netconf.get("master") {
                parent.insert("master".into(), m.clone());
            }
            plugin.master = PluginConfig::from_map(&parent)?.master;
        }
        let ipv4 = boolean(ipam, "ipv4")?.unwrap_or(true);
        let ipv6 = boolean(ipam, "ipv6")?.unwrap_or(false);
        let addresses = match ipam.get("addresses") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let what = format!("ipam \"addresses\"[{i}]");
                    let text = v
                        .as_str()
                        .or_else(|| v.get("address").and_then(Value::as_str))
                        .ok_or_else(|| {
                            CniError::invalid_config(format!(
                                "{what} must be a string or an object with \"address\""
                            ))
                        })?;
                    StaticAddress::parse(text, &what)
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(CniError::invalid_config(
                    "ipam \"addresses\" must be a list",
                ))
            }
        };
        let routes = routes(ipam)?;
        if !ipv4 && !ipv6 && addresses.is_empty() {
            return Err(CniError::invalid_config(
                "ipam \"ipv4\" and \"ipv6\" are both false and no \"addresses\" are given: there is nothing to assign",
            )
            .with_details("set \"ipv4\": true (the default), \"ipv6\": true, or both"));
        }
        Ok(IpamConfig {
            plugin,
            ipv4,
            ipv6,
            addresses,
            routes,
        })
    }
}

fn routes(ipam: &Map<String, Value>) -> Result<Vec<Value>, CniError> {
    let Some(list) = ipam.get("routes").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = list
        .as_array()
        .ok_or_else(|| CniError::invalid_config("ipam \"routes\" must be a list"))?;
    for (i, r) in items.iter().enumerate() {
        let dst = r.get("dst").and_then(Value::as_str).unwrap_or_default();
        let dst_ok = dst.contains('/') && dst.parse::<ipnetwork::IpNetwork>().is_ok();
        let gw_ok = match r.get("gw") {
            None | Some(Value::Null) => true,
            Some(g) => g.as_str().is_some_and(|g| g.parse::<IpAddr>().is_ok()),
        };
        if !dst_ok || !gw_ok {
            return Err(CniError::invalid_config(format!(
                "ipam \"routes\"[{i}] {r} needs \"dst\" as a CIDR and an optional \"gw\" address"
            )));
        }
    }
    Ok(items.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::ErrorCode;
    use serde_json::json;

    fn parse(v: Value) -> Result<IpamConfig, CniError> {
        IpamConfig::from_netconf(v.as_object().unwrap())
    }

    #[test]
    fn defaults_are_ipv4_only_with_the_parents_master() {
        let c = parse(json!({"type": "ipvlan", "master": "eth1", "ipam": {"type": "aws-eni-ip"}}))
            .unwrap();
        assert!(c.ipv4 && !c.ipv6);
        assert_eq!(c.plugin.master.as_deref(), Some("eth1"));
        assert!(c.addresses.is_empty() && c.routes.is_empty());
    }

    #[test]
    fn the_ipam_objects_own_keys_win() {
        let c = parse(json!({"type": "macvlan", "master": "eth1", "ipam": {"type": "aws-eni-ip",
            "master": "eth2", "ipv6": true, "addresses": ["198.18.1.5/24", {"address": "2001:db8:100:1::5"}],
            "routes": [{"dst": "198.18.64.0/18", "gw": "198.18.1.1"}], "timeoutMs": 5000}}))
        .unwrap();
        assert_eq!(c.plugin.master.as_deref(), Some("eth2"));
        assert!(c.ipv4 && c.ipv6);
        assert_eq!(
            c.addresses,
            vec![
                StaticAddress {
                    ip: "198.18.1.5".parse().unwrap(),
                    prefix: Some(24)
                },
                StaticAddress {
                    ip: "2001:db8:100:1::5".parse().unwrap(),
                    prefix: None
                },
            ]
        );
        assert_eq!(c.routes.len(), 1);
    }

    #[test]
    fn bad_ipam_values_are_code_7_naming_the_key() {
        for bad in [
            json!({"ipam": {"type": "aws-eni-ip", "ipv4": false}}),
            json!({"ipam": {"type": "aws-eni-ip", "ipv6": "yes"}}),
            json!({"ipam": {"type": "aws-eni-ip", "addresses": ["198.18.1.5/33"]}}),
            json!({"ipam": {"type": "aws-eni-ip", "addresses": "198.18.1.5"}}),
            json!({"ipam": {"type": "aws-eni-ip", "routes": [{"dst": "198.18.0.0"}]}}),
            json!({"master": "bad/name", "ipam": {"type": "aws-eni-ip"}}),
            json!({"ipam": {"type": "host-local"}}),
        ] {
            assert_eq!(
                parse(bad.clone()).unwrap_err().code,
                ErrorCode::InvalidConfig,
                "{bad}"
            );
        }
    }
}
