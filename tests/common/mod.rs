//! Runs the real plugin binary the way a runtime does (CNI_* env, JSON on stdin) against an
//! in-process ec2-sim, with a veth link per ENI standing in for the node's secondary interface.
#![allow(dead_code)]

pub mod agent;
pub mod cri;

use ec2_sim::{Sim, World};
use serde_json::{json, Value};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const NODE1: &str = "i-0a1b2c3d4e5f60001";
pub const NODE2: &str = "i-0a1b2c3d4e5f60002";
pub const ENI_PRIMARY: &str = "eni-0a000000000000001";
pub const ENI1: &str = "eni-0b000000000000001";
pub const ENI2: &str = "eni-0b000000000000002";
pub const ENI_MANAGED: &str = "eni-0c000000000000001";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A veth end that plays an ENI's host interface; removed on drop.
pub struct Link {
    pub name: String,
}

impl Link {
    pub fn new(mac: &str) -> Link {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("aei{}l{n}", std::process::id() % 100_000);
        // This kernel has no dummy module; a veth end works as well as a stand-in.
        sh(&[
            "ip",
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{name}p"),
        ]);
        sh(&["ip", "link", "set", &name, "address", mac]);
        sh(&["ip", "link", "set", &name, "up"]);
        Link { name }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
    }
}

pub fn sh(args: &[&str]) {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests create links and namespaces: run them as root (CI does)"
    );
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Fixture {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    /// Host links by ENI id.
    pub links: Vec<(String, Link)>,
}

pub struct Reply {
    pub code: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub json: Value,
}

impl Reply {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "plugin failed: {}", self.stdout);
        self
    }

    /// The CNI error code of a failed call.
    pub fn err_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected a failure, got {}", self.stdout);
        self.json["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {}", self.stdout))
    }

    pub fn msg(&self) -> String {
        format!(
            "{} {}",
            self.json["msg"].as_str().unwrap_or(""),
            self.json["details"].as_str().unwrap_or("")
        )
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_world(World::demo())
    }

    pub fn with_world(world: World) -> Fixture {
        let links = world
            .enis
            .iter()
            .map(|e| (e.id.clone(), Link::new(&e.mac)))
            .collect();
        Fixture {
            sim: Sim::start(world).expect("start ec2-sim"),
            dir: tempfile::tempdir().unwrap(),
            links,
        }
    }

    pub fn link(&self, eni: &str) -> &str {
        &self
            .links
            .iter()
            .find(|(id, _)| id == eni)
            .expect("eni link")
            .1
            .name
    }

    pub fn state_dir(&self, node: &str) -> String {
        self.dir
            .path()
            .join(node)
            .join("state")
            .display()
            .to_string()
    }

    pub fn log_file(&self, node: &str) -> String {
        self.dir
            .path()
            .join(node)
            .join("plugin.log")
            .display()
            .to_string()
    }

    /// The plugin's own block for `node`, master = the link of `eni`.
    pub fn plugin_conf(&self, node: &str, eni: &str) -> Value {
        json!({
            "type": "aws-eni-ip",
            "master": self.link(eni),
            "ec2Endpoint": self.sim.ec2_url(),
            "imdsEndpoint": self.sim.imds_url(node),
            "stateDir": self.state_dir(node),
            "logFile": self.log_file(node),
            "timeoutMs": 10000
        })
    }

    /// A net config as libcni hands it to the second plugin of a chain.
    pub fn conf(&self, version: &str, node: &str, eni: &str, prev: Option<Value>) -> Value {
        let mut c = self.plugin_conf(node, eni);
        c["cniVersion"] = json!(version);
        c["name"] = json!("ipvlan-multus");
        if let Some(p) = prev {
            c["prevResult"] = p;
        }
        c
    }

    pub fn run(&self, command: &str, container: &str, ifname: &str, stdin: &Value) -> Reply {
        run_plugin(
            command,
            container,
            ifname,
            Some("/var/run/netns/unused"),
            stdin,
        )
    }

    pub fn addresses(&self, eni: &str) -> Vec<IpAddr> {
        let state = self.sim.state();
        let e = state.enis.iter().find(|e| e.id == eni).expect("eni in sim");
        e.private_ips
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(e.ipv6s.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }

    /// What `node`'s store holds, read as the plugin reads it.
    pub fn records(&self, node: &str) -> Vec<aws_eni_ip::store::Attachment> {
        let dir = std::path::PathBuf::from(self.state_dir(node));
        match aws_eni_ip::store::Store::open_existing(&dir, aws_eni_ip::store::NodeDir::new(&dir)) {
            Ok(store) => store.all().expect("list records"),
            Err(_) => Vec::new(),
        }
    }

    pub fn calls(&self, action: &str) -> u64 {
        self.sim.calls().ec2.get(action).copied().unwrap_or(0)
    }

    pub fn log_lines(&self, node: &str) -> Vec<String> {
        std::fs::read_to_string(self.log_file(node))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Runs the binary with a clean environment: only CNI_* and PATH, as a runtime would.
pub fn run_plugin(
    command: &str,
    container: &str,
    ifname: &str,
    netns: Option<&str>,
    stdin: &Value,
) -> Reply {
    run_plugin_raw(
        command,
        container,
        ifname,
        netns,
        stdin.to_string().as_bytes(),
    )
}

pub fn run_plugin_raw(
    command: &str,
    container: &str,
    ifname: &str,
    netns: Option<&str>,
    stdin: &[u8],
) -> Reply {
    run_plugin_with(command, container, ifname, netns, stdin, &[])
}

/// As [`run_plugin_raw`], with extra environment (e.g. a crash point).
pub fn run_plugin_with(
    command: &str,
    container: &str,
    ifname: &str,
    netns: Option<&str>,
    stdin: &[u8],
    extra_env: &[(&str, &str)],
) -> Reply {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aws-eni-ip"));
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/opt/cni/bin")
        .env(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ran;K8S_POD_NAME=upf-0",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !container.is_empty() {
        cmd.env("CNI_CONTAINERID", container);
    }
    if !ifname.is_empty() {
        cmd.env("CNI_IFNAME", ifname);
    }
    if let Some(ns) = netns {
        cmd.env("CNI_NETNS", ns);
    }
    cmd.env(aws_eni_ip::store::NODE_DIR_ENV, node_dir_of(stdin));
    cmd.envs(extra_env.iter().copied());
    let mut child = cmd.spawn().expect("spawn plugin");
    // The plugin stops reading oversized input early; a broken pipe is its answer, not ours.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Reply {
        code: out.status.code().unwrap_or(-1),
        signal: out.status.signal(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
    }
}

/// Each simulated node's state dir is also its node dir, as the default stateDir is on a real
/// node; a config without one gets a throwaway dir, never the machine's own /var/lib.
fn node_dir_of(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            // Chained: beside "type"; IPAM mode: in the "ipam" object.
            v["stateDir"]
                .as_str()
                .or_else(|| v["ipam"]["stateDir"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            std::env::temp_dir()
                .join(format!("aws-eni-ip-test-node-{}", std::process::id()))
                .display()
                .to_string()
        })
}

/// prevResult as ipvlan + IPAM produce it, in the shape of `version`.
pub fn prev_result(version: &str, addrs: &[&str]) -> Value {
    let old = version.starts_with("0.");
    let ips: Vec<Value> = addrs
        .iter()
        .map(|a| {
            let mut ip = json!({"address": a, "interface": 0});
            if old {
                ip["version"] = json!(if a.contains(':') { "6" } else { "4" });
            }
            ip
        })
        .collect();
    json!({
        "cniVersion": version,
        "interfaces": [{"name": "net1", "mac": "02:00:c6:12:01:99", "sandbox": "/var/run/netns/pod"}],
        "ips": ips,
        "routes": [{"dst": "198.18.64.0/18", "gw": "198.18.1.1"}],
        "dns": {"nameservers": ["192.0.2.53"]}
    })
}

/// Every cniVersion the plugin speaks, as the runtime spells it.
pub fn versions() -> Vec<&'static str> {
    aws_eni_ip::cni::version::SUPPORTED
        .iter()
        .map(|v| v.as_str())
        .collect()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
