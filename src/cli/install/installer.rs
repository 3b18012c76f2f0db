//! One install pass, and `--keep`'s loop around it.

use super::verify::{rewind, run_version, same_content};
use super::Options;
use crate::VERSION;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Temp files older than this belong to an installer that died mid-copy, not to a live one.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub(super) enum InstallError {
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
pub(super) enum Outcome {
    Installed,
    UpToDate,
}

/// Identity and change markers of the installed file; ctime moves on every write or chmod, even
/// one that restores mtime, so an unchanged fingerprint means unchanged content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
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

pub(super) struct Installer {
    pub(super) opts: Options,
    dest: PathBuf,
}

impl Installer {
    pub(super) fn new(opts: Options) -> Self {
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
    pub(super) fn once(&self) -> Result<(Outcome, Fingerprint), InstallError> {
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
    pub(super) fn keep(&self) -> Result<(), InstallError> {
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
