//! Harness for the real-runtime end-to-end tests.
//!
//! Topology of one [`Lab`] (all names carry `aei-<pid>-<n>` / `aei<pid>…`, so parallel runs and
//! other engineers' runs never collide, and a run that was killed is swept by the next one):
//!
//! ```text
//! root netns:  bridge aei<pid>b<n> 198.19.X.1/24  <- ec2-sim (in-process) listens here: EC2 + one IMDS per instance
//!                 | veth
//! node netns:  eth0 198.19.X.(10+k)/24, eth1 (veth, MAC = the ENI's MAC from the world), …
//!              the Go libcni driver runs here (`ip netns exec`), so the plugin does too
//! pod netns:   net1 (macvlan/ipvlan on eth1), created by the real plugins from /usr/lib/cni
//! ```
//!
//! The pod link is chosen by `E2E_LINK` ([`PodLink`]); every ADD that succeeds asserts, inside the
//! pod, that the link is of that kind and mode, and prints its `ip -d -o link` line on stderr.
//! `E2E_TIME_SCALE` (default 1) multiplies the deadlines, for runs under emulation; `E2E_CNI_DRIVER`,
//! `E2E_PLUGIN_DIR` and `E2E_PODS` are read too (see `make e2e-ipvlan`, tests/vm/).

#![allow(dead_code)]

use ec2_sim::{Calls, EniState, Sim, SimOptions, State, World};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The e2e world: instance A has eth1 (eni-0b…01, tagged no_manage, one foreign secondary
/// 198.18.1.20), eth2 (eni-0c…01, tagged), eth3 (eni-0d…01, VPC-CNI-managed); instance B has eth1
/// (eni-0b…02). Subnet 198.18.1.0/24 + 2001:db8:100:1::/64.
pub const WORLD: &str = include_str!("../worlds/e2e.json");
pub const INSTANCE_A: &str = "i-0e2e0000000000001";
pub const INSTANCE_B: &str = "i-0e2e0000000000002";
pub const ENI_A: &str = "eni-0b000000000000001";
pub const MAC_A: &str = "02:00:c6:12:01:01";
pub const ENI_A2: &str = "eni-0c000000000000001";
pub const MAC_A2: &str = "02:00:c6:12:01:03";
pub const ENI_A_MANAGED: &str = "eni-0d000000000000001";
pub const MAC_A_MANAGED: &str = "02:00:c6:12:01:04";
pub const ENI_B: &str = "eni-0b000000000000002";
pub const MAC_B: &str = "02:00:c6:12:01:02";

const CNI_BIN: &str = "/usr/lib/cni";
const LIBCNI_SRC: &str = "/usr/share/gocode/src/github.com/containernetworking/cni/libcni/api.go";
const PACKAGES: &str = "golang-go golang-github-appc-cni-dev containernetworking-plugins iproute2";

/// The link that the chain's first plugin makes in the pod, from `E2E_LINK`: `macvlan` (default),
/// `ipvlan` (mode l2) or `ipvlan-l3`. This host's kernel has no ipvlan: `make e2e-ipvlan` runs the
/// ipvlan kinds in a VM whose kernel has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodLink {
    Macvlan,
    IpvlanL2,
    IpvlanL3,
}

impl PodLink {
    /// The kind this test process runs; a bad `E2E_LINK` fails every scenario.
    pub fn under_test() -> PodLink {
        static KIND: OnceLock<PodLink> = OnceLock::new();
        *KIND.get_or_init(|| {
            let kind = match std::env::var("E2E_LINK").as_deref() {
                Err(_) | Ok("") | Ok("macvlan") => PodLink::Macvlan,
                Ok("ipvlan") => PodLink::IpvlanL2,
                Ok("ipvlan-l3") => PodLink::IpvlanL3,
                Ok(other) => panic!("E2E_LINK={other:?}: use macvlan, ipvlan or ipvlan-l3"),
            };
            // Straight to the process's stderr: libtest captures eprintln!, and CI logs should say it.
            let _ = writeln!(
                std::io::stderr(),
                "e2e: pod links are {} mode {} (E2E_LINK={:?}){}",
                kind.plugin_type(),
                kind.mode(),
                std::env::var("E2E_LINK").unwrap_or_default(),
                if kind == PodLink::Macvlan {
                    "; ipvlan is not tested in this run: `make e2e-ipvlan` runs it in a VM"
                } else {
                    ""
                }
            );
            kind
        })
    }

    /// The CNI plugin type (and the link kind `ip -d link` shows).
    pub fn plugin_type(self) -> &'static str {
        match self {
            PodLink::Macvlan => "macvlan",
            PodLink::IpvlanL2 | PodLink::IpvlanL3 => "ipvlan",
        }
    }

    /// The plugin's `mode` (and the mode `ip -d link` shows).
    pub fn mode(self) -> &'static str {
        match self {
            PodLink::Macvlan => "bridge",
            PodLink::IpvlanL2 => "l2",
            PodLink::IpvlanL3 => "l3",
        }
    }
}

/// The chain's first plugin: the link under test on `master`, with `ipam`.
pub fn pod_link(master: &str, ipam: Value) -> Value {
    let kind = PodLink::under_test();
    json!({"type": kind.plugin_type(), "master": master, "mode": kind.mode(), "ipam": ipam})
}

/// `E2E_TIME_SCALE` × `base`: the VM emulates its CPU (TCG), about 50× slower than native code.
pub fn scaled(base: Duration) -> Duration {
    static SCALE: OnceLock<u32> = OnceLock::new();
    let scale = *SCALE.get_or_init(|| match std::env::var("E2E_TIME_SCALE") {
        Err(_) => 1,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| panic!("E2E_TIME_SCALE={v:?}: use a whole number ≥ 1")),
    });
    base * scale
}

/// The scenarios share the kernel's network state and the driver build: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails (never skips) when not root or a tool is missing: CI installs them and runs as root.
pub fn require_root_and_tools() {
    let uid = Command::new("id").arg("-u").output().expect("run `id -u`");
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();
    assert_eq!(
        uid, "0",
        "the e2e tests create network namespaces and links: run them as root (uid is {uid})"
    );
    let mut missing = Vec::new();
    if !runs("ip", &["-V"]) {
        missing.push("ip (iproute2)".to_string());
    }
    if !runs("go", &["version"]) {
        missing.push("go (golang-go)".to_string());
    }
    if !Path::new(LIBCNI_SRC).exists() {
        missing.push(format!("{LIBCNI_SRC} (golang-github-appc-cni-dev)"));
    }
    for p in ["macvlan", "ipvlan", "host-local", "static"] {
        let path = Path::new(CNI_BIN).join(p);
        if !path.exists() {
            missing.push(format!("{} (containernetworking-plugins)", path.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "the e2e tests need: {}\ninstall them with: apt-get install -y {PACKAGES}  (or run `make test`)",
        missing.join(", ")
    );
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a command that must succeed (setup steps).
fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a cleanup command; failures are reported, never fatal.
fn sh_quiet(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Go libcni driver: `E2E_CNI_DRIVER` when set (the VM runs one built on the host: `go build`
/// under emulation costs minutes), else built once per test process (GOPATH mode, no downloads).
pub fn driver() -> &'static Path {
    static DRIVER: OnceLock<PathBuf> = OnceLock::new();
    DRIVER.get_or_init(|| {
        if let Some(prebuilt) = std::env::var_os("E2E_CNI_DRIVER") {
            let prebuilt = PathBuf::from(prebuilt);
            assert!(
                prebuilt.is_file(),
                "E2E_CNI_DRIVER={} is not a file: build it with `make driver`",
                prebuilt.display()
            );
            return prebuilt;
        }
        let tmpdir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = tmpdir.join("cni-driver");
        // Another test process may build at the same time: build aside, then rename.
        let part = tmpdir.join(format!("cni-driver.{}", std::process::id()));
        let mut go = Command::new("go");
        go.args(["build", "-o"])
            .arg(&part)
            .arg("./tests/runtime/driver")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CGO_ENABLED", "0")
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "");
        if std::env::var_os("GOCACHE").is_none() {
            go.env("GOCACHE", tmpdir.join("go-build"));
        }
        let built = go.output().expect("run `go build` for the libcni driver");
        assert!(
            built.status.success(),
            "building tests/runtime/driver failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        std::fs::rename(&part, &out).expect("move the driver into place");
        out
    })
}

/// Directory holding the aws-eni-ip binary under test: `E2E_PLUGIN_DIR` when set (the VM runs the
/// release build), else the one cargo builds for integration tests.
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("E2E_PLUGIN_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("aws-eni-ip").is_file(),
            "E2E_PLUGIN_DIR={} has no aws-eni-ip: run `make release`",
            dir.display()
        );
        return dir;
    }
    Path::new(env!("CARGO_BIN_EXE_aws-eni-ip"))
        .parent()
        .expect("binary has a directory")
        .to_path_buf()
}

/// How many pods the parallel scenario starts at once: `E2E_PODS`, default 20 (the VM uses 5).
pub fn parallel_pods() -> usize {
    match std::env::var("E2E_PODS") {
        Err(_) => 20,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=50).contains(n))
            .unwrap_or_else(|| panic!("E2E_PODS={v:?}: use a number from 1 to 50")),
    }
}

/// Removes namespaces and links left by test processes that died without cleaning up.
fn sweep_stale() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let alive = |pid: &str| Path::new("/proc").join(pid).exists();
        for line in stdout_of(&["ip", "netns", "list"]).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if let Some(pid) = name.strip_prefix("aei-").and_then(|r| r.split('-').next()) {
                if pid.chars().all(|c| c.is_ascii_digit()) && !alive(pid) {
                    sh_quiet(&["ip", "netns", "del", name]);
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("aei-").and_then(|r| r.split('-').next()) {
                    if pid.chars().all(|c| c.is_ascii_digit()) && !alive(pid) {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        for line in stdout_of(&["ip", "-o", "link", "show"]).lines() {
            let name = line.split(':').nth(1).unwrap_or("").trim();
            let name = name.split('@').next().unwrap_or("");
            if let Some(rest) = name.strip_prefix("aei") {
                let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if !pid.is_empty() && !alive(&pid) {
                    sh_quiet(&["ip", "link", "del", name]);
                }
            }
        }
    });
}

/// Puts a free 198.19.X.1/24 (inside the 198.18.0.0/15 benchmark range) on `bridge`; returns X.
/// Another run may pick the same X at the same moment: whoever sees a twin steps aside.
fn claim_prefix(bridge: &str) -> u8 {
    let mut skip = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let used = stdout_of(&["ip", "-o", "addr", "show"]);
        let start = (std::process::id() % 200) as u16;
        let x = (0..250u16)
            .map(|i| ((start + i) % 250 + 1) as u8)
            .find(|x| !skip.contains(x) && !used.contains(&format!("198.19.{x}.")))
            .expect("no free 198.19.X.0/24 for the test bridge");
        let cidr = format!("198.19.{x}.1/24");
        sh(&["ip", "addr", "add", &cidr, "dev", bridge]);
        let holders = stdout_of(&[
            "ip",
            "-o",
            "addr",
            "show",
            "to",
            &format!("198.19.{x}.0/24"),
        ]);
        if holders.lines().count() == 1 {
            return x;
        }
        sh_quiet(&["ip", "addr", "del", &cidr, "dev", bridge]);
        skip.insert(x);
        std::thread::sleep(Duration::from_millis(u64::from(std::process::id() % 50)));
    }
    panic!("could not claim a 198.19.X.0/24 for the test bridge");
}

/// Parsed ready line of the simulator: `{"ec2": URL, "imds": {instance: URL}}`.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub ec2: String,
    pub imds: BTreeMap<String, String>,
}

/// One test's world: the simulator on a bridge, node and pod namespaces; all removed on drop.
pub struct Lab {
    pub id: String,
    short: String,
    bridge: String,
    pub prefix: u8,
    pub endpoints: Endpoints,
    tmp: tempfile::TempDir,
    pods: Vec<String>,
    nodes: Vec<String>,
    host_links: Vec<String>,
    sim: Option<Sim>,
    closed: bool,
}

impl Lab {
    /// Builds the bridge and starts the simulator with the e2e world bound to it.
    pub fn start() -> Lab {
        Lab::start_with(WORLD)
    }

    pub fn start_with(world_json: &str) -> Lab {
        require_root_and_tools();
        PodLink::under_test();
        driver();
        sweep_stale();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst) % 100;
        let pid = std::process::id();
        let mut lab = Lab {
            id: format!("{pid}-{n}"),
            short: format!("aei{pid}v{n}"),
            bridge: format!("aei{pid}b{n}"),
            prefix: 0,
            endpoints: Endpoints {
                ec2: String::new(),
                imds: BTreeMap::new(),
            },
            tmp: tempfile::Builder::new()
                .prefix(&format!("aei-{pid}-"))
                .tempdir()
                .expect("temp dir"),
            pods: Vec::new(),
            nodes: Vec::new(),
            host_links: Vec::new(),
            sim: None,
            closed: false,
        };
        sh(&["ip", "link", "add", &lab.bridge, "type", "bridge"]);
        lab.host_links.push(lab.bridge.clone());
        let prefix = claim_prefix(&lab.bridge);
        lab.prefix = prefix;
        sh(&["ip", "link", "set", &lab.bridge, "up"]);

        let world = World::from_json(world_json).expect("e2e world is valid");
        let sim = Sim::start_with(
            world,
            SimOptions {
                bind: IpAddr::V4(Ipv4Addr::new(198, 19, prefix, 1)),
                ec2_port: 0,
                log: std::env::var_os("EC2_SIM_LOG").is_some(),
            },
        )
        .expect("start ec2-sim on the test bridge");
        let ready: Value = serde_json::from_str(&sim.endpoints_json()).expect("ready JSON");
        lab.endpoints = Endpoints {
            ec2: ready["ec2"].as_str().expect("ec2 URL").to_string(),
            imds: ready["imds"]
                .as_object()
                .expect("imds map")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("imds URL").to_string()))
                .collect(),
        };
        lab.sim = Some(sim);
        lab
    }

    /// A node namespace playing `instance`: eth0 on the bridge, plus one veth per `(name, mac)`
    /// carrying that ENI's MAC.
    pub fn node(&mut self, instance: &str, links: &[(&str, &str)]) -> Node {
        let k = self.nodes.len() + 1;
        let ns = format!("aei-{}-node{k}", self.id);
        sh(&["ip", "netns", "add", &ns]);
        self.nodes.push(ns.clone());
        let host = format!("{}n{k}", self.short);
        sh(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        self.host_links.push(host.clone());
        sh(&["ip", "link", "set", &host, "master", &self.bridge, "up"]);
        let addr = format!("198.19.{}.{}/24", self.prefix, 10 + k);
        sh(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        for (name, mac) in links {
            // This kernel has no dummy module; a veth pair is an Ethernet device macvlan accepts.
            let peer = format!("{name}p");
            sh(&[
                "ip", "-n", &ns, "link", "add", name, "address", mac, "type", "veth", "peer",
                "name", &peer,
            ]);
            sh(&["ip", "-n", &ns, "link", "set", name, "up"]);
            sh(&["ip", "-n", &ns, "link", "set", &peer, "up"]);
        }
        let dir = self.tmp.path().join(format!("node{k}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        Node {
            ns,
            instance: instance.to_string(),
            ec2_url: self.endpoints.ec2.clone(),
            imds_url: self
                .endpoints
                .imds
                .get(instance)
                .unwrap_or_else(|| panic!("no IMDS for {instance} in the ready JSON"))
                .clone(),
            dir,
        }
    }

    /// An empty pod network namespace.
    pub fn pod(&mut self, name: &str) -> Pod {
        let ns = format!("aei-{}-{name}", self.id);
        sh(&["ip", "netns", "add", &ns]);
        self.pods.push(ns.clone());
        Pod {
            path: format!("/var/run/netns/{ns}"),
            ns,
        }
    }

    /// GET /_sim/state.
    pub fn state(&self) -> State {
        let (code, body) = http(&self.endpoints.ec2, "GET", "/_sim/state", None);
        assert_eq!(code, 200, "GET /_sim/state: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/_sim/state is not State JSON ({e}): {body}"))
    }

    pub fn eni(&self, id: &str) -> EniState {
        self.state()
            .enis
            .into_iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("no ENI {id} in /_sim/state"))
    }

    /// Every address (secondary IPv4 and IPv6) the ENI holds now.
    pub fn held(&self, eni: &str) -> Vec<IpAddr> {
        let e = self.eni(eni);
        e.private_ips
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(e.ipv6s.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }

    /// GET /_sim/calls.
    pub fn calls(&self) -> Calls {
        let (code, body) = http(&self.endpoints.ec2, "GET", "/_sim/calls", None);
        assert_eq!(code, 200, "GET /_sim/calls: {body}");
        serde_json::from_str(&body).expect("Calls JSON")
    }

    /// POST /_sim/unassign: someone else removes addresses from the ENI.
    pub fn unassign_out_of_band(&self, eni: &str, addrs: &[IpAddr]) {
        self.admin_post("/_sim/unassign", &json!({"eniId": eni, "addresses": addrs}));
    }

    /// POST /_sim/assign: someone else puts addresses on the ENI.
    pub fn assign_out_of_band(&self, eni: &str, addrs: &[IpAddr]) {
        self.admin_post("/_sim/assign", &json!({"eniId": eni, "addresses": addrs}));
    }

    /// POST /_sim/faults (replaces the faults).
    pub fn set_faults(&self, faults: Value) {
        self.admin_post("/_sim/faults", &faults);
    }

    fn admin_post(&self, path: &str, body: &Value) {
        let (code, text) = http(&self.endpoints.ec2, "POST", path, Some(&body.to_string()));
        assert!(
            (200..300).contains(&code),
            "POST {path} {body}: HTTP {code} {text}"
        );
    }

    /// Tears everything down and checks that nothing of this lab is left on the host.
    pub fn close(mut self) {
        self.cleanup();
        let netns = stdout_of(&["ip", "netns", "list"]);
        let links = stdout_of(&["ip", "-o", "link", "show"]);
        let ns_prefix = format!("aei-{}-", self.id);
        assert!(
            !netns.lines().any(|l| l.starts_with(&ns_prefix)),
            "namespaces left behind:\n{netns}"
        );
        for l in &self.host_links {
            assert!(
                !links.contains(&format!(": {l}:")) && !links.contains(&format!(": {l}@")),
                "link {l} left behind"
            );
        }
    }

    fn cleanup(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        for ns in self.pods.iter().rev() {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
        // Host-side veths first: deleting a namespace frees its veth peers only asynchronously.
        for l in self.host_links.iter().rev() {
            sh_quiet(&["ip", "link", "del", l]);
        }
        for ns in self.nodes.iter().rev() {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A pod's network namespace.
#[derive(Debug, Clone)]
pub struct Pod {
    pub ns: String,
    pub path: String,
}

impl Pod {
    /// Addresses on `ifname` inside the pod (what the real macvlan/ipvlan + IPAM configured).
    pub fn addresses(&self, ifname: &str) -> Vec<IpAddr> {
        stdout_of(&["ip", "-n", &self.ns, "-o", "addr", "show", "dev", ifname])
            .lines()
            .filter_map(|l| {
                let mut it = l
                    .split_whitespace()
                    .skip_while(|w| *w != "inet" && *w != "inet6");
                it.next()?;
                it.next()?.split('/').next()?.parse().ok()
            })
            .filter(|a: &IpAddr| !matches!(a, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80))
            .collect()
    }

    /// `ip -d -o link` of `ifname` in the pod: one line, kind and mode included.
    pub fn link_details(&self, ifname: &str) -> String {
        stdout_of(&[
            "ip", "-n", &self.ns, "-d", "-o", "link", "show", "dev", ifname,
        ])
        .trim()
        .to_string()
    }

    /// Asserts that `ifname` is a link of the kind and mode under test; returns its description.
    pub fn expect_link(&self, ifname: &str) -> String {
        let want = PodLink::under_test();
        let line = self.link_details(ifname);
        let words: Vec<&str> = line.split_whitespace().collect();
        // The kind is followed by its mode in the details: `ipvlan  mode l2 bridge …`.
        let got = words
            .windows(3)
            .find(|w| matches!(w[0], "macvlan" | "ipvlan") && w[1] == "mode")
            .map(|w| (w[0], w[2]));
        assert_eq!(
            got,
            Some((want.plugin_type(), want.mode())),
            "pod {} {ifname} should be {} mode {}; ip -d link shows: {line}",
            self.ns,
            want.plugin_type(),
            want.mode()
        );
        format!("{} mode {}: {line}", want.plugin_type(), want.mode())
    }
}

/// A node namespace: where the runtime (driver) and the plugin run.
#[derive(Debug, Clone)]
pub struct Node {
    pub ns: String,
    pub instance: String,
    pub ec2_url: String,
    pub imds_url: String,
    pub dir: PathBuf,
}

pub const IFNAME: &str = "net1";

impl Node {
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("aws-eni-ip.log")
    }
    fn cache_dir(&self) -> PathBuf {
        self.dir.join("cni-cache")
    }

    /// libcni's cached result of one attachment (what DEL and CHECK use as prevResult).
    pub fn cache_file(&self, network: &str, container: &str) -> PathBuf {
        self.cache_dir()
            .join("results")
            .join(format!("{network}-{container}-{IFNAME}"))
    }

    /// The aws-eni-ip block: this node's IMDS, stateDir and logFile, plus `extra`. The EC2
    /// endpoint comes from the node's environment (`AWS_ENDPOINT_URL_EC2`): the simulator speaks
    /// plain HTTP off loopback, which the plugin refuses from a config.
    pub fn aws_eni_ip(&self, extra: Value) -> Value {
        let mut block = json!({
            "type": "aws-eni-ip",
            "imdsEndpoint": self.imds_url,
            "stateDir": self.state_dir(),
            "logFile": self.log_file(),
            "timeoutMs": scaled(Duration::from_secs(20)).as_millis() as u64,
        });
        for (k, v) in extra.as_object().expect("extra is an object") {
            block[k] = v.clone();
        }
        block
    }

    /// host-local IPAM with this node's data dir; `ranges` is host-local's `ranges` value.
    pub fn host_local(&self, ranges: Value) -> Value {
        json!({"type": "host-local", "dataDir": self.dir.join("ipam"), "ranges": ranges})
    }

    /// Writes a conflist and returns its path.
    pub fn conflist(&self, name: &str, version: &str, plugins: Vec<Value>) -> PathBuf {
        let path = self.dir.join(format!("{name}-{version}.conflist"));
        let list = json!({"cniVersion": version, "name": name, "plugins": plugins});
        std::fs::write(&path, serde_json::to_vec_pretty(&list).unwrap()).expect("write conflist");
        path
    }

    /// Runs `cni-driver <cmd>` inside this node's namespace, like a runtime on the node would.
    pub fn cni(
        &self,
        cmd: &str,
        list: &Path,
        container: Option<&str>,
        pod: Option<&Pod>,
        extra: &[&str],
    ) -> Outcome {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .arg(driver())
            .arg(cmd)
            .arg("--conflist")
            .arg(list)
            .arg("--cache-dir")
            .arg(self.cache_dir())
            .arg("--cni-path")
            .arg(format!("{CNI_BIN}:{}", plugin_dir().display()))
            .arg("--ifname")
            .arg(IFNAME)
            .arg("--timeout")
            .arg(format!("{}s", scaled(Duration::from_secs(60)).as_secs()))
            .args(extra)
            // Credentials must come from the simulated instance profile, never from this shell.
            .env("HOME", &self.dir);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        // This node's node-wide state (address locks, state dir list) is its own.
        c.env(aws_eni_ip::store::NODE_DIR_ENV, self.state_dir());
        c.env("AWS_ENDPOINT_URL_EC2", &self.ec2_url);
        if let Some(id) = container {
            c.arg("--container").arg(id);
        }
        if let Some(p) = pod {
            c.arg("--netns").arg(&p.path);
        }
        let out = c.output().expect("run the libcni driver");
        Outcome {
            what: format!("{cmd} {}", container.unwrap_or("")),
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// ADD; when it succeeds, the pod's link is checked to be the kind under test, and (in the VM,
    /// or with E2E_VERBOSE) the ADD's time and the link are printed on stderr, to see how much
    /// headroom the deadlines have.
    pub fn add(&self, list: &Path, container: &str, pod: &Pod) -> Outcome {
        let started = Instant::now();
        let out = self.cni("add", list, Some(container), Some(pod), &[]);
        if out.success {
            let took = started.elapsed().as_millis();
            let link = pod.expect_link(IFNAME);
            // The VM run shows its evidence; the host run stays quiet unless asked.
            if std::env::var_os("E2E_LINK").is_some() || std::env::var_os("E2E_VERBOSE").is_some() {
                let _ = writeln!(
                    std::io::stderr(),
                    "e2e: ADD {container} took {took} ms; pod {} {IFNAME} is {link}",
                    pod.ns
                );
            }
        }
        out
    }
    pub fn check(&self, list: &Path, container: &str, pod: &Pod) -> Outcome {
        self.cni("check", list, Some(container), Some(pod), &[])
    }
    pub fn del(&self, list: &Path, container: &str, pod: &Pod) -> Outcome {
        self.cni("del", list, Some(container), Some(pod), &[])
    }
    pub fn gc(&self, list: &Path, valid: &[&str]) -> Outcome {
        let valid: Vec<String> = valid.iter().map(|c| format!("{c}/{IFNAME}")).collect();
        self.cni("gc", list, None, None, &["--valid", &valid.join(",")])
    }
    pub fn status(&self, list: &Path) -> Outcome {
        self.cni("status", list, None, None, &[])
    }

    /// The plugin's log file, one entry per line.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Asserts the log grew by exactly one line, for `cmd`, and returns it.
    pub fn expect_one_log_line(&self, before: usize, cmd: &str) -> String {
        let lines = self.log_lines();
        assert_eq!(
            lines.len(),
            before + 1,
            "expected one log line for {cmd}, log is now:\n{}",
            lines.join("\n")
        );
        let last = lines.last().unwrap().clone();
        assert!(
            last.contains(&format!("cmd=\"{cmd}\"")),
            "log line is not for {cmd}: {last}"
        );
        last
    }
}

/// What the driver printed and how it exited.
#[derive(Debug)]
pub struct Outcome {
    what: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not JSON ({e}): {:?} / stderr {:?}",
                self.what, self.stdout, self.stderr
            )
        })
    }

    /// Asserts success; returns self for chaining.
    pub fn ok(self) -> Outcome {
        assert!(
            self.success,
            "{} failed:\nstdout: {}\nstderr: {}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    /// Asserts failure with this CNI error code; returns the error JSON.
    pub fn fails_with(&self, code: u64) -> Value {
        assert!(
            !self.success,
            "{} succeeded, expected code {code}: {}",
            self.what, self.stdout
        );
        let err = self.json();
        assert_eq!(
            err["code"].as_u64(),
            Some(code),
            "{}: wrong error code: {err}",
            self.what
        );
        err
    }

    /// The pod addresses of an ADD result (`ips[].address` without the prefix length).
    pub fn ips(&self) -> Vec<IpAddr> {
        self.json()["ips"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: result has no ips: {}", self.what, self.stdout))
            .iter()
            .map(|ip| {
                let a = ip["address"].as_str().expect("ips[].address");
                a.split('/').next().unwrap().parse().expect("an IP address")
            })
            .collect()
    }
}

/// A tiny HTTP/1.1 client for the simulator's admin API (no extra dev-dependency).
pub fn http(base: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_as(base, method, path, "application/json", "", body)
}

/// An EC2 Query API call, as the SDK sends one (the simulator checks that a SigV4 header is
/// there, not the signature).
pub fn ec2_query(base: &str, params: &[(&str, &str)]) -> (u16, String) {
    let body: Vec<String> = [("Version", "2016-11-15")]
        .iter()
        .chain(params)
        .map(|(k, v)| format!("{k}={}", v.replace('/', "%2F").replace(':', "%3A")))
        .collect();
    let auth = "Authorization: AWS4-HMAC-SHA256 Credential=AKIDE2E/20260101/us-west-2/ec2/aws4_request, SignedHeaders=host, Signature=00\r\n";
    http_as(
        base,
        "POST",
        "/",
        "application/x-www-form-urlencoded",
        auth,
        Some(&body.join("&")),
    )
}

fn http_as(
    base: &str,
    method: &str,
    path: &str,
    content_type: &str,
    extra_headers: &str,
    body: Option<&str>,
) -> (u16, String) {
    let host = base
        .strip_prefix("http://")
        .expect("http URL")
        .trim_end_matches('/');
    let addr: std::net::SocketAddr = host.parse().expect("host:port");
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to ec2-sim");
    s.set_read_timeout(Some(scaled(Duration::from_secs(30))))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: {content_type}\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (code, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
