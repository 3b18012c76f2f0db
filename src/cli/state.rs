//! `aws-eni-ip state`: what this node's store says it assigned, for operators chasing a leak or a
//! pod without connectivity. Read-only: creates nothing, changes no mode, moves no file, takes no lock.

use crate::config::DEFAULT_STATE_DIR;
use crate::store::{NodeDir, Phase, Store};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: aws-eni-ip state [--state-dir DIR] [--json]

Lists the attachments this node's state store holds: network, container, interface, ENI, the
addresses assigned to it, and whether the ADD finished (\"assigning\" = interrupted; DEL or GC
releases it).

  --state-dir DIR   the plugin's stateDir (default /var/lib/cni/aws-eni-ip)
  --json            one JSON array instead of a table";

pub fn run(args: &[String]) -> ExitCode {
    let mut dir = PathBuf::from(DEFAULT_STATE_DIR);
    let mut json = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--state-dir" => match it.next() {
                Some(d) => dir = PathBuf::from(d),
                None => return usage("--state-dir needs a directory"),
            },
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    if !dir.is_dir() {
        eprintln!(
            "aws-eni-ip state: {} does not exist: no attachment was ever recorded there",
            dir.display()
        );
        return ExitCode::from(1);
    }
    let records = match Store::open_existing(&dir, NodeDir::from_env()).and_then(|s| s.all()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aws-eni-ip state: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_else(|_| "[]".into())
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<20} {:<24} {:<8} {:<22} {:<9} ADDRESSES",
        "NETWORK", "CONTAINER", "IFNAME", "ENI", "PHASE"
    );
    for r in &records {
        let container: String = r.container_id.chars().take(24).collect();
        let phase = match r.phase {
            Phase::Assigning => "assigning",
            Phase::Assigned => "assigned",
        };
        println!(
            "{:<20} {:<24} {:<8} {:<22} {:<9} {}",
            r.network,
            container,
            r.ifname,
            r.eni_id,
            phase,
            crate::commands::list(&r.addresses)
        );
    }
    println!("{} attachment(s) in {}", records.len(), dir.display());
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("aws-eni-ip state: {problem}\n{USAGE}");
    ExitCode::from(2)
}
