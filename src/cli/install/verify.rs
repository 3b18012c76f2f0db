//! Checks on a copy: does it run as our version, is it byte-identical to the source.

use crate::VERSION;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

// A wedged binary must not hang the installer (and so the DaemonSet's rollout) forever.
const VERSION_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
const COMPARE_CHUNK: usize = 64 * 1024;

/// Runs `<path> version` and expects our own version line: proves the copy executes here.
pub(super) fn run_version(path: &Path) -> Result<(), String> {
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

pub(super) fn same_content(a: &mut File, mut b: File) -> io::Result<bool> {
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

pub(super) fn rewind(file: &mut File) -> io::Result<()> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0)).map(|_| ())
}
