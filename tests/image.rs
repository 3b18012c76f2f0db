//! The DaemonSet's image, run as the DaemonSet runs it. `make image-test` (part of `make test`)
//! builds it from install/Dockerfile — FROM scratch, the static binary only — and podman runs its
//! installer against a temporary host directory with the DaemonSet's security context (root, no
//! capabilities, read-only root filesystem, no privilege escalation, no network). Proves that the
//! installed copy runs on this host (`version`), that an upgrade replaces the file atomically while
//! a plugin process is running from it, and that `--keep` re-installs a removed copy and stops on
//! SIGTERM (`podman stop`) with exit 0 and the binary left in place. Fails, never skips, when
//! podman or the image is missing.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The cargo-built (glibc, debug) binary: a different build of the same version, as an upgrade sees.
const BIN: &str = env!("CARGO_BIN_EXE_aws-eni-ip");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const DEFAULT_PODMAN: &str = "podman --runtime runc --cgroup-manager cgroupfs --storage-driver vfs";
const MOUNT: &str = "/host/opt/cni/bin";

fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

/// `make image-test`'s tag: one per checkout (the Makefile's `image-test$(subst /,-,$(CURDIR))`).
fn image() -> String {
    std::env::var("AEI_IMAGE")
        .unwrap_or_else(|_| format!("localhost/aws-eni-ip:image-test{}", REPO.replace('/', "-")))
}

/// The binary `make image-test` put into the image.
fn image_binary() -> PathBuf {
    std::env::var_os("AEI_IMAGE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(REPO).join(format!(
                "target/dist-image-test/linux/{}/aws-eni-ip",
                docker_arch()
            ))
        })
}

fn podman() -> Command {
    let line = std::env::var("AEI_PODMAN").unwrap_or_else(|_| DEFAULT_PODMAN.to_string());
    let mut words = line.split_whitespace();
    let mut cmd = Command::new(words.next().expect("AEI_PODMAN is empty"));
    cmd.args(words);
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; install podman (make deps does)"))
}

/// Container runs share podman's storage; one at a time keeps vfs copies and timings sane.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fails with what to run when the image is missing or stale.
fn require_image() {
    let out = run(podman().args(["image", "exists", &image()]));
    assert!(
        out.status.success(),
        "image {} not found in podman's storage: run `make image-test` (make test does)",
        image()
    );
    assert!(
        image_binary().is_file(),
        "{} missing: run `make image-test`",
        image_binary().display()
    );
}

/// `podman run` with the DaemonSet container's securityContext and its one hostPath mount.
fn ds_run(host_dir: &Path) -> Command {
    pod_run("none", format!("{}:{MOUNT}", host_dir.display()))
}

/// `podman run` as the DaemonSet runs a container: root, read-only, no capabilities, `volume`.
fn pod_run(network: &str, volume: String) -> Command {
    let mut cmd = podman();
    // This sandbox refuses to raise rlimits, and podman's defaults would: lower both explicitly.
    cmd.args([
        "run",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        "--network",
        network,
        "--user",
        "0:0",
        "--read-only",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "-v",
    ])
    .arg(volume)
    .args(["--entrypoint", "/aws-eni-ip"]);
    cmd
}

fn install_once(host_dir: &Path) -> Output {
    let out = run(ds_run(host_dir).args(["--rm", &image(), "install", "--cni-bin-dir", MOUNT]));
    assert!(
        out.status.success(),
        "installer failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn version_line(path: &Path) -> String {
    let out = run(Command::new(path).arg("version").env_remove("CNI_COMMAND"));
    assert!(out.status.success(), "{} version: {out:?}", path.display());
    text(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn same_as_image_binary(path: &Path) -> bool {
    let expected = fs::read(image_binary()).unwrap();
    fs::read(path).is_ok_and(|installed| installed == expected)
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_image_holds_only_the_static_binary_for_this_arch_and_a_ca_bundle() {
    let _serial = serial();
    require_image();
    let out = run(podman().args([
        "image",
        "inspect",
        "--format",
        "{{.Architecture}} {{len .RootFS.Layers}} {{.Config.User}} {{json .Config.Entrypoint}}",
        &image(),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "{} 2 65532:65532 [\"/aws-eni-ip\",\"install\",\"--keep\"]",
            docker_arch()
        )
    );
}

#[test]
fn the_image_installs_a_copy_that_runs_on_the_host() {
    let _serial = serial();
    require_image();
    let host = tempfile::tempdir().unwrap();
    let out = install_once(host.path());
    let installed = host.path().join("aws-eni-ip");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("installed {MOUNT}/aws-eni-ip (")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("version {}", aws_eni_ip::VERSION)),
        "{stdout}"
    );
    assert_eq!(fs::metadata(&installed).unwrap().mode() & 0o7777, 0o755);
    assert!(same_as_image_binary(&installed));
    assert_eq!(
        version_line(&installed),
        format!("aws-eni-ip {}", aws_eni_ip::VERSION)
    );
    assert_eq!(dir_names(host.path()), ["aws-eni-ip"]);

    // The DaemonSet restarts the pod now and then: a second pass writes nothing.
    let again = install_once(host.path());
    assert!(text(&again.stdout).starts_with("up to date: "));
}

#[test]
fn an_upgrade_replaces_the_file_atomically_while_a_plugin_runs_from_it() {
    let _serial = serial();
    require_image();
    let host = tempfile::tempdir().unwrap();
    let bin_dir = host.path().join("bin");
    fs::create_dir(&bin_dir).unwrap();
    let installed = bin_dir.join("aws-eni-ip");
    fs::copy(BIN, &installed).unwrap();
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o755)).unwrap();
    let old_bytes = fs::read(&installed).unwrap();
    let old_inode = fs::metadata(&installed).unwrap().ino();
    // A second name for the old inode: if the installer wrote in place, these bytes would change.
    let old_link = host.path().join("old-aws-eni-ip");
    fs::hard_link(&installed, &old_link).unwrap();

    // A plugin process mid-command, executing the installed file: it waits for its stdin.
    let mut plugin = Command::new(&installed)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let exe = PathBuf::from(format!("/proc/{}/exe", plugin.id()));
    wait_until("the plugin to run from the installed file", || {
        fs::metadata(&exe).is_ok_and(|m| m.ino() == old_inode)
    });

    let out = install_once(&bin_dir);
    assert!(text(&out.stdout).starts_with("installed "), "{out:?}");
    let new_meta = fs::metadata(&installed).unwrap();
    assert_ne!(new_meta.ino(), old_inode, "not a rename onto the old file");
    assert!(same_as_image_binary(&installed));
    assert_eq!(
        fs::read(&old_link).unwrap(),
        old_bytes,
        "old file was written"
    );
    assert_eq!(dir_names(&bin_dir), ["aws-eni-ip"], "temp file left behind");

    // The running plugin finishes its command from the old inode, unaffected.
    let mut stdin = plugin.stdin.take().unwrap();
    stdin.write_all(br#"{"cniVersion":"1.0.0"}"#).unwrap();
    drop(stdin);
    let mut reply = String::new();
    plugin
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    assert!(plugin.wait().unwrap().success(), "{reply}");
    assert!(reply.contains("\"supportedVersions\""), "{reply}");
    assert_eq!(
        version_line(&installed),
        format!("aws-eni-ip {}", aws_eni_ip::VERSION)
    );
}

/// Removes the container on drop, whatever the test's outcome.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn keep_reinstalls_a_removed_copy_and_sigterm_leaves_the_binary_in_place() {
    let _serial = serial();
    require_image();
    let host = tempfile::tempdir().unwrap();
    let installed = host.path().join("aws-eni-ip");
    let name = format!("aei-image-test-{}", std::process::id());
    let container = Container(name.clone());
    let out = run(ds_run(host.path()).args([
        "-d",
        "--name",
        &name,
        &image(),
        "install",
        "--cni-bin-dir",
        MOUNT,
        "--keep",
        "--interval",
        "0.2",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until("first install", || same_as_image_binary(&installed));

    fs::remove_file(&installed).unwrap();
    wait_until("re-install after removal", || {
        same_as_image_binary(&installed)
    });

    // podman stop sends SIGTERM (the image's STOPSIGNAL default), as the kubelet does.
    let stop = run(podman().args(["stop", "--time", "10", &container.0]));
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let code = run(podman().args(["inspect", "--format", "{{.State.ExitCode}}", &container.0]));
    assert_eq!(text(&code.stdout).trim(), "0", "exit code after SIGTERM");
    let logs = run(podman().args(["logs", &container.0]));
    let logs = text(&logs.stdout) + &text(&logs.stderr);
    assert!(logs.contains("it was removed"), "{logs}");
    assert!(logs.contains("SIGTERM: stopping"), "{logs}");

    assert!(
        same_as_image_binary(&installed),
        "binary gone after SIGTERM"
    );
    assert_eq!(
        version_line(&installed),
        format!("aws-eni-ip {}", aws_eni_ip::VERSION)
    );
    assert_eq!(dir_names(host.path()), ["aws-eni-ip"]);
}

/// Found in the node in a box: the agent's SDK client panicked at start in a FROM scratch image
/// without a CA bundle ("no valid root certificates"), so its probes never answered. The agent of
/// the image, run as the DaemonSet runs it (host network), serves /healthz and /readyz.
#[test]
fn the_images_agent_starts_and_serves_its_probes() {
    let _serial = serial();
    require_image();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = format!("aei-agent-{}", std::process::id());
    let out = run(pod_run("host", format!("{}:/state", dir.path().display()))
        .args([
            "-d",
            "--rm",
            "--name",
            &name,
            &image(),
            "agent",
            "--state-dir",
            "/state",
        ])
        .args(["--metrics-bind", &format!("127.0.0.1:{port}")])
        .args([
            "--runtime-endpoint",
            "/state/no-runtime.sock",
            "--interval",
            "1",
        ])
        .args([
            "--region",
            "us-west-2",
            "--imds-endpoint",
            "http://127.0.0.1:1",
        ])
        .args(["--ec2-endpoint", "http://127.0.0.1:1"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let get = |path: &str| -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let mut healthz = None;
    wait_until("the agent serves /healthz", || {
        healthz = get("/healthz");
        healthz
            .as_deref()
            .is_some_and(|b| b.starts_with("HTTP/1.1 200"))
    });
    // No runtime and no IMDS here: not ready, and it says why, instead of dying.
    let ready = get("/readyz").unwrap_or_default();
    let logs = run(podman().args(["logs", &name]));
    let _ = run(podman().args(["rm", "-f", &name]));
    assert!(
        ready.starts_with("HTTP/1.1 503"),
        "{ready}\n{}",
        text(&logs.stderr)
    );
    assert!(ready.contains("runtime: "), "{ready}");
    assert!(
        !text(&logs.stderr).contains("panicked"),
        "{}",
        text(&logs.stderr)
    );
}
