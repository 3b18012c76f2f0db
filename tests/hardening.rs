//! Hardening, through the real binary against ec2-sim: a NetworkAttachmentDefinition's paths and
//! values are tenant input run as root; refcounts are node-wide whatever `stateDir` says; DEL needs
//! only its record; the operators' `state` view changes nothing.

mod common;

use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn two_networks_with_different_state_dirs_share_an_address_without_losing_it() {
    let fx = Fixture::new();
    let prev = Some(prev_result("1.0.0", &["198.18.1.90/24"]));
    let a = fx.conf("1.0.0", NODE1, ENI1, prev.clone());
    let mut b = fx.conf("1.0.0", NODE1, ENI1, prev);
    b["name"] = json!("other-net");
    b["stateDir"] = json!(fx.dir.path().join("other-state"));
    // Both are processes of the same node: its node dir is network a's state dir.
    let node_dir = fx.state_dir(NODE1);
    let run = |command: &str, container: &str, conf: &serde_json::Value| {
        run_plugin_with(
            command,
            container,
            "net1",
            Some("/var/run/netns/unused"),
            conf.to_string().as_bytes(),
            &[(aws_eni_ip::store::NODE_DIR_ENV, node_dir.as_str())],
        )
    };
    run("ADD", "pod-a", &a).ok();
    run("ADD", "pod-b", &b).ok();
    run("DEL", "pod-a", &a).ok();
    assert_eq!(
        fx.addresses(ENI1),
        vec![ip("198.18.1.90")],
        "network b's pod still holds it"
    );
    run("DEL", "pod-b", &b).ok();
    assert!(fx.addresses(ENI1).is_empty());
}

#[test]
fn system_paths_in_the_config_are_code_7_and_nothing_is_touched() {
    let fx = Fixture::new();
    for (key, path) in [
        ("stateDir", "/etc"),
        ("stateDir", "/proc/sys/net"),
        ("logFile", "/etc/ld.so.preload"),
    ] {
        let mut conf = fx.conf(
            "1.0.0",
            NODE1,
            ENI1,
            Some(prev_result("1.0.0", &["198.18.1.91/24"])),
        );
        conf[key] = json!(path);
        let r = fx.run("ADD", "c", "net1", &conf);
        assert_eq!(r.err_code(), 7, "{key}={path}: {}", r.stdout);
        assert!(r.msg().contains(key), "{}", r.msg());
    }
    assert!(!std::path::Path::new("/etc/attachments").exists());
    assert!(
        !std::path::Path::new("/etc/ld.so.preload").exists() || {
            // Present on some systems; it must not have grown a log line.
            !std::fs::read_to_string("/etc/ld.so.preload")
                .unwrap_or_default()
                .contains("aws-eni-ip")
        }
    );
    assert!(fx.addresses(ENI1).is_empty());
}

#[test]
fn an_existing_state_dir_keeps_its_mode_and_owner() {
    let fx = Fixture::new();
    let shared = fx.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.92/24"])),
    );
    conf["stateDir"] = json!(shared);
    fx.run("ADD", "c", "net1", &conf).ok();
    assert_eq!(mode(&shared), 0o755, "a dir the plugin did not create");
    assert_eq!(mode(&shared.join("attachments")), 0o700, "one it created");
    fx.run("DEL", "c", "net1", &conf).ok();
}

#[test]
fn state_command_is_read_only() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.93/24"])),
    );
    fx.run("ADD", "c93", "net1", &conf).ok();
    let dir = std::path::PathBuf::from(fx.state_dir(NODE1));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let bad = dir.join("attachments/ipvlan-multus/broken:net1.json");
    std::fs::write(&bad, b"{").unwrap();
    let state = |d: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_aws-eni-ip"))
            .args(["state", "--state-dir"])
            .arg(d)
            .env(aws_eni_ip::store::NODE_DIR_ENV, d)
            .output()
            .unwrap()
    };
    let out = state(&dir);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("c93"));
    assert_eq!(mode(&dir), 0o750, "no mode changed");
    assert!(bad.exists(), "nothing moved aside");
    let absent = fx.dir.path().join("never-used");
    assert!(!state(&absent).status.success());
    assert!(!absent.exists(), "nothing created");
}

#[test]
fn del_releases_even_when_the_config_was_broken_after_add() {
    let fx = Fixture::new();
    let conf = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &["198.18.1.94/24"])),
    );
    fx.run("ADD", "c94", "net1", &conf).ok();
    let mut edited = conf.clone();
    edited["timeoutMs"] = json!(5);
    edited["logLevel"] = json!("loud");
    edited["allowReassignment"] = json!("yes");
    assert_eq!(fx.run("ADD", "c95", "net1", &edited).err_code(), 7);
    fx.run("DEL", "c94", "net1", &edited).ok();
    assert!(fx.addresses(ENI1).is_empty(), "released from the record");
    let log = fx.log_lines(NODE1).join("\n");
    assert!(
        log.contains("DEL goes on with the default") && log.contains("timeoutMs"),
        "{log}"
    );
}
