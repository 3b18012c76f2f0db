//! The node's budget for mutating EC2 calls: one pace per EC2 action in the node dir, shared by
//! every plugin process (and the agent) under a flock. EC2 throttles per action, per account and
//! region, and a whole fleet and the VPC CNI draw from the same buckets: each node paces itself by
//! the control law in [`law`] (decrease once per congestion episode, to what the account granted
//! it; slow additive increase with jitter; a floor that a fleet's floors cannot add up past).
//!
//! ```text
//! <node>/settings.json   {"ec2Budget": {"burst": 10, "refillPerSecond": 5}, "nodeEc2Rate": 0.05}
//! <node>/budget.json     {"actions": {"AssignPrivateIpAddresses": {"tokens": 3.5, "rate": 0.4, …}}}
//! <node>/locks/budget.lock
//! ```
//! Times in budget.json are CLOCK_MONOTONIC ms: one clock for every process on the boot, whatever
//! its PID namespace, and no wall-clock step moves a deadline.

pub mod law;

use super::clock::{monotonic_ms, monotonic_ms_at};
use super::fs::{read_json, write_json_atomic, Durability};
use super::lock::Locks;
use super::NodeDir;
use crate::cloud::CallBudget;
use law::{Law, Pace};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A budget file that cannot be locked this fast is skipped: pacing must never block a pod.
const LOCK_WAIT: Duration = Duration::from_millis(200);

/// The operator's limits for the node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetLimits {
    /// Calls the node may send at once after a quiet spell.
    pub burst: u32,
    /// Calls per second per action at most, before any throttling slows it further.
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

/// A per-node rate is valid from one call a day to the limit's range.
pub fn validate_node_rate(rate: f64) -> Result<(), String> {
    match rate.is_finite() && (1.0 / 86_400.0..=1000.0).contains(&rate) {
        true => Ok(()),
        false => Err(format!(
            "node EC2 rate {rate} must be from 0.0000116 (one call a day) to 1000 calls per second"
        )),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSettings {
    #[serde(default)]
    pub ec2_budget: Option<BudgetLimits>,
    /// Calls per second per EC2 action this node may use (the agent's `--node-ec2-rate`): the
    /// operator's share of the account bucket; unset, the node derives it from what it observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ec2_rate: Option<f64>,
}

/// Every action's pace as the last caller left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetState {
    pub actions: BTreeMap<String, Pace>,
}

/// The node budget; cheap to build, every call reads the file afresh.
#[derive(Debug, Clone)]
pub struct NodeBudget {
    state: PathBuf,
    lock: PathBuf,
    limits: BudgetLimits,
    law: Law,
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

    /// Records the operator's per-node rate (`None`: derive it), keeping the other settings.
    pub fn set_node_ec2_rate(&self, rate: Option<f64>) -> Result<(), super::StoreError> {
        let mut settings = self.settings();
        if settings.node_ec2_rate == rate {
            return Ok(());
        }
        settings.node_ec2_rate = rate;
        self.write_settings(&settings)
    }

    /// The budget with the operator's limits (or the defaults).
    pub fn budget(&self) -> NodeBudget {
        let settings = self.settings();
        let limits = settings
            .ec2_budget
            .filter(|l| l.validate().is_ok())
            .unwrap_or_default();
        let share = settings
            .node_ec2_rate
            .filter(|r| validate_node_rate(*r).is_ok());
        NodeBudget {
            state: self.root().join("budget.json"),
            lock: self.locks().join("budget.lock"),
            limits,
            law: Law {
                burst: f64::from(limits.burst),
                ceiling: limits.refill_per_second,
                share,
            },
        }
    }
}

impl NodeBudget {
    pub fn limits(&self) -> BudgetLimits {
        self.limits
    }

    pub fn law(&self) -> Law {
        self.law
    }

    /// Every action's pace now, brought to this instant (for operators and metrics).
    pub fn current(&self) -> BudgetState {
        let now = monotonic_ms();
        let mut s = self.load();
        for p in s.actions.values_mut() {
            self.law.advance(p, now, 0.5);
        }
        s
    }

    fn load(&self) -> BudgetState {
        let mut s = read_json::<BudgetState>(&self.state)
            .ok()
            .flatten()
            .unwrap_or_default();
        s.actions
            .retain(|_, p| p.tokens.is_finite() && p.rate.is_finite() && p.rate > 0.0);
        s
    }

    /// Read, change and write `action`'s pace under the lock; `None` when the lock is not to be had.
    fn update<T>(&self, action: &str, change: impl FnOnce(&mut Pace, u64) -> T) -> Option<T> {
        let _lock = match Locks::acquire(
            std::slice::from_ref(&self.lock),
            Instant::now() + LOCK_WAIT,
        ) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "EC2 budget unavailable: waiting one configured interval instead");
                return None;
            }
        };
        let now = monotonic_ms();
        let mut s = self.load();
        let out = change(self.now_in(&mut s, action, now), now);
        if let Err(e) = write_json_atomic(&self.state, &s, Durability::ProcessCrashSafe) {
            tracing::warn!(error = %e, "EC2 budget not saved");
        }
        Some(out)
    }

    /// A token by `deadline` as `rule` gives it; a budget that cannot be read fails closed to the
    /// configured pace, never open.
    fn take(
        &self,
        action: &'static str,
        deadline: Instant,
        rule: impl FnOnce(&mut Pace, u64, u64) -> Option<u64>,
    ) -> Option<Duration> {
        let deadline_ms = monotonic_ms_at(deadline);
        match self.update(action, |p, now| rule(p, now, deadline_ms)) {
            Some(wait) => wait.map(Duration::from_millis),
            None => {
                let wait = Duration::from_secs_f64(1.0 / self.limits.refill_per_second);
                (Instant::now() + wait < deadline).then_some(wait)
            }
        }
    }

    /// `action`'s pace in `s`, brought to `now`.
    fn now_in<'s>(&self, s: &'s mut BudgetState, action: &str, now: u64) -> &'s mut Pace {
        // The node's latest congestion, on whichever action met it (a pace from before a reboot
        // knows nothing of this boot's clock).
        let learned = s
            .actions
            .iter()
            .filter(|(a, p)| a.as_str() != action && p.episodes > 0 && p.updated_ms <= now)
            .max_by_key(|(_, p)| p.decreased_ms)
            .map(|(_, p)| *p);
        let pace = s
            .actions
            .entry(action.to_string())
            .or_insert_with(|| self.law.fresh(now));
        // A pace from before a reboot (monotonic time ran backwards) starts afresh.
        if pace.updated_ms > now {
            *pace = self.law.fresh(now);
        }
        self.law
            .advance_beside(pace, learned.as_ref(), now, rand::random::<f64>());
        pace
    }
}

impl CallBudget for NodeBudget {
    fn reserve(
        &self,
        action: &'static str,
        _started: Instant,
        deadline: Instant,
    ) -> Option<Duration> {
        let law = self.law;
        self.take(action, deadline, |p, now, by| law.reserve(p, now, by))
    }

    fn lend(&self, action: &'static str, _started: Instant, deadline: Instant) -> Option<Duration> {
        let law = self.law;
        self.take(action, deadline, |p, now, by| law.lend(p, now, by))
    }

    fn ready_in(&self, action: &'static str) -> Duration {
        // No lock and no write: the file is replaced whole, and a look takes nothing.
        let mut s = self.load();
        let pace = self.now_in(&mut s, action, monotonic_ms());
        Duration::from_millis(self.law.ready_in(pace))
    }

    fn throttled(&self, action: &'static str, sent: Instant) {
        let sent_ms = monotonic_ms_at(sent);
        let law = self.law;
        self.update(action, |p, now| {
            law.throttled(p, now, sent_ms, rand::random::<f64>())
        });
    }

    fn accepted(&self, action: &'static str) {
        let law = self.law;
        self.update(action, |p, _| law.accepted(p));
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
            node_ec2_rate: None,
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
    fn a_look_at_when_the_next_token_comes_takes_none() {
        let (_d, b) = budget(1, 2.0);
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(b.ready_in("A"), Duration::ZERO);
        assert_eq!(b.reserve("A", Instant::now(), far), Some(Duration::ZERO));
        let first = b.ready_in("A");
        // Half a second at 2/s, less what a busy machine takes between the calls.
        assert!(
            first > Duration::from_millis(250) && first <= Duration::from_millis(500),
            "{first:?}"
        );
        assert!(b.ready_in("A") <= first, "looking again took nothing");
        let next = b.reserve("A", Instant::now(), far).unwrap();
        assert!(
            next <= first && next > Duration::from_millis(250),
            "{next:?}"
        );
    }

    #[test]
    fn a_wait_past_the_deadline_takes_nothing() {
        let (_d, b) = budget(1, 1.0);
        let soon = Instant::now() + Duration::from_millis(300);
        assert_eq!(b.reserve("A", Instant::now(), soon), Some(Duration::ZERO));
        assert_eq!(b.reserve("A", Instant::now(), soon), None);
        let tokens = b.current().actions["A"].tokens;
        assert!(tokens > -0.1 && tokens < 0.1, "nothing reserved: {tokens}");
    }

    #[test]
    fn a_burst_of_throttled_answers_is_one_episode_and_each_action_has_its_own_pace() {
        let (_d, b) = budget(5, 16.0);
        let far = Instant::now() + Duration::from_secs(60);
        for _ in 0..5 {
            b.reserve("AssignPrivateIpAddresses", Instant::now(), far);
            b.accepted("AssignPrivateIpAddresses");
        }
        let sent = Instant::now();
        for _ in 0..10 {
            b.throttled("AssignPrivateIpAddresses", sent);
        }
        let s = b.current();
        let assign = s.actions["AssignPrivateIpAddresses"];
        assert_eq!(assign.episodes, 1, "{assign:?}");
        assert!(
            (assign.rate - 16.0 * 0.1).abs() < 1e-3,
            "one young multiplicative step: milliseconds of goodput say nothing yet: {assign:?}"
        );
        assert!(assign.tokens < 0.2, "burst drained: {assign:?}");
        assert!(!s.actions.contains_key("UnassignPrivateIpAddresses"));
        assert!(
            b.reserve("UnassignPrivateIpAddresses", Instant::now(), far) > Some(Duration::ZERO),
            "another action starts from the share learned here, not from a fresh burst"
        );
        let after = b.current();
        assert!(
            after.actions["AssignPrivateIpAddresses"].tokens >= assign.tokens,
            "but it spends its own tokens: {after:?}"
        );
    }

    #[test]
    fn the_operators_node_rate_paces_every_action_from_the_start() {
        let (d, _) = budget(1, 5.0);
        let node = NodeDir::new(d.path());
        node.set_node_ec2_rate(Some(2.0)).unwrap();
        let b = node.budget();
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(b.reserve("A", Instant::now(), far), Some(Duration::ZERO));
        let next = b.reserve("A", Instant::now(), far).unwrap();
        assert!(
            next > Duration::from_millis(400) && next <= Duration::from_millis(500),
            "2 calls/s: {next:?}"
        );
        assert_eq!(node.settings().ec2_budget.unwrap().burst, 1, "kept");
    }

    #[test]
    fn an_unreadable_budget_waits_one_configured_interval_instead_of_sending_at_once() {
        let (d, b) = budget(5, 4.0);
        let lock = NodeDir::new(d.path()).locks().join("budget.lock");
        let _held = Locks::acquire(&[lock], Instant::now() + Duration::from_secs(1)).unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            b.reserve("A", Instant::now(), far),
            Some(Duration::from_millis(250))
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
