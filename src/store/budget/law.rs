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
mod tests;
