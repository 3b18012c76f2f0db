//! What the agent scenarios need around the release binary: a pod netns with a `net1`, and the
//! agent's CPU, memory and wake-ups from /proc (the agent itself runs as tests/common/agent.rs does).

use std::process::Command;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A pod network namespace whose `net1` is a veth end; removed on drop.
pub struct Netns {
    pub name: String,
    pub path: String,
    host: String,
}

impl Netns {
    pub fn create(tag: &str) -> Result<Netns, String> {
        let pid = std::process::id() % 10_000;
        let name = format!("aeb{pid}{tag}");
        let host = format!("aeb{pid}h{tag}");
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            path: format!("/var/run/netns/{name}"),
            name,
            host,
        };
        ip(&[
            "link", "add", &ns.host, "type", "veth", "peer", "name", "net1", "netns", &ns.name,
        ])?;
        ip(&["-n", &ns.name, "link", "set", "net1", "up"])?;
        Ok(ns)
    }

    /// The interface index of `net1` inside the namespace.
    pub fn net1_index(&self) -> Result<u32, String> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", "net1"])
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .next()
            .and_then(|i| i.trim().parse().ok())
            .ok_or_else(|| format!("no net1 in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// CPU, memory and context switches of a process, all threads together.
pub struct ProcStats {
    pub cpu_ms: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Voluntary and involuntary context switches: every time one of its threads woke or was woken.
    pub switches: u64,
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

impl ProcStats {
    pub fn read(pid: i32) -> Result<ProcStats, String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu_ms = (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64
            * 1000.0
            / hz;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())? {
            let path = task.map_err(|e| e.to_string())?.path().join("status");
            let s = std::fs::read_to_string(path).unwrap_or_default();
            switches += status_kib(&s, "voluntary_ctxt_switches")
                + status_kib(&s, "nonvoluntary_ctxt_switches");
        }
        Ok(ProcStats {
            cpu_ms,
            rss_kib: status_kib(&status, "VmRSS"),
            hwm_kib: status_kib(&status, "VmHWM"),
            switches,
        })
    }
}
