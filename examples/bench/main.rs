//! `make bench`: the release plugin binary, run as a runtime runs it, against ec2-sim on loopback.
//! Prints one Markdown report and writes it to `target/bench/report.md`.
//!
//! Needs root (veth links carry the ENIs' MACs) and the release binaries built first:
//!   cargo build --release --locked -p aws-eni-ip --bins --examples
//!   cargo run --release --locked -p aws-eni-ip --example bench
//!
//! Knobs (environment): BENCH_RUNS (20), BENCH_BURST_RUNS (20), BENCH_BURST_PODS (100),
//! BENCH_NODES (10,50,200), BENCH_PODS_PER_NODE (20), BENCH_IN_FLIGHT (32),
//! BENCH_SCALE_BUCKET (100/20 = capacity/refill per second), BENCH_PYTHON (interpreter with boto3),
//! BENCH_AGENT_IDLE_SECS (130, at least 70), BENCH_VIP_MOVES (100), BENCH_FLEET_NODES (1000,5000:
//! the simulated fleets of section 11).

// The reconciler's pass future nests deeply (release through the budgeted EC2 call).
#![recursion_limit = "256"]

mod agent;
#[allow(dead_code)]
#[path = "../../tests/common/agent.rs"]
mod agent_proc;
mod burst;
mod child;
mod cotenant;
#[allow(dead_code)]
#[path = "../../tests/common/cri.rs"]
mod cri;
mod fleet;
mod follow;
mod hook;
mod layout;
mod phase;
mod proc;
mod python;
mod report;
mod scale;
mod single;
mod single_report;
mod stats;

use child::{Exec, Live, Peak, Sampler};
use ec2_sim::{Calls, Faults, Sim, SimOptions, Throttle};
use layout::{Layout, Links, Node, REGION};
use serde_json::{json, Value};
use stats::{fmt, fmt_count, percentile, ratio, summarize};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const PATH_ENV: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
const WARMUP: usize = 2;
/// Latency of every EC2 action in the latency-sensitive scenarios.
const LATENCY_MS: u64 = 50;
const BURST_BUCKET: Throttle = Throttle {
    capacity: 20,
    refill_per_second: 10.0,
};
/// Attempts per pod in the scale runs: a failed ADD/DEL is run again, as kubelet would.
const SCALE_ATTEMPTS: usize = 4;

struct Opts {
    runs: usize,
    burst_runs: usize,
    burst_pods: usize,
    nodes: Vec<usize>,
    pods_per_node: usize,
    in_flight: usize,
    scale_bucket: Throttle,
    agent_idle_secs: usize,
    vip_moves: usize,
    fleet_nodes: Vec<usize>,
}

fn env_num(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a whole number")),
        _ => Ok(default),
    }
}

impl Opts {
    fn from_env() -> Result<Opts, String> {
        let nodes = match std::env::var("BENCH_NODES") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|n| n.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("BENCH_NODES={v:?} must be like 10,50,200"))?,
            _ => vec![10, 50, 200],
        };
        let scale_bucket = match std::env::var("BENCH_SCALE_BUCKET") {
            Ok(v) if !v.trim().is_empty() => {
                let (c, r) = v
                    .split_once('/')
                    .ok_or_else(|| format!("BENCH_SCALE_BUCKET={v:?} must be CAPACITY/REFILL"))?;
                Throttle {
                    capacity: c.trim().parse().map_err(|_| "bad capacity".to_string())?,
                    refill_per_second: r.trim().parse().map_err(|_| "bad refill".to_string())?,
                }
            }
            _ => Throttle {
                capacity: 100,
                refill_per_second: 20.0,
            },
        };
        let o = Opts {
            runs: env_num("BENCH_RUNS", 20)?.max(1),
            burst_runs: env_num("BENCH_BURST_RUNS", 20)?.max(1),
            burst_pods: env_num("BENCH_BURST_PODS", 100)?,
            nodes,
            pods_per_node: env_num("BENCH_PODS_PER_NODE", 20)?,
            in_flight: env_num("BENCH_IN_FLIGHT", 32)?.max(1),
            scale_bucket,
            agent_idle_secs: env_num("BENCH_AGENT_IDLE_SECS", 130)?,
            vip_moves: env_num("BENCH_VIP_MOVES", 100)?.max(1),
            fleet_nodes: match std::env::var("BENCH_FLEET_NODES") {
                Ok(v) if !v.trim().is_empty() => v
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("BENCH_FLEET_NODES={v:?} must be like 1000,5000"))?,
                _ => vec![1000, 5000],
            },
        };
        if o.burst_pods > 147 {
            return Err("BENCH_BURST_PODS: at most 147 (3 ENIs × 49 secondary addresses)".into());
        }
        Ok(o)
    }
}

/// EC2 and IMDS requests an operation caused, from the simulator's counters.
#[derive(Debug, Clone, Default)]
struct OpCalls {
    mutating: u64,
    describes: u64,
    imds: u64,
    throttled: u64,
    by_action: BTreeMap<String, u64>,
    throttled_by_action: BTreeMap<String, u64>,
}

fn delta(a: &Calls, b: &Calls) -> OpCalls {
    let mut d = OpCalls::default();
    for (k, v) in &b.ec2 {
        let n = v.saturating_sub(a.ec2.get(k).copied().unwrap_or(0));
        if n == 0 {
            continue;
        }
        d.by_action.insert(k.clone(), n);
        if k.starts_with("Describe") {
            d.describes += n;
        } else {
            d.mutating += n;
        }
    }
    let sum = |c: &Calls| c.imds.values().sum::<u64>();
    d.imds = sum(b).saturating_sub(sum(a));
    d.throttled = b.throttled.saturating_sub(a.throttled);
    for (k, v) in &b.throttled_by_action {
        let n = v.saturating_sub(a.throttled_by_action.get(k).copied().unwrap_or(0));
        if n > 0 {
            d.throttled_by_action.insert(k.clone(), n);
        }
    }
    d
}

fn faults(ec2_ms: u64, bucket: Option<Throttle>) -> Faults {
    let mut f = Faults {
        seed: Some(1),
        imds_latency_ms: 1,
        ..Faults::default()
    };
    f.latency_ms.insert("*".into(), ec2_ms);
    if let Some(t) = bucket {
        f.throttle.insert("*".into(), t);
    }
    f
}

struct Ctx {
    plugin: PathBuf,
    floor: PathBuf,
    sim: Sim,
    layout: Layout,
    work: PathBuf,
    opts: Opts,
}

/// The net config libcni hands to the second plugin of the chain, prevResult included.
fn pod_conf(ctx: &Ctx, node: &Node, master: &str, dir: &Path, pod: Ipv4Addr, prefix: u8) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "bench-net",
        "type": "aws-eni-ip",
        "master": master,
        "ec2Endpoint": ctx.sim.ec2_url(),
        "imdsEndpoint": ctx.sim.imds_url(&node.instance),
        "stateDir": dir.join("state"),
        "logFile": dir.join("plugin.log"),
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "net1", "mac": "02:00:c6:12:ff:01", "sandbox": "/var/run/netns/bench"}],
            "ips": [{"address": format!("{pod}/{prefix}"), "interface": 0}],
            "routes": [{"dst": "198.18.0.0/16"}],
            "dns": {}
        }
    })
}

/// The config macvlan hands its IPAM plugin when the IPAM is aws-eni-ip.
fn ipam_conf(ctx: &Ctx, node: &Node, master: &str, dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "bench-ipam",
        "type": "macvlan",
        "master": master,
        "mode": "bridge",
        "ipam": {
            "type": "aws-eni-ip",
            "ec2Endpoint": ctx.sim.ec2_url(),
            "imdsEndpoint": ctx.sim.imds_url(&node.instance),
            "stateDir": dir.join("state"),
            "logFile": dir.join("plugin.log"),
        }
    })
}

/// The plugin as a runtime runs it: clean environment, CNI_* variables, config on stdin. Each
/// bench node's state dir is also its node dir, as the default stateDir is on a real node.
fn plugin_cmd(plugin: &Path, command: &str, container: &str, stdin: &[u8]) -> Command {
    let mut c = Command::new(plugin);
    c.env_clear()
        .env("PATH", PATH_ENV)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", "/opt/cni/bin")
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={container}"),
        );
    if let Some(dir) = serde_json::from_slice::<Value>(stdin).ok().and_then(|v| {
        v["stateDir"]
            .as_str()
            .or_else(|| v["ipam"]["stateDir"].as_str())
            .map(str::to_string)
    }) {
        c.env(aws_eni_ip::store::NODE_DIR_ENV, dir);
    }
    c
}

fn holds(sim: &Sim, eni: &str, ip: Ipv4Addr) -> bool {
    sim.state()
        .eni(eni)
        .is_some_and(|e| e.private_ips.contains(&ip))
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Section 11 (the simulated fleets) and the report's closing lines, one per fleet size.
fn fleet_section(scale: &[scale::ScaleRun], bucket: Throttle, sizes: Vec<usize>) -> String {
    let mut w = String::new();
    let _ = writeln!(
        w,
        "## 11. Fleets on a virtual clock: 1,000 and 5,000 nodes\n\nThe nodes run the plugin's own control law (`store::PaceLaw`, the code of the node budget) and its spool's leader/waiter rule, against one AssignPrivateIpAddresses bucket per FACTS.md ({} burst, {}/s, a throttled call takes no token), with a co-tenant (the VPC CNI) calling the same action once a second. A scale-out: one node joins every {JOIN_S_PER_NODE} s on average, its {} pods come within its first 20 s, each ADD has the default timeoutMs; a pod that ends in code 11 is run again a second later, as kubelet would. The bound is the later of the last pod's arrival and what the bucket allows for the calls made.\n",
        fleet::BUCKET_CAPACITY, fleet::BUCKET_REFILL, FLEET_PODS_PER_NODE
    );
    let _ = writeln!(w, "{}", fleet::HEADER);
    let mut lines = Vec::new();
    lines.extend(scale::final_line(scale, bucket));
    for n in sizes {
        let started = Instant::now();
        let r = fleet::simulate(
            fleet::workload(n, FLEET_PODS_PER_NODE, JOIN_S_PER_NODE),
            None,
        );
        eprintln!(
            "bench: fleet of {n} simulated in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let _ = writeln!(w, "{}", fleet::row(&format!("{n} nodes, scale-out"), &r));
        lines.push(fleet::final_line(
            "simulated",
            n,
            r.throttled_per_accepted(),
            r.converge(),
            r.code11,
            r.co_tenant_share(),
        ));
    }
    let _ = writeln!(
        w,
        "\nSection 6's real run on the same clock (the law's check between real runs, which take 13 minutes): {CLOSED_LOOP_NODES} nodes, fresh at once, {FLEET_PODS_PER_NODE} pods each in pod-major order through {CLOSED_LOOP_PROCESSES} plugin processes (a process held until its pod's address is on the ENI), its stand-in bucket (100, 20/s), the co-tenant; a row for each of the first seeds, then the mean of all. The bound is section 6's: one call per pod, and the co-tenant's calls.\n\n{}",
        fleet::HEADER
    );
    let mut sums = [0.0; 4];
    for seed in 1..=CLOSED_LOOP_SEEDS {
        let workload = fleet::closed_loop(
            CLOSED_LOOP_NODES,
            FLEET_PODS_PER_NODE,
            CLOSED_LOOP_PROCESSES,
            seed,
        );
        let r = fleet::simulate(workload, None);
        for (sum, v) in sums.iter_mut().zip([
            r.throttled_per_accepted(),
            r.converge(),
            r.code11 as f64,
            r.co_tenant_share(),
        ]) {
            *sum += v / CLOSED_LOOP_SEEDS as f64;
        }
        if seed <= CLOSED_LOOP_ROWS {
            let name = format!(
                "{CLOSED_LOOP_NODES} nodes, {CLOSED_LOOP_PROCESSES} processes, seed {seed}"
            );
            let _ = writeln!(w, "{}", fleet::row(&name, &r));
        }
    }
    let _ = writeln!(
        w,
        "\nMean over seeds 1–{CLOSED_LOOP_SEEDS}: throttled/accepted {:.3}, converge {:.3}, code 11 {:.1}, co-tenant {:.1}%.",
        sums[0],
        sums[1],
        sums[2],
        sums[3] * 100.0
    );
    let _ = writeln!(w);
    for l in lines {
        let _ = writeln!(w, "{l}");
    }
    w
}

/// The simulated scale-out: pods per node, and seconds between node joins on average.
const FLEET_PODS_PER_NODE: usize = 20;
const JOIN_S_PER_NODE: f64 = 7.0;
/// Section 6's run on the virtual clock.
const CLOSED_LOOP_NODES: usize = 200;
const CLOSED_LOOP_PROCESSES: usize = 32;
const CLOSED_LOOP_SEEDS: u64 = 100;
const CLOSED_LOOP_ROWS: u64 = 6;

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), String> {
    let started = Instant::now();
    let opts = Opts::from_env()?;
    if !nix::unistd::Uid::effective().is_root() {
        return Err("run as root: the bench creates veth links that carry the ENIs' MACs".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let examples = exe.parent().ok_or("no parent of current_exe")?;
    let profile_dir = examples.parent().ok_or("no target/<profile> dir")?;
    let target = profile_dir.parent().ok_or("no target dir")?.to_path_buf();
    let plugin = profile_dir.join("aws-eni-ip");
    let floor = examples.join("floor");
    let build = "cargo build --release --locked -p aws-eni-ip --bins --examples";
    for (what, p) in [("plugin", &plugin), ("floor", &floor)] {
        if !p.is_file() {
            return Err(format!(
                "the {what} binary {} is missing: build it first with `{build}` (make bench does)",
                p.display()
            ));
        }
    }
    if profile_dir.file_name().and_then(|n| n.to_str()) != Some("release") {
        eprintln!(
            "bench: warning: not a release build ({}); numbers mean little",
            profile_dir.display()
        );
    }
    for (what, p) in [("plugin", &plugin), ("floor", &floor)] {
        let (a, b) = (std::fs::metadata(p), std::fs::metadata(&exe));
        if let (Ok(a), Ok(b)) = (a.and_then(|m| m.modified()), b.and_then(|m| m.modified())) {
            if a + Duration::from_secs(3600) < b {
                eprintln!("bench: warning: the {what} binary is older than the bench by over an hour; rebuild with `{build}`");
            }
        }
    }

    let bench_dir = target.join("bench");
    let work = bench_dir.join(format!("work-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let max_nodes = opts.nodes.iter().copied().max().unwrap_or(0);
    let layout = layout::layout(max_nodes, opts.pods_per_node)?;
    let sim = Sim::start_with(
        layout.world.clone(),
        SimOptions {
            log: false,
            ..SimOptions::default()
        },
    )
    .map_err(|e| format!("ec2-sim: {e}"))?;
    let python = python::find_python(&target);
    let ctx = Ctx {
        plugin,
        floor,
        sim,
        layout,
        work: work.clone(),
        opts,
    };
    let load_start = report::loadavg();

    let single = single::single(&ctx, python.as_ref().ok())?;
    let burst = burst::burst(&ctx)?;
    let scale = scale::scale(&ctx)?;
    let hook_bin = profile_dir.join("aws-eni-ip-hook");
    let hook = hook::hook(&ctx, &hook_bin, 10);
    let agent = agent::agent(&ctx)?;
    let follow = follow::follow(&ctx)?;
    let load_end = report::loadavg();
    let _ = std::fs::remove_dir_all(&work);

    let report = report::render(
        &ctx,
        &python,
        &single,
        &burst,
        &scale,
        &hook,
        (&agent, &follow),
        (&load_start, &load_end),
        started,
    );
    let mut report = report;
    report.push_str(&fleet_section(
        &scale,
        ctx.opts.scale_bucket,
        ctx.opts.fleet_nodes.clone(),
    ));
    println!("{report}");
    std::fs::create_dir_all(&bench_dir).map_err(|e| e.to_string())?;
    let path = bench_dir.join("report.md");
    std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("bench: report written to {}", path.display());
    Ok(())
}
