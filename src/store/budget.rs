//! The node's budget for mutating EC2 calls: one token bucket in the node dir, shared by every
//! plugin process (and the agent) under a flock. EC2 throttles per account and region, and the VPC
//! CNI draws from the same buckets: a node paces itself before sending instead of retrying blindly.
//! The refill rate adapts like TCP's window: halved on every throttled answer (down to 1/16 of the
//! configured rate), grown back by 1/16 of it for every accepted call, and slowly (1/64 per second)
//! while the node is quiet. Slowing is for the node's load, not for one late call: a call that has
//! used a fraction f of its time is paced at no less than f² of the configured rate, and at the
//! configured rate when the slowed one would leave it no attempt before its deadline.
//!
//! ```text
//! <node>/settings.json   {"ec2Budget": {"burst": 10, "refillPerSecond": 5}}   optional, operator's
//! <node>/budget.json     {"tokens": 3.5, "rate": 5.0, "updatedMs": …}          the bucket now
//! <node>/locks/budget.lock
//! ```

use super::fs::{read_json, write_json_atomic, Durability};
use super::lock::Locks;
use super::{now_unix_ms, NodeDir};
use crate::cloud::CallBudget;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How far the adaptive rate may fall below the configured one.
const MIN_RATE_FRACTION: f64 = 1.0 / 16.0;
/// How much of the configured rate one accepted call gives back.
const GROWTH_PER_ACCEPTED: f64 = 1.0 / 16.0;
/// How fast a quiet node's rate grows back, as a fraction of the configured rate per second.
const GROWTH_PER_SECOND: f64 = 1.0 / 64.0;
/// A budget file that cannot be locked this fast is skipped: pacing must never block a pod.
const LOCK_WAIT: Duration = Duration::from_millis(200);

/// The operator's limits for the node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetLimits {
    /// Calls the node may send at once after a quiet spell.
    pub burst: u32,
    /// Calls per second in the long run, before any throttling slows it further.
    pub refill_per_second: f64,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            burst: 10,
            refill_per_second: 5.0,
        }
    }
}

impl BudgetLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.burst == 0 || self.burst > 1000 {
            return Err(format!("burst {} must be 1..=1000", self.burst));
        }
        if !(self.refill_per_second.is_finite()
            && self.refill_per_second >= 0.01
            && self.refill_per_second <= 1000.0)
        {
            return Err(format!(
                "refillPerSecond {} must be 0.01..=1000",
                self.refill_per_second
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSettings {
    #[serde(default)]
    pub ec2_budget: Option<BudgetLimits>,
}

/// The bucket as the last caller left it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetState {
    pub tokens: f64,
    /// Refill per second now (the configured rate, or less after throttling).
    pub rate: f64,
    pub updated_ms: u64,
}

/// The node budget; cheap to build, every call reads the file afresh.
#[derive(Debug, Clone)]
pub struct NodeBudget {
    state: PathBuf,
    lock: PathBuf,
    limits: BudgetLimits,
}

impl NodeDir {
    pub fn settings(&self) -> NodeSettings {
        read_json(&self.root().join("settings.json"))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn write_settings(&self, settings: &NodeSettings) -> Result<(), super::StoreError> {
        write_json_atomic(
            &self.root().join("settings.json"),
            settings,
            Durability::Durable,
        )
    }

    /// The budget with the operator's limits (or the defaults).
    pub fn budget(&self) -> NodeBudget {
        let limits = self
            .settings()
            .ec2_budget
            .filter(|l| l.validate().is_ok())
            .unwrap_or_default();
        NodeBudget {
            state: self.root().join("budget.json"),
            lock: self.locks().join("budget.lock"),
            limits,
        }
    }
}

impl NodeBudget {
    pub fn limits(&self) -> BudgetLimits {
        self.limits
    }

    /// The bucket now, refilled to this instant (for operators and metrics).
    pub fn current(&self) -> BudgetState {
        let now = now_unix_ms();
        self.refilled(self.load(now), now)
    }

    fn load(&self, now: u64) -> BudgetState {
        read_json::<BudgetState>(&self.state)
            .ok()
            .flatten()
            .filter(|s| s.tokens.is_finite() && s.rate.is_finite() && s.rate > 0.0)
            .unwrap_or(BudgetState {
                tokens: f64::from(self.limits.burst),
                rate: self.limits.refill_per_second,
                updated_ms: now,
            })
    }

    fn refilled(&self, s: BudgetState, now: u64) -> BudgetState {
        let max = self.limits.refill_per_second;
        let dt = now.saturating_sub(s.updated_ms) as f64 / 1000.0;
        let rate = (s.rate + max * GROWTH_PER_SECOND * dt).clamp(max * MIN_RATE_FRACTION, max);
        BudgetState {
            tokens: (s.tokens + s.rate * dt).min(f64::from(self.limits.burst)),
            rate,
            updated_ms: now,
        }
    }

    /// Read, change and write the bucket under its lock; `None` when the lock is not to be had.
    fn update<T>(&self, change: impl FnOnce(BudgetState) -> (BudgetState, T)) -> Option<T> {
        let _lock =
            match Locks::acquire(std::slice::from_ref(&self.lock), Instant::now() + LOCK_WAIT) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "EC2 budget unavailable: sending without pacing");
                    return None;
                }
            };
        let now = now_unix_ms();
        let (next, out) = change(self.refilled(self.load(now), now));
        if let Err(e) = write_json_atomic(&self.state, &next, Durability::ProcessCrashSafe) {
            tracing::warn!(error = %e, "EC2 budget not saved");
        }
        Some(out)
    }
}

impl CallBudget for NodeBudget {
    fn reserve(
        &self,
        _action: &'static str,
        started: Instant,
        deadline: Instant,
    ) -> Option<Duration> {
        let max = self.limits.refill_per_second;
        let decided = self.update(|mut s| {
            let wait_at = |rate: f64| match s.tokens >= 1.0 {
                true => Duration::ZERO,
                false => Duration::from_secs_f64((1.0 - s.tokens) / rate),
            };
            let now = Instant::now();
            // Slowing spreads the node's load; a call that has waited long is no burst: it gets back to the configured pace as its deadline nears (squared: only the tail, or the account pays in throttles).
            let pace = s.rate.max(max * aged(started, now, deadline).powi(2));
            let wait = Some(wait_at(pace))
                .filter(|w| now + *w < deadline)
                .unwrap_or_else(|| wait_at(max));
            if now + wait >= deadline {
                return (s, None);
            }
            // A reservation: later callers queue behind this one.
            s.tokens -= 1.0;
            (s, Some(wait))
        });
        // A budget that cannot be read never stops a pod.
        decided.unwrap_or(Some(Duration::ZERO))
    }

    fn throttled(&self) {
        let min = self.limits.refill_per_second * MIN_RATE_FRACTION;
        self.update(|mut s| {
            s.rate = (s.rate / 2.0).max(min);
            s.tokens = s.tokens.min(0.0);
            (s, ())
        });
    }

    fn accepted(&self) {
        let max = self.limits.refill_per_second;
        // The common case, a node at full pace, costs a read and no lock or write.
        if self.current().rate >= max {
            return;
        }
        self.update(|mut s| {
            if s.rate < max {
                s.rate = (s.rate + max * GROWTH_PER_ACCEPTED).min(max);
            }
            (s, ())
        });
    }
}

/// How much of its time a call has used: 0 at its start, 1 at its deadline.
fn aged(started: Instant, now: Instant, deadline: Instant) -> f64 {
    let span = deadline.saturating_duration_since(started).as_secs_f64();
    match span > 0.0 {
        true => (now.saturating_duration_since(started).as_secs_f64() / span).min(1.0),
        false => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(burst: u32, rate: f64) -> (tempfile::TempDir, NodeBudget) {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeDir::new(dir.path());
        node.create().unwrap();
        node.write_settings(&NodeSettings {
            ec2_budget: Some(BudgetLimits {
                burst,
                refill_per_second: rate,
            }),
        })
        .unwrap();
        let b = node.budget();
        (dir, b)
    }

    #[test]
    fn a_full_bucket_sends_at_once_then_queues_callers_at_the_rate() {
        let (_d, b) = budget(2, 10.0);
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(b.reserve("A", Instant::now(), far), Some(Duration::ZERO));
        assert_eq!(b.reserve("A", Instant::now(), far), Some(Duration::ZERO));
        let third = b.reserve("A", Instant::now(), far).unwrap();
        let fourth = b.reserve("A", Instant::now(), far).unwrap();
        assert!(
            third > Duration::from_millis(80) && third <= Duration::from_millis(100),
            "{third:?}"
        );
        assert!(
            fourth > third + Duration::from_millis(80),
            "{fourth:?} after {third:?}"
        );
    }

    #[test]
    fn a_wait_past_the_deadline_takes_nothing() {
        let (_d, b) = budget(1, 1.0);
        let soon = Instant::now() + Duration::from_millis(300);
        assert_eq!(b.reserve("A", Instant::now(), soon), Some(Duration::ZERO));
        assert_eq!(b.reserve("A", Instant::now(), soon), None);
        let tokens = b.current().tokens;
        assert!(tokens > -0.1 && tokens < 0.1, "nothing reserved: {tokens}");
    }

    #[test]
    fn a_call_the_slowed_pace_would_fail_goes_at_the_configured_pace() {
        let (_d, b) = budget(1, 10.0);
        for _ in 0..10 {
            b.throttled();
        }
        // Slowed to 10/16 per second: the next token is 1.6 s away; at 10/s it is 0.1 s away.
        let soon = Instant::now() + Duration::from_millis(500);
        let wait = b
            .reserve("A", Instant::now(), soon)
            .expect("the configured pace fits the deadline");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        let far = Instant::now() + Duration::from_secs(60);
        let slowed = b.reserve("A", Instant::now(), far).unwrap();
        assert!(
            slowed > Duration::from_secs(1),
            "with time to spare, the slowed pace: {slowed:?}"
        );
        // Queued behind those two (0.3 s at 10/s), even the configured pace misses a near deadline.
        let nearer = Instant::now() + Duration::from_millis(200);
        assert_eq!(b.reserve("A", Instant::now(), nearer), None);
    }

    #[test]
    fn an_old_call_is_paced_closer_to_the_configured_rate() {
        let (_d, b) = budget(1, 16.0);
        for _ in 0..10 {
            b.throttled();
        }
        let now = Instant::now();
        // Slowed to 1/s: a fresh call waits about 1 s. One half through its 6 s is paced at
        // 16 × (1/2)² = 4/s: queued behind the fresh one, 0.5 s, where the slowed rate says 2 s
        // (which fits).
        let fresh = b.reserve("A", now, now + Duration::from_secs(30)).unwrap();
        assert!(fresh > Duration::from_millis(900), "{fresh:?}");
        let started = now
            .checked_sub(Duration::from_secs(3))
            .expect("uptime over 3 s");
        let old = b
            .reserve("A", started, now + Duration::from_secs(3))
            .unwrap();
        assert!(
            old > Duration::from_millis(400) && old < Duration::from_millis(600),
            "{old:?}"
        );
    }

    #[test]
    fn throttling_halves_the_rate_down_to_its_floor_and_accepted_calls_win_it_back() {
        let (_d, b) = budget(5, 16.0);
        for _ in 0..10 {
            b.throttled();
        }
        let s = b.current();
        assert!((s.rate - 1.0).abs() < 0.1, "floor is 1/16: {}", s.rate);
        assert!(s.tokens <= 0.1, "burst drained: {}", s.tokens);
        std::thread::sleep(Duration::from_millis(500));
        let quiet = b.current().rate;
        assert!(
            quiet > 1.0 && quiet < 1.3,
            "a quiet node grows by 1/64 per second: {quiet}"
        );
        for _ in 0..4 {
            b.accepted();
        }
        let won = b.current().rate;
        assert!(
            won > 5.0 && won < 5.5,
            "each accepted call gives 1/16 back: {won}"
        );
        for _ in 0..20 {
            b.accepted();
        }
        assert!(
            (b.current().rate - 16.0).abs() < 0.01,
            "never above the limit"
        );
    }

    #[test]
    fn bad_or_missing_settings_fall_back_to_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeDir::new(dir.path());
        node.create().unwrap();
        assert_eq!(node.budget().limits(), BudgetLimits::default());
        std::fs::write(
            dir.path().join("settings.json"),
            b"{\"ec2Budget\":{\"burst\":0,\"refillPerSecond\":5}}",
        )
        .unwrap();
        assert_eq!(node.budget().limits(), BudgetLimits::default());
    }
}
