//! Sections 1–4: one pod at a time — ADD, DEL, the SDK floor, calls per operation, Python baseline.

use super::python::Python;
use super::*;

// ---------------------------------------------------------------------------------------------
// Items 1–4: one pod at a time.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    FirstAdd,
    Add,
    Del,
    FloorEnv,
    FloorImds,
    Python,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::FirstAdd => "first ADD on the ENI (empty state dir)",
            Kind::Add => "ADD (later ones)",
            Kind::Del => "DEL",
            Kind::FloorEnv => "floor, credentials + region from env",
            Kind::FloorImds => "floor, credentials + region from IMDS",
            Kind::Python => "Python + boto3 baseline (AWS sample's calls)",
        }
    }
}

pub(crate) struct Sample {
    pub(crate) exec: Exec,
    pub(crate) calls: OpCalls,
}

#[derive(Default)]
pub(crate) struct Single {
    pub(crate) samples: BTreeMap<(u64, Kind), Vec<Sample>>,
    pub(crate) failures: Vec<String>,
}

impl Single {
    fn vals(&self, lat: u64, k: Kind, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
        self.samples
            .get(&(lat, k))
            .map(|v| v.iter().map(f).collect())
            .unwrap_or_default()
    }
    fn wall(&self, lat: u64, k: Kind) -> Option<stats::Summary> {
        summarize(&self.vals(lat, k, |s| s.exec.wall_ms))
    }
    fn cpu(&self, lat: u64, k: Kind) -> Option<stats::Summary> {
        summarize(&self.vals(lat, k, |s| s.exec.cpu_ms))
    }
    fn rss(&self, lat: u64, k: Kind) -> Option<stats::Summary> {
        summarize(&self.vals(lat, k, |s| s.exec.maxrss_kib as f64 / 1024.0))
    }
    fn calls(&self, k: Kind, f: impl Fn(&OpCalls) -> u64) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|((_, kind), _)| *kind == k)
            .flat_map(|(_, v)| v.iter().map(|s| f(&s.calls) as f64))
            .collect()
    }
}

/// One measured operation: run, check the simulator agrees, count the calls.
pub(crate) fn measure(
    ctx: &Ctx,
    out: &mut Single,
    record: Option<(u64, Kind)>,
    cmd: &mut Command,
    stdin: &[u8],
    check: impl Fn(&Sim) -> bool,
) -> bool {
    let before = ctx.sim.calls();
    let exec = match child::run(cmd, stdin, None) {
        Ok(e) => e,
        Err(e) => {
            out.failures.push(e);
            return false;
        }
    };
    let calls = delta(&before, &ctx.sim.calls());
    let what = record.map(|(l, k)| format!("{} at {l} ms", k.label()));
    if !exec.ok() {
        out.failures.push(format!(
            "{}: {}",
            what.unwrap_or_else(|| "warm-up".into()),
            exec.failure()
        ));
        return false;
    }
    if !check(&ctx.sim) {
        out.failures.push(format!(
            "{}: succeeded but the simulator disagrees",
            what.unwrap_or_else(|| "warm-up".into())
        ));
        return false;
    }
    if let Some(key) = record {
        out.samples
            .entry(key)
            .or_default()
            .push(Sample { exec, calls });
    }
    true
}

pub(crate) fn single(ctx: &Ctx, python: Option<&Python>) -> Result<Single, String> {
    let node = &ctx.layout.bench;
    let eni = &node.enis[0];
    let links = Links::create("b", &[eni.mac.as_str()])?;
    let master = &links.names[0];
    let ec2 = ctx.sim.ec2_url();
    let imds = ctx.sim.imds_url(&node.instance);
    let home = ctx.work.join("home");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench/sample_ipmgmt.py");
    let ips: Vec<Ipv4Addr> = (0..5)
        .map(|i| Ipv4Addr::from(u32::from(eni.first_pod) + i))
        .collect();
    let mut out = Single::default();
    for lat in [0, LATENCY_MS] {
        ctx.sim.reset();
        ctx.sim.set_faults(faults(lat, None));
        let warm_dir = ctx.work.join(format!("warm-{lat}"));
        eprintln!(
            "bench: one pod at a time, EC2 latency {lat} ms: {} runs (+{WARMUP} warm-up)",
            ctx.opts.runs
        );
        for i in 0..WARMUP + ctx.opts.runs {
            let rec = |k: Kind| (i >= WARMUP).then_some((lat, k));
            // First ADD on the ENI: a state dir that has never seen it (IMDS lookup + tag check).
            let first_dir = ctx.work.join(format!("first-{lat}-{i}"));
            let c = format!("first{lat}x{i}");
            let conf = pod_conf(ctx, node, master, &first_dir, ips[0], 20).to_string();
            measure(
                ctx,
                &mut out,
                rec(Kind::FirstAdd),
                &mut plugin_cmd(&ctx.plugin, "ADD", &c, conf.as_bytes()),
                conf.as_bytes(),
                |s| holds(s, &eni.id, ips[0]),
            );
            measure(
                ctx,
                &mut out,
                None,
                &mut plugin_cmd(&ctx.plugin, "DEL", &c, conf.as_bytes()),
                conf.as_bytes(),
                |s| !holds(s, &eni.id, ips[0]),
            );
            let _ = std::fs::remove_dir_all(&first_dir);

            // Later ADD and its DEL: the state dir already knows the ENI.
            let c = format!("warm{lat}x{i}");
            let conf = pod_conf(ctx, node, master, &warm_dir, ips[1], 20).to_string();
            measure(
                ctx,
                &mut out,
                rec(Kind::Add),
                &mut plugin_cmd(&ctx.plugin, "ADD", &c, conf.as_bytes()),
                conf.as_bytes(),
                |s| holds(s, &eni.id, ips[1]),
            );
            measure(
                ctx,
                &mut out,
                rec(Kind::Del),
                &mut plugin_cmd(&ctx.plugin, "DEL", &c, conf.as_bytes()),
                conf.as_bytes(),
                |s| !holds(s, &eni.id, ips[1]),
            );

            // The floor, both credential paths; the simulator takes the address back out of band.
            let mut floor = Command::new(&ctx.floor);
            floor
                .env_clear()
                .env("PATH", PATH_ENV)
                .env("AWS_ACCESS_KEY_ID", "AKIDBENCHFLOOR000001")
                .env(
                    "AWS_SECRET_ACCESS_KEY",
                    "bench/floor/secret/not/a/real/key/000001",
                )
                .env("AWS_REGION", REGION)
                .args([&ec2, &eni.id, &ips[2].to_string()]);
            measure(ctx, &mut out, rec(Kind::FloorEnv), &mut floor, b"", |s| {
                holds(s, &eni.id, ips[2])
            });
            ctx.sim.unassign(&eni.id, &[IpAddr::V4(ips[2])]);
            let mut floor = Command::new(&ctx.floor);
            floor.env_clear().env("PATH", PATH_ENV).args([
                &ec2,
                &eni.id,
                &ips[3].to_string(),
                "--imds",
                &imds,
            ]);
            measure(ctx, &mut out, rec(Kind::FloorImds), &mut floor, b"", |s| {
                holds(s, &eni.id, ips[3])
            });
            ctx.sim.unassign(&eni.id, &[IpAddr::V4(ips[3])]);

            if let Some(py) = python {
                let mut cmd = Command::new(&py.exe);
                cmd.env_clear()
                    .env("PATH", PATH_ENV)
                    .env("HOME", &home)
                    .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
                    .arg(&script)
                    .args([&ec2, &imds, &ips[4].to_string()]);
                measure(ctx, &mut out, rec(Kind::Python), &mut cmd, b"", |s| {
                    holds(s, &eni.id, ips[4])
                });
                ctx.sim.unassign(&eni.id, &[IpAddr::V4(ips[4])]);
            }
        }
    }
    drop(links);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Items 5 and 6: many plugin processes at once.

/// Sections 1–4 of the report.
pub(crate) fn report(w: &mut String, ctx: &Ctx, python: &Result<Python, String>, single: &Single) {
    let o = &ctx.opts;
    // 1 + 2
    let _ = writeln!(w, "## 1–2. One ADD / DEL, whole process, and the floor\n");
    let _ = writeln!(
        w,
        "{} runs each (after {WARMUP} warm-up runs), interleaved: first ADD, its DEL, later ADD, DEL, floor (env), floor (IMDS), Python. IMDS latency 1 ms; EC2 latency as shown, every action.\n",
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
            Kind::Del => format!(
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
