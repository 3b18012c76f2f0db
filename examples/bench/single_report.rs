//! Sections 1–4 of the report: one pod at a time.

use super::python::Python;
use super::single::{Kind, Single};
use super::*;

/// Sections 1–4 of the report.
pub(crate) fn report(w: &mut String, ctx: &Ctx, python: &Result<Python, String>, single: &Single) {
    let o = &ctx.opts;
    // 1 + 2
    let _ = writeln!(w, "## 1–2. One ADD / DEL, whole process, and the floor\n");
    let _ = writeln!(
        w,
        "{} runs each (after {WARMUP} warm-up runs), interleaved: first ADD, its DEL, later ADD, DEL, IPAM-mode ADD and its DEL, floor (env), floor (IMDS), Python. IMDS latency 1 ms; EC2 latency as shown, every action. The node budget is set to burst 1000, 1000/s here: a lone operation finds a token waiting, and the bench's own pace (an operation every few ms, for minutes) must not meet the budget's defaults, which sections 5 and 6 measure.\n",
        o.runs
    );
    let _ = writeln!(
        w,
        "| operation | EC2 latency | wall ms | CPU ms | peak RSS MiB |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|");
    for lat in [0, LATENCY_MS] {
        for k in [
            Kind::FirstAdd,
            Kind::Add,
            Kind::Del,
            Kind::IpamAdd,
            Kind::FloorEnv,
            Kind::FloorImds,
        ] {
            let _ = writeln!(
                w,
                "| {} | {lat} ms | {} | {} | {} |",
                k.label(),
                fmt(single.wall(lat, k), 1),
                fmt(single.cpu(lat, k), 1),
                fmt(single.rss(lat, k), 1)
            );
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "Floor = `examples/floor.rs`: one signed AssignPrivateIpAddresses with the same aws-sdk-ec2, current-thread tokio runtime, then exit. The plugin takes its credentials and region from IMDS (3–4 extra IMDS requests per process), so the floor is given both ways.\n");
    let _ = writeln!(
        w,
        "| ratio (wall, medians) | EC2 0 ms | EC2 {LATENCY_MS} ms | goal |"
    );
    let _ = writeln!(w, "|---|---:|---:|---|");
    for (name, a, b, goal) in [
        (
            "later ADD / floor (env credentials)",
            Kind::Add,
            Kind::FloorEnv,
            true,
        ),
        (
            "later ADD / floor (IMDS credentials)",
            Kind::Add,
            Kind::FloorImds,
            false,
        ),
        (
            "first ADD / floor (env credentials)",
            Kind::FirstAdd,
            Kind::FloorEnv,
            false,
        ),
        (
            "first ADD / floor (IMDS credentials)",
            Kind::FirstAdd,
            Kind::FloorImds,
            false,
        ),
        (
            "DEL / floor (env credentials)",
            Kind::Del,
            Kind::FloorEnv,
            false,
        ),
    ] {
        let r0 = ratio(single.wall(0, a), single.wall(0, b));
        let r50 = ratio(single.wall(LATENCY_MS, a), single.wall(LATENCY_MS, b));
        let f = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into());
        let verdict = if goal {
            match r50 {
                Some(v) if v <= 1.2 => {
                    "≤ 1.2 at 50 ms: **met** (main 2f49c27: 1.17–1.20)".to_string()
                }
                Some(v) => format!("≤ 1.2 at 50 ms: **MISSED** ({v:.2}; main 2f49c27: 1.17–1.20)"),
                None => "not measured".into(),
            }
        } else {
            String::new()
        };
        let _ = writeln!(w, "| {name} | {} | {} | {verdict} |", f(r0), f(r50));
    }
    let r50 = ratio(
        single.wall(LATENCY_MS, Kind::IpamAdd),
        single.wall(LATENCY_MS, Kind::Add),
    );
    let _ = writeln!(
        w,
        "| IPAM mode ADD / chained ADD (later) | {} | {} | ≤ 1.2 at 50 ms: {} |",
        ratio(single.wall(0, Kind::IpamAdd), single.wall(0, Kind::Add))
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "n/a".into()),
        r50.map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "n/a".into()),
        match r50 {
            Some(v) if v <= 1.2 => "**met**",
            Some(_) => "**MISSED**",
            None => "not measured",
        }
    );
    let _ = writeln!(w);

    // 3
    let _ = writeln!(w, "## 3. Calls per operation (simulator counters)\n");
    let _ = writeln!(
        w,
        "Over all {} runs of both latencies; one number means every run made the same calls.\n",
        o.runs * 2
    );
    let _ = writeln!(
        w,
        "| operation | EC2 mutating | EC2 describes | IMDS requests | goal |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---|");
    let all_eq = |v: &[f64], x: f64| !v.is_empty() && v.iter().all(|&y| y == x);
    for k in [
        Kind::FirstAdd,
        Kind::Add,
        Kind::Del,
        Kind::IpamAdd,
        Kind::FloorEnv,
        Kind::FloorImds,
        Kind::Python,
    ] {
        let m = single.calls(k, |c| c.mutating);
        let d = single.calls(k, |c| c.describes);
        let i = single.calls(k, |c| c.imds);
        let goal = match k {
            Kind::FirstAdd => format!(
                "1 mutating: {}",
                if all_eq(&m, 1.0) {
                    "**met**"
                } else {
                    "**MISSED**"
                }
            ),
            Kind::Add => format!(
                "1 mutating, 0 describes: {}",
                if all_eq(&m, 1.0) && all_eq(&d, 0.0) {
                    "**met**"
                } else {
                    "**MISSED**"
                }
            ),
            Kind::Del | Kind::IpamAdd => format!(
                "1 mutating: {}",
                if all_eq(&m, 1.0) {
                    "**met**"
                } else {
                    "**MISSED**"
                }
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {goal} |",
            k.label(),
            fmt_count(&m),
            fmt_count(&d),
            fmt_count(&i)
        );
    }
    let actions: BTreeMap<String, u64> = single
        .samples
        .iter()
        .filter(|((l, k), _)| *l == LATENCY_MS && *k == Kind::Python)
        .flat_map(|(_, v)| v.first().map(|s| s.calls.by_action.clone()))
        .next()
        .unwrap_or_default();
    if !actions.is_empty() {
        let _ = writeln!(
            w,
            "\nPython baseline, EC2 calls of one run: {}.",
            actions
                .iter()
                .map(|(k, v)| format!("{k} ×{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(w);

    // 4
    let _ = writeln!(
        w,
        "## 4. Baseline: AWS's sample approach (Python + boto3)\n"
    );
    match python {
        Err(e) => {
            let _ = writeln!(w, "**Not measured**: {e}.\n");
        }
        Ok(py) => {
            let _ = writeln!(
                w,
                "`scripts/bench/sample_ipmgmt.py` ({}), written here from the sample's description: IMDS token + identity document, DescribeInstances, DescribeSubnets per secondary ENI (the bench node has one), AssignPrivateIpAddresses; boto3 takes its credentials from IMDS. Started as the sample's container starts it (`python script.py`), from the same bench loop as the rows above. **Not measurable here: the container start (image pull, sandbox, initContainer scheduling) that the sample also pays for every pod**, and its sidecar mode's polling every 0.5 s; so these figures are a lower bound for the sample.\n",
                py.version
            );
            let _ = writeln!(w, "| EC2 latency | Python wall ms | Python CPU ms | Python peak RSS MiB | ours (later ADD) wall ms | ours RSS MiB | Python / ours: wall | CPU | RSS |");
            let _ = writeln!(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for lat in [0, LATENCY_MS] {
                let f = |x: Option<f64>| {
                    x.map(|v| format!("{v:.1}×"))
                        .unwrap_or_else(|| "n/a".into())
                };
                let _ = writeln!(
                    w,
                    "| {lat} ms | {} | {} | {} | {} | {} | {} | {} | {} |",
                    fmt(single.wall(lat, Kind::Python), 1),
                    fmt(single.cpu(lat, Kind::Python), 1),
                    fmt(single.rss(lat, Kind::Python), 1),
                    fmt(single.wall(lat, Kind::Add), 1),
                    fmt(single.rss(lat, Kind::Add), 1),
                    f(ratio(
                        single.wall(lat, Kind::Python),
                        single.wall(lat, Kind::Add)
                    )),
                    f(ratio(
                        single.cpu(lat, Kind::Python),
                        single.cpu(lat, Kind::Add)
                    )),
                    f(ratio(
                        single.rss(lat, Kind::Python),
                        single.rss(lat, Kind::Add)
                    )),
                );
            }
            let _ = writeln!(w);
        }
    }
    if !single.failures.is_empty() {
        let _ = writeln!(
            w,
            "**Failures in sections 1–4: {}** (first ones):\n",
            single.failures.len()
        );
        for f in single.failures.iter().take(5) {
            let _ = writeln!(w, "- {f}");
        }
        let _ = writeln!(w);
    }
}
