//! Small file primitives: private dirs, atomic JSON replace, tolerant reads.

use crate::cni::CniError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CniError> {
    let result = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)));
    result.map_err(|e| {
        CniError::io(format!("cannot create state dir {}: {e}", dir.display())).with_details(
            "the plugin runs as root; check that the path is writable or set \"stateDir\"",
        )
    })
}

pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CniError::io(format!("cannot list {}: {e}", dir.display()))),
    }
}

/// `None` when the file does not exist; a parse failure is an error naming the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, CniError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CniError::io(format!("cannot read {}: {e}", path.display()))),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        CniError::io(format!("state file {} is corrupt: {e}", path.display()))
            .with_details("inspect it; removing it makes the plugin forget that attachment")
    })
}

/// Whether a write must survive a node crash (fsync, ~10 ms) or only a process crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Durable,
    ProcessCrashSafe,
}

/// Temp file in the same dir, rename: readers see the old or the new file. `Durable` adds fsync of
/// the file and the dir, so the write also survives a node crash.
pub fn write_json_atomic<T: Serialize>(
    path: &Path,
    value: &T,
    durability: Durability,
) -> Result<(), CniError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |what: &str, e: std::io::Error| {
        CniError::io(format!("cannot {what} {}: {e}", path.display()))
            .with_details("check free space and permissions of the state dir")
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| CniError::io(format!("cannot encode {}: {e}", path.display())))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create a temp file for", e))?;
    file.write_all(&bytes)
        .and_then(|()| match durability {
            Durability::Durable => file.sync_all(),
            Durability::ProcessCrashSafe => Ok(()),
        })
        .map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("replace", e)
    })?;
    if durability == Durability::Durable {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
