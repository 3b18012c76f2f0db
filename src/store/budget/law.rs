//! The control law of a node's share of one EC2 action's account bucket, free of files and clocks:
//! the node budget runs it on the monotonic clock, the fleet simulation (examples/bench/fleet.rs)
//! runs this same code on a virtual one.
//!
//! Anchor: TCP's AIMD (RFC 5681), with its "one decrease per window" (NewReno's recovery point,
//! RFC 6582): a throttled answer to a call sent before the last decrease belongs to that episode.
//! Departures: the decrease goes to what the account actually granted this node lately (its
//! goodput, as BBR measures delivery rate), not to half of a configured rate it may never have
//! used; the increase is additive per second, scaled by that goodput so that a fleet's sum grows
//! by the same fraction of the bucket whatever its size, and jittered so nodes do not rise in step;
//! the floor is a fraction of the node's goodput (or the operator's per-node rate), so a fleet's
//! floors add up to less than the bucket; a node too young for a goodput steps down by larger
//! steps, and the next call after any decrease is jittered, so a fleet of fresh nodes does not
//! retry in step; a call whose token would come after its deadline goes on credit (the runtime
//! would make it again anyway), repaid by the node's next calls; an action not yet throttled
//! starts from the pace learned on another (the address actions' buckets are alike and the same
//! fleet shares them). Cilium's operator takes the other road (one fixed limiter, 4 qps, for the
//! whole cluster): a fleet of independent nodes has no such single caller.

use serde::{Deserialize, Serialize};

/// How long the goodput remembers (s) at least, and at most: a slow node's window spans its last calls.
const GOODPUT_WINDOW_S: f64 = 60.0;
const GOODPUT_WINDOW_MAX_S: f64 = 6.0 * 3600.0;
/// A slowed node's goodput is taken over about this many of its calls.
const GOODPUT_CALLS: f64 = 20.0;
/// A young estimate is taken over at least this long, so one lucky call is not a share.
const GOODPUT_MIN_SPAN_S: f64 = 10.0;
/// A young node's step below `YOUNG_STEPS_TO` (a measured node goes to its floor instead, which
/// is never above its pace).
const BACKOFF: f64 = 0.6;
/// A node too young for a goodput steps down by this until `YOUNG_STEPS_TO` calls/s, then by
/// `BACKOFF`: a fleet of fresh nodes retrying at 0.6× steps was most of its throttled answers
/// (0.3× steps still drew 0.065 per accepted call in the fleet simulation, 0.1× 0.049), and
/// deeper young steps left nodes below one call per timeout.
const YOUNG_BACKOFF: f64 = 0.1;
const YOUNG_STEPS_TO: f64 = 0.3;
/// After an episode a measured node paces at this fraction of its goodput, which is also its floor:
/// the fleet's sum and its floors fall below what the bucket granted, and a stranger's throttles
/// leave a node near its demand.
const FLOOR_OF_GOODPUT: f64 = 0.9;
/// A node paced within this factor of its floor is at it: a throttle there is someone else's congestion.
const AT_FLOOR: f64 = 1.05;
/// How far apart (in intervals at the new pace) the next calls of nodes throttled together go out.
const RETRY_SPREAD: f64 = 0.5;
/// A call on credit goes this long before its deadline (at once when that is past, if half of it
/// is left), time for EC2 to answer; a batch leader's wait for its token ends there already. A
/// loan this soon after another is that call's retry: it goes halfway to the deadline instead.
pub const LAST_CALL_ROOM_MS: u64 = 2_000;
/// No loan once the node owes two calls (so it never owes three): a node the herd left far below
/// its demand (one call per 30 s) still serves the requests that queued behind a throttled call.
const CREDIT_LIMIT: f64 = -2.0;
/// How much of the last floor a new episode keeps at least.
const FLOOR_KEEP: f64 = 0.9;
/// Additive increase per second, as a fraction of the goodput: the fleet regains 10 % of the bucket in about this many seconds × 0.1.
const INCREASE_OF_GOODPUT_PER_S: f64 = 1.0 / 1200.0;
/// A node that has never been granted anything still creeps up, at this many calls/s per second.
const INCREASE_MIN_PER_S: f64 = 1.0 / 100_000.0;

/// What the operator (or the defaults) allow one node for one EC2 action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Law {
    /// Calls the node may send at once after a quiet spell.
    pub burst: f64,
    /// The node never paces faster than this (calls/s).
    pub ceiling: f64,
    /// The operator's per-node rate (`--node-ec2-rate`): the floor, and never exceeded.
    pub share: Option<f64>,
}

/// One node's pace for one action, as the law leaves it after each event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pace {
    pub tokens: f64,
    /// Calls per second now.
    pub rate: f64,
    /// Monotonic ms of the last update.
    pub updated_ms: u64,
    /// Accepted calls, each decayed by its age over the goodput window.
    #[serde(default)]
    pub accepted: f64,
    /// Seconds observed, decayed the same way: accepted / observed is the goodput.
    #[serde(default)]
    pub observed: f64,
    /// Monotonic ms of the last decrease (0: none): throttles of calls sent before it are its episode.
    #[serde(default)]
    pub decreased_ms: u64,
    /// The floor learned at the last episode (calls/s).
    #[serde(default)]
    pub floor: f64,
    /// Congestion episodes seen, for operators.
    #[serde(default)]
    pub episodes: u64,
    /// Monotonic ms at which the last call on credit went out (0: none).
    #[serde(default)]
    pub lent_ms: u64,
}

impl Law {
    /// A node that has seen nothing yet: a full burst at the ceiling (or the operator's share).
    pub fn fresh(&self, now_ms: u64) -> Pace {
        Pace {
            tokens: self.burst,
            rate: self.top(),
            updated_ms: now_ms,
            accepted: 0.0,
            observed: 0.0,
            decreased_ms: 0,
            floor: self.share.unwrap_or(0.0),
            episodes: 0,
            lent_ms: 0,
        }
    }

    fn top(&self) -> f64 {
        self.share.map_or(self.ceiling, |s| s.min(self.ceiling))
    }

    /// The floor now: the operator's share, else 0.9 × the goodput the account granted at the last episode.
    pub fn floor(&self, p: &Pace) -> f64 {
        self.share.unwrap_or(p.floor).min(self.top())
    }

    /// Calls per second the account granted this node lately.
    pub fn goodput(&self, p: &Pace) -> f64 {
        p.accepted / p.observed.max(GOODPUT_MIN_SPAN_S)
    }

    /// Brings `p` to `now_ms`: tokens refill, the goodput ages, the rate grows additively.
    /// `jitter` in [0, 1) spreads the growth so that nodes do not rise in step.
    pub fn advance(&self, p: &mut Pace, now_ms: u64, jitter: f64) {
        let dt = now_ms.saturating_sub(p.updated_ms) as f64 / 1000.0;
        if dt <= 0.0 {
            return;
        }
        p.tokens = (p.tokens + p.rate * dt).min(self.burst);
        let window =
            (GOODPUT_CALLS / p.rate.max(1e-6)).clamp(GOODPUT_WINDOW_S, GOODPUT_WINDOW_MAX_S);
        let keep = (-dt / window).exp();
        p.accepted *= keep;
        p.observed = p.observed * keep + window * (1.0 - keep);
        let step = (self.goodput(p) * INCREASE_OF_GOODPUT_PER_S).max(INCREASE_MIN_PER_S);
        let grown = p.rate + step * dt * (0.5 + jitter.clamp(0.0, 1.0));
        p.rate = grown.clamp(self.floor(p).min(self.top()), self.top());
        p.updated_ms = now_ms;
    }

    /// Takes a token for a call that must be sent before `deadline_ms`: the wait in ms, or `None`
    /// (nothing taken) when the token would come too late.
    pub fn reserve(&self, p: &mut Pace, now_ms: u64, deadline_ms: u64) -> Option<u64> {
        let wait_ms = self.ready_in(p);
        if now_ms.saturating_add(wait_ms) >= deadline_ms {
            return None;
        }
        // A reservation: later callers queue behind this one.
        p.tokens -= 1.0;
        Some(wait_ms)
    }

    /// [`Law::reserve`] for a call a runtime would make again if refused (a plugin command): a
    /// token that would come too late is lent, the call going `LAST_CALL_ROOM_MS` before the
    /// deadline, unless the node owes two calls or there is no room left.
    pub fn lend(&self, p: &mut Pace, now_ms: u64, deadline_ms: u64) -> Option<u64> {
        if let Some(wait_ms) = self.reserve(p, now_ms, deadline_ms) {
            return Some(wait_ms);
        }
        if p.tokens <= CREDIT_LIMIT || now_ms + LAST_CALL_ROOM_MS / 2 >= deadline_ms {
            return None;
        }
        // Refused, the pod would be run again and this call made later anyway: on credit, which
        // the node's next calls repay, its pace holds on average.
        let wait_ms = match self.lent_just_now(p, now_ms) {
            true => (deadline_ms - now_ms) / 2,
            false => deadline_ms
                .saturating_sub(LAST_CALL_ROOM_MS)
                .saturating_sub(now_ms),
        };
        p.tokens -= 1.0;
        p.lent_ms = (now_ms + wait_ms).max(1);
        Some(wait_ms)
    }

    /// Whether a call at `at_ms` is one on credit or its retry.
    fn lent_just_now(&self, p: &Pace, at_ms: u64) -> bool {
        p.lent_ms != 0 && at_ms + 1 >= p.lent_ms && at_ms < p.lent_ms + LAST_CALL_ROOM_MS
    }

    /// Ms until the next token, taking nothing.
    pub fn ready_in(&self, p: &Pace) -> u64 {
        match p.tokens >= 1.0 {
            true => 0,
            false => ((1.0 - p.tokens) / p.rate.max(1e-9) * 1000.0).ceil() as u64,
        }
    }

    /// EC2 answered "slow down" to a call sent at `sent_ms`. Only the first throttle of an
    /// episode decreases; a throttle at the floor is someone else's congestion, and changes nothing.
    /// `jitter` in [0, 1) spreads the retries of nodes throttled together.
    pub fn throttled(&self, p: &mut Pace, now_ms: u64, sent_ms: u64, jitter: f64) {
        // One ms of slack: two processes' readings of the clock round apart.
        if p.decreased_ms != 0 && sent_ms <= p.decreased_ms + 1 {
            return;
        }
        // At the floor already: the congestion is not ours to cure.
        if p.episodes > 0 && p.rate <= self.floor(p) * AT_FLOOR {
            return;
        }
        // A call on credit went outside the pace: its answer says nothing about the pace.
        if self.lent_just_now(p, sent_ms) {
            return;
        }
        let goodput = self.goodput(p);
        // A goodput taken over less than its span misstates the grant (a node seconds old would
        // fall to a fraction of its share and starve): only the multiplicative steps until then.
        let measured = goodput > 0.0 && p.observed >= GOODPUT_MIN_SPAN_S;
        // A floor falls slowly, so a caller that keeps the bucket empty cannot starve us quickly;
        // it is learned from a measured goodput only, and never lifts the pace.
        let learned = match measured {
            true => FLOOR_OF_GOODPUT * goodput,
            false => 0.0,
        };
        let floor = self
            .share
            .unwrap_or(learned.max(FLOOR_KEEP * p.floor).min(p.rate));
        p.floor = floor.min(self.top());
        p.rate = match measured {
            true => self.floor(p),
            false => (YOUNG_BACKOFF * p.rate)
                .max(YOUNG_STEPS_TO.min(BACKOFF * p.rate))
                .max(self.floor(p)),
        };
        // The next call waits 1 ± RETRY_SPREAD / 2 intervals: nodes throttled together retry apart.
        p.tokens = p.tokens.min(RETRY_SPREAD * (0.5 - jitter.clamp(0.0, 1.0)));
        p.decreased_ms = now_ms.max(1);
        p.episodes += 1;
    }

    /// [`Law::advance`], except that an action that has met no congestion of its own takes the
    /// pace the node learned on another (`learned`): EC2 sizes the address actions' buckets alike
    /// (100 / 5 each) and the same fleet shares them, so a share learned on one is the best start
    /// for another, where a fresh burst at the ceiling from every node at once is a herd.
    pub fn advance_beside(&self, p: &mut Pace, learned: Option<&Pace>, now_ms: u64, jitter: f64) {
        match learned {
            Some(l) if p.episodes == 0 && l.episodes > 0 => {
                *p = *l;
                self.advance(p, now_ms, jitter);
                // Its calls queued on the other action are not ours to wait for.
                p.tokens = p.tokens.max(0.0);
            }
            _ => self.advance(p, now_ms, jitter),
        }
    }

    /// EC2 took a call: it counts towards the goodput.
    pub fn accepted(&self, p: &mut Pace) {
        p.accepted += 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAW: Law = Law {
        burst: 10.0,
        ceiling: 5.0,
        share: None,
    };

    /// A node that was granted `calls` over the last `secs` seconds.
    fn granted(calls: usize, secs: u64) -> Pace {
        let mut p = LAW.fresh(1);
        for i in 0..calls {
            LAW.advance(&mut p, 1 + i as u64 * secs * 1000 / calls as u64, 0.5);
            LAW.accepted(&mut p);
        }
        LAW.advance(&mut p, 1 + secs * 1000, 0.5);
        p
    }

    #[test]
    fn one_episode_decreases_once_however_many_throttled_answers_it_brings() {
        let mut p = granted(20, 20);
        let t = p.updated_ms;
        LAW.throttled(&mut p, t, t - 10, 0.5);
        let after_first = p.rate;
        assert!(after_first < 1.0, "paced near its goodput: {after_first}");
        for i in 0..50 {
            LAW.throttled(&mut p, t + 5 + i, t - 5, 0.5);
        }
        assert_eq!(
            p.rate, after_first,
            "calls sent before the decrease are its episode"
        );
        assert_eq!(p.episodes, 1);
        LAW.throttled(&mut p, t + 100, t + 60, 0.5);
        assert_eq!(
            p.episodes, 1,
            "paced at its floor: someone else's congestion"
        );
        // Grown well past its floor since: a call sent after the decrease starts a new episode.
        p.rate = 2.0 * LAW.floor(&p);
        let grown = p.rate;
        LAW.throttled(&mut p, t + 200, t + 160, 0.5);
        assert!(p.rate < grown, "a call sent after it starts a new episode");
        assert_eq!(p.episodes, 2);
    }

    #[test]
    fn a_node_seconds_old_backs_off_by_a_step_not_to_its_understated_goodput() {
        // 10 calls granted in its first 2 s: 5/s, though the goodput's 10 s span says 1/s.
        let mut p = granted(10, 2);
        let t = p.updated_ms;
        LAW.throttled(&mut p, t, t, 0.5);
        assert!(
            (p.rate - YOUNG_BACKOFF * LAW.ceiling).abs() < 1e-9,
            "paced at {} after its first episode",
            p.rate
        );
        // Granted nothing yet: young steps down to a call per few seconds, BACKOFF steps below.
        let mut p = LAW.fresh(1);
        let rates: Vec<f64> = (1..=4)
            .map(|i| {
                LAW.advance(&mut p, 1 + i * 1000, 0.0);
                LAW.throttled(&mut p, 1 + i * 1000, 1 + i * 1000, 0.5);
                (p.rate * 1000.0).round() / 1000.0
            })
            .collect();
        assert_eq!(rates, vec![0.5, 0.3, 0.18, 0.108]);
    }

    #[test]
    fn after_an_episode_the_node_paces_below_what_the_account_granted_it() {
        let mut p = granted(30, 30);
        let goodput = LAW.goodput(&p);
        let t = p.updated_ms;
        LAW.throttled(&mut p, t, t, 0.5);
        assert!(
            p.rate <= goodput * FLOOR_OF_GOODPUT + 1e-9,
            "{} vs {goodput}",
            p.rate
        );
        assert!(p.rate >= LAW.floor(&p));
        assert!(LAW.floor(&p) <= goodput * FLOOR_OF_GOODPUT + 1e-9);
    }

    #[test]
    fn floors_of_a_fleet_add_up_to_less_than_what_the_account_granted_it() {
        // 1000 nodes shared a bucket of 5 calls/s for a minute: 300 calls, one each to 300 nodes;
        // after a quiet spell, its burst of 100 went to 100 more in the first second.
        for (burst, granted_per_s) in [(0u64, 5.0), (100, 400.0 / 60.0)] {
            let mut sum = 0.0;
            for i in 0..1000u64 {
                let mut p = LAW.fresh(1);
                if i % 10 < 3 || i >= 1000 - burst {
                    let at = match i >= 1000 - burst {
                        true => 1 + i % 1000,
                        false => 1 + (i * 7919) % 60_000,
                    };
                    LAW.advance(&mut p, at, 0.5);
                    LAW.accepted(&mut p);
                }
                LAW.advance(&mut p, 60_001, 0.5);
                LAW.throttled(&mut p, 60_001, 60_001, 0.5);
                sum += LAW.floor(&p);
            }
            assert!(
                sum < granted_per_s,
                "floors add up to {sum}/s against {granted_per_s}/s granted"
            );
        }
    }

    #[test]
    fn a_throttle_never_lifts_the_pace_and_a_young_goodput_sets_no_floor() {
        // Its burst of 10 granted in its first 2 s: the goodput's 10 s span says 1/s, a misreading.
        let mut p = granted(10, 2);
        let t = p.updated_ms;
        LAW.throttled(&mut p, t, t, 0.5);
        assert_eq!(p.floor, 0.0, "too young for a floor");
        // Paced below what it was granted, then throttled: the grant may not lift it.
        let mut p = granted(30, 30);
        p.rate = 0.5 * LAW.goodput(&p);
        let (before, t) = (p.rate, p.updated_ms);
        LAW.throttled(&mut p, t, t, 0.5);
        assert!(p.rate <= before, "{} after {before}", p.rate);
        assert!(LAW.floor(&p) <= before);
    }

    #[test]
    fn throttling_by_another_caller_does_not_starve_the_node() {
        let mut p = granted(30, 30);
        let mut t = p.updated_ms;
        LAW.throttled(&mut p, t, t - 1, 0.5);
        let floor = LAW.floor(&p);
        assert!(floor > 0.0);
        // The VPC CNI keeps the bucket empty: every call of ours is throttled, for ten minutes.
        for _ in 0..600 {
            t += 1000;
            LAW.advance(&mut p, t, 0.5);
            LAW.throttled(&mut p, t, t - 1, 0.5);
            assert!(p.rate >= LAW.floor(&p) - 1e-9, "{p:?}");
        }
        assert!(
            p.rate >= 0.7 * floor,
            "{} against a first floor of {floor}",
            p.rate
        );
        let far = t + 3_600_000;
        assert!(
            LAW.reserve(&mut p, t, far).is_some(),
            "still sends at the floor"
        );
    }

    #[test]
    fn the_rate_grows_back_additively_with_jitter_and_never_past_the_ceiling() {
        let mut p = granted(30, 30);
        let t = p.updated_ms;
        LAW.throttled(&mut p, t, t, 0.5);
        let low = p.rate;
        let (mut a, mut b) = (p, p);
        LAW.advance(&mut a, t + 60_000, 0.0);
        LAW.advance(&mut b, t + 60_000, 0.99);
        assert!(
            a.rate > low && b.rate > a.rate,
            "{low} {} {}",
            a.rate,
            b.rate
        );
        assert!(
            b.rate - low < 0.1 * low + 0.01,
            "slowly: {low} -> {}",
            b.rate
        );
        LAW.advance(&mut b, t + 1_000_000_000, 0.5);
        assert_eq!(b.rate, LAW.ceiling);
    }

    #[test]
    fn an_operators_share_is_both_the_pace_and_the_floor() {
        let law = Law {
            share: Some(0.2),
            ..LAW
        };
        let mut p = law.fresh(1);
        assert_eq!(p.rate, 0.2);
        for i in 0..100 {
            law.throttled(&mut p, 10 + i, 10 + i, 0.5);
        }
        assert_eq!(p.rate, 0.2);
        law.advance(&mut p, 1_000_000, 0.9);
        assert_eq!(p.rate, 0.2);
    }

    #[test]
    fn an_action_without_congestion_of_its_own_starts_from_the_share_learned_on_another() {
        let mut assign = granted(30, 30);
        let t = assign.updated_ms;
        LAW.throttled(&mut assign, t, t, 0.5);
        assign.tokens = -3.0;
        let mut unassign = LAW.fresh(t + 1000);
        LAW.advance_beside(&mut unassign, Some(&assign), t + 1000, 0.5);
        assert!(
            unassign.rate < LAW.ceiling / 2.0 && (0.0..1.0).contains(&unassign.tokens),
            "paced like the learned action, not a fresh burst, nor behind its queue: {unassign:?}"
        );
        assert_eq!(unassign.floor, assign.floor);
        assert!((LAW.goodput(&unassign) - LAW.goodput(&assign)).abs() < 0.05);

        let mut own = unassign;
        LAW.advance(&mut own, t + 2000, 0.5);
        let mut other = granted(30, 30);
        LAW.throttled(&mut other, t + 1500, t + 1500, 0.5);
        LAW.advance_beside(&mut unassign, Some(&other), t + 2000, 0.5);
        assert_eq!(unassign, own, "once it has its own episodes they are kept");
        // Busy but never throttled: its pace says nothing about the fleet.
        let mut busy = granted(30, 30);
        busy.tokens = -2.0;
        let mut calm = LAW.fresh(t);
        let mut alone = calm;
        LAW.advance(&mut alone, t + 2000, 0.5);
        LAW.advance_beside(&mut calm, Some(&busy), t + 2000, 0.5);
        assert_eq!(calm, alone, "nothing learned, nothing taken");
    }

    #[test]
    fn nodes_throttled_together_send_their_next_calls_apart() {
        let waits: Vec<u64> = [0.0, 0.5, 0.99]
            .iter()
            .map(|j| {
                let mut p = granted(30, 30);
                let t = p.updated_ms;
                LAW.throttled(&mut p, t, t, *j);
                LAW.ready_in(&p) * 1000 / (1000.0 / p.rate) as u64
            })
            .collect();
        assert!(
            waits[0] < 800 && waits[1] == 1000 && waits[2] > 1200,
            "in thousandths of an interval at the new pace: {waits:?}"
        );
    }

    #[test]
    fn a_token_that_comes_after_the_deadline_is_not_taken() {
        let mut p = LAW.fresh(1);
        p.tokens = 0.0;
        p.rate = 1.0;
        assert_eq!(LAW.reserve(&mut p, 1, 500), None);
        assert_eq!(p.tokens, 0.0);
        assert_eq!(LAW.reserve(&mut p, 1, 5_000), Some(1000));
        assert_eq!(p.tokens, -1.0);
        assert_eq!(
            LAW.reserve(&mut p, 1, 1_999),
            None,
            "only a runtime's call is lent"
        );
    }

    #[test]
    fn a_token_past_the_deadline_is_lent_until_two_calls_are_owed_and_repaid_by_the_next_calls() {
        let mut p = LAW.fresh(1);
        p.tokens = 0.5;
        p.rate = 0.1;
        // The token comes in 5 s, the call must be done in 4 s: it goes with room to be answered.
        assert_eq!(LAW.lend(&mut p, 1, 4_001), Some(4_000 - LAST_CALL_ROOM_MS));
        assert_eq!(p.tokens, -0.5);
        // Throttled: no decrease for a call outside the pace; its retry goes halfway to the deadline.
        let rate = p.rate;
        LAW.throttled(&mut p, 2_101, 2_001, 0.5);
        assert_eq!((p.rate, p.episodes), (rate, 0));
        assert_eq!(LAW.lend(&mut p, 2_101, 4_001), Some(950));
        assert_eq!(p.tokens, -1.5);
        // Owing two calls or more: refused, nothing taken; a call with no room left neither.
        p.tokens = -2.0;
        assert_eq!(LAW.lend(&mut p, 10_001, 14_001), None);
        assert_eq!(p.tokens, -2.0);
        p.tokens = -1.0;
        assert_eq!(
            LAW.lend(&mut p, 13_101, 14_001),
            None,
            "too late to be answered"
        );
        // A leader whose wait for its token ended 2 s before its deadline sends at once.
        assert_eq!(LAW.lend(&mut p, 12_001, 14_001), Some(0));
        assert_eq!(p.tokens, -2.0);
        // Repaid by the pace: 50 s at 0.1/s later a token waits again.
        LAW.advance(&mut p, 50_001, 0.5);
        assert!(p.tokens > 2.9, "{p:?}");
        assert_eq!(LAW.reserve(&mut p, 50_001, 60_000), Some(0));
    }
}
