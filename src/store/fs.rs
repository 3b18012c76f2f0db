//! Small file primitives: private dirs, atomic JSON replace, tolerant reads.

use super::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` and any missing parents with mode 0700; a directory that already exists keeps its
/// mode, since a path from a NetworkAttachmentDefinition may name a directory that is not ours.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor {
        match std::fs::symlink_metadata(d) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(StoreError::io(
                    "use as a directory",
                    d,
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(d),
            Err(e) => return Err(StoreError::io("inspect", d, e)),
        }
        cursor = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(d) {
            // The umask may have narrowed the mode; only a directory we just made is set to 0700.
            Ok(()) => std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| StoreError::io("set the mode of", d, e))?,
            // Another plugin process made it first; it is ours all the same.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io("create state dir", d, e)),
        }
    }
    Ok(())
}

/// Moves a file that cannot be read as what it should be out of the way, so that it blocks nothing.
pub(crate) fn quarantine(file: &Path, into: &Path) -> Result<PathBuf, StoreError> {
    create_private_dir(into)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "record".into());
    let target = into.join(format!(
        "{name}.{}.{}",
        crate::store::now_unix(),
        std::process::id()
    ));
    std::fs::rename(file, &target).map_err(|e| StoreError::io("quarantine", file, e))?;
    Ok(target)
}

pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("list", dir, e)),
    }
}

/// `None` when the file does not exist; a parse failure is an error naming the file.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let bytes = match read_capped(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
        Err(e) => return Err(StoreError::io("read", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// No state file of ours is larger; a bigger one is not ours, and is not read into memory.
pub(crate) const MAX_STATE_FILE: u64 = 1 << 20;

/// Reads a state file that anyone with root on the node could have replaced: never blocks on a
/// FIFO or device (O_NONBLOCK), never follows a symlink, reads only regular files of sane size.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a symlink, not a file the plugin wrote",
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_STATE_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} bytes, over the {MAX_STATE_FILE}-byte cap", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_STATE_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_STATE_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("grew over the {MAX_STATE_FILE}-byte cap while read"),
        ));
    }
    Ok(bytes)
}

/// Whether a write must survive a node crash (fsync, ~10 ms) or only a process crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    Durable,
    ProcessCrashSafe,
}

/// Temp file in the same dir, rename: readers see the old or the new file. `Durable` adds fsync of
/// the file and the dir, so the write also survives a node crash.
pub(crate) fn write_json_atomic<T: Serialize>(
    path: &Path,
    value: &T,
    durability: Durability,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("cannot encode: {e}"),
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StoreError::io("create a temp file for", path, e))?;
    file.write_all(&bytes)
        .and_then(|()| match durability {
            Durability::Durable => file.sync_all(),
            Durability::ProcessCrashSafe => Ok(()),
        })
        .map_err(|e| StoreError::io("write", path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StoreError::io("replace", path, e)
    })?;
    if durability == Durability::Durable {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
