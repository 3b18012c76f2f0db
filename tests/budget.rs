//! The node budget across processes: twenty processes share one token bucket in the node dir,
//! and together they never send faster than its burst and rate allow.

use aws_eni_ip::cloud::CallBudget;
use aws_eni_ip::store::{BudgetLimits, NodeDir, NodeSettings};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROCESSES: usize = 20;
const CALLS_EACH: usize = 5;
const BURST: u32 = 5;
const RATE: f64 = 20.0;
const CHILD_ENV: &str = "AEI_BUDGET_CHILD_NODE_DIR";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn the_node_budget_holds_twenty_processes_to_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeDir::new(dir.path());
    std::fs::create_dir_all(dir.path().join("locks")).unwrap();
    node.write_settings(&NodeSettings {
        ec2_budget: Some(BudgetLimits {
            burst: BURST,
            refill_per_second: RATE,
        }),
        node_ec2_rate: None,
    })
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "budget_child_process",
                    "--nocapture",
                ])
                .env(CHILD_ENV, dir.path())
                .output()
        })
        .collect();
    let mut sends: Vec<u64> = Vec::new();
    for child in children {
        let out = child.unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        sends.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("send "))
                .map(|t| t.trim().parse::<u64>().unwrap()),
        );
    }
    let elapsed = started.elapsed();
    assert_eq!(
        sends.len(),
        PROCESSES * CALLS_EACH,
        "every child sent its calls"
    );
    sends.sort();
    // In any one second, no more than the burst plus a second's refill (and one for rounding).
    let most = f64::from(BURST) + RATE + 1.0;
    for (i, t) in sends.iter().enumerate() {
        let in_window = sends[i..].iter().take_while(|u| **u < t + 1000).count();
        assert!(
            in_window as f64 <= most,
            "{in_window} sends in the second after {t} (allowed {most})"
        );
    }
    let floor = (PROCESSES * CALLS_EACH) as f64 - f64::from(BURST);
    let least = Duration::from_secs_f64(floor / RATE * 0.9);
    assert!(
        elapsed >= least,
        "{} calls took {elapsed:?}, the bucket allows no less than {least:?}",
        sends.len()
    );
    eprintln!(
        "node budget: {} calls from {PROCESSES} processes in {elapsed:?} (burst {BURST}, {RATE}/s)",
        sends.len()
    );
}

/// The child the test above starts, many times over: not a test of its own.
#[test]
#[ignore = "run only as a child process of the_node_budget_holds_twenty_processes_to_its_rate"]
fn budget_child_process() {
    let dir = std::env::var(CHILD_ENV).expect("started by the budget test");
    let budget = NodeDir::new(dir).budget();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    for _ in 0..CALLS_EACH {
        let wait = budget
            .reserve("AssignPrivateIpAddresses", started, deadline)
            .expect("a token within a minute");
        std::thread::sleep(wait);
        println!("send {}", now_ms());
    }
}

#[test]
fn budget_command_sets_and_shows_the_nodes_limits_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_aws-eni-ip"))
            .arg("budget")
            .arg("--node-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let shown = run(&["--json"]);
    assert!(shown.status.success());
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["limits"]["burst"], 10, "defaults: {v}");
    let set = run(&["--burst", "20", "--refill-per-second", "2", "--json"]);
    assert!(set.status.success(), "{set:?}");
    assert_eq!(NodeDir::new(dir.path()).budget().limits().burst, 20);
    let bad = run(&["--burst", "0", "--refill-per-second", "2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("burst 0"));
    assert_eq!(
        NodeDir::new(dir.path()).budget().limits().burst,
        20,
        "unchanged"
    );
}
