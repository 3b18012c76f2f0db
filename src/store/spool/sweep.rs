//! The leader's look at the spool: what is pending, and what is left over to clean.

use super::ticket::{liveness, Liveness};
use super::{BatchRequest, Spool, SEND_MARGIN_MS};
use crate::store::clock::monotonic_ms;
use crate::store::fs::{list_dir, read_json};
use std::path::Path;
use std::time::Duration;

/// Files of a crashed writer or of an outcome nobody picked up go after this long.
const LEFTOVER_AGE: Duration = Duration::from_secs(600);

impl Spool {
    /// Requests whose requester still waits, before their deadline, oldest first: `.req` ones, and
    /// `.sent` ones (sends > 0) whose leader died mid-call. The rest are removed. Call as leader.
    pub fn pending(&self) -> Vec<(String, BatchRequest)> {
        let now = monotonic_ms();
        let mut out = Vec::new();
        for file in list_dir(&self.dir).unwrap_or_default() {
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((ticket, kind)) = name.rsplit_once('.') else {
                continue;
            };
            match kind {
                "req" | "sent" => {
                    let live = self.file(ticket, "live");
                    match read_json::<BatchRequest>(&file).ok().flatten() {
                        Some(r)
                            if r.deadline_monotonic_ms > now + SEND_MARGIN_MS
                                && liveness(&live) == Liveness::Waiting =>
                        {
                            out.push((ticket.to_string(), r))
                        }
                        _ => {
                            let _ = std::fs::remove_file(&file);
                        }
                    }
                }
                // A ticket whose requester is gone and that names no request any more.
                "live"
                    if liveness(&file) == Liveness::Gone && is_older_than(&file, LEFTOVER_AGE) =>
                {
                    let _ = std::fs::remove_file(&file);
                }
                // Temp files of a writer that crashed before its rename; outcomes nobody took.
                "tmp" | "out" if is_older_than(&file, LEFTOVER_AGE) => {
                    let _ = std::fs::remove_file(&file);
                }
                _ => {}
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn is_older_than(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|e| e > age)
}
