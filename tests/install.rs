//! Black-box tests of `aws-eni-ip install`, run as the DaemonSet runs it: the real binary, a real
//! directory, real signals. Also checks that install/ (DaemonSet, IAM policy) says what the README
//! says it does.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aws-eni-ip");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn install_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("install").args(args).env_remove("CNI_COMMAND");
    cmd
}

fn install(args: &[&str]) -> Output {
    install_cmd(args).output().expect("run aws-eni-ip install")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}

fn binary_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| fs::read(BIN).unwrap())
}

fn same_as_binary(path: &Path) -> bool {
    // Size first: the debug binary is large and the --keep test polls.
    let expected = binary_bytes();
    fs::metadata(path).is_ok_and(|m| m.len() == expected.len() as u64)
        && fs::read(path).is_ok_and(|installed| installed == expected)
}

/// A stand-in plugin binary: a script that answers `version` like aws-eni-ip would (or not).
fn fake_binary(dir: &Path, first_line: &str) -> PathBuf {
    let path = dir.join(format!("fake-{}", first_line.len()));
    fs::write(
        &path,
        format!("#!/bin/sh\necho '{first_line}'\necho 'CNI spec versions: 1.0.0'\n"),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn installs_into_an_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = install(&["--cni-bin-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let installed = dir.path().join("aws-eni-ip");
    let meta = fs::metadata(&installed).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o755);
    assert!(same_as_binary(&installed));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("installed "), "{stdout}");
    assert!(stdout.contains(installed.to_str().unwrap()), "{stdout}");
    assert!(
        stdout.contains(&format!("{} bytes", meta.len())),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(dir_names(dir.path()), ["aws-eni-ip"]);
}

#[test]
fn second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().to_str().unwrap();
    assert!(install(&["--cni-bin-dir", bin_dir]).status.success());
    let installed = dir.path().join("aws-eni-ip");
    let before = fs::metadata(&installed).unwrap();

    let out = install(&["--cni-bin-dir", bin_dir]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = fs::metadata(&installed).unwrap();
    assert_eq!(after.ino(), before.ino());
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    assert_eq!(
        (after.ctime(), after.ctime_nsec()),
        (before.ctime(), before.ctime_nsec())
    );
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("up to date: "), "{stdout}");
    assert!(stdout.contains("nothing written"), "{stdout}");
    assert_eq!(dir_names(dir.path()), ["aws-eni-ip"]);
}

#[test]
fn replaced_content_is_reinstalled() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("aws-eni-ip");
    let bin_len = binary_bytes().len();
    // Same size, different bytes: only a content comparison catches it.
    fs::write(&installed, vec![b'x'; bin_len]).unwrap();
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o755)).unwrap();

    let out = install(&["--cni-bin-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("installed "));
    assert!(same_as_binary(&installed));
    assert_eq!(dir_names(dir.path()), ["aws-eni-ip"]);
}

#[test]
fn wrong_mode_is_reinstalled() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("aws-eni-ip");
    fs::copy(BIN, &installed).unwrap();
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o644)).unwrap();

    let out = install(&["--cni-bin-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("installed "));
    assert_eq!(fs::metadata(&installed).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn name_and_source_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let source = fake_binary(
        src_dir.path(),
        &format!("aws-eni-ip {}", aws_eni_ip::VERSION),
    );
    let out = install(&[
        "--cni-bin-dir",
        dir.path().to_str().unwrap(),
        "--name",
        "eni-ip",
        "--source",
        source.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fs::read(dir.path().join("eni-ip")).unwrap(),
        fs::read(&source).unwrap()
    );
    assert_eq!(dir_names(dir.path()), ["eni-ip"]);
}

#[test]
fn failed_version_check_replaces_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().to_str().unwrap();
    assert!(install(&["--cni-bin-dir", bin_dir]).status.success());

    let wrong = fake_binary(src_dir.path(), "aws-eni-ip 0.0.0-not-this-one");
    let out = install(&[
        "--cni-bin-dir",
        bin_dir,
        "--source",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("0.0.0-not-this-one"), "{stderr}");
    assert!(stderr.contains("nothing was replaced"), "{stderr}");
    assert!(same_as_binary(&dir.path().join("aws-eni-ip")));
    assert_eq!(dir_names(dir.path()), ["aws-eni-ip"]);
}

#[test]
fn missing_bin_dir_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let out = install(&["--cni-bin-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("--cni-bin-dir"), "{stderr}");
}

#[test]
fn missing_source_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = install(&[
        "--cni-bin-dir",
        dir.path().to_str().unwrap(),
        "--source",
        "/nonexistent/aws-eni-ip",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/aws-eni-ip"));
    assert!(dir_names(dir.path()).is_empty());
}

#[test]
fn stale_temp_files_from_a_dead_installer_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join(".aws-eni-ip.tmp-1-1");
    fs::write(&stale, b"half a binary").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = dir.path().join(".aws-eni-ip.tmp-2-2");
    fs::write(&fresh, b"another installer's, in progress").unwrap();

    let out = install(&["--cni-bin-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(dir_names(dir.path()), [".aws-eni-ip.tmp-2-2", "aws-eni-ip"]);
}

#[test]
fn bad_args_exit_2_with_usage() {
    for bad in [
        &["--bogus"][..],
        &["--cni-bin-dir"],
        &["--name", "a/b"],
        &["--keep", "--interval", "soon"],
        &["--keep", "--interval", "0"],
        &["--interval", "1"],
    ] {
        let out = install(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("usage: aws-eni-ip install"),
            "{bad:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{bad:?}: {stderr}");
    }
    let help = install(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--cni-bin-dir"));
}

struct Keeper(Child);

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stop_keeper(mut keeper: Keeper, signal: Signal) -> (Option<i32>, String) {
    kill(Pid::from_raw(keeper.0.id() as i32), signal).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = keeper.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after {signal}"
        );
        sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    keeper
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    (status.code(), stdout)
}

#[test]
fn keep_reinstalls_after_removal_and_corruption_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("aws-eni-ip");
    let keeper = Keeper(
        install_cmd(&[
            "--cni-bin-dir",
            dir.path().to_str().unwrap(),
            "--keep",
            "--interval",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap(),
    );
    let timeout = Duration::from_secs(20);
    wait_until("first install", timeout, || same_as_binary(&installed));

    fs::remove_file(&installed).unwrap();
    wait_until("re-install after removal", timeout, || {
        same_as_binary(&installed)
    });

    // Corrupt in place, as a careless `cp` over the file would.
    fs::write(&installed, b"#!/bin/sh\nexit 1\n").unwrap();
    wait_until("re-install after corruption", timeout, || {
        same_as_binary(&installed)
    });

    let (code, stdout) = stop_keeper(keeper, Signal::SIGTERM);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("it was removed"), "{stdout}");
    assert!(stdout.contains("it was changed"), "{stdout}");
    assert!(stdout.contains("SIGTERM"), "{stdout}");
    // Stopping the installer (a rollout, a node drain) never takes the plugin off the node.
    assert!(same_as_binary(&installed), "binary gone after SIGTERM");
    assert_eq!(dir_names(dir.path()), ["aws-eni-ip"]);
}

#[test]
fn keep_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("aws-eni-ip");
    let keeper = Keeper(
        install_cmd(&["--cni-bin-dir", dir.path().to_str().unwrap(), "--keep"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until("first install", Duration::from_secs(20), || {
        same_as_binary(&installed)
    });
    // The handler is in place before the first install, so a signal now is never fatal.
    let (code, stdout) = stop_keeper(keeper, Signal::SIGINT);
    assert_eq!(code, Some(0), "{stdout}");
}

fn yaml(path: &Path) -> Value {
    let raw = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn daemonset_runs_the_installer_with_least_privilege() {
    let ds = yaml(&Path::new(REPO).join("install/daemonset.yaml"));
    assert_eq!(ds["kind"], "DaemonSet");
    assert_eq!(ds["metadata"]["namespace"], "kube-system");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["automountServiceAccountToken"], false);
    // Every Linux EC2 node, no labels: an autoscaled node gets the plugin too.
    assert!(pod.get("nodeSelector").is_none(), "{pod:#}");
    let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(terms.as_array().map(Vec::len), Some(1), "{terms:#}");
    let expressions: Vec<(String, String, Vec<String>)> = terms[0]["matchExpressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let values = e["values"].as_array().unwrap();
            (
                e["key"].as_str().unwrap().to_string(),
                e["operator"].as_str().unwrap().to_string(),
                values
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        expressions,
        [
            ("kubernetes.io/os".into(), "In".into(), strings(&["linux"])),
            (
                "kubernetes.io/arch".into(),
                "In".into(),
                strings(&["amd64", "arm64"])
            ),
            (
                "eks.amazonaws.com/compute-type".into(),
                "NotIn".into(),
                strings(&["fargate", "hybrid"])
            ),
        ]
    );
    assert_eq!(pod["tolerations"][0]["operator"], "Exists");
    let strategy = &ds["spec"]["updateStrategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], "10%");

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "the installer and the agent");
    let c = &containers[0];
    assert_eq!(c["name"], "install");
    let argv: Vec<&str> = c["command"]
        .as_array()
        .into_iter()
        .chain(c["args"].as_array())
        .flatten()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        argv,
        [
            "/aws-eni-ip",
            "install",
            "--cni-bin-dir",
            "/host/opt/cni/bin",
            "--keep"
        ]
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(sc["runAsUser"], 0);
    assert_eq!(c["resources"]["requests"]["cpu"], "10m");
    assert_eq!(c["resources"]["requests"]["memory"], "16Mi");
    assert_eq!(c["resources"]["limits"]["memory"], "64Mi");

    // The installer mounts only the bin dir; the state dir and the log file are the plugin's.
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0]["mountPath"], "/host/opt/cni/bin");
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &Value| {
        volumes
            .iter()
            .find(|v| v["name"] == *name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    assert_eq!(
        volume(&mounts[0]["name"])["hostPath"]["path"],
        "/opt/cni/bin"
    );
}

#[test]
fn daemonset_runs_the_agent_with_only_the_privileges_it_uses() {
    let ds = yaml(&Path::new(REPO).join("install/daemonset.yaml"));
    let pod = &ds["spec"]["template"]["spec"];
    // IMDSv2 with hop limit 1 answers the host's network namespace only.
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "no Kubernetes API"
    );
    let c = &pod["containers"][1];
    assert_eq!(c["name"], "agent");
    let argv: Vec<&str> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&argv[..2], ["/aws-eni-ip", "agent"]);
    let flags: Vec<String> = argv[2..].iter().map(|s| s.to_string()).collect();
    let parsed = aws_eni_ip::cli::agent::parse(&flags)
        .unwrap_or_else(|e| panic!("the DaemonSet's flags: {e}"))
        .unwrap();
    assert_eq!(parsed.metrics_bind.port(), 61690);
    assert_eq!(c["ports"][0]["containerPort"], 61690);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["SYS_ADMIN", "NET_ADMIN"]),
        "setns into pod netns, ENI links up, nothing else"
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let host_path = |mount: &Value| {
        volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .map(|v| v["hostPath"]["path"].as_str().unwrap().to_string())
            .unwrap()
    };
    let mounts: Vec<(String, String, bool)> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                host_path(m),
                m["readOnly"] == true,
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("/var/lib/cni".into(), "/var/lib/cni".into(), false),
            // The socket's directory: a runtime restart replaces the socket file.
            ("/run/containerd".into(), "/run/containerd".into(), true),
            ("/var/run/netns".into(), "/var/run/netns".into(), true),
        ]
    );
}

#[test]
fn chart_image_tag_and_binary_take_the_one_cargo_version() {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(aws_eni_ip::VERSION, version);
    let stale = "differs from Cargo.toml's version: run make manifests";
    let chart = yaml(&Path::new(REPO).join("charts/aws-eni-ip/Chart.yaml"));
    assert_eq!(chart["version"], version, "Chart.yaml version {stale}");
    assert_eq!(
        chart["appVersion"], version,
        "Chart.yaml appVersion {stale}"
    );
    // An empty tag is the appVersion: no second copy of the version in values.yaml.
    let values = yaml(&Path::new(REPO).join("charts/aws-eni-ip/values.yaml"));
    assert_eq!(values["image"]["tag"], "", "values.yaml image.tag");
    let ds = yaml(&Path::new(REPO).join("install/daemonset.yaml"));
    for c in ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
    {
        let image = c["image"].as_str().unwrap();
        assert!(
            image.ends_with(&format!(":{version}")),
            "install/daemonset.yaml {}: image {image} {stale}",
            c["name"]
        );
    }
}

#[test]
fn iam_policies_grant_only_what_the_plugin_calls_in_every_partition() {
    for file in ["install/iam-policy.json", "install/iam-policy-subnet.json"] {
        check_policy(file);
    }
}

fn check_policy(file: &str) {
    let raw = fs::read_to_string(Path::new(REPO).join(file)).unwrap();
    let policy: Value = serde_json::from_str(&raw).unwrap();
    assert!(
        !raw.contains("arn:aws:"),
        "{file}: an ARN pinned to one partition"
    );
    assert_eq!(policy["Version"], "2012-10-17");
    let mut actions: Vec<&str> = Vec::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow");
        let these: Vec<&str> = statement["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        if these.iter().all(|a| a.starts_with("ec2:Describe")) {
            assert_eq!(statement["Resource"], "*");
            assert!(statement.get("Condition").is_none());
        } else {
            assert_eq!(statement["Resource"], "arn:*:ec2:*:*:network-interface/*");
            assert_eq!(
                statement["Condition"]["StringEquals"]
                    ["ec2:ResourceTag/node.k8s.amazonaws.com/no_manage"],
                "true",
                "{file}"
            );
            let subnets = &statement["Condition"]["ArnLike"]["ec2:Subnet"];
            if file.ends_with("-subnet.json") {
                let subnets = subnets.as_array().expect("ec2:Subnet list");
                assert!(!subnets.is_empty());
                for subnet in subnets {
                    let arn = subnet.as_str().unwrap();
                    assert!(arn.starts_with("arn:*:ec2:*:*:subnet/subnet-"), "{arn}");
                }
            } else {
                assert!(
                    subnets.is_null(),
                    "{file}: no subnet pin in the default policy"
                );
            }
        }
        actions.extend(these);
    }
    actions.sort();
    assert_eq!(
        actions,
        [
            "ec2:AssignIpv6Addresses",
            "ec2:AssignPrivateIpAddresses",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeNetworkInterfaces",
            "ec2:UnassignIpv6Addresses",
            "ec2:UnassignPrivateIpAddresses",
        ]
    );
}
