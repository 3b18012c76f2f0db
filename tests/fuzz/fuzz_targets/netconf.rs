//! The network configuration on stdin, as a runtime sends it: `NetConf::parse`, then the plugin's
//! own keys, prevResult (pod addresses and conversion to every spec version) and GC's attachment
//! list. The entry point `plugin::run` is driven only where it stops before any side effect: with
//! `CNI_COMMAND=VERSION`, and with ADD on a config whose parse fails.

#![no_main]

use std::net::IpAddr;

use aws_eni_ip::cni::result::CniResult;
use aws_eni_ip::cni::version::SUPPORTED;
use aws_eni_ip::cni::{ErrorCode, NetConf};
use aws_eni_ip::config::PluginConfig;
use aws_eni_ip::plugin;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    check_version_reply(data);
    let conf = match NetConf::parse(data) {
        Ok(conf) => conf,
        Err(e) => {
            assert!(
                matches!(
                    e.code,
                    ErrorCode::IncompatibleVersion | ErrorCode::Decode | ErrorCode::InvalidConfig
                ),
                "NetConf::parse returned code {} ({e})",
                e.code.as_u32()
            );
            check_failed_add(data, e.code);
            return;
        }
    };
    assert!(SUPPORTED.contains(&conf.cni_version));
    check_plugin_config(&conf);
    check_valid_attachments(&conf);
    if let Some(prev) = &conf.prev_result {
        check_prev_result(&conf, prev);
    }
}

fn env(command: &'static str) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        Some(
            match k {
                "CNI_COMMAND" => command,
                "CNI_CONTAINERID" => "fuzz-container-0",
                "CNI_NETNS" => "/var/run/netns/fuzz",
                "CNI_IFNAME" => "net1",
                "CNI_PATH" => "/opt/cni/bin",
                _ => return None,
            }
            .to_string(),
        )
    }
}

/// VERSION answers from the env alone, in the config's version when it names a supported one.
fn check_version_reply(data: &[u8]) {
    let reply = plugin::run(env("VERSION"), &mut &data[..]);
    assert_eq!(reply.exit_code, 0, "{}", reply.stdout);
    let v: Value = serde_json::from_str(&reply.stdout).expect("VERSION reply is JSON");
    let answered = v["cniVersion"].as_str().expect("reply has cniVersion");
    assert!(SUPPORTED.iter().any(|s| s.as_str() == answered));
    assert_eq!(
        v["supportedVersions"].as_array().map(Vec::len),
        Some(SUPPORTED.len())
    );
}

/// A config that does not parse ends ADD with the same error, before any side effect.
fn check_failed_add(data: &[u8], code: ErrorCode) {
    let reply = plugin::run(env("ADD"), &mut &data[..]);
    assert_eq!(reply.exit_code, 1, "{}", reply.stdout);
    let v: Value = serde_json::from_str(&reply.stdout).expect("error reply is JSON");
    assert_eq!(v["code"].as_u64(), Some(u64::from(code.as_u32())), "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

fn check_plugin_config(conf: &NetConf) {
    match PluginConfig::from_map(&conf.raw) {
        Ok(c) => {
            if let Some(master) = &c.master {
                assert!(aws_eni_ip::cni::env::validate_ifname(master).is_ok());
            }
            if let Some(region) = &c.region {
                assert!(!region.is_empty() && region.len() <= 32);
            }
            for path in [&c.state_dir, &c.log_file] {
                assert!(path.is_absolute(), "{path:?}");
                assert!(
                    !path.components().any(|p| p.as_os_str() == ".."),
                    "{path:?}"
                );
            }
            let ms = c.timeout.as_millis();
            assert!((1_000..=300_000).contains(&ms), "{ms}");
        }
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidConfig, "{e}"),
    }
}

fn check_valid_attachments(conf: &NetConf) {
    match conf.valid_attachments() {
        Ok(Some(list)) => assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        ),
        Ok(None) => {}
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidConfig, "{e}"),
    }
}

/// Converting prevResult to any version keeps it parseable and keeps the pod's addresses.
fn check_prev_result(conf: &NetConf, prev: &CniResult) {
    let mut ifnames = vec!["net1".to_string(), "eth0".to_string()];
    if let Some(list) = conf.raw["prevResult"]["interfaces"].as_array() {
        ifnames.extend(
            list.iter()
                .filter_map(|i| i["name"].as_str())
                .map(str::to_string),
        );
    }
    let expected: Vec<Vec<IpAddr>> = ifnames.iter().map(|n| prev.pod_addresses(n)).collect();
    for addrs in &expected {
        for (i, a) in addrs.iter().enumerate() {
            assert!(!addrs[..i].contains(a), "duplicate pod address {a}");
        }
    }
    for v in SUPPORTED {
        let out = prev.convert_to(v);
        assert_eq!(out["cniVersion"].as_str(), Some(v.as_str()));
        let back = CniResult::from_value(out.clone())
            .unwrap_or_else(|e| panic!("prevResult converted to {v} does not re-parse: {e}"));
        // The converted result, as prevResult of a config of that version, read from text.
        let mut raw = conf.raw.clone();
        raw.insert("cniVersion".into(), Value::String(v.as_str().into()));
        raw.insert("prevResult".into(), out);
        let text = serde_json::to_vec(&raw).expect("serializes");
        let again = (text.len() <= aws_eni_ip::cni::netconf::MAX_STDIN_BYTES).then(|| {
            NetConf::parse(&text)
                .unwrap_or_else(|e| panic!("config with prevResult at {v} does not re-parse: {e}"))
        });
        for (ifname, want) in ifnames.iter().zip(&expected) {
            assert_eq!(&back.pod_addresses(ifname), want, "{v} {ifname}");
            if let Some(again) = &again {
                let prev = again.prev_result.as_ref().expect("prevResult kept");
                assert_eq!(&prev.pod_addresses(ifname), want, "{v} {ifname} from text");
            }
        }
    }
}
