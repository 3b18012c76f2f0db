//! The log file with a size cap, shared by every plugin process on the node.
//!
//! Each line is one `write(2)` to an `O_APPEND` file while holding an exclusive flock on
//! `<logFile>.lock`, and the size check, the rotation and the write happen under that one lock. So a
//! line is never written into a file that is being renamed away, and every file stays within the
//! cap (a single line larger than the cap gets a file of its own). A plugin process writes a line
//! or two, so serialising writers costs nothing that matters; a shared lock for writers would let
//! two of them pass the same size check and overrun the cap together. Rotation renames `log.(n-2)` → `log.(n-1)`, …, `log` → `log.1`, the
//! way logrotate does; a process that still holds the old file sees its inode differ from the
//! path's and reopens. Failures never fail the pod: the line goes to the file as it is.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a process appends its log lines; cheap to create, one per process.
pub struct RotatingFile {
    path: PathBuf,
    lock: Option<File>,
    file: File,
    max_bytes: u64,
    max_files: u32,
}

impl RotatingFile {
    /// Opens (creating) `path` for appending, and `<path>.lock` beside it.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> io::Result<RotatingFile> {
        let file = append(path)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(lock_path(path))
            .ok();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            lock,
            file,
            max_bytes,
            max_files: max_files.max(1),
        })
    }

    /// The file that `n` rotations ago was the live one (`n` = 0: the live one).
    pub fn generation(path: &Path, n: u32) -> PathBuf {
        if n == 0 {
            return path.to_path_buf();
        }
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let _held = self.flock();
        // Another process may have rotated since our last line.
        self.follow_path()?;
        if self.is_full(line.len()) {
            self.rotate();
            self.file = append(&self.path)?;
        }
        self.file.write_all(line)
    }

    /// Without the lock file (unwritable dir) lines are still written, just not coordinated.
    fn flock(&self) -> Option<Flock<File>> {
        let lock = self.lock.as_ref()?.try_clone().ok()?;
        Flock::lock(lock, FlockArg::LockExclusive).ok()
    }

    fn is_full(&self, incoming: usize) -> bool {
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        size > 0 && size + incoming as u64 > self.max_bytes
    }

    /// Reopens when the path no longer names our file (rotated, or removed by a person).
    fn follow_path(&mut self) -> io::Result<()> {
        let ours = self.file.metadata()?;
        let current = fs::metadata(&self.path);
        let same = current.is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino());
        if !same {
            self.file = append(&self.path)?;
        }
        Ok(())
    }

    fn rotate(&self) {
        let oldest = RotatingFile::generation(&self.path, self.max_files - 1);
        let _ = fs::remove_file(&oldest);
        for n in (1..self.max_files).rev() {
            let from = RotatingFile::generation(&self.path, n - 1);
            let _ = fs::rename(&from, RotatingFile::generation(&self.path, n));
        }
    }
}

impl Write for RotatingFile {
    /// tracing-subscriber hands over one whole formatted line per call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Owner and group may read; a symlink in the log's place is not followed (tenant input as root).
fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn rotates_before_a_line_would_pass_the_cap_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.log");
        let mut log = RotatingFile::open(&path, 100, 3).unwrap();
        for i in 0..12 {
            log.write_all(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes())
                .unwrap();
        }
        // 40-byte lines, cap 100: two lines a file; three files kept.
        assert_eq!(lines_of(&path).len(), 2);
        assert!(lines_of(&path)[1].starts_with("line 11"));
        assert!(lines_of(&RotatingFile::generation(&path, 1))[0].starts_with("line 08"));
        assert!(lines_of(&RotatingFile::generation(&path, 2))[0].starts_with("line 06"));
        assert!(!RotatingFile::generation(&path, 3).exists());
        for n in 0..3 {
            let size = fs::metadata(RotatingFile::generation(&path, n))
                .unwrap()
                .len();
            assert!(size <= 100, "generation {n}: {size} bytes");
        }
    }

    #[test]
    fn a_line_larger_than_the_cap_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.log");
        let mut log = RotatingFile::open(&path, 10, 2).unwrap();
        log.write_all(b"short\n").unwrap();
        log.write_all(b"a line longer than ten bytes\n").unwrap();
        assert_eq!(lines_of(&path), ["a line longer than ten bytes"]);
        assert_eq!(lines_of(&RotatingFile::generation(&path, 1)), ["short"]);
    }

    #[test]
    fn one_file_means_the_live_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.log");
        let mut log = RotatingFile::open(&path, 10, 1).unwrap();
        log.write_all(b"first 1\n").unwrap();
        log.write_all(b"second 2\n").unwrap();
        assert_eq!(lines_of(&path), ["second 2"]);
        assert!(!RotatingFile::generation(&path, 1).exists());
    }

    #[test]
    fn a_removed_log_file_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.log");
        let mut log = RotatingFile::open(&path, 1000, 3).unwrap();
        log.write_all(b"before\n").unwrap();
        fs::remove_file(&path).unwrap();
        log.write_all(b"after\n").unwrap();
        assert_eq!(lines_of(&path), ["after"]);
    }
}
