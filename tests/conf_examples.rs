//! Every example in conf/ is something a user can apply as is: a NetworkAttachmentDefinition (or a
//! plain conflist) whose chain has exactly one aws-eni-ip block after the interface plugin, or an
//! interface plugin whose IPAM is aws-eni-ip, and whose block the plugin itself accepts.

use std::fs;
use std::path::{Path, PathBuf};

use aws_eni_ip::config::ipam::IpamConfig;
use aws_eni_ip::config::PluginConfig;
use serde_json::{Map, Value};

const CONF_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf");
const INTERFACE_PLUGINS: [&str; 2] = ["ipvlan", "macvlan"];
const EXPECTED: [&str; 10] = [
    "ipvlan-whereabouts-ipv4.yaml",
    "ipvlan-whereabouts-ipv6.yaml",
    "ipvlan-whereabouts-dualstack.yaml",
    "ipvlan-host-local.yaml",
    "ipvlan-sbr.yaml",
    "ipvlan-keepalived-vip.yaml",
    "cnitool-ipvlan.conflist",
    "ipvlan-ipam-ipv4.yaml",
    "ipvlan-ipam-dualstack.yaml",
    "ipvlan-ipam-static-floating.yaml",
];

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(CONF_DIR)
        .expect("conf/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

/// The NAD's `spec.config`, parsed; panics with the file name on anything else.
fn nad_config(path: &Path) -> Value {
    let raw = fs::read_to_string(path).unwrap();
    let nad: Value = serde_yaml_ng::from_str(&raw)
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    assert_eq!(
        nad["apiVersion"],
        "k8s.cni.cncf.io/v1",
        "{}",
        path.display()
    );
    assert_eq!(
        nad["kind"],
        "NetworkAttachmentDefinition",
        "{}",
        path.display()
    );
    let name = nad["metadata"]["name"].as_str().unwrap_or_default();
    assert!(!name.is_empty(), "{}: metadata.name", path.display());
    let config = nad["spec"]["config"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: spec.config must be a JSON string", path.display()));
    let config: Value = serde_json::from_str(config)
        .unwrap_or_else(|e| panic!("{}: spec.config is not JSON: {e}", path.display()));
    // Same name in both places, so the libcni cache, logs and `kubectl get` name one network.
    assert_eq!(config["name"], name, "{}: config name", path.display());
    config
}

/// Checks the conflist and returns its aws-eni-ip block as libcni hands it to the plugin.
fn checked_aws_block(path: &Path, conflist: &Value) -> Value {
    let where_ = path.display();
    let version = conflist["cniVersion"].as_str().unwrap_or_default();
    assert!(
        aws_eni_ip::cni::CniVersion::parse(version).is_some(),
        "{where_}: cniVersion {version:?}"
    );
    let name = conflist["name"].as_str().unwrap_or_default();
    assert!(!name.is_empty(), "{where_}: conflist name");
    let plugins = conflist["plugins"]
        .as_array()
        .unwrap_or_else(|| panic!("{where_}: no plugins list"));
    let types: Vec<&str> = plugins
        .iter()
        .map(|p| p["type"].as_str().unwrap_or_default())
        .collect();

    let ours: Vec<usize> = (0..types.len())
        .filter(|&i| types[i] == "aws-eni-ip")
        .collect();
    assert_eq!(ours.len(), 1, "{where_}: aws-eni-ip blocks in {types:?}");
    let ours = ours[0];
    let interface = types
        .iter()
        .position(|t| INTERFACE_PLUGINS.contains(t))
        .unwrap_or_else(|| panic!("{where_}: no interface plugin in {types:?}"));
    assert!(
        interface < ours,
        "{where_}: aws-eni-ip must come after {} in {types:?}",
        types[interface]
    );
    assert!(
        plugins[interface].get("ipam").is_some(),
        "{where_}: the interface plugin needs an ipam block: aws-eni-ip assigns what it allocated"
    );
    assert!(
        plugins[ours].get("ipam").is_none(),
        "{where_}: aws-eni-ip is chained here, not the IPAM"
    );

    // libcni injects the list's name and cniVersion into each plugin's config.
    let mut block: Map<String, Value> = plugins[ours].as_object().unwrap().clone();
    block.insert("cniVersion".into(), version.into());
    block.insert("name".into(), name.into());
    let block = Value::Object(block);
    if let Err(problem) = PluginConfig::validate_json(&block) {
        panic!("{where_}: the plugin refuses its block: {problem}\n{block:#}");
    }
    block
}

/// The interface plugin whose IPAM is aws-eni-ip, if the list uses IPAM mode.
fn ipam_mode_plugin(conflist: &Value) -> Option<&Value> {
    conflist["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["ipam"]["type"] == "aws-eni-ip")
}

/// IPAM mode: the interface plugin's config, as libcni hands it on (name, cniVersion injected),
/// is one the plugin accepts, and no chained aws-eni-ip repeats it.
fn checked_ipam_block(path: &Path, conflist: &Value, plugin: &Value) {
    let where_ = path.display();
    assert!(
        INTERFACE_PLUGINS.contains(&plugin["type"].as_str().unwrap_or_default()),
        "{where_}: aws-eni-ip IPAM under {}",
        plugin["type"]
    );
    let mut conf = plugin.as_object().unwrap().clone();
    conf.insert("cniVersion".into(), conflist["cniVersion"].clone());
    conf.insert("name".into(), conflist["name"].clone());
    if let Err(e) = IpamConfig::from_netconf(&conf) {
        panic!("{where_}: the plugin refuses its IPAM block: {e}");
    }
    let chained = conflist["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "aws-eni-ip")
        .count();
    assert_eq!(
        chained, 0,
        "{where_}: IPAM mode needs no chained aws-eni-ip"
    );
}

#[test]
fn the_static_ipam_example_declares_the_ips_capability() {
    let config = nad_config(&Path::new(CONF_DIR).join("ipvlan-ipam-static-floating.yaml"));
    assert_eq!(config["plugins"][0]["capabilities"]["ips"], true);
    let raw =
        fs::read_to_string(Path::new(CONF_DIR).join("ipvlan-ipam-static-floating.yaml")).unwrap();
    assert!(
        raw.contains("k8s.v1.cni.cncf.io/networks: '[{\"name\": \"ipvlan-ipam-static\", \"ips\"")
    );
}

#[test]
fn the_expected_examples_exist() {
    let names: Vec<String> = examples()
        .iter()
        .map(|p| file_name(p).to_string())
        .collect();
    for expected in EXPECTED {
        assert!(
            names.iter().any(|n| n == expected),
            "conf/{expected} missing"
        );
    }
}

#[test]
fn every_example_is_a_valid_chain_with_one_aws_eni_ip_block() {
    let mut checked = 0;
    for path in examples() {
        let conflist = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => nad_config(&path),
            Some("conflist") => {
                let raw = fs::read_to_string(&path).unwrap();
                serde_json::from_str(&raw)
                    .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
            }
            _ => panic!("{}: conf/ holds only .yaml and .conflist", path.display()),
        };
        match ipam_mode_plugin(&conflist) {
            Some(plugin) => checked_ipam_block(&path, &conflist, plugin),
            None => {
                checked_aws_block(&path, &conflist);
            }
        }
        checked += 1;
    }
    assert!(checked >= EXPECTED.len());
}

#[test]
fn ipv4_example_keeps_the_aws_sample_network_and_its_cni_version() {
    let config = nad_config(&Path::new(CONF_DIR).join("ipvlan-whereabouts-ipv4.yaml"));
    assert_eq!(config["cniVersion"], "0.3.0");
    let ipvlan = &config["plugins"][0];
    assert_eq!(ipvlan["type"], "ipvlan");
    assert_eq!(ipvlan["master"], "eth1");
    assert_eq!(ipvlan["mode"], "l2");
    assert_eq!(ipvlan["ipam"]["type"], "whereabouts");
    assert_eq!(ipvlan["ipam"]["range"], "10.10.1.80-10.10.1.90/24");
}

#[test]
fn dualstack_example_has_both_families() {
    let config = nad_config(&Path::new(CONF_DIR).join("ipvlan-whereabouts-dualstack.yaml"));
    let ranges = config["plugins"][0]["ipam"]["ipRanges"].as_array().unwrap();
    let ranges: Vec<&str> = ranges
        .iter()
        .map(|r| r["range"].as_str().unwrap())
        .collect();
    assert!(ranges.iter().any(|r| r.contains('.')), "{ranges:?}");
    assert!(ranges.iter().any(|r| r.contains(':')), "{ranges:?}");
}

#[test]
fn sbr_runs_after_aws_eni_ip() {
    let config = nad_config(&Path::new(CONF_DIR).join("ipvlan-sbr.yaml"));
    let types: Vec<&str> = config["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    let ours = types.iter().position(|t| *t == "aws-eni-ip").unwrap();
    let sbr = types.iter().position(|t| *t == "sbr").unwrap();
    assert!(ours < sbr, "{types:?}");
}

#[test]
fn host_local_example_refuses_to_steal_addresses() {
    // host-local allocates per node: the same address can come up on two nodes at once.
    let config = nad_config(&Path::new(CONF_DIR).join("ipvlan-host-local.yaml"));
    let ours = config["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "aws-eni-ip")
        .unwrap();
    assert_eq!(ours["allowReassignment"], false);
}
