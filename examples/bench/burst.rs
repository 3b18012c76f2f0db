//! Section 5: a burst of ADDs, then DELs, on one node under a throttled account.

use super::phase::{phase, Job, Phase};
use super::*;

pub(crate) struct BurstRun {
    pub(crate) add: Phase,
    pub(crate) del: Phase,
}

pub(crate) fn burst(ctx: &Ctx) -> Result<Vec<BurstRun>, String> {
    let node = &ctx.layout.burst;
    let macs: Vec<&str> = node.enis.iter().map(|e| e.mac.as_str()).collect();
    let links = Links::create("u", &macs)?;
    let mut runs = Vec::new();
    for r in 0..ctx.opts.burst_runs {
        eprintln!(
            "bench: burst run {}/{}: {} ADDs at once, then {} DELs",
            r + 1,
            ctx.opts.burst_runs,
            ctx.opts.burst_pods,
            ctx.opts.burst_pods
        );
        ctx.sim.reset();
        ctx.sim.set_faults(faults(LATENCY_MS, Some(BURST_BUCKET)));
        let dir = ctx.work.join(format!("burst-{r}"));
        let jobs: Vec<Job> = (0..ctx.opts.burst_pods)
            .map(|k| {
                let e = k % node.enis.len();
                let eni = &node.enis[e];
                let ip = Ipv4Addr::from(u32::from(eni.first_pod) + (k / node.enis.len()) as u32);
                Job {
                    container: format!("burst{r}x{k}"),
                    stdin: pod_conf(ctx, node, &links.names[e], &dir, ip, 20)
                        .to_string()
                        .into_bytes(),
                    eni: eni.id.clone(),
                    ip,
                }
            })
            .collect();
        let n = jobs.len();
        let add = phase(ctx, "ADD", &jobs, n, 1);
        let del = phase(ctx, "DEL", &jobs, n, 1);
        let _ = std::fs::remove_dir_all(&dir);
        runs.push(BurstRun { add, del });
    }
    drop(links);
    Ok(runs)
}

/// Section 5 of the report.
pub(crate) fn report(w: &mut String, ctx: &Ctx, burst: &[BurstRun]) {
    let o = &ctx.opts;
    // 5
    let _ = writeln!(
        w,
        "## 5. Burst on one node: {} ADDs at once, then {} DELs\n",
        o.burst_pods, o.burst_pods
    );
    let _ = writeln!(
        w,
        "One c5n.18xlarge node (50 addresses per ENI), pods spread over its 3 secondary ENIs; all processes started together behind a barrier. EC2 latency {LATENCY_MS} ms on every action, IMDS 1 ms. Throttling: **one token bucket per EC2 action** (AssignPrivateIpAddresses, UnassignPrivateIpAddresses and DescribeNetworkInterfaces each have their own), capacity {}, refill {}/s, shared by all callers. Plugin default settings (timeoutMs 30000; its own jittered retries); no re-run of failed pods. A fresh state dir each run, so the first ADDs on each ENI are cold. **{} runs**{}.\n",
        BURST_BUCKET.capacity,
        BURST_BUCKET.refill_per_second,
        burst.len(),
        if burst.len() < 20 { " (fewer than the 20 asked for: BENCH_BURST_RUNS)" } else { "" }
    );
    let _ = writeln!(w, "| phase | time until all done, s | failures (all runs) | throttled responses / run | EC2 calls / run (incl. throttled) | accepted calls / run (calls − throttled) | per-pod wall ms p50 / p95 / max (all runs) | peak total RSS MiB, sampled sum | peak total PSS MiB, sampled sum | max ru_maxrss × pods, MiB |");
    let _ = writeln!(w, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    for (name, get) in [
        ("ADD", (|b: &BurstRun| &b.add) as fn(&BurstRun) -> &Phase),
        ("DEL", |b: &BurstRun| &b.del),
    ] {
        let phases: Vec<&Phase> = burst.iter().map(get).collect();
        let walls: Vec<f64> = phases.iter().map(|p| p.wall_s).collect();
        let fails: usize = phases.iter().map(|p| p.failures.len()).sum();
        let thr: Vec<f64> = phases.iter().map(|p| p.calls.throttled as f64).collect();
        let accepted: Vec<f64> = phases
            .iter()
            .map(|p| {
                (p.calls.mutating + p.calls.describes).saturating_sub(p.calls.throttled) as f64
            })
            .collect();
        let mut acts: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for p in &phases {
            for (k, v) in &p.calls.by_action {
                acts.entry(k.clone()).or_default().push(*v as f64);
            }
        }
        let acts_s = acts
            .iter()
            .map(|(k, v)| format!("{k} {}", fmt(summarize(v), 0)))
            .collect::<Vec<_>>()
            .join("; ");
        let pod: Vec<f64> = phases
            .iter()
            .flat_map(|p| p.execs.iter().map(|e| e.wall_ms))
            .collect();
        let pct = |q| {
            percentile(&pod, q)
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "n/a".into())
        };
        let rss: Vec<f64> = phases.iter().map(|p| mib(p.peak.rss_kib as f64)).collect();
        let pss: Vec<f64> = phases.iter().map(|p| mib(p.peak.pss_kib as f64)).collect();
        let maxrss = phases
            .iter()
            .flat_map(|p| p.execs.iter().map(|e| e.maxrss_kib))
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            w,
            "| {name} | {} | {fails} | {} | {acts_s} | {} | {} / {} / {} | {} | {} | {:.0} |",
            fmt(summarize(&walls), 2),
            fmt(summarize(&thr), 0),
            fmt(summarize(&accepted), 0),
            pct(50.0),
            pct(95.0),
            pct(100.0),
            fmt(summarize(&rss), 0),
            fmt(summarize(&pss), 0),
            mib((maxrss as usize * o.burst_pods) as f64)
        );
    }
    let bound = (o.burst_pods as f64 - BURST_BUCKET.capacity as f64).max(0.0)
        / BURST_BUCKET.refill_per_second;
    let _ = writeln!(
        w,
        "\nThe bucket alone allows no less than ({} − {}) / {} = {bound:.1} s per phase. Peak memory: the sum of /proc RSS (and PSS, which splits shared pages) over the children alive at once, sampled every 10 ms; the last column is the upper bound max ru_maxrss × {}.",
        o.burst_pods, BURST_BUCKET.capacity, BURST_BUCKET.refill_per_second, o.burst_pods
    );
    goals(w, burst);
    let burst_fail: Vec<&String> = burst
        .iter()
        .flat_map(|b| b.add.failures.iter().chain(&b.del.failures))
        .collect();
    if burst_fail.is_empty() {
        let _ = writeln!(
            w,
            "Goal “no failures with default settings”: **met** ({} pods × 2 phases × {} runs).\n",
            o.burst_pods,
            burst.len()
        );
    } else {
        let _ = writeln!(
            w,
            "Goal “no failures with default settings”: **MISSED**, {} failures; first ones:\n",
            burst_fail.len()
        );
        for f in burst_fail.iter().take(5) {
            let _ = writeln!(w, "- {f}");
        }
        let _ = writeln!(w);
    }
}

/// Issue 14's goals for the burst, beside main's figures before batching and the node budget
/// (2f49c27, the same scenario and simulator settings).
fn goals(w: &mut String, burst: &[BurstRun]) {
    let _ = writeln!(
        w,
        "\n| burst, per phase (medians over the runs) | main 2f49c27, ADD | now, ADD | now, DEL | goal |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---|");
    let per = |get: fn(&BurstRun) -> &Phase, f: &dyn Fn(&Phase) -> f64| -> Option<f64> {
        let v: Vec<f64> = burst.iter().map(|b| f(get(b))).collect();
        summarize(&v).map(|s| s.median)
    };
    fn add(b: &BurstRun) -> &Phase {
        &b.add
    }
    fn del(b: &BurstRun) -> &Phase {
        &b.del
    }
    let mutating_per_pod = |p: &Phase| p.calls.mutating as f64 / p.execs.len().max(1) as f64;
    let throttled_per_accepted = |p: &Phase| {
        let accepted = (p.calls.mutating + p.calls.describes).saturating_sub(p.calls.throttled);
        p.calls.throttled as f64 / accepted.max(1) as f64
    };
    let wall = |p: &Phase| p.wall_s;
    let failures = |p: &Phase| p.failures.len() as f64;
    type Row<'a> = (&'a str, &'a str, &'a dyn Fn(&Phase) -> f64, f64, usize);
    let rows: [Row; 4] = [
        (
            "mutating EC2 calls per pod (throttled included)",
            "7.2",
            &mutating_per_pod,
            0.25,
            2,
        ),
        (
            "throttled responses per accepted call",
            "6.2",
            &throttled_per_accepted,
            0.1,
            2,
        ),
        ("time until all are done, s", "8.96", &wall, 1.5, 2),
        ("failures", "0", &failures, 0.0, 0),
    ];
    for (name, before, f, goal, digits) in rows {
        let (a, d) = (per(add, f), per(del, f));
        let met = a.zip(d).is_some_and(|(a, d)| a <= goal && d <= goal);
        let show = |x: Option<f64>| {
            x.map(|v| format!("{v:.digits$}"))
                .unwrap_or_else(|| "n/a".into())
        };
        let _ = writeln!(
            w,
            "| {name} | {before} | {} | {} | ≤ {goal}: {} |",
            show(a),
            show(d),
            if met { "**met**" } else { "**MISSED**" }
        );
    }
}
