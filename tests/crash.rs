//! Crash consistency: the plugin is SIGKILLed at each step of ADD and DEL (a crash point compiled
//! into debug builds only). After the runtime's follow-up — DEL, GC, or a repeated ADD — the ENI
//! holds exactly the addresses of live attachments and the store agrees.

mod common;

use aws_eni_ip::crash::POINTS;
use common::*;
use serde_json::{json, Value};
use std::net::IpAddr;

const ADDR: &str = "198.18.1.140";

fn conf(fx: &Fixture, prev: bool) -> Value {
    let prev = prev.then(|| prev_result("1.1.0", &[&format!("{ADDR}/24")]));
    fx.conf("1.1.0", NODE1, ENI1, prev)
}

fn records(fx: &Fixture) -> usize {
    fx.records(NODE1).len()
}

fn killed_at(fx: &Fixture, command: &str, point: &str) {
    let stdin = conf(fx, true).to_string();
    let r = run_plugin_with(
        command,
        "pod",
        "net1",
        Some("/var/run/netns/unused"),
        stdin.as_bytes(),
        &[("AWS_ENI_IP_CRASH_AT", point)],
    );
    assert_eq!(
        r.signal,
        Some(9),
        "{point}: the plugin must die there (stdout {:?})",
        r.stdout
    );
}

fn assert_clean(fx: &Fixture, point: &str, follow_up: &str) {
    assert!(
        fx.addresses(ENI1).is_empty(),
        "{point} + {follow_up}: ENI still holds {:?}",
        fx.addresses(ENI1)
    );
    assert_eq!(records(fx), 0, "{point} + {follow_up}: records left");
}

fn assert_live(fx: &Fixture, point: &str, follow_up: &str) {
    assert_eq!(fx.addresses(ENI1), vec![ip(ADDR)], "{point} + {follow_up}");
    assert_eq!(records(fx), 1, "{point} + {follow_up}");
}

fn gc_nothing_valid(fx: &Fixture) -> Reply {
    let mut gc = conf(fx, false);
    gc["cni.dev/valid-attachments"] = json!([]);
    run_plugin("GC", "", "", None, &gc)
}

#[test]
fn crash_during_add_then_del_leaves_nothing() {
    for point in POINTS.iter().filter(|p| p.starts_with("add:")) {
        let fx = Fixture::new();
        killed_at(&fx, "ADD", point);
        // The ADD failed, so the runtime has no cached result: DEL comes without prevResult.
        fx.run("DEL", "pod", "net1", &conf(&fx, false)).ok();
        assert_clean(&fx, point, "DEL");
    }
}

#[test]
fn crash_during_add_then_repeated_add_ends_assigned_and_del_cleans() {
    for point in POINTS.iter().filter(|p| p.starts_with("add:")) {
        let fx = Fixture::new();
        killed_at(&fx, "ADD", point);
        fx.run("ADD", "pod", "net1", &conf(&fx, true)).ok();
        assert_live(&fx, point, "ADD");
        fx.run("CHECK", "pod", "net1", &conf(&fx, true)).ok();
        fx.run("DEL", "pod", "net1", &conf(&fx, true)).ok();
        assert_clean(&fx, point, "ADD, DEL");
    }
}

#[test]
fn crash_during_add_then_gc_leaves_nothing() {
    for point in POINTS.iter().filter(|p| p.starts_with("add:")) {
        let fx = Fixture::new();
        killed_at(&fx, "ADD", point);
        gc_nothing_valid(&fx).ok();
        assert_clean(&fx, point, "GC");
    }
}

#[test]
fn crash_during_del_then_del_again_leaves_nothing() {
    for point in POINTS.iter().filter(|p| p.starts_with("release:")) {
        let fx = Fixture::new();
        fx.run("ADD", "pod", "net1", &conf(&fx, true)).ok();
        killed_at(&fx, "DEL", point);
        fx.run("DEL", "pod", "net1", &conf(&fx, true)).ok();
        assert_clean(&fx, point, "DEL");
    }
}

#[test]
fn crash_during_del_then_gc_leaves_nothing() {
    for point in POINTS.iter().filter(|p| p.starts_with("release:")) {
        let fx = Fixture::new();
        fx.run("ADD", "pod", "net1", &conf(&fx, true)).ok();
        killed_at(&fx, "DEL", point);
        gc_nothing_valid(&fx).ok();
        assert_clean(&fx, point, "GC");
    }
}

#[test]
fn a_crash_never_takes_an_address_from_a_live_pod() {
    for point in POINTS.iter().filter(|p| p.starts_with("release:")) {
        let fx = Fixture::new();
        // Two pods share the address (a floating IP on one node); one of them is deleted and dies.
        fx.run("ADD", "live", "net1", &conf(&fx, true)).ok();
        fx.run("ADD", "pod", "net1", &conf(&fx, true)).ok();
        killed_at(&fx, "DEL", point);
        fx.run("DEL", "pod", "net1", &conf(&fx, true)).ok();
        assert_eq!(
            fx.addresses(ENI1),
            vec![ip(ADDR)],
            "{point}: the live pod keeps its address"
        );
        fx.run("CHECK", "live", "net1", &conf(&fx, true)).ok();
    }
}

/// The process sending a shared batch dies after EC2 carried it out, before it answered anyone.
/// Every other requester then gets an outcome or code 11, never a success its ENI does not show,
/// and nothing it gets is recorded as adopted; the runtime's follow-up leaves the ENI exact.
#[test]
fn a_crash_while_sending_a_batch_leaves_no_false_success() {
    const PODS: usize = 6;
    let fx = Fixture::new();
    let mut faults = ec2_sim::Faults::default();
    faults
        .latency_ms
        .insert("AssignPrivateIpAddresses".into(), 400);
    fx.sim.set_faults(faults);
    let marker = fx.dir.path().join("crashed-once");
    let marker = marker.to_str().unwrap();
    let conf_for = |i: usize| {
        fx.conf(
            "1.1.0",
            NODE1,
            ENI1,
            Some(prev_result("1.1.0", &[&format!("198.18.1.{}/24", 160 + i)])),
        )
    };
    let results: Vec<Reply> = std::thread::scope(|s| {
        // A lone ADD holds the batch lock while the others queue behind it into one shared call.
        let blocker = s.spawn(|| fx.run("ADD", "blocker", "net1", &conf_for(PODS)));
        std::thread::sleep(std::time::Duration::from_millis(150));
        let queued: Vec<_> = (0..PODS)
            .map(|i| {
                let stdin = conf_for(i).to_string();
                s.spawn(move || {
                    run_plugin_with(
                        "ADD",
                        &format!("pod{i}"),
                        "net1",
                        Some("/var/run/netns/unused"),
                        stdin.as_bytes(),
                        &[
                            ("AWS_ENI_IP_CRASH_AT", "batch:after-shared-ec2"),
                            ("AWS_ENI_IP_CRASH_ONCE", marker),
                        ],
                    )
                })
            })
            .collect();
        blocker.join().unwrap().ok();
        queued.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        std::path::Path::new(marker).exists(),
        "a shared batch was sent and its sender killed"
    );
    let killed = results.iter().filter(|r| r.signal == Some(9)).count();
    assert_eq!(
        killed,
        1,
        "{:?}",
        results.iter().map(|r| &r.stdout).collect::<Vec<_>>()
    );
    let held = fx.addresses(ENI1);
    for (i, r) in results.iter().enumerate() {
        let addr = ip(&format!("198.18.1.{}", 160 + i));
        match (r.signal, r.code) {
            (Some(9), _) => {}
            (None, 0) => assert!(held.contains(&addr), "pod{i} succeeded without {addr}"),
            _ => assert_eq!(r.err_code(), 11, "pod{i}: {}", r.stdout),
        }
    }
    for r in fx.records(NODE1) {
        assert!(
            r.adopted.is_empty(),
            "{} adopted {:?}",
            r.container_id,
            r.adopted
        );
    }
    // The runtime's follow-up for the dead and the failed: DEL; then every pod goes.
    for (i, r) in results.iter().enumerate() {
        if r.code != 0 {
            fx.run("DEL", &format!("pod{i}"), "net1", &conf_for(i)).ok();
        }
    }
    let live: Vec<IpAddr> = (0..PODS)
        .filter(|i| results[*i].code == 0)
        .map(|i| ip(&format!("198.18.1.{}", 160 + i)))
        .chain([ip(&format!("198.18.1.{}", 160 + PODS))])
        .collect();
    let mut held = fx.addresses(ENI1);
    held.sort();
    assert_eq!(held, live, "exactly the live pods' addresses");
    for i in 0..=PODS {
        let name = if i == PODS {
            "blocker".to_string()
        } else {
            format!("pod{i}")
        };
        fx.run("DEL", &name, "net1", &conf_for(i)).ok();
    }
    assert!(fx.addresses(ENI1).is_empty());
    assert_eq!(records(&fx), 0);
}
