//! The README's cnitool walkthrough, run command for command as one `bash -eux` script in a node
//! namespace of the e2e lab (an `eth1` carrying ENI A's MAC, ec2-sim for EC2 and IMDS). `cnitool`
//! is the upstream one, `github.com/containernetworking/cni/cnitool` v1.3.0 built from the Go
//! module proxy by scripts/node/build.sh (`AEI_CNITOOL` names it; `make test` and `make e2e-node`
//! set it), and the test checks that with `go version -m`. What a node has and this machine has not
//! is mapped, and only that:
//! `/opt/cni/bin` → a directory with the Debian reference plugins and the aws-eni-ip under test;
//! `conf/cnitool-ipvlan.conflist` → a copy whose range is in the lab's subnet (198.18.1.80-90) and
//! whose aws-eni-ip block points at the lab's IMDS, state dir and log file, and whose link is the
//! e2e run's kind (`E2E_LINK`: macvlan on this host, whose kernel has no ipvlan); the netns and conf dir names get this run's id;
//! `aws-eni-ip state` reads the lab's state dir; EC2's URL and the node dir come from the
//! environment, as for every e2e node. Then the outcome is checked: ADD's result, the
//! address on EC2 while attached, none after DEL, one Assign and one Unassign.

#[path = "e2e/harness.rs"]
mod harness;

use harness::*;
use serde_json::Value;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

const README: &str = include_str!("../README.md");
const CONFLIST: &str = include_str!("../conf/cnitool-ipvlan.conflist");
const MARKER: &str = "<!-- cnitool-walkthrough:";

/// The fenced sh block that follows the marker comment in the README.
fn walkthrough() -> String {
    let start = README
        .find(MARKER)
        .expect("README has the cnitool walkthrough marker");
    let rest = &README[start..];
    let open = rest.find("```sh\n").expect("walkthrough code block") + "```sh\n".len();
    let close = rest[open..].find("```").expect("walkthrough block ends");
    rest[open..open + close].to_string()
}

/// The cnitool that `AEI_CNITOOL` names, after checking that it is upstream's: its build info
/// names the package path github.com/containernetworking/cni/cnitool.
fn upstream_cnitool() -> std::path::PathBuf {
    let path = std::env::var_os("AEI_CNITOOL").unwrap_or_else(|| {
        panic!(
            "AEI_CNITOOL is not set: build the upstream cnitool with `scripts/node/build.sh cnitool` \
             and set AEI_CNITOOL to its path (make test and make e2e-node do both)"
        )
    });
    let out = Command::new("/usr/local/go/bin/go")
        .args(["version", "-m"])
        .arg(&path)
        .output()
        .expect("run /usr/local/go/bin/go version -m (the machine's Go 1.26)");
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && info
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()[..]
                    == ["path", "github.com/containernetworking/cni/cnitool"]),
        "{} is not upstream cnitool (go version -m: {info}{})",
        path.to_string_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    path.into()
}

/// The conflist as the lab needs it: same chain and keys, the lab's subnet and endpoints.
fn lab_conflist(node: &Node, kind: PodLink) -> String {
    let mut list: Value = serde_json::from_str(CONFLIST).expect("conflist is JSON");
    let plugins = list["plugins"].as_array_mut().unwrap();
    let link = &mut plugins[0];
    assert_eq!(link["type"], "ipvlan");
    link["type"] = kind.plugin_type().into();
    link["mode"] = kind.mode().into();
    let range = &mut link["ipam"]["ranges"][0][0];
    range["subnet"] = "198.18.1.0/24".into();
    range["rangeStart"] = "198.18.1.80".into();
    range["rangeEnd"] = "198.18.1.90".into();
    link["ipam"]["dataDir"] = node.dir.join("ipam").to_str().unwrap().into();
    let ours = &mut plugins[1];
    assert_eq!(ours["type"], "aws-eni-ip");
    assert!(ours.get("region").is_none(), "the conflist pins a region");
    let lab_keys = node.aws_eni_ip(serde_json::json!({}));
    for key in ["imdsEndpoint", "stateDir", "logFile"] {
        ours[key] = lab_keys[key].clone();
    }
    serde_json::to_string_pretty(&list).unwrap()
}

#[test]
fn the_readme_cnitool_walkthrough_adds_checks_and_deletes() {
    let _serial = serial();
    let mut lab = Lab::start();
    let node = lab.node(INSTANCE_A, &[("eth1", MAC_A)]);
    // E2E_LINK, as for every e2e scenario: macvlan here, ipvlan in `make e2e-ipvlan`'s VM.
    let kind = PodLink::under_test();

    // /opt/cni/bin of a node: the reference plugins and aws-eni-ip.
    let bin = node.dir.join("opt-cni-bin");
    fs::create_dir_all(&bin).unwrap();
    for plugin in ["ipvlan", "macvlan", "host-local"] {
        symlink(Path::new("/usr/lib/cni").join(plugin), bin.join(plugin)).unwrap();
    }
    symlink(env!("CARGO_BIN_EXE_aws-eni-ip"), bin.join("aws-eni-ip")).unwrap();
    let tools = node.dir.join("tools");
    fs::create_dir_all(&tools).unwrap();
    symlink(upstream_cnitool(), tools.join("cnitool")).unwrap();
    let conflist = node.dir.join("cnitool-ipvlan.conflist");
    fs::write(&conflist, lab_conflist(&node, kind)).unwrap();

    let netns = format!("aei-{}-try", lab.id);
    let netconf = node.dir.join("net.d");
    let walkthrough = walkthrough();
    // A README edit must not let the script run against the host's own paths.
    for host_side in [
        "aei-try",
        "/tmp/aei-net.d",
        "conf/cnitool-ipvlan.conflist",
        "aws-eni-ip state",
        "/opt/cni/bin",
    ] {
        assert!(
            walkthrough.contains(host_side),
            "the README walkthrough no longer names {host_side:?}: update this test"
        );
    }
    let script = walkthrough
        .replace("aei-try", &netns)
        .replace("/tmp/aei-net.d", netconf.to_str().unwrap())
        .replace("conf/cnitool-ipvlan.conflist", conflist.to_str().unwrap())
        .replace(
            "aws-eni-ip state",
            &format!(
                "aws-eni-ip state --state-dir {}",
                node.state_dir().display()
            ),
        )
        .replace("/opt/cni/bin", bin.to_str().unwrap());
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
    let out = Command::new("ip")
        .args([
            "netns", "exec", &node.ns, "bash", "-eux", "-o", "pipefail", "-c",
        ])
        .arg(&script)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &node.dir)
        // A node's own settings, as the harness gives every e2e node: EC2 (plain HTTP off
        // loopback, which a config may not name) and the node-wide store of this "node".
        .env("AWS_ENDPOINT_URL_EC2", &node.ec2_url)
        .env(aws_eni_ip::store::NODE_DIR_ENV, node.state_dir())
        .current_dir(&node.dir)
        .output()
        .unwrap();
    // Normally the script's last line removed it already.
    let _ = Command::new("ip")
        .args(["netns", "del", &netns])
        .stderr(std::process::Stdio::null())
        .status();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    // cnitool add printed the chain's result: the host-local address on net1.
    assert!(stdout.contains("\"198.18.1.80/24\""), "{stdout}");
    // `state` after add listed the attachment on ENI A; after del, none.
    let attached = stdout
        .lines()
        .find(|l| l.starts_with("ipvlan-aws"))
        .unwrap_or_else(|| panic!("no attachment in `state`:\n{stdout}"));
    assert!(attached.contains("cnitool-"), "{attached}");
    assert!(attached.contains(ENI_A), "{attached}");
    assert!(attached.contains("198.18.1.80"), "{attached}");
    assert!(stdout.contains("1 attachment(s)"), "{stdout}");
    assert!(stdout.contains("0 attachment(s)"), "{stdout}");
    // ip addr showed it in the pod netns.
    assert!(stdout.contains("inet 198.18.1.80/24"), "{stdout}");

    let foreign: IpAddr = "198.18.1.20".parse().unwrap();
    assert_eq!(lab.held(ENI_A), vec![foreign], "ENI A after del");
    let calls = lab.calls();
    assert_eq!(
        calls.ec2.get("AssignPrivateIpAddresses"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(
        calls.ec2.get("UnassignPrivateIpAddresses"),
        Some(&1),
        "{calls:?}"
    );
    let log = node.log_lines();
    for cmd in ["ADD", "CHECK", "DEL"] {
        assert!(
            log.iter()
                .any(|l| l.contains(&format!("cmd=\"{cmd}\"")) && l.contains(" ok ")),
            "no {cmd} line in the log:\n{}",
            log.join("\n")
        );
    }
    lab.close();
}
