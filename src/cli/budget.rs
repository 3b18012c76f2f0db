//! `aws-eni-ip budget`: the node's pace for mutating EC2 calls — show it, or set its limits (the
//! DaemonSet or an operator does this once per node; every plugin process reads it).

use crate::store::{BudgetLimits, NodeDir, NodeSettings, DEFAULT_NODE_DIR};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: aws-eni-ip budget [--node-dir DIR] [--burst N --refill-per-second R] [--json]

Shows the node's EC2 budget: the limits every plugin process on the node shares (burst, refill
per second, the operator's per-node rate if set), and each EC2 action's pace now (tokens, the rate
the control law chose, what the account granted lately, congestion episodes). With --burst and
--refill-per-second, sets the limits first.

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
                ..node.settings()
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
    let node_rate = node.settings().node_ec2_rate;
    if json {
        let body = serde_json::json!({"limits": limits, "nodeEc2Rate": node_rate, "now": now});
        println!("{body}");
    } else {
        let share = match node_rate {
            Some(r) => format!("{r}/s per action, set by the operator"),
            None => "derived from what the node observed".into(),
        };
        println!(
            "limits: burst {}, refill at most {}/s per action, node share {share} (node dir {})",
            limits.burst,
            limits.refill_per_second,
            dir.display(),
        );
        if now.actions.is_empty() {
            println!("now:    no mutating EC2 call yet");
        }
        let law = budget.law();
        for (action, p) in &now.actions {
            println!(
                "{action}: {:.1} tokens, pace {:.3}/s, granted {:.3}/s lately, floor {:.3}/s, {} congestion episodes",
                p.tokens,
                p.rate,
                law.goodput(p),
                law.floor(p),
                p.episodes
            );
        }
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("aws-eni-ip budget: {problem}\n{USAGE}");
    ExitCode::from(2)
}
