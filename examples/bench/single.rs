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
    IpamAdd,
    FloorEnv,
    FloorImds,
    Python,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::FirstAdd => "first ADD on the ENI (empty state dir)",
            Kind::Add => "ADD (later ones)",
            Kind::Del => "DEL",
            Kind::IpamAdd => "IPAM mode ADD (EC2 chooses the address)",
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
    pub(crate) fn vals(&self, lat: u64, k: Kind, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
        self.samples
            .get(&(lat, k))
            .map(|v| v.iter().map(f).collect())
            .unwrap_or_default()
    }
    pub(crate) fn wall(&self, lat: u64, k: Kind) -> Option<stats::Summary> {
        summarize(&self.vals(lat, k, |s| s.exec.wall_ms))
    }
    pub(crate) fn cpu(&self, lat: u64, k: Kind) -> Option<stats::Summary> {
        summarize(&self.vals(lat, k, |s| s.exec.cpu_ms))
    }
    pub(crate) fn rss(&self, lat: u64, k: Kind) -> Option<stats::Summary> {
        summarize(&self.vals(lat, k, |s| s.exec.maxrss_kib as f64 / 1024.0))
    }
    pub(crate) fn calls(&self, k: Kind, f: impl Fn(&OpCalls) -> u64) -> Vec<f64> {
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

/// This section measures lone operations, which find a token waiting: the bench's own pace (an
/// operation every few ms, for minutes) would otherwise meet the node budget, which sections 5
/// and 6 measure with its defaults.
fn generous_budget(dir: &Path) -> Result<(), String> {
    let node = aws_eni_ip::store::NodeDir::new(dir.join("state"));
    std::fs::create_dir_all(node.root()).map_err(|e| e.to_string())?;
    node.write_settings(&aws_eni_ip::store::NodeSettings {
        ec2_budget: Some(aws_eni_ip::store::BudgetLimits {
            burst: 1000,
            refill_per_second: 1000.0,
        }),
        node_ec2_rate: None,
    })
    .map_err(|e| e.to_string())
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
        generous_budget(&warm_dir)?;
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

            // IPAM mode: macvlan's IPAM call, EC2 picks the address; its DEL is not measured.
            let c = format!("ipam{lat}x{i}");
            let conf = ipam_conf(ctx, node, master, &warm_dir).to_string();
            let count = |s: &Sim| s.state().eni(&eni.id).map_or(0, |e| e.private_ips.len());
            measure(
                ctx,
                &mut out,
                rec(Kind::IpamAdd),
                &mut plugin_cmd(&ctx.plugin, "ADD", &c, conf.as_bytes()),
                conf.as_bytes(),
                |s| count(s) == 1,
            );
            measure(
                ctx,
                &mut out,
                None,
                &mut plugin_cmd(&ctx.plugin, "DEL", &c, conf.as_bytes()),
                conf.as_bytes(),
                |s| count(s) == 0,
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
