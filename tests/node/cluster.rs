//! The running node in a box (scripts/node/up.sh), as the scenarios see it: kubectl and crictl
//! against it, ec2-sim's view of the ENI, the plugin's records, the "VPC" side of the ENI's link.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

#[path = "../e2e/harness.rs"]
#[allow(unused_imports)]
mod harness;

/// The env file up.sh writes; `make e2e-node` points `AEI_NODE_ENV` at it.
pub struct Cluster {
    env: BTreeMap<String, String>,
}

/// One scenario at a time: they share the node and its ENI.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    pub fn from_env() -> Cluster {
        let path = std::env::var("AEI_NODE_ENV").unwrap_or_else(|_| {
            panic!(
                "AEI_NODE_ENV is not set: these scenarios need the node in a box; run `make e2e-node` \
                 (it builds the components, runs scripts/node/up.sh, sets AEI_NODE_ENV and runs down.sh)"
            )
        });
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}: is the node up (scripts/node/up.sh)?"));
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Cluster { env }
    }

    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from AEI_NODE_ENV's file"))
    }

    pub fn eni(&self) -> &str {
        self.get("AEI_NODE_ENI")
    }

    /// kubectl with the admin kubeconfig; panics with its stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_in(args, None)
    }

    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.try_kubectl(args, stdin);
        assert!(ok, "kubectl {}: {err}", args.join(" "));
        out
    }

    pub fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new(self.get("AEI_NODE_KUBECTL"))
            .env("KUBECONFIG", self.get("KUBECONFIG"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).expect("kubectl JSON")
    }

    pub fn crictl(&self, args: &[&str]) -> String {
        let out = Command::new(self.get("AEI_NODE_CRICTL"))
            .args([
                "--runtime-endpoint",
                "unix:///run/containerd/containerd.sock",
            ])
            .args(args)
            .output()
            .expect("run crictl");
        assert!(
            out.status.success(),
            "crictl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A pod on the ENI network (Multus annotation), running the busybox image.
    pub fn pod_manifest(&self, name: &str, labels: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels,
                         "annotations": {"k8s.v1.cni.cncf.io/networks": self.get("AEI_NODE_NAD")}},
            "spec": self.pod_spec(),
        })
    }

    pub fn pod_spec(&self) -> Value {
        json!({
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "containers": [{"name": "main", "image": self.get("AEI_NODE_BUSYBOX"),
                            "imagePullPolicy": "Never"}],
        })
    }

    pub fn create_pod(&self, name: &str) {
        let pod = self.pod_manifest(name, json!({"aei-node-test": name}));
        self.kubectl_in(&["apply", "-f", "-"], Some(&pod.to_string()));
    }

    /// A pod that may change its own addresses, as keepalived's pods may (NET_ADMIN).
    pub fn create_net_admin_pod(&self, name: &str) {
        let mut pod = self.pod_manifest(name, json!({"aei-node-test": name}));
        pod["spec"]["containers"][0]["securityContext"] =
            json!({"capabilities": {"add": ["NET_ADMIN"]}});
        self.kubectl_in(&["apply", "-f", "-"], Some(&pod.to_string()));
    }

    pub fn wait_ready(&self, selector: &str, count: usize, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let pods = self.json(&["get", "pods", "-n", "default", "-l", selector]);
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let ready = items.iter().filter(|p| is_ready(p)).count();
            if items.len() == count && ready == count {
                return;
            }
            if Instant::now() > end {
                panic!(
                    "{ready}/{count} pods of {selector} ready after {within:?}; events:\n{}",
                    self.events_of_failures()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn delete_pod(&self, name: &str) {
        self.kubectl(&[
            "delete",
            "pod",
            "-n",
            "default",
            name,
            "--wait=true",
            "--timeout=120s",
        ]);
    }

    /// The pod's addresses on the ENI network, from Multus's network-status annotation.
    pub fn multus_ips(&self, pod: &str) -> Vec<IpAddr> {
        let p = self.json(&["get", "pod", "-n", "default", pod]);
        let status = p["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
            .as_str()
            .unwrap_or_else(|| panic!("pod {pod} has no network-status annotation: {p}"));
        let list: Value = serde_json::from_str(status).expect("network-status JSON");
        let want = format!("default/{}", self.get("AEI_NODE_NAD"));
        list.as_array()
            .unwrap()
            .iter()
            .filter(|n| n["name"] == want)
            .flat_map(|n| n["ips"].as_array().cloned().unwrap_or_default())
            .map(|ip| ip.as_str().unwrap().parse().unwrap())
            .collect()
    }

    /// The pod's sandbox id: the CNI_CONTAINERID that Multus gave the chain.
    pub fn sandbox_of(&self, pod: &str) -> String {
        let uid = self.json(&["get", "pod", "-n", "default", pod])["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        let ids = self.crictl(&[
            "pods",
            "-q",
            "--state",
            "ready",
            "--label",
            &format!("io.kubernetes.pod.uid={uid}"),
        ]);
        ids.lines()
            .next()
            .unwrap_or_else(|| panic!("no ready sandbox for pod {pod}"))
            .to_string()
    }

    /// Secondary IPv4 addresses of the node's Multus ENI, as EC2 (ec2-sim) holds them.
    pub fn held(&self) -> BTreeSet<IpAddr> {
        let (code, body) = harness::http(self.get("AEI_NODE_EC2"), "GET", "/_sim/state", None);
        assert_eq!(code, 200, "GET /_sim/state: {body}");
        let state: Value = serde_json::from_str(&body).unwrap();
        let eni = state["enis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == self.eni())
            .unwrap_or_else(|| panic!("no ENI {} in ec2-sim", self.eni()))
            .clone();
        let mut held = BTreeSet::new();
        for key in ["privateIps", "private_ips"] {
            for a in eni[key].as_array().cloned().unwrap_or_default() {
                held.insert(a.as_str().unwrap().parse().unwrap());
            }
        }
        held
    }

    /// Sets ec2-sim's faults (its `/_sim/faults` JSON); `{}` clears them.
    pub fn set_faults(&self, faults: Value) {
        let body = faults.to_string();
        let (code, answer) = harness::http(
            self.get("AEI_NODE_EC2"),
            "POST",
            "/_sim/faults",
            Some(&body),
        );
        assert!(
            (200..300).contains(&code),
            "POST /_sim/faults {body}: {code} {answer}"
        );
    }

    /// EC2 calls ec2-sim has served, by action.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        let (code, body) = harness::http(self.get("AEI_NODE_EC2"), "GET", "/_sim/calls", None);
        assert_eq!(code, 200, "GET /_sim/calls: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["ec2"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until the ENI holds exactly `want` (or `within` passes; then panics with both).
    pub fn wait_held(&self, want: &BTreeSet<IpAddr>, within: Duration, why: &str) {
        let end = Instant::now() + within;
        loop {
            let held = self.held();
            if &held == want {
                return;
            }
            if Instant::now() > end {
                panic!(
                    "{why}: after {within:?} ENI {} holds {held:?}, expected {want:?}\nrecords:\n{}",
                    self.eni(),
                    self.records()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `aws-eni-ip state` on the host: the plugin's records (the copy the DaemonSet installed).
    pub fn records(&self) -> String {
        let out = Command::new("/opt/cni/bin/aws-eni-ip")
            .arg("state")
            .output()
            .expect("run /opt/cni/bin/aws-eni-ip state");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Whether the "VPC" side of the ENI's link reaches `addr` (one ping).
    pub fn answers(&self, addr: IpAddr) -> bool {
        Command::new("ip")
            .args(["netns", "exec", self.get("AEI_NODE_VPC_NETNS")])
            // Debian's static busybox (make e2e-node installs it): the host may have no iputils.
            .args([
                "/bin/busybox",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &addr.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Every Warning event whose message mentions a CNI failure, one line each.
    pub fn events_of_failures(&self) -> String {
        let ev = self.json(&["get", "events", "-A", "--field-selector", "type=Warning"]);
        ev["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                format!(
                    "{} {}/{}: {}",
                    e["reason"].as_str().unwrap_or(""),
                    e["involvedObject"]["namespace"].as_str().unwrap_or(""),
                    e["involvedObject"]["name"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The plugin's log on the host (the NAD names no logFile: the default).
    pub fn plugin_log(&self) -> String {
        std::fs::read_to_string("/var/log/aws-eni-ip.log").unwrap_or_default()
    }
}

impl Cluster {
    /// Deletes the pod so that its DEL never reaches aws-eni-ip: Multus's cache of the attachment
    /// and the NAD are removed first, so Multus cannot find the chain (the shim logs the failure
    /// and returns success). The NAD is put back afterwards. Panics if the DEL reached the plugin.
    pub fn lose_del_and_delete(&self, pod: &str) {
        let sandbox = self.sandbox_of(pod);
        let nad_name = self.get("AEI_NODE_NAD");
        let _ = std::fs::remove_file(format!("/var/lib/cni/multus/{sandbox}"));
        let nad: Value = serde_json::from_str(&self.kubectl(&[
            "get",
            "net-attach-def",
            "-n",
            "default",
            nad_name,
            "-o",
            "json",
        ]))
        .unwrap();
        self.kubectl(&["delete", "net-attach-def", "-n", "default", nad_name]);
        self.delete_pod(pod);
        let fresh = json!({"apiVersion": nad["apiVersion"], "kind": nad["kind"],
            "metadata": {"name": nad_name, "namespace": "default"}, "spec": nad["spec"]});
        self.kubectl_in(&["create", "-f", "-"], Some(&fresh.to_string()));
        let del_seen = self
            .plugin_log()
            .lines()
            .any(|l| l.contains("cmd=\"DEL\"") && l.contains(&sandbox[..12]));
        assert!(
            !del_seen,
            "the DEL of {pod} ({sandbox}) reached the plugin: the scenario did not lose it"
        );
    }

    /// scripts/node/ctl.sh ACTION on the node's host.
    pub fn ctl(&self, action: &str) {
        let out = Command::new("bash")
            .arg(self.get("AEI_NODE_CTL"))
            .arg(action)
            .output()
            .expect("run ctl.sh");
        assert!(
            out.status.success(),
            "ctl.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The agent's /readyz on the node (hostNetwork, port 61690): status code and body.
    pub fn readyz(&self) -> (u16, String) {
        match std::net::TcpStream::connect_timeout(
            &"127.0.0.1:61690".parse().unwrap(),
            Duration::from_secs(2),
        ) {
            Ok(_) => harness::http("http://127.0.0.1:61690", "GET", "/readyz", None),
            Err(e) => (0, format!("connect 127.0.0.1:61690: {e}")),
        }
    }

    /// Polls /readyz until `want(code)`; the body then, or None after `within`.
    pub fn wait_readyz(&self, want: impl Fn(u16) -> bool, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let (code, body) = self.readyz();
            if want(code) {
                return Some(body);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        None
    }

    pub fn link_is_up(&self, link: &str) -> bool {
        let out = Command::new("ip")
            .args(["-o", "link", "show", link])
            .output()
            .expect("ip link show");
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains(",UP") || text.contains("<UP")
    }
}

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}
