//! The Helm chart (charts/aws-eni-ip) rendered by the pinned helm that scripts/tools/helm.sh builds:
//! its default rendering is install/daemonset.yaml, each value lands where the agent and the
//! kubelet read it, and values that cannot work are refused with the key to change.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{json, Value};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = "charts/aws-eni-ip";

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new("bash")
            .arg(Path::new(REPO).join("scripts/tools/helm.sh"))
            .output()
            .expect("run scripts/tools/helm.sh");
        assert!(
            out.status.success(),
            "scripts/tools/helm.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// `helm template` with VALUES (YAML) over the defaults: each document, or helm's error text.
fn render(values: &str) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    fs::write(&file, values).unwrap();
    let out = Command::new(helm())
        .current_dir(REPO)
        .args([
            "template",
            "aws-eni-ip",
            CHART,
            "--namespace",
            "kube-system",
        ])
        .arg("--values")
        .arg(&file)
        .output()
        .expect("run helm template");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Ok(serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect())
}

fn rendered(values: &str) -> Vec<Value> {
    render(values).unwrap_or_else(|e| panic!("helm template with {values:?}: {e}"))
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:#?}"))
}

fn daemonset(values: &str) -> Value {
    kind(&rendered(values), "DaemonSet").clone()
}

fn container<'a>(ds: &'a Value, name: &str) -> &'a Value {
    ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn argv(c: &Value) -> Vec<String> {
    c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().expect("argv entries are strings").to_string())
        .collect()
}

fn mount_paths(c: &Value) -> Vec<(String, String)> {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["mountPath"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn host_path(ds: &Value, volume: &str) -> Value {
    ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == volume)
        .unwrap_or_else(|| panic!("no volume {volume}"))["hostPath"]
        .clone()
}

fn refused(values: &str) -> String {
    match render(values) {
        Ok(docs) => panic!("helm rendered {values:?}, expected a refusal: {docs:#?}"),
        Err(e) => e,
    }
}

#[test]
fn default_rendering_is_the_checked_in_daemonset() {
    let docs = rendered("");
    assert_eq!(
        docs.len(),
        1,
        "the DaemonSet only, no ServiceAccount: {docs:#?}"
    );
    let raw = fs::read_to_string(Path::new(REPO).join("install/daemonset.yaml")).unwrap();
    let checked_in: Value = serde_yaml_ng::from_str(&raw).unwrap();
    assert!(
        docs[0] == checked_in,
        "install/daemonset.yaml differs from the chart's default rendering: run make manifests"
    );
}

#[test]
fn image_tag_defaults_to_the_binary_version_and_can_be_pinned() {
    let ds = daemonset("");
    for name in ["install", "agent"] {
        assert_eq!(
            container(&ds, name)["image"],
            format!("REGISTRY/aws-eni-ip:{}", aws_eni_ip::VERSION)
        );
        assert!(container(&ds, name).get("imagePullPolicy").is_none());
    }
    let ds = daemonset(
        "image: {repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/aws-eni-ip, tag: 0.1.0-rc1, pullPolicy: Always}",
    );
    for name in ["install", "agent"] {
        let c = container(&ds, name);
        assert_eq!(
            c["image"],
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/aws-eni-ip:0.1.0-rc1"
        );
        assert_eq!(c["imagePullPolicy"], "Always");
    }
}

#[test]
fn irsa_gives_the_role_to_the_agent_only_and_mounts_no_api_token() {
    let docs = rendered(
        "serviceAccount: {create: true, roleArn: 'arn:aws:iam::123456789012:role/aws-eni-ip-agent'}",
    );
    let sa = kind(&docs, "ServiceAccount");
    assert_eq!(sa["metadata"]["name"], "aws-eni-ip");
    assert_eq!(sa["metadata"]["namespace"], "kube-system");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/aws-eni-ip-agent"
    );
    assert_eq!(sa["automountServiceAccountToken"], false);
    let ds = kind(&docs, "DaemonSet");
    let template = &ds["spec"]["template"];
    assert_eq!(template["spec"]["serviceAccountName"], "aws-eni-ip");
    // The webhook projects its own token; the Kubernetes API's stays out of the pod.
    assert_eq!(template["spec"]["automountServiceAccountToken"], false);
    // The installer makes no AWS call: the pod identity webhook leaves it without credentials.
    assert_eq!(
        template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"],
        "install"
    );
}

#[test]
fn an_existing_service_account_is_named_without_creating_one() {
    let docs = rendered("serviceAccount: {name: my-irsa-sa}");
    assert!(
        docs.iter().all(|d| d["kind"] != "ServiceAccount"),
        "{docs:#?}"
    );
    let ds = kind(&docs, "DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["serviceAccountName"],
        "my-irsa-sa"
    );
    let default = daemonset("");
    let pod = &default["spec"]["template"];
    assert!(pod["spec"].get("serviceAccountName").is_none());
    assert!(pod["metadata"]["annotations"]
        .get("eks.amazonaws.com/skip-containers")
        .is_none());
}

#[test]
fn a_role_arn_without_a_service_account_to_carry_it_is_refused() {
    let err = refused("serviceAccount: {roleArn: 'arn:aws:iam::123456789012:role/x'}");
    assert!(err.contains("serviceAccount.create=true"), "{err}");
    assert!(err.contains("serviceAccount.name"), "{err}");
}

#[test]
fn node_rate_reaches_the_agent_only_when_set() {
    let flag = "--node-ec2-rate".to_string();
    assert!(!argv(container(&daemonset(""), "agent")).contains(&flag));
    for (values, expected) in [
        ("ec2: {nodeRate: 0.5}", "0.5"),
        ("ec2: {nodeRate: 2}", "2"),
        ("ec2: {nodeRate: '0.25'}", "0.25"),
    ] {
        let args = argv(container(&daemonset(values), "agent"));
        let at = args
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("{values}: {args:?}"));
        assert_eq!(args[at + 1], expected, "{values}: {args:?}");
        assert!(!argv(container(&daemonset(values), "install")).contains(&flag));
    }
}

#[test]
fn agent_flags_and_metrics_port_land_in_the_command_ports_and_probes() {
    let ds = daemonset(
        "agent: {interval: 30, grace: 90, metricsBind: '::', metricsPort: 61700, extraArgs: [--log-level, debug]}",
    );
    let agent = container(&ds, "agent");
    let args = argv(agent);
    assert_eq!(&args[..2], ["/aws-eni-ip", "agent"]);
    let parsed = aws_eni_ip::cli::agent::parse(&args[2..])
        .unwrap_or_else(|e| panic!("the chart's agent flags: {e}"))
        .unwrap();
    assert_eq!(parsed.metrics_bind.to_string(), "[::]:61700");
    for (flag, value) in [
        ("--interval", "30"),
        ("--grace", "90"),
        ("--log-level", "debug"),
    ] {
        let at = args.iter().position(|a| a == flag).unwrap();
        assert_eq!(args[at + 1], value, "{args:?}");
    }
    assert_eq!(agent["ports"][0]["containerPort"], 61700);
    assert_eq!(agent["ports"][0]["hostPort"], 61700);
    assert_eq!(agent["livenessProbe"]["httpGet"]["port"], 61700);
    assert_eq!(agent["readinessProbe"]["httpGet"]["port"], 61700);
}

#[test]
fn cri_o_socket_directory_is_mounted_where_the_agent_looks() {
    let ds = daemonset("runtime: {endpoint: /var/run/crio/crio.sock, socketDir: ''}");
    let agent = container(&ds, "agent");
    let args = argv(agent);
    let parsed = aws_eni_ip::cli::agent::parse(&args[2..]).unwrap().unwrap();
    assert_eq!(
        parsed.runtime_endpoint.as_deref(),
        Some(Path::new("/var/run/crio/crio.sock"))
    );
    assert!(mount_paths(agent).contains(&("runtime-socket-dir".into(), "/var/run/crio".into())));
    assert_eq!(
        host_path(&ds, "runtime-socket-dir"),
        json!({"path": "/var/run/crio", "type": "Directory"})
    );
}

#[test]
fn a_runtime_endpoint_outside_its_socket_directory_is_refused() {
    let err = refused("runtime: {endpoint: /var/run/crio/crio.sock}");
    assert!(err.contains("/var/run/crio/crio.sock"), "{err}");
    assert!(err.contains("runtime.socketDir"), "{err}");
}

#[test]
fn extra_volumes_are_mounted_into_the_agent_only() {
    let ds = daemonset(
        "extraVolumes: [{name: data-cni, hostPath: {path: /data/cni, type: DirectoryOrCreate}}]\n\
         extraVolumeMounts: [{name: data-cni, mountPath: /data/cni}]",
    );
    assert_eq!(
        host_path(&ds, "data-cni"),
        json!({"path": "/data/cni", "type": "DirectoryOrCreate"})
    );
    let agent = mount_paths(container(&ds, "agent"));
    assert_eq!(agent.last(), Some(&("data-cni".into(), "/data/cni".into())));
    assert_eq!(agent.len(), 4, "{agent:?}");
    assert_eq!(
        mount_paths(container(&ds, "install")),
        [("cni-bin-dir".to_string(), "/host/opt/cni/bin".to_string())]
    );
}

#[test]
fn node_selector_tolerations_and_priority_replace_the_defaults() {
    let ds = daemonset(
        "nodeSelector: {aws-eni-ip.io/enabled: 'true'}\n\
         tolerations: [{key: dedicated, operator: Equal, value: telco, effect: NoSchedule}]\n\
         priorityClassName: ''",
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["nodeSelector"],
        json!({"aws-eni-ip.io/enabled": "true"})
    );
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "dedicated", "operator": "Equal", "value": "telco", "effect": "NoSchedule"}])
    );
    assert!(pod.get("priorityClassName").is_none());
    // The affinity stays: every Linux EC2 node, among the selected ones.
    assert_eq!(
        pod["affinity"],
        daemonset("")["spec"]["template"]["spec"]["affinity"]
    );
}

#[test]
fn values_outside_the_schema_are_refused_naming_the_key() {
    for (values, key) in [
        ("agent: {metricsPort: 70000}", "metricsPort"),
        ("agnet: {interval: 30}", "agnet"),
        ("ec2: {nodeRate: fast}", "nodeRate"),
        ("ec2: {nodeRate: -1}", "nodeRate"),
        (
            "serviceAccount: {create: true, roleArn: aws-eni-ip-agent}",
            "roleArn",
        ),
        ("image: {pullPolicy: Sometimes}", "pullPolicy"),
    ] {
        let err = refused(values);
        assert!(err.contains(key), "{values}: {err}");
    }
}
