//! Group commit per ENI, on disk: each plugin process that wants an ENI's addresses changed writes
//! a request here; whoever holds the ENI's batch lock sends every pending request in one EC2 call
//! per kind, then writes each requester its outcome. No daemon, no batch window: a lone request
//! is sent at once, and requests that arrive while a call is in flight share the next one.
//!
//! ```text
//! <node>/spool/<eni>/<ticket>.req    pending: what a live process asks for, until its deadline
//! <node>/spool/<eni>/<ticket>.out    its outcome, for the requester to pick up
//! <node>/locks/batch-<eni>.lock      held by the process that sends
//! ```
//! A request of a process that died, or whose deadline passed, is dropped unsent: the addresses
//! it named are no longer locked by it, so sending it later could undo someone else's change.

use super::fs::{create_private_dir, list_dir, read_json, write_json_atomic, Durability};
use super::lock::Locks;
use super::{NodeDir, StoreError};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Outcomes nobody picked up (the requester gave up) are removed after this long.
const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// The kind of EC2 call a request needs; requests of one kind share a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BatchOp {
    AssignIpv4 { allow_reassignment: bool },
    UnassignIpv4,
    AssignIpv6,
    UnassignIpv6,
}

impl BatchOp {
    pub fn action(self) -> &'static str {
        match self {
            BatchOp::AssignIpv4 { .. } => "AssignPrivateIpAddresses",
            BatchOp::UnassignIpv4 => "UnassignPrivateIpAddresses",
            BatchOp::AssignIpv6 => "AssignIpv6Addresses",
            BatchOp::UnassignIpv6 => "UnassignIpv6Addresses",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRequest {
    pub op: BatchOp,
    pub addresses: Vec<IpAddr>,
    /// The requester, with its start time so that a recycled pid is not mistaken for it.
    pub pid: u32,
    pub start_time: u64,
    pub deadline_unix_ms: u64,
    /// How often a leader sent it: more than once means an earlier send may have taken effect.
    #[serde(default)]
    pub sends: u32,
}

/// What EC2 answered for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BatchOutcome {
    Done,
    Refused {
        code: String,
        message: String,
        maybe_applied: bool,
    },
}

/// One ENI's spool.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    lock: PathBuf,
}

impl NodeDir {
    pub fn spool(&self, eni: &str) -> Spool {
        let safe: String = eni
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        Spool {
            dir: self.root().join("spool").join(&safe),
            lock: self.locks().join(format!("batch-{safe}.lock")),
        }
    }
}

impl Spool {
    /// Files the request; the ticket names it from now on.
    pub fn submit(
        &self,
        op: BatchOp,
        addresses: &[IpAddr],
        deadline: Instant,
    ) -> Result<String, StoreError> {
        create_private_dir(&self.dir)?;
        let (pid, start_time) = (std::process::id(), own_start_time());
        let ticket = format!("{pid}-{start_time}-{}", unique());
        let req = BatchRequest {
            op,
            addresses: addresses.to_vec(),
            pid,
            start_time,
            deadline_unix_ms: unix_ms_at(deadline),
            sends: 0,
        };
        write_json_atomic(&self.req(&ticket), &req, Durability::ProcessCrashSafe)?;
        Ok(ticket)
    }

    /// Becomes the sender: waits for the batch lock until `deadline`.
    pub fn lead(&self, deadline: Instant) -> Result<Locks, StoreError> {
        Locks::acquire(std::slice::from_ref(&self.lock), deadline)
    }

    /// The outcome of `ticket`, if a sender wrote one (it is then removed).
    pub fn take_outcome(&self, ticket: &str) -> Option<BatchOutcome> {
        let path = self.out(ticket);
        let outcome = read_json::<BatchOutcome>(&path).ok().flatten()?;
        let _ = std::fs::remove_file(&path);
        Some(outcome)
    }

    /// The requester gives up: nobody may send the request any more.
    pub fn withdraw(&self, ticket: &str) {
        let _ = std::fs::remove_file(self.req(ticket));
        let _ = std::fs::remove_file(self.out(ticket));
    }

    /// Pending requests of live processes, oldest first; the rest are removed. Call with the lock.
    pub fn pending(&self) -> Vec<(String, BatchRequest)> {
        let now = unix_ms_at(Instant::now());
        let mut out = Vec::new();
        for file in list_dir(&self.dir).unwrap_or_default() {
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(ticket) = name.strip_suffix(".req") {
                match read_json::<BatchRequest>(&file).ok().flatten() {
                    Some(r) if r.deadline_unix_ms > now && alive(r.pid, r.start_time) => {
                        out.push((ticket.to_string(), r))
                    }
                    _ => {
                        let _ = std::fs::remove_file(&file);
                    }
                }
            } else if name.ends_with(".out") && is_older_than(&file, ORPHAN_AGE) {
                let _ = std::fs::remove_file(&file);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Notes that the request is being sent, before it is.
    pub fn mark_sent(&self, ticket: &str, request: &mut BatchRequest) {
        request.sends += 1;
        let _ = write_json_atomic(&self.req(ticket), request, Durability::ProcessCrashSafe);
    }

    /// Writes the requester its outcome and retires the request.
    pub fn answer(&self, ticket: &str, outcome: &BatchOutcome) {
        if self.req(ticket).exists() {
            let _ = write_json_atomic(&self.out(ticket), outcome, Durability::ProcessCrashSafe);
        }
        let _ = std::fs::remove_file(self.req(ticket));
    }

    fn req(&self, ticket: &str) -> PathBuf {
        self.dir.join(format!("{ticket}.req"))
    }

    fn out(&self, ticket: &str) -> PathBuf {
        self.dir.join(format!("{ticket}.out"))
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn unix_ms_at(t: Instant) -> u64 {
    let now = Instant::now();
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if t >= now {
        base + t.duration_since(now).as_millis() as u64
    } else {
        base.saturating_sub(now.duration_since(t).as_millis() as u64)
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
fn start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

fn own_start_time() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| start_time(&s))
        .unwrap_or(0)
}

fn alive(pid: u32, started: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| start_time(&s))
        .is_some_and(|t| t == started)
}

fn is_older_than(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|e| e > age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeDir::new(dir.path());
        node.create().unwrap();
        let s = node.spool("eni-0b000000000000001");
        (dir, s)
    }

    #[test]
    fn a_request_is_pending_until_answered_and_the_answer_is_taken_once() {
        let (_d, s) = spool();
        let far = Instant::now() + Duration::from_secs(30);
        let t = s
            .submit(BatchOp::UnassignIpv4, &["198.18.1.5".parse().unwrap()], far)
            .unwrap();
        let pending = s.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, t);
        s.answer(&t, &BatchOutcome::Done);
        assert!(s.pending().is_empty());
        assert_eq!(s.take_outcome(&t), Some(BatchOutcome::Done));
        assert_eq!(s.take_outcome(&t), None);
    }

    #[test]
    fn requests_of_dead_processes_or_past_their_deadline_are_dropped_unsent() {
        let (_d, s) = spool();
        let far = Instant::now() + Duration::from_secs(30);
        let t = s
            .submit(BatchOp::AssignIpv6, &["2001:db8::5".parse().unwrap()], far)
            .unwrap();
        let mut dead = read_json::<BatchRequest>(&s.req(&t)).unwrap().unwrap();
        dead.start_time += 1; // a recycled pid
        write_json_atomic(&s.req("dead"), &dead, Durability::ProcessCrashSafe).unwrap();
        let mut late = dead.clone();
        late.start_time -= 1;
        late.deadline_unix_ms = 1;
        write_json_atomic(&s.req("late"), &late, Durability::ProcessCrashSafe).unwrap();
        let pending: Vec<String> = s.pending().into_iter().map(|(t, _)| t).collect();
        assert_eq!(pending, vec![t]);
        assert!(!s.req("dead").exists() && !s.req("late").exists());
    }

    #[test]
    fn a_withdrawn_request_gets_no_answer() {
        let (_d, s) = spool();
        let far = Instant::now() + Duration::from_secs(30);
        let t = s
            .submit(BatchOp::UnassignIpv4, &["198.18.1.5".parse().unwrap()], far)
            .unwrap();
        s.withdraw(&t);
        s.answer(&t, &BatchOutcome::Done);
        assert_eq!(s.take_outcome(&t), None);
    }

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces_and_parens() {
        let stat = "123 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 rest";
        assert_eq!(start_time(stat), Some(987654));
    }
}
