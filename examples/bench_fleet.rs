//! The fleet simulation of `make bench` (section 11) on its own: no root, no simulator, seconds.
//!   cargo run --release --locked -p aws-eni-ip --example bench_fleet [NODES...]
//! Knobs: FLEET_PODS_PER_NODE (20), FLEET_JOIN_S_PER_NODE (7.0), FLEET_SHARE (unset: derived),
//! FLEET_PROCESSES (set: section 6's closed loop through that many processes), FLEET_SEED.

#[allow(dead_code)]
#[path = "bench/fleet.rs"]
mod fleet;

fn main() {
    let nodes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = if nodes.is_empty() {
        vec![1000, 5000]
    } else {
        nodes
    };
    let num = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let share = std::env::var("FLEET_SHARE")
        .ok()
        .and_then(|v| v.parse().ok());
    println!("{}", fleet::HEADER);
    let processes = std::env::var("FLEET_PROCESSES")
        .ok()
        .and_then(|v| v.parse().ok());
    for n in nodes {
        let pods = num("FLEET_PODS_PER_NODE", 20.0) as usize;
        let w = match processes {
            Some(p) => fleet::closed_loop(n, pods, p, num("FLEET_SEED", 26.0) as u64),
            None => fleet::workload(n, pods, num("FLEET_JOIN_S_PER_NODE", 7.0)),
        };
        let started = std::time::Instant::now();
        let r = fleet::simulate(w, share);
        println!("{}", fleet::row(&format!("{n} nodes"), &r));
        eprintln!("simulated in {:?}", started.elapsed());
    }
}
