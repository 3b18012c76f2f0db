//! The plugin's own keys: defaults, every key read, bad values named, system paths, leniency.
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
    assert!(!c.follow_addresses);
}

#[test]
fn every_key_is_read() {
    let c = parse(json!({"master": "eth1", "region": "ap-northeast-1",
        "ec2Endpoint": "https://vpce-1.ec2.ap-northeast-1.vpce.amazonaws.com/",
        "imdsEndpoint": "http://[fd00:ec2::254]", "allowReassignment": false,
        "allowManagedEni": true, "allowPrimaryEni": true, "stateDir": "/run/aws-eni-ip",
        "logFile": "/var/log/x.log", "logLevel": "debug", "timeoutMs": 5000,
        "logMaxBytes": 65536, "logMaxFiles": 5, "followAddresses": true}))
    .unwrap();
    assert_eq!(c.master.as_deref(), Some("eth1"));
    assert_eq!(
        c.ec2_endpoint.as_deref(),
        Some("https://vpce-1.ec2.ap-northeast-1.vpce.amazonaws.com")
    );
    assert!(!c.allow_reassignment && c.allow_managed_eni && c.allow_primary_eni);
    assert!(c.follow_addresses);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!((c.log_max_bytes, c.log_max_files), (65536, 5));
}

#[test]
fn bad_values_name_the_key() {
    for (bad, key) in [
        (json!({"master": 1}), "master"),
        (json!({"master": "eth1/x"}), "master"),
        (json!({"region": "US WEST"}), "region"),
        (json!({"ec2Endpoint": "ec2.local"}), "ec2Endpoint"),
        (json!({"allowReassignment": "yes"}), "allowReassignment"),
        (json!({"followAddresses": 1}), "followAddresses"),
        (json!({"stateDir": "relative/dir"}), "stateDir"),
        (json!({"logFile": "/var/log/../x"}), "logFile"),
        (json!({"logLevel": "loud"}), "logLevel"),
        (json!({"timeoutMs": 10}), "timeoutMs"),
        (json!({"timeoutMs": "5000"}), "timeoutMs"),
        (json!({"logMaxBytes": 100}), "logMaxBytes"),
        (json!({"logMaxBytes": "10M"}), "logMaxBytes"),
        (json!({"logMaxFiles": 0}), "logMaxFiles"),
        (json!({"logMaxFiles": 1000}), "logMaxFiles"),
        (json!({"ec2Endpoint": "http://ec2.internal"}), "ec2Endpoint"),
        (
            json!({"ec2Endpoint": "http://10.0.0.1:8080"}),
            "ec2Endpoint",
        ),
    ] {
        let e = parse(bad.clone()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig, "{bad}");
        assert!(e.msg.contains(key), "{bad}: {}", e.msg);
    }
}

#[test]
fn system_paths_are_refused_for_state_and_logs() {
    for (key, path) in [
        ("stateDir", "/"),
        ("stateDir", "/etc"),
        ("stateDir", "/usr/"),
        ("stateDir", "/lib64"),
        ("stateDir", "/boot"),
        ("stateDir", "/run"),
        ("stateDir", "/tmp"),
        ("stateDir", "/proc/sys/net"),
        ("stateDir", "/sys/fs/cgroup"),
        ("stateDir", "/dev/shm"),
        ("logFile", "/etc/ld.so.preload"),
        ("logFile", "/tmp/aws-eni-ip.log"),
        ("logFile", "/proc/sys/kernel/core_pattern"),
        ("logFile", "/bin/sh"),
    ] {
        let e = parse(json!({ key: path })).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig, "{key}={path}");
        assert!(
            e.msg.contains(key) && e.msg.contains("system path"),
            "{}",
            e.msg
        );
    }
    for (key, path) in [
        ("stateDir", "/var/lib/cni/aws-eni-ip"),
        ("stateDir", "/run/aws-eni-ip"),
        ("stateDir", "/tmp/test-state"),
        ("logFile", "/var/log/aws-eni-ip.log"),
        ("logFile", "/tmp/test/plugin.log"),
    ] {
        assert!(parse(json!({ key: path })).is_ok(), "{key}={path}");
    }
}

#[test]
fn plain_http_ec2_endpoints_are_accepted_only_on_loopback() {
    for ok in [
        "http://127.0.0.1:4566",
        "http://[::1]:4566",
        "http://localhost:4566/",
        "https://ec2.us-west-2.amazonaws.com",
    ] {
        assert!(parse(json!({ "ec2Endpoint": ok })).is_ok(), "{ok}");
    }
    // IMDS is plain HTTP by design (link-local, hop-limited).
    assert!(parse(json!({"imdsEndpoint": "http://169.254.169.254"})).is_ok());
}

#[test]
fn lenient_keeps_good_keys_and_defaults_broken_ones() {
    let raw = json!({"stateDir": "/var/lib/x", "timeoutMs": 10, "logLevel": "loud",
        "master": "eth1"});
    let (c, problems) = PluginConfig::lenient(raw.as_object().unwrap());
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/x"));
    assert_eq!(c.master.as_deref(), Some("eth1"));
    assert_eq!(c.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(problems.len(), 2);
}

#[test]
fn validate_json_checks_type_and_keys() {
    assert!(PluginConfig::validate_json(&json!({"type": "aws-eni-ip"})).is_ok());
    assert!(PluginConfig::validate_json(&json!({"type": "ipvlan"})).is_err());
    assert!(PluginConfig::validate_json(&json!({"type": "aws-eni-ip", "timeoutMs": -1})).is_err());
}
