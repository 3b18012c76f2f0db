//! The Markdown report: the machine and code it ran on, each scenario's section, binary sizes.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn render(
    ctx: &Ctx,
    python: &Result<python::Python, String>,
    single: &single::Single,
    burst: &[burst::BurstRun],
    scale: &[scale::ScaleRun],
    hook: &Result<hook::HookBench, String>,
    node_agent: (&agent::AgentBench, &follow::FollowBench),
    load: (&str, &str),
    started: Instant,
) -> String {
    let mut r = String::new();
    let w = &mut r;
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let _ = writeln!(w, "# aws-eni-ip benchmark\n");
    let _ = writeln!(
        w,
        "- Machine: {nproc} CPUs (nproc), {}, kernel {}, {} RAM; load average {} at start, {} at end (the machine is shared: expect noise)",
        first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into()),
        read_trim("/proc/sys/kernel/osrelease"),
        first_line_with("/proc/meminfo", "MemTotal").unwrap_or_else(|| "?".into()),
        load.0,
        load.1
    );
    let manifest = env!("CARGO_MANIFEST_DIR");
    let commit = cmd_out("git", &["-C", manifest, "rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "?".into());
    let dirty =
        cmd_out("git", &["-C", manifest, "status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    let _ = writeln!(
        w,
        "- Code: commit {commit}{}; date {}",
        if dirty {
            " plus uncommitted changes"
        } else {
            ""
        },
        cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into())
    );
    let _ = writeln!(
        w,
        "- Method: the release binary `{}` run as a runtime runs it (clean environment, CNI_* variables, config with prevResult on stdin, master = a veth link carrying the ENI's MAC), against ec2-sim in the bench process on 127.0.0.1. Wall, CPU (user+sys of the child) and peak RSS (ru_maxrss) from wait4. Figures are `median [min–max]` over the runs named; ratios are of medians from the same run. The plugin reads credentials and region from IMDS, like on a node.\n",
        ctx.plugin.display()
    );

    single_report::report(w, ctx, python, single);
    burst::report(w, ctx, burst);
    scale::report(w, ctx, scale, nproc);
    let _ = writeln!(w, "## 7. Binary size\n");
    for (name, p) in [
        ("aws-eni-ip (the plugin)", &ctx.plugin),
        ("floor (examples/floor.rs)", &ctx.floor),
    ] {
        let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let stripped = match elf_sections(p) {
            Some(s) if s.iter().any(|n| n == ".symtab" || n.starts_with(".debug")) => {
                "not stripped (has .symtab/.debug)"
            }
            Some(_) => "stripped (no .symtab, no .debug sections)",
            None => "not an ELF64 file?",
        };
        let _ = writeln!(
            w,
            "- {name}: {size} bytes ({:.2} MiB), {stripped}",
            size as f64 / 1048576.0
        );
    }
    let _ = writeln!(
        w,
        "\nRelease profile: lto = \"thin\", codegen-units = 4, strip = true, panic = \"abort\".\n"
    );
    hook::report(w, hook);
    agent::report(w, node_agent.0);
    follow::report(w, node_agent.1);
    let _ = writeln!(
        w,
        "_Bench wall time: {:.0} s._",
        started.elapsed().as_secs_f64()
    );
    r
}

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn loadavg() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Section names of an ELF64 little-endian file (enough to see whether it was stripped).
fn elf_sections(path: &Path) -> Option<Vec<String>> {
    let b = std::fs::read(path).ok()?;
    if b.get(..4)? != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?) as usize);
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let sh = |i: usize| shoff + i * shentsize;
    let stroff = u64_at(sh(shstrndx) + 0x18)?;
    let mut names = Vec::new();
    for i in 0..shnum {
        let name_off = stroff + u32_at(sh(i))?;
        let end = b.get(name_off..)?.iter().position(|&c| c == 0)?;
        names.push(String::from_utf8_lossy(&b[name_off..name_off + end]).to_string());
    }
    Some(names)
}
