//! `aws-eni-ip install`: puts this binary into the node's CNI bin dir and, with `--keep`, keeps it
//! there. This is what the DaemonSet's only container runs.
//!
//! The copy is atomic (temp file in the same dir, fsync, chmod 0755, rename, fsync the dir): a
//! runtime that executes the plugin while we install sees the old file or the new one, never half
//! of one, and never gets ETXTBSY because nothing writes to the path it executes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::VERSION;

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
// A wedged binary must not hang the installer (and so the DaemonSet's rollout) forever.
const VERSION_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
// Temp files older than this belong to an installer that died mid-copy, not to a live one.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);
const COMPARE_CHUNK: usize = 64 * 1024;

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

#[derive(Debug, thiserror::Error)]
enum InstallError {
    #[error(
        "cannot read the binary to install {path}: {io}; pass --source PATH naming a readable aws-eni-ip binary"
    )]
    Source { path: PathBuf, io: io::Error },
    #[error(
        "CNI bin dir {path} is not usable: {reason}; create it, mount the host's CNI bin dir there, or pass --cni-bin-dir DIR"
    )]
    BinDir { path: PathBuf, reason: String },
    #[error(
        "cannot {action} {path}: {io}; the CNI bin dir must be writable by this process (the DaemonSet runs as root for this) and have free space"
    )]
    Write {
        action: &'static str,
        path: PathBuf,
        io: io::Error,
    },
    #[error(
        "the new copy of {from} failed its check (running it with `version`): {reason}; nothing was replaced: make sure the source is an aws-eni-ip {VERSION} binary built for this node's architecture"
    )]
    NewCopyBroken { from: PathBuf, reason: String },
    #[error(
        "the installed {path} is identical to the source but failed its check (`{path} version`): {reason}; install an aws-eni-ip {VERSION} binary built for this node's architecture"
    )]
    InstalledBroken { path: PathBuf, reason: String },
}

/// What one pass did to the installed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Installed,
    UpToDate,
}

/// Identity and change markers of the installed file; ctime moves on every write or chmod, even
/// one that restores mtime, so an unchanged fingerprint means unchanged content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(meta: &fs::Metadata) -> Self {
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mode: meta.mode(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
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

struct Installer {
    opts: Options,
    dest: PathBuf,
}

impl Installer {
    fn new(opts: Options) -> Self {
        let dest = opts.bin_dir.join(&opts.name);
        Installer { opts, dest }
    }

    /// Where the bytes come from; /proc/self/exe stays readable even after the running binary's
    /// path is replaced or deleted (e.g. when it installs over itself).
    fn source_path(&self) -> PathBuf {
        match &self.opts.source {
            Some(path) => path.clone(),
            None => PathBuf::from("/proc/self/exe"),
        }
    }

    /// The source as a person would name it in a message.
    fn source_display(&self) -> PathBuf {
        match &self.opts.source {
            Some(path) => path.clone(),
            None => std::env::current_exe().unwrap_or_else(|_| self.source_path()),
        }
    }

    fn check_bin_dir(&self) -> Result<(), InstallError> {
        let bin_dir = &self.opts.bin_dir;
        match fs::metadata(bin_dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(InstallError::BinDir {
                path: bin_dir.clone(),
                reason: "not a directory".to_string(),
            }),
            Err(io) => Err(InstallError::BinDir {
                path: bin_dir.clone(),
                reason: io.to_string(),
            }),
        }
    }

    /// One install pass: nothing written when the installed copy already matches.
    fn once(&self) -> Result<(Outcome, Fingerprint), InstallError> {
        self.check_bin_dir()?;
        let source_path = self.source_path();
        let source_err = |io| InstallError::Source {
            path: self.source_display(),
            io,
        };
        let mut source = File::open(&source_path).map_err(source_err)?;
        let source_meta = source.metadata().map_err(source_err)?;
        if !source_meta.is_file() {
            return Err(source_err(io::Error::other("not a regular file")));
        }

        if self.matches_installed(&mut source, &source_meta)? {
            run_version(&self.dest).map_err(|reason| InstallError::InstalledBroken {
                path: self.dest.clone(),
                reason,
            })?;
            let fingerprint = self.installed_fingerprint()?;
            println!(
                "up to date: {} ({} bytes, version {VERSION}), nothing written",
                self.dest.display(),
                fingerprint.size
            );
            return Ok((Outcome::UpToDate, fingerprint));
        }

        self.remove_stale_temps();
        let temp = self.temp_path();
        let written = self
            .write_temp(&mut source, &temp)
            .and_then(|bytes| {
                run_version(&temp).map_err(|reason| InstallError::NewCopyBroken {
                    from: self.source_display(),
                    reason,
                })?;
                Ok(bytes)
            })
            .and_then(|bytes| {
                fs::rename(&temp, &self.dest).map_err(|io| InstallError::Write {
                    action: "rename the new copy onto",
                    path: self.dest.clone(),
                    io,
                })?;
                Ok(bytes)
            });
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(err) => {
                let _ = fs::remove_file(&temp);
                return Err(err);
            }
        };
        // The rename is durable only once the directory entry is on disk.
        File::open(&self.opts.bin_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|io| InstallError::Write {
                action: "fsync",
                path: self.opts.bin_dir.clone(),
                io,
            })?;
        println!(
            "installed {} ({bytes} bytes, version {VERSION}) from {}",
            self.dest.display(),
            self.source_display().display()
        );
        Ok((Outcome::Installed, self.installed_fingerprint()?))
    }

    fn installed_fingerprint(&self) -> Result<Fingerprint, InstallError> {
        fs::metadata(&self.dest)
            .map(|meta| Fingerprint::of(&meta))
            .map_err(|io| InstallError::Write {
                action: "stat",
                path: self.dest.clone(),
                io,
            })
    }

    /// True when the installed file is executable 0755 and byte-for-byte the source.
    fn matches_installed(
        &self,
        source: &mut File,
        source_meta: &fs::Metadata,
    ) -> Result<bool, InstallError> {
        let installed_meta = match fs::metadata(&self.dest) {
            Ok(meta) => meta,
            Err(io) if io.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(io) => {
                return Err(InstallError::Write {
                    action: "stat",
                    path: self.dest.clone(),
                    io,
                })
            }
        };
        if installed_meta.dev() == source_meta.dev() && installed_meta.ino() == source_meta.ino() {
            return Ok(true);
        }
        if !installed_meta.is_file()
            || installed_meta.len() != source_meta.len()
            || installed_meta.mode() & 0o7777 != 0o755
        {
            return Ok(false);
        }
        let installed = match File::open(&self.dest) {
            Ok(file) => file,
            // Unreadable counts as different: the rewrite will report the real problem.
            Err(_) => return Ok(false),
        };
        let same = same_content(source, installed).map_err(|io| InstallError::Source {
            path: self.source_display(),
            io,
        });
        rewind(source).map_err(|io| InstallError::Source {
            path: self.source_display(),
            io,
        })?;
        same
    }

    fn temp_path(&self) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.opts.bin_dir.join(format!(
            ".{}.tmp-{}-{nanos}",
            self.opts.name,
            std::process::id()
        ))
    }

    fn remove_stale_temps(&self) {
        let prefix = format!(".{}.tmp-", self.opts.name);
        let Ok(entries) = fs::read_dir(&self.opts.bin_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let is_ours = entry.file_name().to_string_lossy().starts_with(&prefix);
            let is_stale = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP_AGE);
            if is_ours && is_stale && fs::remove_file(entry.path()).is_ok() {
                println!("removed stale temp file {}", entry.path().display());
            }
        }
    }

    fn write_temp(&self, source: &mut File, temp: &Path) -> Result<u64, InstallError> {
        let write_err = |action, io| InstallError::Write {
            action,
            path: temp.to_path_buf(),
            io,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(temp)
            .map_err(|io| write_err("create", io))?;
        let bytes = io::copy(source, &mut file).map_err(|io| {
            if io.kind() == io::ErrorKind::WriteZero {
                write_err("write", io)
            } else {
                // io::copy does not say which side failed; name both.
                write_err("copy the binary into", io)
            }
        })?;
        file.flush().map_err(|io| write_err("write", io))?;
        // Explicit chmod: the create mode is filtered by the umask.
        file.set_permissions(fs::Permissions::from_mode(0o755))
            .map_err(|io| write_err("chmod 0755", io))?;
        file.sync_all().map_err(|io| write_err("fsync", io))?;
        Ok(bytes)
    }

    /// `--keep`: install, then re-check every interval until SIGTERM or SIGINT.
    fn keep(&self) -> Result<(), InstallError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|io| InstallError::Write {
                action: "start the signal handler for",
                path: self.dest.clone(),
                io,
            })?;
        runtime.block_on(self.keep_until_signal())
    }

    async fn keep_until_signal(&self) -> Result<(), InstallError> {
        use tokio::signal::unix::{signal, SignalKind};
        let signal_err = |io| InstallError::Write {
            action: "handle signals while keeping",
            path: self.dest.clone(),
            io,
        };
        // Handlers first: as PID 1 in a container, SIGTERM without a handler is ignored.
        let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_err)?;

        let (_, mut last) = self.once()?;
        println!(
            "keeping {} installed, checking every {:?}",
            self.dest.display(),
            self.opts.interval
        );
        let _ = io::stdout().flush();
        loop {
            tokio::select! {
                _ = term.recv() => {
                    println!("SIGTERM: stopping");
                    return Ok(());
                }
                _ = int.recv() => {
                    println!("SIGINT: stopping");
                    return Ok(());
                }
                _ = tokio::time::sleep(self.opts.interval) => {}
            }
            let reason = match fs::metadata(&self.dest) {
                Ok(meta) if Fingerprint::of(&meta) == last => continue,
                Ok(_) => "changed",
                Err(io) if io.kind() == io::ErrorKind::NotFound => "removed",
                Err(_) => "unreadable",
            };
            match self.once() {
                Ok((outcome, fingerprint)) => {
                    if outcome == Outcome::Installed {
                        println!("re-installed {}: it was {reason}", self.dest.display());
                    }
                    last = fingerprint;
                }
                // Transient (disk full, dir remounted): say so and try again next interval.
                Err(err) => eprintln!(
                    "aws-eni-ip install: error: {err}; retrying in {:?}",
                    self.opts.interval
                ),
            }
            let _ = io::stdout().flush();
        }
    }
}

/// Runs `<path> version` and expects our own version line: proves the copy executes here.
fn run_version(path: &Path) -> Result<(), String> {
    let child = Command::new(path)
        .arg("version")
        .env_remove("CNI_COMMAND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|io| format!("cannot execute it: {io}"))?;
    let pid = child.id();
    // Reading on another thread keeps a chatty wrong binary from filling the pipe and stalling us.
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match outcome.recv_timeout(VERSION_CHECK_TIMEOUT) {
        Ok(Ok(output)) => output,
        Ok(Err(io)) => return Err(format!("cannot wait for it: {io}")),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(format!(
                "no answer within {}s",
                VERSION_CHECK_TIMEOUT.as_secs()
            ));
        }
    };
    if !output.status.success() {
        return Err(format!("it exited with {}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first_line = stdout.lines().next().unwrap_or_default();
    let expected = format!("aws-eni-ip {VERSION}");
    if first_line != expected {
        return Err(format!("it printed {first_line:?}, expected {expected:?}"));
    }
    Ok(())
}

fn same_content(a: &mut File, mut b: File) -> io::Result<bool> {
    let mut buf_a = vec![0u8; COMPARE_CHUNK];
    let mut buf_b = vec![0u8; COMPARE_CHUNK];
    loop {
        let n = read_full(a, &mut buf_a)?;
        let m = read_full(&mut b, &mut buf_b)?;
        if n != m || buf_a[..n] != buf_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fills `buf` unless EOF comes first, so two files read in step compare chunk by chunk.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

fn rewind(file: &mut File) -> io::Result<()> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0)).map(|_| ())
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
