//! Running one child process as a runtime does and measuring it with wait4: wall time, user+sys CPU,
//! peak RSS; and a sampler that adds up the memory of every child alive at once.

use nix::libc;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Exec {
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub maxrss_kib: u64,
    /// Exit code, or minus the signal number.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub ended: Instant,
}

impl Exec {
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// What a failure said, on one line.
    pub fn failure(&self) -> String {
        let text = if self.stdout.trim().is_empty() {
            self.stderr.trim()
        } else {
            self.stdout.trim()
        };
        let mut s: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        s.truncate(300);
        format!("exit {}: {s}", self.code)
    }
}

/// Pids of children alive now, for the memory sampler.
pub type Live = Arc<Mutex<HashSet<i32>>>;

fn tv_ms(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0
}

/// Spawns `cmd`, feeds `stdin`, collects stdout/stderr and reaps it with wait4 for its rusage.
pub fn run(cmd: &mut Command, stdin: &[u8], live: Option<&Live>) -> Result<Exec, String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as i32;
    if let Some(l) = live {
        l.lock().unwrap().insert(pid);
    }
    if let Some(mut i) = child.stdin.take() {
        // A child that exits without reading all of stdin is its own business.
        let _ = i.write_all(stdin);
    }
    let mut stdout = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut tries = 0;
    loop {
        // SAFETY: valid pointers to locals; pid is our unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        tries += 1;
        if err.kind() != std::io::ErrorKind::Interrupted || tries > 100 {
            return Err(format!("wait4({pid}): {err}"));
        }
    }
    let ended = Instant::now();
    if let Some(l) = live {
        l.lock().unwrap().remove(&pid);
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        -1000
    };
    Ok(Exec {
        wall_ms: ended.duration_since(started).as_secs_f64() * 1000.0,
        cpu_ms: tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss.max(0) as u64,
        code,
        stdout,
        stderr,
        ended,
    })
}

/// user+sys CPU of this process so far (the in-process simulator's share of a phase).
pub fn self_cpu_ms() -> f64 {
    // SAFETY: as above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime)
}

/// Highest sums seen over the children alive at the same moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peak {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub procs: usize,
    pub samples: u64,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Peak>,
}

fn page_kib() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64 / 1024
    } else {
        4
    }
}

fn rss_kib(pid: i32, page: u64) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page)
}

fn pss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Sampler {
    /// Samples every `every` until stopped; at most `limit` samples (a bound, not a target).
    pub fn start(live: Live, every: Duration, limit: u64) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let page = page_kib();
            let mut peak = Peak::default();
            while !flag.load(Ordering::Relaxed) && peak.samples < limit {
                let pids: Vec<i32> = live.lock().unwrap().iter().copied().collect();
                let (mut rss, mut pss, mut n) = (0, 0, 0);
                for pid in pids {
                    if let Some(r) = rss_kib(pid, page) {
                        if r > 0 {
                            rss += r;
                            pss += pss_kib(pid).unwrap_or(0);
                            n += 1;
                        }
                    }
                }
                peak.rss_kib = peak.rss_kib.max(rss);
                peak.pss_kib = peak.pss_kib.max(pss);
                peak.procs = peak.procs.max(n);
                peak.samples += 1;
                std::thread::sleep(every);
            }
            peak
        });
        Sampler { stop, handle }
    }

    pub fn stop(self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}
