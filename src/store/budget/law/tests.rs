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
