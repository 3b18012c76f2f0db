//! CLOCK_MONOTONIC in ms: one clock for every process on this boot, whatever its PID namespace,
//! that no wall-clock step moves (deadlines and paces shared through files use it).

use nix::time::{clock_gettime, ClockId};
use std::time::Instant;

pub fn monotonic_ms() -> u64 {
    monotonic_ns() / 1_000_000
}

fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The monotonic ms of `t`, an instant of this process.
pub fn monotonic_ms_at(t: Instant) -> u64 {
    let (now, mono) = (Instant::now(), monotonic_ns());
    let ns = match t >= now {
        true => mono.saturating_add(t.duration_since(now).as_nanos() as u64),
        false => mono.saturating_sub(now.duration_since(t).as_nanos() as u64),
    };
    ns / 1_000_000
}
