//! The node agent (issue 12): what the plugin's counters file adds to one ADD, one reconcile pass
//! over 1,000 records with 100 dead, and the release agent binary's CPU, memory and wake-ups while
//! nothing happens on the node.

use super::*;
use crate::agent_proc::AgentProc;
use aws_eni_ip::agent::reconcile::{ReconcileSettings, Reconciler};
use aws_eni_ip::cloud::aws::AwsClients;
use aws_eni_ip::cloud::retry::RetryPolicy;
use aws_eni_ip::cloud::{AwsSettings, CallBudget};
use aws_eni_ip::store::{
    now_unix, Attachment, BudgetLimits, Ec2Count, Follow, NodeDir, NodeSettings, Phase, Store,
};
use proc::{Netns, ProcStats};

const RECORDS: usize = 1000;
const DEAD: usize = 100;
const PASSES: usize = 5;
const COUNTER_RUNS: usize = 2000;
/// Followed pods (each with a netns and a watch) while the agent idles.
const WATCHED: usize = 10;

#[derive(Default)]
pub(crate) struct AgentBench {
    pub counters_us: Vec<f64>,
    pub pass_ms: Vec<f64>,
    pub scan_ms: Vec<f64>,
    pub released: Vec<usize>,
    pub idle: Option<Idle>,
}

pub(crate) struct Idle {
    pub window_s: f64,
    pub cpu_ms: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub quiet_wakeups: u64,
    pub wakeups: u64,
}

fn record(ctx: &Ctx, i: usize, addr: Ipv4Addr) -> Attachment {
    let node = &ctx.layout.bench;
    Attachment {
        network: "bench-net".into(),
        container_id: format!("rc-{i:04}"),
        ifname: "net1".into(),
        eni_id: node.enis[0].id.clone(),
        mac: node.enis[0].mac.clone(),
        addresses: vec![IpAddr::V4(addr)],
        phase: Phase::Assigned,
        created_unix: now_unix() - 3600,
        netns: None,
        pod: None,
        instance_id: Some(node.instance.clone()),
        adopted: Vec::new(),
        follow: None,
        release_error: None,
        committed_unix_ms: None,
        eni_before: None,
        by_ipam: false,
    }
}

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 24, 0)) + i as u32)
}

/// Records `from..to` written and their addresses put on the ENI, as finished ADDs leave them.
fn put_records(ctx: &Ctx, store: &Store, from: usize, to: usize) -> Result<(), String> {
    for i in from..to {
        store
            .put(&record(ctx, i, addr(i)))
            .map_err(|e| e.to_string())?;
    }
    let addrs: Vec<IpAddr> = (from..to).map(|i| IpAddr::V4(addr(i))).collect();
    ctx.sim.assign(&ctx.layout.bench.enis[0].id, &addrs);
    Ok(())
}

pub(crate) fn agent(ctx: &Ctx) -> Result<AgentBench, String> {
    let mut out = AgentBench::default();
    ctx.sim.reset();
    ctx.sim.set_faults(faults(0, None));
    let dir = ctx.work.join("agent");
    let node = NodeDir::new(&dir);
    let store = Store::open(&dir, node.clone()).map_err(|e| e.to_string())?;
    out.counters_us = counters(&node)?;

    eprintln!("bench: agent: one reconcile pass over {RECORDS} records, {DEAD} dead, EC2 latency 0 ({PASSES} runs)");
    // Unpaced: the node budget's wait is a deliberate pace, like EC2's own latency.
    let limits = BudgetLimits {
        burst: 1000,
        refill_per_second: 1000.0,
    };
    node.write_settings(&NodeSettings {
        ec2_budget: Some(limits),
        node_ec2_rate: None,
    })
    .map_err(|e| e.to_string())?;
    put_records(ctx, &store, 0, RECORDS)?;
    let settings = AwsSettings {
        region: Some(REGION.into()),
        ec2_endpoint: Some(ctx.sim.ec2_url()),
        imds_endpoint: Some(ctx.sim.imds_url(&ctx.layout.bench.instance)),
    };
    let budget = Arc::new(node.budget()) as Arc<dyn CallBudget>;
    let policy = RetryPolicy::per_call(Duration::from_secs(10));
    let aws = AwsClients::new(settings, store.region_cache(), Some(budget), policy)
        .map_err(|e| e.to_string())?;
    let mut reconciler = Reconciler::new(ReconcileSettings {
        grace: Duration::from_secs(120),
        max_releases: DEAD,
        lock_wait: Duration::from_secs(2),
        op_timeout: Duration::from_secs(10),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let all: HashSet<String> = (0..RECORDS).map(|i| format!("rc-{i:04}")).collect();
    let alive: HashSet<String> = (0..RECORDS - DEAD).map(|i| format!("rc-{i:04}")).collect();
    let stores = [store.clone()];
    // Warm-up: credentials, region, the EC2 client.
    rt.block_on(reconciler.pass(&stores, &aws, &all));
    for _ in 0..PASSES {
        let t = Instant::now();
        rt.block_on(reconciler.pass(&stores, &aws, &all));
        out.scan_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        // A sandbox counts as gone in the second listing without it: the first one only notes it.
        rt.block_on(reconciler.pass(&stores, &aws, &alive));
        std::thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        let report = rt.block_on(reconciler.pass(&stores, &aws, &alive));
        out.pass_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        out.released.push(report.released.len());
        put_records(ctx, &store, RECORDS - DEAD, RECORDS)?;
    }
    node.write_settings(&NodeSettings::default())
        .map_err(|e| e.to_string())?;
    out.idle = Some(idle(ctx, &dir, &all)?);
    let addrs: Vec<IpAddr> = (0..RECORDS).map(|i| IpAddr::V4(addr(i))).collect();
    ctx.sim.unassign(&ctx.layout.bench.enis[0].id, &addrs);
    Ok(out)
}

/// `count_plugin_run` as one plugin process calls it, against a file a busy node has filled.
fn counters(node: &NodeDir) -> Result<Vec<f64>, String> {
    eprintln!("bench: agent: the plugin's counters file, {COUNTER_RUNS} runs");
    let calls = [Ec2Count {
        action: "AssignPrivateIpAddresses".into(),
        calls: 1,
        throttled: 0,
    }];
    let wait = Duration::from_millis(100);
    for command in ["ADD", "DEL", "CHECK", "GC", "STATUS"] {
        for code in [0, 5, 7, 11, 101, 105, 106, 107, 108, 110] {
            let outcome = if code == 0 { "ok" } else { "error" };
            node.count_plugin_run(command, outcome, code, &calls, wait)
                .map_err(|e| e.to_string())?;
        }
    }
    (0..COUNTER_RUNS)
        .map(|_| {
            let t = Instant::now();
            node.count_plugin_run("ADD", "ok", 0, &calls, wait)
                .map_err(|e| e.to_string())?;
            Ok(t.elapsed().as_secs_f64() * 1e6)
        })
        .collect()
}

/// The release agent with default flags over the 1,000 live records plus followed pods, left alone.
fn idle(ctx: &Ctx, dir: &Path, live: &HashSet<String>) -> Result<Idle, String> {
    let window = Duration::from_secs(ctx.opts.agent_idle_secs.max(70) as u64);
    eprintln!(
        "bench: agent: idle for {} s (interval 60 s, {WATCHED} watched pods)",
        window.as_secs()
    );
    let store = Store::open(dir, NodeDir::new(dir)).map_err(|e| e.to_string())?;
    let mut pods = Vec::new();
    let mut names: Vec<String> = live.iter().cloned().collect();
    for k in 0..WATCHED {
        let ns = Netns::create(&format!("i{k}"))?;
        let mut r = record(ctx, RECORDS + k, addr(RECORDS + k));
        r.netns = Some(ns.path.clone());
        r.follow = Some(Follow {
            allow_reassignment: true,
            added: Vec::new(),
        });
        store.put(&r).map_err(|e| e.to_string())?;
        names.push(r.container_id);
        pods.push(ns);
    }
    let live: Vec<&str> = names.iter().map(String::as_str).collect();
    let cri = cri::FakeCri::start(&dir.join("cri.sock"), &live);
    let mut agent = AgentProc::spawn({
        let mut cmd = Command::new(&ctx.plugin);
        cmd.arg("agent").args([
            "--state-dir",
            &dir.display().to_string(),
            "--runtime-endpoint",
            &cri.socket.display().to_string(),
            "--metrics-bind",
            "127.0.0.1:0",
            "--ec2-endpoint",
            &ctx.sim.ec2_url(),
            "--imds-endpoint",
            &ctx.sim.imds_url(&ctx.layout.bench.instance),
        ]);
        cmd
    });
    let started = Instant::now();
    agent.wait_line("watching the pod's addresses", Duration::from_secs(20));
    // The first pass (and drift check) runs at start; the next one at 60 s.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()));
    let a = ProcStats::read(agent.pid())?;
    std::thread::sleep(Duration::from_secs(55).saturating_sub(started.elapsed()));
    let b = ProcStats::read(agent.pid())?;
    std::thread::sleep(window.saturating_sub(started.elapsed()));
    let c = ProcStats::read(agent.pid())?;
    // Idle from 5 s on: the start-up (SDK, credentials, the first pass) is not idling.
    let window_s = started.elapsed().as_secs_f64() - 5.0;
    drop(agent);
    drop(cri);
    drop(pods);
    let _ = std::fs::remove_dir_all(dir);
    Ok(Idle {
        window_s,
        cpu_ms: c.cpu_ms - a.cpu_ms,
        rss_kib: c.rss_kib,
        hwm_kib: c.hwm_kib,
        quiet_wakeups: b.switches.saturating_sub(a.switches),
        wakeups: c.switches.saturating_sub(a.switches),
    })
}

pub(crate) fn report(w: &mut String, a: &AgentBench) {
    let _ = writeln!(w, "## 9. Node agent\n");
    let us = summarize(&a.counters_us);
    let p99 = percentile(&a.counters_us, 99.0).unwrap_or(f64::NAN);
    let _ = writeln!(
        w,
        "**Plugin counters** (`NodeDir::count_plugin_run`, what every plugin process calls once before it exits: flock, read, add, atomic replace of `metrics/plugin-counters.json` holding 50 series), {COUNTER_RUNS} calls: {} µs, p99 {p99:.0} µs. Goal < 1 ms per ADD: **{}**.\n",
        fmt(us, 0),
        met(us.is_some_and(|s| s.median < 1000.0) && p99 < 1000.0)
    );
    let pass = summarize(&a.pass_ms);
    let _ = writeln!(
        w,
        "**One reconcile pass**, {RECORDS} records on one ENI, {DEAD} of their sandboxes gone, EC2 latency 0, IMDS 1 ms, node budget unpaced (at the default 5 calls/s the budget alone spreads 100 unassigns over 20 s; the default cap is 20 per pass), {PASSES} runs: {} ms (released per pass: {:?}); the same pass with no sandbox gone (read and decide only): {} ms. Goal < 1 s: **{}**. Each release is DEL's: 2 IMDS reads (ENI still attached), the node-wide refcount over every record, one UnassignPrivateIpAddresses, the record removed.\n",
        fmt(pass, 0),
        a.released,
        fmt(summarize(&a.scan_ms), 1),
        met(pass.is_some_and(|s| s.max < 1000.0))
    );
    if let Some(i) = &a.idle {
        let cpu_pct = i.cpu_ms / (i.window_s * 1000.0) * 100.0;
        let _ = writeln!(
            w,
            "**Idle agent** (release binary, default flags: interval 60 s, drift check 300 s), {RECORDS} live records and {WATCHED} followed pods (one netlink watch each), from 5 s after its start for {:.0} s (passes at 60 and 120 s): CPU {:.1} ms = **{cpu_pct:.3} %** of one core (goal < 0.1 %: **{}**); RSS {:.1} MiB, peak {:.1} MiB (goal < 20 MiB: **{}**); context switches of all its threads between the passes (5–55 s): **{}** (goal: no polling wake-ups: **{}**), {} over the whole window.\n",
            i.window_s,
            i.cpu_ms,
            met(cpu_pct < 0.1),
            mib(i.rss_kib as f64),
            mib(i.hwm_kib as f64),
            met(i.hwm_kib < 20 * 1024),
            i.quiet_wakeups,
            met(i.quiet_wakeups == 0),
            i.wakeups
        );
    }
}

pub(crate) fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}
