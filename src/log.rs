//! Logs go to `logFile`, never stdout (it carries the CNI reply). One line per operation. The file
//! is capped at `logMaxBytes` and rotated, keeping `logMaxFiles` files (see [`RotatingFile`]).

mod rotation;

pub use rotation::RotatingFile;

use crate::config::{LogLevel, PluginConfig};
use std::sync::Mutex;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(config: &PluginConfig) {
    // A log file that cannot be opened must not fail the pod: stderr is read only when stdout is empty.
    match open(config) {
        Some(file) => install(config.log_level, Mutex::new(file)),
        None => install(config.log_level, std::io::stderr),
    }
}

/// `logFile` is tenant input run as root: a missing dir is made private, an existing one keeps its
/// mode, and a symlink in the file's place is not followed (see [`RotatingFile::open`]).
fn open(config: &PluginConfig) -> Option<RotatingFile> {
    use std::os::unix::fs::DirBuilderExt;
    let path = &config.log_file;
    if let Some(dir) = path.parent() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    RotatingFile::open(path, config.log_max_bytes, config.log_max_files).ok()
}

/// The node agent logs to stdout, where the container runtime collects it.
pub fn init_stdout(level: LogLevel) {
    install(level, std::io::stdout)
}

/// Our events at the chosen level; the SDK's own chatter only when it warns.
fn install<W>(level: LogLevel, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = level_filter(level);
    let targets = Targets::new()
        .with_target("aws_eni_ip", level)
        .with_default(LevelFilter::WARN);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false)
        .with_writer(writer)
        .finish()
        .with(targets)
        .try_init();
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    }
}
