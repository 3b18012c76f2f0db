//! `aws-eni-ip budget`: the node's pace for mutating EC2 calls — show it, or set its limits (the
//! DaemonSet or an operator does this once per node; every plugin process reads it).

use crate::store::{BudgetLimits, NodeDir, NodeSettings, DEFAULT_NODE_DIR};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: aws-eni-ip budget [--node-dir DIR] [--burst N --refill-per-second R] [--json]

Shows the node's EC2 budget: the limits every plugin process on the node shares (burst, refill
per second), and the bucket now (tokens, and the refill rate after throttling slowed it). With
--burst and --refill-per-second, sets the limits first.

  --node-dir DIR            the node dir (default /var/lib/cni/aws-eni-ip)
  --burst N                 mutating calls the node may send at once (1-1000; default 10)
  --refill-per-second R     calls per second in the long run (0.01-1000; default 5)
  --json                    one JSON object instead of text";

pub fn run(args: &[String]) -> ExitCode {
    let mut dir = PathBuf::from(DEFAULT_NODE_DIR);
    let (mut burst, mut refill, mut json) = (None, None, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        let parsed = match arg.as_str() {
            "--node-dir" => value("--node-dir").map(|v| dir = PathBuf::from(v)),
            "--burst" => value("--burst").and_then(|v| {
                v.parse()
                    .map(|n| burst = Some(n))
                    .map_err(|_| format!("--burst {v:?} is not a whole number"))
            }),
            "--refill-per-second" => value("--refill-per-second").and_then(|v| {
                v.parse()
                    .map(|r| refill = Some(r))
                    .map_err(|_| format!("--refill-per-second {v:?} is not a number"))
            }),
            "--json" => {
                json = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(problem) = parsed {
            return usage(&problem);
        }
    }
    let node = NodeDir::new(&dir);
    match (burst, refill) {
        (None, None) => {}
        (Some(burst), Some(refill_per_second)) => {
            let limits = BudgetLimits {
                burst,
                refill_per_second,
            };
            if let Err(problem) = limits.validate() {
                return usage(&problem);
            }
            let settings = NodeSettings {
                ec2_budget: Some(limits),
            };
            if let Err(e) = std::fs::create_dir_all(&dir)
                .map_err(|e| e.to_string())
                .and_then(|()| node.write_settings(&settings).map_err(|e| e.to_string()))
            {
                eprintln!("aws-eni-ip budget: {e}");
                return ExitCode::from(1);
            }
        }
        _ => return usage("--burst and --refill-per-second go together"),
    }
    let budget = node.budget();
    let (limits, now) = (budget.limits(), budget.current());
    if json {
        let body = serde_json::json!({"limits": limits, "now": now});
        println!("{body}");
    } else {
        println!(
            "limits: burst {}, refill {}/s (node dir {})\nnow:    {:.1} tokens, refill {:.2}/s{}",
            limits.burst,
            limits.refill_per_second,
            dir.display(),
            now.tokens,
            now.rate,
            if now.rate < limits.refill_per_second {
                " (slowed by throttled answers; grows back by itself)"
            } else {
                ""
            }
        );
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("aws-eni-ip budget: {problem}\n{USAGE}");
    ExitCode::from(2)
}
