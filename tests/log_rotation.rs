//! The capped, rotated log file under many plugin processes writing at once. Each writer is a
//! separate process (this test binary, re-run as a child) that sets up logging exactly as the
//! plugin does (`aws_eni_ip::log::init` with `logFile`, `logMaxBytes`, `logMaxFiles` from a
//! config block) and logs numbered lines. Proves, across dozens of rotations: no line lost, none
//! duplicated, none torn or interleaved, every file within the cap, each writer's lines in order
//! from the oldest file to the newest; and with the default three files, that no more are kept.
//! Also runs the real plugin binary with a small cap, to show the config keys reach the log.

use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use aws_eni_ip::config::PluginConfig;
use aws_eni_ip::log::RotatingFile;

const CHILD_ENV: &str = "AEI_LOG_WRITER";

/// In a child: log `count` lines as writer `id` through the plugin's own log setup, then exit.
fn run_as_writer_child(spec: &str) -> ! {
    let [path, id, count, max_bytes, max_files]: [&str; 5] =
        spec.split('|').collect::<Vec<_>>().try_into().unwrap();
    let block = json!({"type": "aws-eni-ip", "logFile": path, "logLevel": "info",
        "logMaxBytes": max_bytes.parse::<u64>().unwrap(),
        "logMaxFiles": max_files.parse::<u64>().unwrap()});
    let config = PluginConfig::from_map(block.as_object().unwrap()).unwrap();
    aws_eni_ip::log::init(&config);
    let id: u32 = id.parse().unwrap();
    for seq in 0..count.parse::<u32>().unwrap() {
        tracing::info!(target: "aws_eni_ip::log_rotation_test", writer = id, seq, pad = %"p".repeat(40), "line");
    }
    std::process::exit(0)
}

/// Starts `writers` child processes at once and waits for all.
fn write_concurrently(path: &Path, writers: u32, lines: u32, max_bytes: u64, max_files: u32) {
    let test_name = "many_processes_lose_and_duplicate_no_line_across_rotations";
    let children: Vec<_> = (0..writers)
        .map(|id| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
                .env(
                    CHILD_ENV,
                    format!("{}|{id}|{lines}|{max_bytes}|{max_files}", path.display()),
                )
                .stdout(Stdio::null())
                .spawn()
                .expect("start a writer process")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a writer process failed");
    }
}

/// (writer, seq) of a line the child wrote, or None for anything else.
fn parse(line: &str) -> Option<(u32, u32)> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
    };
    Some((field("writer")?, field("seq")?))
}

#[test]
fn many_processes_lose_and_duplicate_no_line_across_rotations() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_as_writer_child(&spec);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aws-eni-ip.log");
    let (writers, lines, max_bytes, max_files) = (16, 300, 16_384, 100);
    write_concurrently(&path, writers, lines, max_bytes, max_files);

    let mut seen: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    let mut last_seq: BTreeMap<u32, i64> = BTreeMap::new();
    let mut files = 0;
    // Oldest file first: each writer's sequence must only grow.
    for n in (0..max_files).rev() {
        let file = RotatingFile::generation(&path, n);
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        files += 1;
        let size = text.len() as u64;
        assert!(size <= max_bytes, "{}: {size} bytes", file.display());
        assert!(text.ends_with('\n'), "{}: torn last line", file.display());
        for line in text.lines() {
            let (writer, seq) =
                parse(line).unwrap_or_else(|| panic!("torn or foreign line: {line:?}"));
            assert!(line.ends_with(&format!("pad={}", "p".repeat(40))), "{line}");
            *seen.entry((writer, seq)).or_default() += 1;
            let last = last_seq.entry(writer).or_insert(-1);
            assert!(
                i64::from(seq) > *last,
                "writer {writer}: seq {seq} after {last} ({})",
                file.display()
            );
            *last = i64::from(seq);
        }
    }
    let total = (writers * lines) as usize;
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated lines: {duplicated:?}");
    assert_eq!(
        seen.len(),
        total,
        "lines lost: {} of {total}",
        total - seen.len()
    );
    assert!(
        files > 20,
        "only {files} files: the cap never made it rotate"
    );
    assert!(!RotatingFile::generation(&path, files).exists());
    eprintln!(
        "{total} lines from {writers} processes in {files} files of at most {max_bytes} bytes"
    );
}

#[test]
fn no_more_files_than_log_max_files_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aws-eni-ip.log");
    write_concurrently(&path, 8, 200, 4_096, 3);
    for n in 0..3 {
        let file = RotatingFile::generation(&path, n);
        let size = fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .len();
        assert!(size <= 4_096, "{}: {size} bytes", file.display());
    }
    assert!(!RotatingFile::generation(&path, 3).exists());
    // The newest lines survive: with 4 KiB files not every writer's last line fits, but some do.
    let recent = fs::read_to_string(&path).unwrap()
        + &fs::read_to_string(RotatingFile::generation(&path, 1)).unwrap();
    let last_lines = (0..8)
        .filter(|w| recent.contains(&format!("writer={w} seq=199 ")))
        .count();
    assert!(
        last_lines >= 1,
        "no writer's last line in the two newest files"
    );
}

#[test]
fn the_plugin_rotates_its_log_with_the_configured_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("plugin.log");
    let config = json!({"cniVersion": "1.0.0", "name": "rotation-net", "type": "aws-eni-ip",
        "logFile": log, "stateDir": dir.path().join("state"),
        "logMaxBytes": 4096, "logMaxFiles": 2});
    // ADD without prevResult fails before any AWS call (code 100) and logs one line.
    for i in 0..60 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aws-eni-ip"))
            .env_clear()
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("rotation-{i}"))
            .env("CNI_NETNS", "/proc/self/ns/net")
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", "/opt/cni/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(config.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"code\":100"));
    }
    let live = fs::read_to_string(&log).unwrap();
    let older = fs::read_to_string(RotatingFile::generation(&log, 1)).unwrap();
    assert!(live.len() <= 4096 && older.len() <= 4096);
    assert!(!RotatingFile::generation(&log, 2).exists());
    assert!(live.contains("container=rotation-59"), "{live}");
    assert_eq!(
        live.lines().count() + older.lines().count(),
        live.lines()
            .chain(older.lines())
            .filter(|l| l.contains("code=100"))
            .count()
    );
}
