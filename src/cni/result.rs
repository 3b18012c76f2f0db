//! The result a chained plugin receives as prevResult and must print again on ADD. It is kept as
//! JSON so that every field passes through, including ones this plugin does not know.

use super::version::CniVersion;
use super::{CniError, ErrorCode};
use ipnetwork::IpNetwork;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// Route and interface fields that 1.1.0 added; 0.x results have no place for them.
const ROUTE_FIELDS_1_1: [&str; 5] = ["mtu", "advmss", "priority", "table", "scope"];
const INTERFACE_FIELDS_1_1: [&str; 2] = ["socketPath", "pciID"];

#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    raw: Map<String, Value>,
}

impl CniResult {
    /// Accepts any result whose `ips[].address` are CIDRs; the rest is carried as is.
    pub fn from_value(value: Value) -> Result<CniResult, CniError> {
        let Value::Object(raw) = value else {
            return Err(decode("prevResult must be a JSON object"));
        };
        let result = CniResult { raw };
        for (i, ip) in result.ips().iter().enumerate() {
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| decode(&format!("prevResult.ips[{i}] has no \"address\" string")))?;
            if !address.contains('/') || address.parse::<IpNetwork>().is_err() {
                return Err(decode(&format!(
                    "prevResult.ips[{i}].address {address:?} is not an address in CIDR form"
                )));
            }
            if ip
                .get("interface")
                .is_some_and(|v| !v.is_null() && v.as_u64().is_none())
            {
                return Err(decode(&format!(
                    "prevResult.ips[{i}].interface is not an index into interfaces"
                )));
            }
        }
        if let Some(Value::Array(items)) = result.raw.get("ips") {
            if let Some(i) = items.iter().position(|v| !v.is_object()) {
                return Err(decode(&format!("prevResult.ips[{i}] is not an object")));
            }
        }
        if !matches!(result.raw.get("ips"), None | Some(Value::Array(_))) {
            return Err(decode("prevResult.ips must be a list"));
        }
        if !matches!(result.raw.get("interfaces"), None | Some(Value::Array(_))) {
            return Err(decode("prevResult.interfaces must be a list"));
        }
        Ok(result)
    }

    fn ips(&self) -> Vec<&Map<String, Value>> {
        list_of_objects(self.raw.get("ips"))
    }

    fn interface_name(&self, index: u64) -> Option<&str> {
        list_of_objects(self.raw.get("interfaces"))
            .get(usize::try_from(index).ok()?)
            .and_then(|i| i.get("name"))
            .and_then(Value::as_str)
    }

    /// The addresses on `ifname`: those whose `interface` index names it, and those with no index.
    pub fn pod_addresses(&self, ifname: &str) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in self.ips() {
            let on_ifname = match ip.get("interface").and_then(Value::as_u64) {
                Some(index) => self.interface_name(index) == Some(ifname),
                None => true,
            };
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .and_then(|a| a.parse::<IpNetwork>().ok())
                .map(|n| n.ip());
            if let (true, Some(address)) = (on_ifname, address) {
                if !out.contains(&address) {
                    out.push(address);
                }
            }
        }
        out
    }

    /// The same result in the shape of `target`, every field kept that `target` can carry.
    pub fn convert_to(&self, target: CniVersion) -> Value {
        let mut out = self.raw.clone();
        out.insert("cniVersion".into(), Value::String(target.as_str().into()));
        if let Some(Value::Array(ips)) = out.get_mut("ips") {
            for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                if target.ips_carry_version() {
                    let family = ip
                        .get("address")
                        .and_then(Value::as_str)
                        .and_then(|a| a.parse::<IpNetwork>().ok())
                        .map(|n| if n.is_ipv4() { "4" } else { "6" });
                    if let Some(family) = family {
                        ip.insert("version".into(), Value::String(family.into()));
                    }
                } else {
                    ip.remove("version");
                }
            }
        }
        if target < CniVersion::V1_0_0 {
            strip_fields(out.get_mut("routes"), &ROUTE_FIELDS_1_1);
            strip_fields(out.get_mut("interfaces"), &INTERFACE_FIELDS_1_1);
        }
        Value::Object(out)
    }
}

fn list_of_objects(v: Option<&Value>) -> Vec<&Map<String, Value>> {
    v.and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

fn strip_fields(list: Option<&mut Value>, fields: &[&str]) {
    if let Some(Value::Array(items)) = list {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for f in fields {
                item.remove(*f);
            }
        }
    }
}

fn decode(msg: &str) -> CniError {
    CniError::new(ErrorCode::Decode, msg.to_string())
        .with_details("the previous plugin in the chain produced a malformed result")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ipvlan_result() -> CniResult {
        CniResult::from_value(json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "net1", "mac": "02:00:c6:12:01:01", "sandbox": "/var/run/netns/p1", "pciID": "0000:00:05.0"},
                {"name": "eth9", "mac": "02:00:00:00:00:09"}
            ],
            "ips": [
                {"address": "198.18.1.80/24", "gateway": "198.18.1.1", "interface": 0},
                {"address": "2001:db8:100:1::50/64", "interface": 0},
                {"address": "192.0.2.9/24", "interface": 1}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.1.1", "mtu": 9001, "table": 100, "scope": 0}],
            "dns": {"nameservers": ["192.0.2.53"], "search": ["svc.local"]},
            "x-vendor": {"kept": true}
        }))
        .unwrap()
    }

    #[test]
    fn takes_only_the_addresses_of_the_pod_interface() {
        let r = ipvlan_result();
        assert_eq!(
            r.pod_addresses("net1"),
            vec![
                "198.18.1.80".parse::<IpAddr>().unwrap(),
                "2001:db8:100:1::50".parse().unwrap()
            ]
        );
        assert_eq!(
            r.pod_addresses("eth9"),
            vec!["192.0.2.9".parse::<IpAddr>().unwrap()]
        );
        assert!(r.pod_addresses("net2").is_empty());
    }

    #[test]
    fn ips_without_interface_index_belong_to_the_pod() {
        let r = CniResult::from_value(json!({"cniVersion": "0.3.0",
            "ips": [{"version": "4", "address": "198.18.1.81/24"}]}))
        .unwrap();
        assert_eq!(r.pod_addresses("net1").len(), 1);
    }

    #[test]
    fn converting_to_1_1_keeps_everything() {
        let out = ipvlan_result().convert_to(CniVersion::V1_1_0);
        assert_eq!(out["routes"][0]["mtu"], 9001);
        assert_eq!(out["interfaces"][0]["pciID"], "0000:00:05.0");
        assert_eq!(out["dns"]["search"][0], "svc.local");
        assert_eq!(out["x-vendor"]["kept"], true);
        assert!(out["ips"][0].get("version").is_none());
    }

    #[test]
    fn converting_to_0_x_adds_ip_versions_and_drops_1_1_fields() {
        for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
            let out = ipvlan_result().convert_to(v);
            assert_eq!(out["cniVersion"], v.as_str());
            assert_eq!(out["ips"][0]["version"], "4");
            assert_eq!(out["ips"][1]["version"], "6");
            assert_eq!(out["ips"][0]["gateway"], "198.18.1.1");
            assert!(out["routes"][0].get("mtu").is_none());
            assert_eq!(out["routes"][0]["gw"], "198.18.1.1");
            assert!(out["interfaces"][0].get("pciID").is_none());
            assert_eq!(out["interfaces"][0]["sandbox"], "/var/run/netns/p1");
        }
    }

    #[test]
    fn converting_up_from_0_3_drops_ip_versions() {
        let r = CniResult::from_value(json!({"cniVersion": "0.3.1",
            "ips": [{"version": "4", "address": "198.18.1.81/24", "interface": 0}],
            "interfaces": [{"name": "net1"}]}))
        .unwrap();
        let out = r.convert_to(CniVersion::V1_0_0);
        assert!(out["ips"][0].get("version").is_none());
        assert_eq!(out["ips"][0]["interface"], 0);
    }

    #[test]
    fn malformed_addresses_are_decode_errors() {
        for bad in [
            json!({"ips": [{"address": "198.18.1.300/24"}]}),
            json!({"ips": [{"gateway": "198.18.1.1"}]}),
            json!({"ips": {"address": "198.18.1.1/24"}}),
            json!({"ips": [{"address": "198.18.1.1"}]}),
            json!({"ips": [{"address": "198.18.1.1/24", "interface": "0"}]}),
            json!({"ips": [{"address": "198.18.1.1/24", "interface": -1}]}),
            json!({"ips": [7]}),
            json!("text"),
        ] {
            assert_eq!(
                CniResult::from_value(bad).unwrap_err().code,
                ErrorCode::Decode
            );
        }
    }
}
