//! `aws-eni-ip state`: what this node's store says it assigned, for operators chasing a leak or a
//! pod without connectivity. Read-only: creates nothing, changes no mode, moves no file, takes no
//! lock. `--check` also asks EC2 (DescribeNetworkInterfaces, one per ENI) for the drift.

use crate::cloud::aws::AwsClients;
use crate::cloud::retry::RetryPolicy;
use crate::cloud::{Aws, AwsSettings};
use crate::commands::drift::{drift, EniDrift};
use crate::commands::list;
use crate::config::DEFAULT_STATE_DIR;
use crate::store::{Attachment, NodeDir, Phase, Store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: aws-eni-ip state [--state-dir DIR] [--json] [--check [--region R] [--ec2-endpoint URL] [--imds-endpoint URL]]

Lists the attachments this node's state store holds: network, container, interface, ENI, the
addresses assigned to it, and its phase (\"assigning\": an ADD was interrupted, DEL or the agent
releases it; \"releasing\": DEL handed the release to the agent, which retries it).

  --state-dir DIR   the plugin's stateDir (default /var/lib/cni/aws-eni-ip)
  --json            one JSON array instead of a table
  --check           also compare the records with the ENIs they name (EC2 DescribeNetworkInterfaces,
                    credentials and region as the plugin finds them): addresses on an ENI that no
                    record holds, and recorded addresses no longer on their ENI. Exit code 3 when
                    there is drift. Nothing is ever removed.";

struct Args {
    dir: PathBuf,
    json: bool,
    check: bool,
    aws: AwsSettings,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        dir: PathBuf::from(DEFAULT_STATE_DIR),
        json: false,
        check: false,
        aws: AwsSettings::default(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--state-dir" => a.dir = PathBuf::from(value("--state-dir")?),
            "--json" => a.json = true,
            "--check" => a.check = true,
            "--region" => a.aws.region = Some(value("--region")?),
            "--ec2-endpoint" => a.aws.ec2_endpoint = Some(value("--ec2-endpoint")?),
            "--imds-endpoint" => a.aws.imds_endpoint = Some(value("--imds-endpoint")?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(a))
}

pub fn run(args: &[String]) -> ExitCode {
    let a = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("aws-eni-ip state: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !a.dir.is_dir() {
        eprintln!(
            "aws-eni-ip state: {} does not exist: no attachment was ever recorded there",
            a.dir.display()
        );
        return ExitCode::from(1);
    }
    let store = match Store::open_existing(&a.dir, NodeDir::from_env()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("aws-eni-ip state: {e}");
            return ExitCode::from(1);
        }
    };
    let records = match store.all() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aws-eni-ip state: {e}");
            return ExitCode::from(1);
        }
    };
    if a.json && !a.check {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_else(|_| "[]".into())
        );
        return ExitCode::SUCCESS;
    }
    if !a.json {
        print_table(&records, &a.dir);
    }
    if !a.check {
        return ExitCode::SUCCESS;
    }
    // Every record on the node counts: another state dir may hold an address of the same ENI.
    let on_node = match store.all_on_node() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aws-eni-ip state: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match check(&store, &on_node, &a.aws) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aws-eni-ip state --check: {e}");
            return ExitCode::from(1);
        }
    };
    if a.json {
        print_json(&records, &report);
    } else {
        print_drift(&report);
    }
    if report.iter().all(EniDrift::is_clean) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn check(
    store: &Store,
    records: &[Attachment],
    settings: &AwsSettings,
) -> Result<Vec<EniDrift>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Describes only: nothing to draw from the node's budget for mutating calls.
    let aws = AwsClients::new(
        settings.clone(),
        store.region_cache(),
        None,
        RetryPolicy::per_call(Duration::from_secs(30)),
    )
    .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let ec2 = aws.ec2().await.map_err(|e| e.to_string())?;
        Ok(drift(records, ec2).await)
    })
}

fn print_table(records: &[Attachment], dir: &std::path::Path) {
    println!(
        "{:<20} {:<24} {:<8} {:<22} {:<9} ADDRESSES",
        "NETWORK", "CONTAINER", "IFNAME", "ENI", "PHASE"
    );
    for r in records {
        let container: String = r.container_id.chars().take(24).collect();
        println!(
            "{:<20} {:<24} {:<8} {:<22} {:<9} {}",
            r.network,
            container,
            r.ifname,
            r.eni_id,
            r.phase.as_str(),
            list(&r.addresses)
        );
        if let (Phase::Releasing, Some(why)) = (r.phase, &r.release_error) {
            println!("    DEL handed this release to the agent: {why}");
        }
    }
    println!("{} attachment(s) in {}", records.len(), dir.display());
}

fn print_drift(report: &[EniDrift]) {
    println!();
    for d in report {
        if let Some(e) = &d.error {
            println!("{}: cannot check: {e}", d.eni_id);
            continue;
        }
        println!(
            "{}: {} IPv4 (primary included) and {} IPv6 addresses on the ENI",
            d.eni_id, d.ipv4_in_use, d.ipv6_in_use
        );
        if !d.unrecorded.is_empty() {
            println!(
                "  unrecorded (on the ENI, no record on this node holds it; may be someone else's): {}",
                list(&d.unrecorded)
            );
        }
        for (key, addr) in &d.missing {
            println!(
                "  missing (recorded, not on the ENI): {addr} ({} {}/{})",
                key.network, key.container_id, key.ifname
            );
        }
    }
    let drifted = report.iter().filter(|d| !d.is_clean()).count();
    if drifted == 0 {
        println!("no drift: every recorded address is on its ENI, and the ENIs hold nothing else");
    } else {
        println!("drift on {drifted} ENI(s): nothing was removed; check the pods before removing an unrecorded address by hand");
    }
}

fn print_json(records: &[Attachment], report: &[EniDrift]) {
    let enis: Vec<serde_json::Value> = report
        .iter()
        .map(|d| {
            serde_json::json!({
                "eniId": d.eni_id,
                "ipv4InUse": d.ipv4_in_use,
                "ipv6InUse": d.ipv6_in_use,
                "unrecorded": d.unrecorded,
                "missing": d.missing.iter().map(|(k, a)| serde_json::json!({
                    "network": k.network, "containerId": k.container_id, "ifname": k.ifname, "address": a
                })).collect::<Vec<_>>(),
                "error": d.error,
            })
        })
        .collect();
    let out = serde_json::json!({"attachments": records, "enis": enis});
    println!(
        "{}",
        serde_json::to_string_pretty(&out).unwrap_or_else(|_| "{}".into())
    );
}
