//! `ec2-sim [--world FILE] [--bind 127.0.0.1] [--ec2-port 0] [--ready-file PATH]`

use ec2_sim::{Sim, SimOptions, World};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: ec2-sim [--world FILE] [--bind 127.0.0.1] [--ec2-port 0] [--ready-file PATH]

Simulates the EC2 Query API (secondary addresses, ENIs, subnet CIDR reservations, Describe*
including DescribeInstanceTypes; see
README.md), the Auto Scaling CompleteLifecycleAction, and one IMDSv2 endpoint per instance. Without
--world it uses the built-in demo world. When listening it prints one JSON line
{\"ec2\":URL,\"autoscaling\":URL,\"imds\":{ID:URL}} to stdout
(and to --ready-file, atomically), then logs one line per call to stderr until SIGTERM/SIGINT.";

struct Args {
    world: Option<PathBuf>,
    bind: IpAddr,
    ec2_port: u16,
    ready_file: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        world: None,
        bind: IpAddr::from([127, 0, 0, 1]),
        ec2_port: 0,
        ready_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--world" => a.world = Some(value()?.into()),
            "--bind" => {
                let v = value()?;
                a.bind = v
                    .parse()
                    .map_err(|_| format!("--bind {v:?} is not an IP address"))?;
            }
            "--ec2-port" => {
                let v = value()?;
                a.ec2_port = v
                    .parse()
                    .map_err(|_| format!("--ec2-port {v:?} is not a port number"))?;
            }
            "--ready-file" => a.ready_file = Some(value()?.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(a))
}

fn write_atomically(path: &PathBuf, content: &str) -> std::io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn run(args: Args) -> Result<(), String> {
    let world = match &args.world {
        None => World::demo(),
        Some(p) => {
            let s = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            World::from_json(&s).map_err(|e| format!("{}: {e}", p.display()))?
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers go in before the ready line so an early SIGTERM still exits cleanly.
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let sim = Sim::start_with(
        world,
        SimOptions {
            bind: args.bind,
            ec2_port: args.ec2_port,
            log: true,
        },
    )
    .map_err(|e| e.to_string())?;
    let ready = sim.endpoints_json();
    // File first, so whoever reads stdout may rely on the file too.
    if let Some(p) = &args.ready_file {
        write_atomically(p, &format!("{ready}\n"))
            .map_err(|e| format!("ready file {}: {e}", p.display()))?;
    }
    println!("{ready}");
    rt.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    sim.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ec2-sim: {e}\n{USAGE}");
            ExitCode::from(2)
        }
        Ok(Some(args)) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ec2-sim: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
