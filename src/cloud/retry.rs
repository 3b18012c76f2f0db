//! Bounded retries with full-jitter exponential backoff inside one overall deadline.
//! Throttling is a token bucket shared by every node of the account (and the VPC CNI), so
//! jitter spreads a burst of pods instead of retrying in lockstep.

use rand::Rng;
use std::future::Future;
use std::time::{Duration, Instant};

/// How a failed attempt should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Retry after backoff (5xx, timeouts, connection failures).
    Retry,
    /// "Slow down" to a call no pacer paces: back off from `throttled_base`, as the AWS SDKs'
    /// standard mode backs off by error type, since the account's bucket refills in seconds.
    RetryThrottled,
    /// Retry a few times only: EC2's eventual consistency (e.g. an ENI id not yet visible).
    RetryBriefly,
    /// Retry after a short jitter only: a pacer (the node budget) decides when the next attempt
    /// goes out, and the policy's growing backoff on top would only waste the deadline.
    RetryPaced,
    Fail,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub throttled_base: Duration,
    pub cap: Duration,
    /// A throttled call's backoff grows past `cap` up to this: a fleet's herd drains at the
    /// account's refill, seconds per hundred callers.
    pub throttled_cap: Duration,
    pub brief_attempts: u32,
    pub deadline: Instant,
    /// A long-running caller (the agent) gives each call this long from its start, not one
    /// deadline for the process.
    pub per_call: Option<Duration>,
}

fn grown(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor)
}

/// What the loop ended with: the value, or the last error and whether time ran out.
#[derive(Debug)]
pub enum Outcome<T, E> {
    Done(T),
    Failed(E),
    /// Time ran out: the last error, or `None` when an attempt was still running.
    OutOfTime(Option<E>),
}

impl RetryPolicy {
    pub fn new(deadline: Instant) -> Self {
        RetryPolicy {
            base: Duration::from_millis(50),
            // The AWS SDKs' standard mode (2026): 1 s base for throttling errors, MAX_BACKOFF 20 s.
            throttled_base: Duration::from_secs(1),
            cap: Duration::from_secs(2),
            throttled_cap: Duration::from_secs(20),
            brief_attempts: 3,
            deadline,
            per_call: None,
        }
    }

    /// Every call gets `budget` from its own start: for a process that lives longer than one call.
    pub fn per_call(budget: Duration) -> Self {
        RetryPolicy {
            per_call: Some(budget),
            ..RetryPolicy::new(Instant::now() + budget)
        }
    }

    /// The longest sleep before attempt `attempt + 1` (attempt counts from 0).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        grown(self.base, attempt).min(self.cap)
    }

    /// The same after a throttled answer.
    pub fn throttled_ceiling(&self, attempt: u32) -> Duration {
        grown(self.throttled_base, attempt).min(self.throttled_cap)
    }

    /// Full jitter: uniform in [0, ceiling]; `None` when sleeping would pass the deadline.
    pub fn delay(&self, attempt: u32, now: Instant, rng: &mut impl Rng) -> Option<Duration> {
        self.delay_under(self.ceiling(attempt), now, rng)
    }

    fn delay_under(&self, ceiling: Duration, now: Instant, rng: &mut impl Rng) -> Option<Duration> {
        // Drawn within the time left: a long throttled ceiling must not end the call early.
        let ceiling = ceiling.min(self.deadline.saturating_duration_since(now));
        let d = Duration::from_micros(rng.random_range(0..=ceiling.as_micros() as u64));
        (now + d < self.deadline).then_some(d)
    }

    /// When a call that starts now must be done.
    pub fn call_deadline(&self) -> Instant {
        match self.per_call {
            Some(budget) => Instant::now() + budget,
            None => self.deadline,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs `op` until it succeeds, fails for good, or the deadline comes; each attempt is bounded
    /// by the time left.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut op: F,
        classify: impl Fn(&E) -> Verdict,
    ) -> Outcome<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let this = RetryPolicy {
            deadline: self.call_deadline(),
            ..*self
        };
        let mut rng = rand::rng();
        let mut attempt = 0u32;
        loop {
            let remaining = this.remaining();
            let result = match tokio::time::timeout(remaining, op()).await {
                Ok(r) => r,
                Err(_) => return Outcome::OutOfTime(None),
            };
            let err = match result {
                Ok(v) => return Outcome::Done(v),
                Err(e) => e,
            };
            // Once per attempt: the classifier also tells the node budget what EC2 answered.
            let verdict = classify(&err);
            match verdict {
                Verdict::Fail => return Outcome::Failed(err),
                Verdict::RetryBriefly if attempt + 1 >= self.brief_attempts => {
                    return Outcome::Failed(err)
                }
                Verdict::RetryPaced => {
                    // Only a jitter of the base delay: a pacer that failed open must not spin.
                    match this.delay(0, Instant::now(), &mut rng) {
                        Some(d) => tokio::time::sleep(d).await,
                        None => return Outcome::OutOfTime(Some(err)),
                    }
                    attempt += 1;
                    continue;
                }
                Verdict::Retry | Verdict::RetryBriefly | Verdict::RetryThrottled => {}
            }
            let ceiling = match verdict {
                Verdict::RetryThrottled => this.throttled_ceiling(attempt),
                _ => this.ceiling(attempt),
            };
            match this.delay_under(ceiling, Instant::now(), &mut rng) {
                Some(d) => {
                    tracing::debug!(attempt, delay_ms = d.as_millis() as u64, "retrying");
                    tokio::time::sleep(d).await;
                }
                None => return Outcome::OutOfTime(Some(err)),
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::cell::Cell;

    fn policy(ms: u64) -> RetryPolicy {
        RetryPolicy::new(Instant::now() + Duration::from_millis(ms))
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let p = policy(60_000);
        assert_eq!(p.ceiling(0), Duration::from_millis(50));
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(5), Duration::from_millis(1600));
        assert_eq!(p.ceiling(6), Duration::from_secs(2));
        assert_eq!(p.ceiling(1000), Duration::from_secs(2));
    }

    #[test]
    fn a_throttled_answer_backs_off_from_a_longer_base() {
        let p = policy(60_000);
        assert_eq!(p.throttled_ceiling(0), Duration::from_secs(1));
        assert_eq!(p.throttled_ceiling(1), Duration::from_secs(2));
        assert_eq!(p.throttled_ceiling(3), Duration::from_secs(8));
        assert_eq!(
            p.throttled_ceiling(9),
            Duration::from_secs(20),
            "the SDKs' MAX_BACKOFF"
        );
        assert_eq!(p.ceiling(9), p.cap);
        assert!((0..6).all(|a| p.throttled_ceiling(a) >= p.ceiling(a + 3)));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let p = policy(60_000);
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..50)
            .map(|_| p.delay(4, Instant::now(), &mut rng).unwrap())
            .collect();
        assert!(delays.iter().all(|d| *d <= p.ceiling(4)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 40, "jitter must spread retries");
    }

    #[test]
    fn no_delay_past_the_deadline() {
        let p = RetryPolicy::new(Instant::now());
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            p.delay(10, Instant::now() + Duration::from_millis(1), &mut rng),
            None
        );
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let calls = Cell::new(0);
        let out = rt().block_on(policy(10_000).run(
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 4 {
                        Err("throttled")
                    } else {
                        Ok(n)
                    }
                }
            },
            |_| Verdict::Retry,
        ));
        assert!(matches!(out, Outcome::Done(4)));
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let calls = Cell::new(0);
        let out: Outcome<(), &str> = rt().block_on(policy(10_000).run(
            || {
                calls.set(calls.get() + 1);
                async { Err("InvalidParameterValue") }
            },
            |_| Verdict::Fail,
        ));
        assert!(matches!(out, Outcome::Failed("InvalidParameterValue")));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn brief_retries_stop_after_their_budget() {
        let calls = Cell::new(0);
        let out: Outcome<(), &str> = rt().block_on(policy(10_000).run(
            || {
                calls.set(calls.get() + 1);
                async { Err("NotFound") }
            },
            |_| Verdict::RetryBriefly,
        ));
        assert!(matches!(out, Outcome::Failed("NotFound")));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn endless_throttling_ends_out_of_time_with_the_last_error() {
        let start = Instant::now();
        let out: Outcome<(), &str> = rt().block_on(
            policy(300).run(|| async { Err("RequestLimitExceeded") }, |_| Verdict::Retry),
        );
        assert!(matches!(
            out,
            Outcome::OutOfTime(Some("RequestLimitExceeded"))
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn paced_retries_do_not_back_off_exponentially() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let out: Outcome<(), &str> = rt().block_on(policy(10_000).run(
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 12 {
                        Err("throttled, paced elsewhere")
                    } else {
                        Ok(())
                    }
                }
            },
            |_| Verdict::RetryPaced,
        ));
        assert!(matches!(out, Outcome::Done(())));
        // Eleven exponential backoffs average over 6 s; base-delay jitter is at most 50 ms each.
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_per_call_budget_starts_with_each_call() {
        let p = RetryPolicy::per_call(Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(300));
        let calls = Cell::new(0);
        let out = rt().block_on(p.run(
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 2 {
                        Err("throttled")
                    } else {
                        Ok(n)
                    }
                }
            },
            |_| Verdict::Retry,
        ));
        assert!(matches!(out, Outcome::Done(2)), "{out:?}");
    }

    #[test]
    fn a_hung_attempt_is_cut_at_the_deadline() {
        let out: Outcome<(), &str> = rt().block_on(policy(100).run(
            || async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            },
            |_| Verdict::Retry,
        ));
        assert!(matches!(out, Outcome::OutOfTime(None)));
    }
}
