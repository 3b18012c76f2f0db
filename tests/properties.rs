//! Property tests of the parsers that read untrusted input: the network config on stdin (with
//! prevResult and the plugin's own keys) and the `CNI_*` environment. The coverage-guided fuzz
//! targets in tests/fuzz check the same parsers for longer; these run in the normal suite.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aws_eni_ip::cni::env::{parse_args, validate_container_id, validate_ifname};
use aws_eni_ip::cni::result::CniResult;
use aws_eni_ip::cni::version::SUPPORTED;
use aws_eni_ip::cni::{CniVersion, Command, Environment, ErrorCode, NetConf};
use aws_eni_ip::config::{LogLevel, PluginConfig};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

/// Keys the parsers look at, so that generated objects often hit them.
const KNOWN_KEYS: [&str; 28] = [
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "prevResult",
    "ips",
    "interfaces",
    "routes",
    "address",
    "interface",
    "version",
    "gateway",
    "mtu",
    "pciID",
    "master",
    "region",
    "ec2Endpoint",
    "imdsEndpoint",
    "allowReassignment",
    "allowManagedEni",
    "allowPrimaryEni",
    "stateDir",
    "logFile",
    "logLevel",
    "timeoutMs",
    "cni.dev/valid-attachments",
    "containerID",
    "ifname",
];

/// Top-level keys a generated valid config must not add on its own.
const RESERVED_KEYS: [&str; 16] = [
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "prevResult",
    "master",
    "region",
    "ec2Endpoint",
    "imdsEndpoint",
    "allowReassignment",
    "allowManagedEni",
    "allowPrimaryEni",
    "stateDir",
    "logFile",
    "logLevel",
    "timeoutMs",
];

fn versions() -> impl Strategy<Value = CniVersion> {
    select(SUPPORTED.to_vec())
}

/// Strings that matter to the parsers (versions, names, CIDRs, paths) and arbitrary ones.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "0.3.0",
            "0.3.1",
            "0.4.0",
            "1.0.0",
            "1.1.0",
            "0.2.0",
            "",
            "aws-eni-ip",
            "net1",
            "eth1",
            "4",
            "6",
            "us-west-2",
            "https://x",
            "/var/lib/x",
            "debug",
        ])
        .prop_map(str::to_string),
        cidr().prop_map(|(a, p)| format!("{a}/{p}")),
        "[a-zA-Z0-9_.:/ -]{0,12}",
        any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(KNOWN_KEYS.to_vec()).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// Any JSON value, floats included when `floats` (serde_json's default float parsing is not
/// exact, so round-trip checks leave them out).
fn json_value(floats: bool) -> impl Strategy<Value = Value> {
    let float = if floats {
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from)
            .boxed()
    } else {
        any::<u64>().prop_map(Value::from).boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        float,
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn cidr() -> impl Strategy<Value = (IpAddr, u8)> {
    prop_oneof![
        (any::<Ipv4Addr>(), 0u8..=32).prop_map(|(a, p)| (IpAddr::V4(a), p)),
        (any::<Ipv6Addr>(), 0u8..=128).prop_map(|(a, p)| (IpAddr::V6(a), p)),
    ]
}

/// libcni's interface name rule: 1-15 bytes, not "." or "..", no '/', ':' or white space.
fn ifname() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.@-]{1,15}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

/// libcni's container id rule: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn container_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}",
        "[0-9a-f]{64}",
        "[a-zA-Z0-9][a-zA-Z0-9_.-]{150,199}",
    ]
}

/// A JSON object that looks like a network config: known keys with any values, plus noise.
fn config_like_object() -> impl Strategy<Value = Value> {
    let version = prop_oneof![
        4 => versions().prop_map(|v| json!(v.as_str())),
        1 => json_value(true),
    ];
    let name = prop_oneof![
        4 => "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}".prop_map(Value::String),
        1 => json_value(true),
    ];
    (
        proptest::option::weighted(0.9, version),
        proptest::option::weighted(0.9, name),
        proptest::option::of(prev_result(versions()).prop_map(|(v, _)| v)),
        proptest::option::weighted(0.2, json_value(true)),
        prop::collection::vec((key(), json_value(true)), 0..3),
    )
        .prop_map(|(version, name, prev, noise_prev, rest)| {
            let mut m: Map<String, Value> = rest.into_iter().collect();
            if let Some(v) = version {
                m.insert("cniVersion".into(), v);
            }
            if let Some(n) = name {
                m.insert("name".into(), n);
            }
            if let Some(p) = prev.or(noise_prev) {
                m.insert("prevResult".into(), p);
            }
            Value::Object(m)
        })
}

/// A well-formed prevResult at `version`, and the names of its interfaces.
fn prev_result(
    version: impl Strategy<Value = CniVersion>,
) -> impl Strategy<Value = (Value, Vec<String>)> {
    let interface = (
        ifname(),
        proptest::option::of("[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]"),
    );
    let ip = (
        cidr(),
        proptest::option::of(0u64..5),
        proptest::option::of(any::<Ipv4Addr>()),
    );
    (
        version,
        prop::collection::vec(interface, 0..4),
        prop::collection::vec(ip, 0..6),
        any::<bool>(),
    )
        .prop_map(|(version, interfaces, ips, with_route)| {
            let names: Vec<String> = interfaces.iter().map(|(n, _)| n.clone()).collect();
            let interfaces: Vec<Value> = interfaces
                .into_iter()
                .map(|(name, pci)| {
                    let mut i = json!({"name": name, "mac": "02:00:00:00:00:01"});
                    if let Some(pci) = pci {
                        i["pciID"] = json!(pci);
                    }
                    i
                })
                .collect();
            let ips: Vec<Value> = ips
                .into_iter()
                .map(|((addr, prefix), index, gateway)| {
                    let mut ip = json!({"address": format!("{addr}/{prefix}")});
                    if let Some(index) = index {
                        ip["interface"] = json!(index);
                    }
                    if let Some(gw) = gateway {
                        ip["gateway"] = json!(gw.to_string());
                    }
                    if version.ips_carry_version() {
                        ip["version"] = json!(if addr.is_ipv4() { "4" } else { "6" });
                    }
                    ip
                })
                .collect();
            let mut result = json!({"cniVersion": version.as_str(), "interfaces": interfaces,
                "ips": ips, "dns": {"nameservers": ["192.0.2.53"]}});
            if with_route {
                let mut route = json!({"dst": "0.0.0.0/0", "gw": "198.18.1.1"});
                if version >= CniVersion::V1_1_0 {
                    route["mtu"] = json!(9001);
                    route["table"] = json!(100);
                }
                result["routes"] = json!([route]);
            }
            (result, names)
        })
}

/// What `pod_addresses` must return: addresses with no index or an index naming `ifname`, once.
fn pod_addresses_model(result: &Value, ifname: &str) -> Vec<IpAddr> {
    let names: Vec<Option<&str>> = result["interfaces"]
        .as_array()
        .map(|l| l.iter().map(|i| i["name"].as_str()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for ip in result["ips"].as_array().into_iter().flatten() {
        let on = match ip["interface"].as_u64() {
            Some(i) => names.get(i as usize).copied().flatten() == Some(ifname),
            None => true,
        };
        let addr: IpAddr = ip["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .expect("generated address");
        if on && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

fn assert_parse_code(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = NetConf::parse(bytes) {
        prop_assert!(
            matches!(
                e.code,
                ErrorCode::IncompatibleVersion | ErrorCode::Decode | ErrorCode::InvalidConfig
            ),
            "code {} for {}",
            e.code.as_u32(),
            String::from_utf8_lossy(bytes)
        );
    }
    Ok(())
}

fn env_from(pairs: &[(&str, &str)]) -> Result<Environment, aws_eni_ip::cni::CniError> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Environment::from_vars(|k| map.get(k).cloned())
}

proptest! {
    #[test]
    fn netconf_parse_of_any_json_never_panics(v in json_value(true)) {
        assert_parse_code(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn netconf_parse_of_config_like_objects_never_panics(v in config_like_object()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_parse_code(&bytes)?;
        // Whatever parses, the later readers of the same config take without panicking.
        if let Ok(conf) = NetConf::parse(&bytes) {
            if let Err(e) = PluginConfig::from_map(&conf.raw) {
                prop_assert_eq!(e.code, ErrorCode::InvalidConfig);
            }
            if let Err(e) = conf.valid_attachments() {
                prop_assert_eq!(e.code, ErrorCode::InvalidConfig);
            }
            if let Some(prev) = &conf.prev_result {
                for v in SUPPORTED {
                    prop_assert!(CniResult::from_value(prev.convert_to(v)).is_ok());
                }
            }
        }
    }

    #[test]
    fn netconf_parse_of_any_bytes_or_text_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        text in any::<String>(),
    ) {
        assert_parse_code(&bytes)?;
        assert_parse_code(text.as_bytes())?;
    }

    #[test]
    fn valid_configs_round_trip_their_keys(
        version in versions(),
        name in "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,40}",
        plugin_type in "[a-z-]{1,12}",
        extra in prop::collection::btree_map(key(), json_value(false), 0..6),
        master in proptest::option::of(ifname()),
        region in proptest::option::of("[a-z0-9-]{1,32}"),
        timeout_ms in proptest::option::of(1_000u64..=300_000),
        level in proptest::option::of(select(vec![
            ("error", LogLevel::Error), ("WARN", LogLevel::Warn), ("warning", LogLevel::Warn),
            ("Info", LogLevel::Info), ("debug", LogLevel::Debug),
        ])),
        state_dir in proptest::option::of("(/[a-z0-9_-][a-z0-9._-]{0,7}){1,4}"),
        flags in (any::<bool>(), any::<bool>(), any::<bool>()),
    ) {
        let mut raw: Map<String, Value> = extra
            .into_iter()
            .filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str()))
            .collect();
        raw.insert("cniVersion".into(), json!(version.as_str()));
        raw.insert("name".into(), json!(name));
        raw.insert("type".into(), json!(plugin_type));
        raw.insert("allowReassignment".into(), json!(flags.0));
        raw.insert("allowManagedEni".into(), json!(flags.1));
        raw.insert("allowPrimaryEni".into(), json!(flags.2));
        for (k, v) in [
            ("master", master.clone().map(Value::from)),
            ("region", region.clone().map(Value::from)),
            ("timeoutMs", timeout_ms.map(Value::from)),
            ("logLevel", level.map(|(l, _)| Value::from(l))),
            ("stateDir", state_dir.clone().map(Value::from)),
        ] {
            if let Some(v) = v {
                raw.insert(k.into(), v);
            }
        }
        // The parse keeps every key (valid attachments left aside: noise may not fit that key).
        raw.remove("cni.dev/valid-attachments");
        let bytes = serde_json::to_vec(&raw).unwrap();
        let conf = NetConf::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(conf.cni_version, version);
        prop_assert_eq!(&conf.name, &name);
        prop_assert_eq!(&conf.plugin_type, &plugin_type);
        prop_assert_eq!(&conf.raw, &raw);
        // And the raw map written out again parses to the same thing.
        let again = NetConf::parse(&serde_json::to_vec(&conf.raw).unwrap()).unwrap();
        prop_assert_eq!(&again.raw, &raw);

        let c = PluginConfig::from_map(&conf.raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(c.master, master);
        prop_assert_eq!(c.region, region);
        prop_assert_eq!(c.timeout, Duration::from_millis(timeout_ms.unwrap_or(30_000)));
        prop_assert_eq!(c.log_level, level.map_or(LogLevel::Info, |(_, l)| l));
        prop_assert_eq!(
            c.state_dir,
            std::path::PathBuf::from(state_dir.as_deref().unwrap_or("/var/lib/cni/aws-eni-ip"))
        );
        prop_assert_eq!(
            (c.allow_reassignment, c.allow_managed_eni, c.allow_primary_eni),
            flags
        );
    }

    #[test]
    fn relative_paths_and_dot_dot_are_refused(
        parts in prop::collection::vec(prop_oneof!["[a-z0-9._-]{1,8}", Just("..".to_string())], 1..5),
        at in any::<prop::sample::Index>(),
        key in select(vec!["stateDir", "logFile"]),
    ) {
        let mut dotted = parts.clone();
        dotted.insert(at.index(parts.len() + 1), "..".into());
        for path in [format!("/{}", dotted.join("/")), parts.join("/")] {
            let mut raw = Map::new();
            raw.insert(key.into(), json!(path));
            let e = PluginConfig::from_map(&raw).unwrap_err();
            prop_assert_eq!(e.code, ErrorCode::InvalidConfig);
            prop_assert!(e.msg.contains(key), "{}", e.msg);
        }
    }

    #[test]
    fn prev_result_keeps_pod_addresses_through_every_version(
        (result, names) in prev_result(versions()),
        conf_version in versions(),
    ) {
        let conf = json!({"cniVersion": conf_version.as_str(), "name": "n", "type": "aws-eni-ip",
            "prevResult": result});
        let conf = NetConf::parse(&serde_json::to_vec(&conf).unwrap())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let prev = conf.prev_result.as_ref().expect("prevResult");
        let mut ifnames = names.clone();
        ifnames.push("net1".into());
        for ifname in &ifnames {
            prop_assert_eq!(prev.pod_addresses(ifname), pod_addresses_model(&result, ifname));
        }
        for v in SUPPORTED {
            let out = prev.convert_to(v);
            prop_assert_eq!(&out["cniVersion"], &json!(v.as_str()));
            for ip in out["ips"].as_array().into_iter().flatten() {
                let family = ip["address"].as_str().map(|a| if a.contains(':') { "6" } else { "4" });
                if v.ips_carry_version() {
                    prop_assert_eq!(ip["version"].as_str(), family);
                } else {
                    prop_assert!(ip.get("version").is_none());
                }
            }
            if v < CniVersion::V1_0_0 {
                for r in out["routes"].as_array().into_iter().flatten() {
                    prop_assert!(r.get("mtu").is_none() && r.get("table").is_none());
                }
                for i in out["interfaces"].as_array().into_iter().flatten() {
                    prop_assert!(i.get("pciID").is_none());
                }
            }
            // Re-parsed from text, as the next plugin in the chain reads it.
            let text = serde_json::to_vec(&json!({"cniVersion": v.as_str(), "name": "n",
                "type": "next", "prevResult": out})).unwrap();
            let back = NetConf::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = back.prev_result.expect("prevResult");
            for ifname in &ifnames {
                prop_assert_eq!(back.pod_addresses(ifname), prev.pod_addresses(ifname), "{} {}", v, ifname);
            }
        }
    }

    #[test]
    fn parse_args_returns_the_pairs(
        pairs in prop::collection::vec(("[^;=\\x00]{1,12}", "[^;\\x00]{0,12}"), 0..8),
        separators in prop::collection::vec(select(vec![";", ";;"]), 8),
        leading in any::<bool>(),
        trailing in any::<bool>(),
    ) {
        let mut raw = String::new();
        if leading {
            raw.push(';');
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                raw.push_str(separators[i]);
            }
            raw.push_str(&format!("{k}={v}"));
        }
        if trailing {
            raw.push(';');
        }
        let parsed = parse_args(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parsed, &pairs);
        // The same through the environment, where pod identity is read from it.
        let env = env_from(&[("CNI_COMMAND", "VERSION"), ("CNI_ARGS", &raw)]).unwrap();
        prop_assert_eq!(env.args, pairs);
    }

    #[test]
    fn parse_args_rejects_a_pair_without_key(
        good in prop::collection::vec(("[A-Z_]{1,8}", "[a-z0-9=]{0,8}"), 0..4),
        bad in prop_oneof!["[^;=\\x00]{1,12}", "=[^;\\x00]{0,12}"],
        at in 0usize..5,
    ) {
        let mut parts: Vec<String> = good.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.insert(at.min(parts.len()), bad);
        let e = parse_args(&parts.join(";")).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::InvalidEnvironment);
    }

    #[test]
    fn libcni_valid_container_ids_are_accepted(id in container_id(), ifname in ifname()) {
        prop_assert!(validate_container_id(&id).is_ok(), "{:?}", id);
        prop_assert!(validate_ifname(&ifname).is_ok(), "{:?}", ifname);
        let env = env_from(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", &id),
            ("CNI_IFNAME", &ifname)]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(env.command, Command::Del);
        prop_assert_eq!(env.container_id, id);
        prop_assert_eq!(env.ifname, ifname);
    }

    #[test]
    fn invalid_container_ids_are_rejected(
        id in container_id(),
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![
            select(vec!['/', ' ', ':', '\\', '\n', '\0', '*', '$', 'é', '\u{202e}']),
            any::<char>().prop_filter("outside libcni's set", |c| {
                !c.is_ascii_alphanumeric() && !matches!(c, '_' | '.' | '-')
            }),
        ],
        lead in select(vec!['-', '.', '_']),
    ) {
        let mut chars: Vec<char> = id.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad);
        let with_bad: String = chars.into_iter().collect();
        prop_assert!(validate_container_id(&with_bad).is_err(), "{:?}", with_bad);
        let leading = format!("{lead}{id}");
        prop_assert!(validate_container_id(&leading).is_err(), "{:?}", leading);
        for rejected in [with_bad, leading] {
            let e = env_from(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", &rejected),
                ("CNI_NETNS", "/x"), ("CNI_IFNAME", "net1")]).unwrap_err();
            prop_assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        }
        prop_assert!(validate_container_id("").is_err());
        prop_assert!(validate_container_id(&"a".repeat(201)).is_err());
    }

    #[test]
    fn invalid_ifnames_are_rejected(
        name in ifname(),
        at in any::<prop::sample::Index>(),
        bad in select(vec!['/', ':', ' ', '\t', '\n', '\u{a0}', '\u{2003}', '\0', '\u{7f}']),
        long in "[a-z0-9]{16,40}",
    ) {
        let mut chars: Vec<char> = name.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad);
        let with_bad: String = chars.into_iter().collect();
        prop_assert!(validate_ifname(&with_bad).is_err(), "{:?}", with_bad);
        prop_assert!(validate_ifname(&long).is_err(), "{:?}", long);
        for rejected in ["", ".", ".."] {
            prop_assert!(validate_ifname(rejected).is_err());
        }
    }

    #[test]
    fn any_environment_is_read_or_refused_with_code_4(
        vars in prop::collection::btree_map(
            select(vec!["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"]),
            prop_oneof![
                select(vec!["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "net1", "abc",
                    "/x", "A=1;B=2", ""]).prop_map(str::to_string),
                any::<String>(),
            ],
            0..6,
        ),
    ) {
        match Environment::from_vars(|k| vars.get(k).cloned()) {
            Ok(env) => {
                prop_assert_eq!(Some(env.command.as_str()), vars.get("CNI_COMMAND").map(String::as_str));
                if matches!(env.command, Command::Add | Command::Del | Command::Check) {
                    prop_assert!(validate_container_id(&env.container_id).is_ok());
                    prop_assert!(validate_ifname(&env.ifname).is_ok());
                }
            }
            Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidEnvironment),
        }
    }
}
