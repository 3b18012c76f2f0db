//! Concurrency invariants, seeded (`AEI_SEED=N` replays a run; the seed is printed):
//! - a random run of ADD/DEL/CHECK over 30 pods on two nodes, 8 in flight, some addresses floating
//!   between the nodes, with EC2 throttling and latency on, one operation per address at a time:
//!   every success is checked for its effect right away, and after the run each ENI holds exactly
//!   the addresses of live attachments on its node and the store agrees;
//! - rounds of operations that race on one address: pods on the same node sharing it, and pods on
//!   both nodes taking it over from each other, all at once. After each round no ENI holds an
//!   address that no live attachment on its node holds, a node whose pods alone added it holds it
//!   while one of them lives, and each store lists exactly its node's live attachments.

mod common;

use common::*;
use ec2_sim::{Faults, Throttle, World};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;

const PODS: usize = 30;
const OPS: usize = 320;
const IN_FLIGHT: usize = 8;

#[derive(Clone)]
struct Pod {
    node: usize,
    container: String,
    addr: IpAddr,
}

#[derive(Default)]
struct Model {
    live: BTreeSet<usize>,
    /// Node whose ADD of the address last succeeded; `None` after its release or an uncertain failure.
    owner: BTreeMap<IpAddr, Option<usize>>,
    ops_left: usize,
    busy: BTreeSet<IpAddr>,
    done: Vec<String>,
}

const NODES: [&str; 2] = [NODE1, NODE2];
const ENIS: [&str; 2] = [ENI1, ENI2];

fn pods() -> Vec<Pod> {
    (0..PODS)
        .map(|i| {
            let addr = match i {
                // Three addresses float between the nodes: two pods each, one per node.
                24 | 25 => ip("198.18.1.200"),
                26 | 27 => ip("198.18.1.201"),
                28 | 29 => ip("2001:db8:100:1::f1"),
                i if i % 3 == 0 => format!("2001:db8:100:1::{:x}", 0x100 + i).parse().unwrap(),
                i => ip(&format!("198.18.1.{}", 150 + i)),
            };
            Pod {
                node: i % 2,
                container: format!("pod-{i:02}"),
                addr,
            }
        })
        .collect()
}

fn prefix(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/24"),
        IpAddr::V6(a) => format!("{a}/64"),
    }
}

/// `AEI_SEED`, else the clock.
fn seed() -> u64 {
    std::env::var("AEI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn on(fx: &Fixture, node: usize, addr: IpAddr) -> bool {
    fx.addresses(ENIS[node]).contains(&addr)
}

#[test]
fn random_add_del_check_keeps_enis_and_store_exact() {
    let seed = seed();
    eprintln!("concurrency invariant: seed = {seed} (replay with AEI_SEED={seed})");

    let mut world = World::demo();
    for i in &mut world.instances {
        i.instance_type = "c5n.18xlarge".into();
    }
    let fx = Fixture::with_world(world);
    let mut faults = Faults {
        seed: Some(seed),
        ..Faults::default()
    };
    faults.latency_ms.insert("*".into(), 15);
    // Below the run's call rate, so retries and backoff are exercised on every run.
    for action in [
        "AssignPrivateIpAddresses",
        "UnassignPrivateIpAddresses",
        "DescribeNetworkInterfaces",
    ] {
        faults.throttle.insert(
            action.into(),
            Throttle {
                capacity: 3,
                refill_per_second: 6.0,
            },
        );
    }
    fx.sim.set_faults(faults);

    let pods = pods();
    let conf = |p: &Pod| -> Value {
        fx.conf(
            "1.0.0",
            NODES[p.node],
            ENIS[p.node],
            Some(prev_result("1.0.0", &[&prefix(p.addr)])),
        )
    };
    let model = Mutex::new(Model {
        ops_left: OPS,
        ..Model::default()
    });
    let rng = Mutex::new(StdRng::seed_from_u64(seed));
    let fail = |msg: String| -> ! { panic!("seed {seed}: {msg}") };

    std::thread::scope(|scope| {
        for _ in 0..IN_FLIGHT {
            scope.spawn(|| loop {
                // Pick a pod whose address no other operation is touching: per-address order is then exact.
                let (i, op) = {
                    let mut m = model.lock().unwrap();
                    if m.ops_left == 0 {
                        return;
                    }
                    let free: Vec<usize> = (0..PODS)
                        .filter(|i| !m.busy.contains(&pods[*i].addr))
                        .collect();
                    if free.is_empty() {
                        drop(m);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        continue;
                    }
                    let mut r = rng.lock().unwrap();
                    let i = free[r.random_range(0..free.len())];
                    let roll: u32 = r.random_range(0..100);
                    let op = match (m.live.contains(&i), roll) {
                        (false, 0..90) => "ADD",
                        (false, _) => "DEL",
                        (true, 0..45) => "DEL",
                        (true, 45..80) => "CHECK",
                        (true, _) => "ADD",
                    };
                    m.ops_left -= 1;
                    m.busy.insert(pods[i].addr);
                    (i, op)
                };
                let p = &pods[i];
                let c = conf(p);
                let r = fx.run(op, &p.container, "net1", &c);
                let mut m = model.lock().unwrap();
                m.done.push(match r.code {
                    0 => format!("{op} {} -> 0", p.container),
                    code => format!("{op} {} -> {code} {}", p.container, r.stdout.trim()),
                });
                match (op, r.code) {
                    ("ADD", 0) => {
                        m.live.insert(i);
                        m.owner.insert(p.addr, Some(p.node));
                        if !on(&fx, p.node, p.addr) || on(&fx, 1 - p.node, p.addr) {
                            fail(format!(
                                "ADD {} succeeded but {} is not (only) on {}",
                                p.container, p.addr, ENIS[p.node]
                            ));
                        }
                    }
                    ("ADD", _) => {
                        // As a runtime does after a failed ADD: tear down until DEL succeeds.
                        let before = m.owner.get(&p.addr).copied().flatten();
                        m.live.remove(&i);
                        drop(m);
                        del_until_ok(&fx, p, &c, seed);
                        m = model.lock().unwrap();
                        if on(&fx, p.node, p.addr) {
                            fail(format!(
                                "ADD {} failed and its DEL succeeded, but {} is still on {}",
                                p.container, p.addr, ENIS[p.node]
                            ));
                        }
                        // A failed takeover may or may not have moved it: the other node keeps what it still holds.
                        let other = 1 - p.node;
                        let kept = before == Some(other) && on(&fx, other, p.addr);
                        m.owner.insert(p.addr, kept.then_some(other));
                    }
                    ("DEL", code) => {
                        if code != 0 {
                            drop(m);
                            del_until_ok(&fx, p, &c, seed);
                            m = model.lock().unwrap();
                        }
                        m.live.remove(&i);
                        let still_held_here = m
                            .live
                            .iter()
                            .any(|j| pods[*j].addr == p.addr && pods[*j].node == p.node);
                        if m.owner.get(&p.addr) == Some(&Some(p.node)) && !still_held_here {
                            m.owner.insert(p.addr, None);
                            if on(&fx, p.node, p.addr) {
                                fail(format!(
                                    "DEL {} succeeded but {} is still on {}",
                                    p.container, p.addr, ENIS[p.node]
                                ));
                            }
                        }
                    }
                    ("CHECK", 0) => {
                        if m.owner.get(&p.addr) != Some(&Some(p.node)) {
                            let peers: Vec<&str> = pods
                                .iter()
                                .filter(|q| q.addr == p.addr)
                                .map(|q| q.container.as_str())
                                .collect();
                            let history: Vec<&String> = m
                                .done
                                .iter()
                                .filter(|d| peers.iter().any(|c| d.contains(c)))
                                .collect();
                            fail(format!(
                                "CHECK {} passed though {} belongs to another node; its pods' operations: {history:#?}",
                                p.container, p.addr
                            ));
                        }
                    }
                    ("CHECK", _) => {
                        let superseded = m.owner.get(&p.addr) != Some(&Some(p.node));
                        if !(superseded && r.err_code() == 109) && r.err_code() != 11 {
                            fail(format!(
                                "CHECK {} failed unexpectedly: {}",
                                p.container, r.stdout
                            ));
                        }
                    }
                    _ => unreachable!(),
                }
                m.busy.remove(&p.addr);
            });
        }
    });

    let m = model.into_inner().unwrap();
    assert_eq!(m.done.len(), OPS);
    // Each ENI holds exactly what live attachments on its node own.
    for node in 0..2 {
        let expected: BTreeSet<IpAddr> = m
            .live
            .iter()
            .map(|i| &pods[*i])
            .filter(|p| p.node == node && m.owner.get(&p.addr) == Some(&Some(node)))
            .map(|p| p.addr)
            .collect();
        let actual: BTreeSet<IpAddr> = fx.addresses(ENIS[node]).into_iter().collect();
        assert_eq!(
            actual, expected,
            "seed {seed}: {} holds the wrong addresses",
            ENIS[node]
        );
        let recorded: BTreeSet<String> = fx
            .records(NODES[node])
            .into_iter()
            .map(|r| r.container_id)
            .collect();
        let live: BTreeSet<String> = m
            .live
            .iter()
            .map(|i| &pods[*i])
            .filter(|p| p.node == node)
            .map(|p| p.container.clone())
            .collect();
        assert_eq!(
            recorded, live,
            "seed {seed}: node {node}'s store disagrees with the live attachments"
        );
    }
    let calls = fx.sim.calls();
    eprintln!(
        "concurrency invariant: {OPS} ops, {} live at the end, {} throttled responses, calls {:?}",
        m.live.len(),
        calls.throttled,
        calls.ec2
    );
    assert!(
        calls.throttled > 0,
        "seed {seed}: the run must meet throttling"
    );
    // Clean up: everything released leaves both ENIs empty.
    for i in m.live {
        let p = &pods[i];
        del_until_ok(&fx, p, &conf(p), seed);
    }
    assert!(
        fx.addresses(ENI1).is_empty() && fx.addresses(ENI2).is_empty(),
        "seed {seed}: leak after final DELs"
    );
}

fn del_until_ok(fx: &Fixture, p: &Pod, conf: &Value, seed: u64) {
    for _ in 0..20 {
        if fx.run("DEL", &p.container, "net1", conf).code == 0 {
            return;
        }
    }
    panic!("seed {seed}: DEL {} never succeeded", p.container);
}

/// Pods that share the racing addresses: three per node for each address.
fn racing_pods() -> Vec<Pod> {
    let addrs = [
        ip("198.18.1.210"),
        ip("198.18.1.211"),
        ip("2001:db8:100:1::f2"),
    ];
    let mut pods = Vec::new();
    for (a, addr) in addrs.iter().enumerate() {
        for node in 0..2 {
            for k in 0..3 {
                pods.push(Pod {
                    node,
                    container: format!("race-{a}-{node}-{k}"),
                    addr: *addr,
                });
            }
        }
    }
    pods
}

#[test]
fn operations_racing_on_one_address_leave_no_leak_and_keep_a_lone_owner() {
    const ROUNDS: usize = 24;
    let seed = seed();
    eprintln!("racing invariant: seed = {seed} (replay with AEI_SEED={seed})");
    let fx = Fixture::new();
    let mut faults = Faults {
        seed: Some(seed),
        ..Faults::default()
    };
    faults.latency_ms.insert("*".into(), 10);
    faults.throttle.insert(
        "*".into(),
        Throttle {
            capacity: 6,
            refill_per_second: 20.0,
        },
    );
    fx.sim.set_faults(faults);
    let pods = racing_pods();
    let conf = |p: &Pod| -> Value {
        fx.conf(
            "1.0.0",
            NODES[p.node],
            ENIS[p.node],
            Some(prev_result("1.0.0", &[&prefix(p.addr)])),
        )
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut live: BTreeSet<usize> = BTreeSet::new();
    // The ENI each address was on at the end of the last round.
    let mut owner: BTreeMap<IpAddr, Option<usize>> = BTreeMap::new();
    for round in 0..ROUNDS {
        let addr = pods[rng.random_range(0..pods.len())].addr;
        let mut chosen: Vec<(usize, &'static str)> = Vec::new();
        for i in (0..pods.len()).filter(|i| pods[*i].addr == addr) {
            if !rng.random_bool(0.7) {
                continue;
            }
            let op = match (live.contains(&i), rng.random_range(0..100u32)) {
                (false, 0..85) => "ADD",
                (false, _) => "DEL",
                (true, 0..50) => "DEL",
                (true, 50..75) => "CHECK",
                (true, _) => "ADD",
            };
            chosen.push((i, op));
        }
        let results: Vec<(usize, &str, i32, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = chosen
                .iter()
                .map(|&(i, op)| {
                    let (p, c) = (&pods[i], conf(&pods[i]));
                    let fx = &fx;
                    s.spawn(move || {
                        let r = fx.run(op, &p.container, "net1", &c);
                        let code = if r.code == 0 { 0 } else { r.err_code() };
                        if r.code != 0 && op != "CHECK" {
                            // As a runtime does: a failed ADD or DEL is torn down until DEL succeeds.
                            del_until_ok(fx, p, &c, seed);
                        }
                        (i, op, r.code, code)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut added_by = [false, false];
        for (i, op, code, cni) in &results {
            match (*op, *code) {
                ("ADD", 0) => {
                    live.insert(*i);
                    added_by[pods[*i].node] = true;
                }
                ("ADD" | "DEL", _) => {
                    live.remove(i);
                }
                ("CHECK", 0) => {}
                ("CHECK", _) => assert!(
                    [109, 11].contains(cni),
                    "seed {seed} round {round}: CHECK {} ended with code {cni}",
                    pods[*i].container
                ),
                _ => unreachable!(),
            }
        }
        let holders = |node: usize| {
            live.iter()
                .any(|j| pods[*j].addr == addr && pods[*j].node == node)
        };
        let on_node: Vec<usize> = (0..2).filter(|n| on(&fx, *n, addr)).collect();
        let what = format!("seed {seed} round {round} ({addr}): {results:?}");
        assert!(on_node.len() <= 1, "{what}: on both ENIs");
        for n in &on_node {
            assert!(
                holders(*n),
                "{what}: leaked on {} with no live holder there",
                ENIS[*n]
            );
        }
        for n in 0..2 {
            let only_here = !added_by[1 - n] && (added_by[n] || owner.get(&addr) == Some(&Some(n)));
            if only_here && holders(n) {
                assert_eq!(
                    on_node,
                    vec![n],
                    "{what}: {} lost it while its pods live",
                    ENIS[n]
                );
            }
        }
        owner.insert(addr, on_node.first().copied());
        for (n, node) in NODES.iter().enumerate() {
            let recorded: BTreeSet<String> = fx
                .records(node)
                .into_iter()
                .map(|r| r.container_id)
                .collect();
            let expected: BTreeSet<String> = live
                .iter()
                .filter(|j| pods[**j].node == n)
                .map(|j| pods[*j].container.clone())
                .collect();
            assert_eq!(recorded, expected, "{what}: store of node {n}");
        }
    }
    for i in live {
        del_until_ok(&fx, &pods[i], &conf(&pods[i]), seed);
    }
    assert!(
        fx.addresses(ENI1).is_empty() && fx.addresses(ENI2).is_empty(),
        "seed {seed}: leak after final DELs"
    );
    eprintln!(
        "racing invariant: {ROUNDS} rounds, {} throttled responses, calls {:?}",
        fx.sim.calls().throttled,
        fx.sim.calls().ec2
    );
}
