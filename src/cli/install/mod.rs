//! `aws-eni-ip install`: puts this binary into the node's CNI bin dir and, with `--keep`, keeps it
//! there. This is what the DaemonSet's only container runs.
//!
//! The copy is atomic (temp file in the same dir, fsync, chmod 0755, rename, fsync the dir): a
//! runtime that executes the plugin while we install sees the old file or the new one, never half
//! of one, and never gets ETXTBSY because nothing writes to the path it executes.

mod installer;
mod verify;

use installer::Installer;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: aws-eni-ip install [--cni-bin-dir DIR] [--name NAME] [--source PATH] [--keep [--interval SECONDS]]

Copies the aws-eni-ip binary into the CNI bin dir atomically (temp file, fsync, rename), writes
nothing when the installed copy is already identical, and checks the copy by running
`<installed> version` before it replaces anything.

  --cni-bin-dir DIR    where the container runtime looks for CNI plugins (default /opt/cni/bin)
  --name NAME          file name of the installed plugin (default aws-eni-ip)
  --source PATH        binary to install (default: the running binary)
  --keep               stay running; re-install when the file is removed or changed;
                       exit 0 on SIGTERM or SIGINT
  --interval SECONDS   how often --keep checks the file (default 10; fractions allowed)
  -h, --help           print this help";

const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
const DEFAULT_NAME: &str = "aws-eni-ip";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const MAX_INTERVAL_SECS: f64 = 86_400.0;

#[derive(Debug, Clone, PartialEq)]
struct Options {
    bin_dir: PathBuf,
    name: String,
    source: Option<PathBuf>,
    keep: bool,
    interval: Duration,
}

#[derive(Debug, PartialEq)]
enum Invocation {
    Install(Options),
    Help,
}

/// Entry point for `aws-eni-ip install ARGS…` (args are what follows "install").
pub fn run(args: &[String]) -> ExitCode {
    let opts = match parse_args(args) {
        Ok(Invocation::Install(opts)) => opts,
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("aws-eni-ip install: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let installer = Installer::new(opts);
    let result = if installer.opts.keep {
        installer.keep()
    } else {
        installer.once().map(|_| ())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aws-eni-ip install: error: {err}");
            ExitCode::from(1)
        }
    }
}

fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut opts = Options {
        bin_dir: PathBuf::from(DEFAULT_BIN_DIR),
        name: DEFAULT_NAME.to_string(),
        source: None,
        keep: false,
        interval: DEFAULT_INTERVAL,
    };
    let mut interval_given = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let takes_value = matches!(flag, "--cni-bin-dir" | "--name" | "--source" | "--interval");
        if !takes_value && inline.is_some() {
            return Err(format!("{flag} takes no value"));
        }
        let mut value = || -> Result<String, String> {
            match inline.clone().or_else(|| rest.next().cloned()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("{flag} needs a value")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Invocation::Help),
            "--keep" => opts.keep = true,
            "--cni-bin-dir" => opts.bin_dir = PathBuf::from(value()?),
            "--source" => opts.source = Some(PathBuf::from(value()?)),
            "--name" => {
                let name = value()?;
                if name.contains('/') || name == "." || name == ".." || name.starts_with('.') {
                    return Err(format!(
                        "--name {name:?} must be a plain file name (no '/', not starting with '.')"
                    ));
                }
                opts.name = name;
            }
            "--interval" => {
                let raw = value()?;
                let secs: f64 = raw
                    .parse()
                    .map_err(|_| format!("--interval {raw:?} is not a number of seconds"))?;
                if !secs.is_finite() || secs <= 0.0 || secs > MAX_INTERVAL_SECS {
                    return Err(format!(
                        "--interval {raw} must be more than 0 and at most {MAX_INTERVAL_SECS} seconds"
                    ));
                }
                opts.interval = Duration::from_secs_f64(secs);
                interval_given = true;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if interval_given && !opts.keep {
        return Err("--interval only applies with --keep".to_string());
    }
    Ok(Invocation::Install(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn parsed(list: &[&str]) -> Options {
        match parse_args(&args(list)) {
            Ok(Invocation::Install(opts)) => opts,
            other => panic!("{list:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let opts = parsed(&[]);
        assert_eq!(opts.bin_dir, PathBuf::from("/opt/cni/bin"));
        assert_eq!(opts.name, "aws-eni-ip");
        assert_eq!(opts.source, None);
        assert!(!opts.keep);
        assert_eq!(opts.interval, Duration::from_secs(10));
    }

    #[test]
    fn all_flags_separate_and_inline() {
        let a = parsed(&[
            "--cni-bin-dir",
            "/host/opt/cni/bin",
            "--name",
            "eni",
            "--source",
            "/aws-eni-ip",
            "--keep",
            "--interval",
            "0.2",
        ]);
        let b = parsed(&[
            "--cni-bin-dir=/host/opt/cni/bin",
            "--name=eni",
            "--source=/aws-eni-ip",
            "--keep",
            "--interval=0.2",
        ]);
        assert_eq!(a, b);
        assert_eq!(a.bin_dir, PathBuf::from("/host/opt/cni/bin"));
        assert_eq!(a.interval, Duration::from_millis(200));
        assert!(a.keep);
    }

    #[test]
    fn help() {
        assert_eq!(parse_args(&args(&["--help"])), Ok(Invocation::Help));
        assert_eq!(parse_args(&args(&["-h"])), Ok(Invocation::Help));
    }

    #[test]
    fn bad_args_are_refused() {
        for bad in [
            &["--bogus"][..],
            &["extra"],
            &["--cni-bin-dir"],
            &["--cni-bin-dir="],
            &["--name", "a/b"],
            &["--name", ".hidden"],
            &["--keep", "--interval", "x"],
            &["--keep", "--interval", "0"],
            &["--keep", "--interval", "-1"],
            &["--keep", "--interval", "NaN"],
            &["--keep", "--interval", "inf"],
            &["--interval", "1"],
            &["--keep=yes"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
