//! Faults: throttling, latency, injected errors, IMDS outages, consistency lag, seed, reset.

mod common;
use common::*;
use ec2_sim::{Faults, Sim, Throttle, World};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn throttle(action: &str, capacity: u32, refill_per_second: f64) -> Faults {
    Faults {
        throttle: BTreeMap::from([(
            action.to_string(),
            Throttle {
                capacity,
                refill_per_second,
            },
        )]),
        ..Faults::default()
    }
}

fn describe(sim: &Sim) -> Resp {
    ec2(sim, &[("Action", "DescribeNetworkInterfaces")])
}

#[test]
fn throttle_is_a_token_bucket_per_action() {
    let sim = demo();
    sim.set_faults(throttle("DescribeNetworkInterfaces", 3, 0.0));
    for _ in 0..3 {
        assert_eq!(describe(&sim).status, 200);
    }
    let r = describe(&sim);
    assert_eq!(r.status, 503);
    assert_eq!(r.code().as_deref(), Some("RequestLimitExceeded"));
    assert_eq!(
        ec2(&sim, &[("Action", "DescribeSubnets")]).status,
        200,
        "other actions unaffected"
    );
    let calls = sim.calls();
    assert_eq!(calls.throttled, 1);
    assert_eq!(
        calls.ec2["DescribeNetworkInterfaces"], 4,
        "throttled calls are counted too"
    );
}

#[test]
fn throttle_bucket_refills() {
    let sim = demo();
    sim.set_faults(throttle("DescribeNetworkInterfaces", 1, 10.0));
    assert_eq!(describe(&sim).status, 200);
    assert_eq!(describe(&sim).status, 503);
    std::thread::sleep(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(describe(&sim).status, 200, "one token after 100 ms");
    let r = describe(&sim);
    // Only a prompt second call is sure to find the bucket empty again.
    if t.elapsed() < Duration::from_millis(40) {
        assert_eq!(r.status, 503);
    }
}

#[test]
fn throttle_star_gives_every_unlisted_action_its_own_bucket() {
    let sim = demo();
    let mut f = throttle("*", 1, 0.0);
    f.throttle.insert(
        "DescribeInstances".into(),
        Throttle {
            capacity: 2,
            refill_per_second: 0.0,
        },
    );
    sim.set_faults(f);
    assert_eq!(ec2(&sim, &[("Action", "DescribeSubnets")]).status, 200);
    assert_eq!(ec2(&sim, &[("Action", "DescribeSubnets")]).status, 503);
    assert_eq!(describe(&sim).status, 200);
    assert_eq!(describe(&sim).status, 503);
    assert_eq!(ec2(&sim, &[("Action", "DescribeInstances")]).status, 200);
    assert_eq!(ec2(&sim, &[("Action", "DescribeInstances")]).status, 200);
    assert_eq!(ec2(&sim, &[("Action", "DescribeInstances")]).status, 503);
    assert_eq!(sim.calls().throttled, 3);
}

#[test]
fn throttle_bucket_is_shared_by_all_callers() {
    let sim = demo();
    sim.set_faults(throttle("DescribeSubnets", 5, 0.0));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..10)
            .map(|_| s.spawn(|| ec2(&sim, &[("Action", "DescribeSubnets")]).status))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        5,
        "{statuses:?}"
    );
}

#[test]
fn order_is_auth_then_throttle_then_injected_error() {
    let sim = demo();
    let mut f = throttle("DescribeSubnets", 1, 0.0);
    f.error_rate.insert("*".into(), 1.0);
    sim.set_faults(f);
    let unsigned = || http(&sim.ec2_url(), "POST", "/", &[], b"Action=DescribeSubnets");
    assert_eq!(
        unsigned().code().as_deref(),
        Some("MissingAuthenticationToken"),
        "auth before throttle"
    );
    assert_eq!(
        ec2(&sim, &[("Action", "DescribeSubnets")])
            .code()
            .as_deref(),
        Some("InternalError"),
        "token taken, then error"
    );
    assert_eq!(
        ec2(&sim, &[("Action", "DescribeSubnets")])
            .code()
            .as_deref(),
        Some("RequestLimitExceeded")
    );
    assert_eq!(
        unsigned().code().as_deref(),
        Some("MissingAuthenticationToken")
    );
    let c = sim.calls();
    assert_eq!(
        (c.ec2["DescribeSubnets"], c.throttled, c.injected_errors),
        (4, 1, 1)
    );
}

fn deny(actions: &[&str]) -> Faults {
    Faults {
        deny: actions.iter().map(|a| a.to_string()).collect(),
        ..Faults::default()
    }
}

/// A SigV4 header whose access key is the one IMDS hands out to `instance`'s role.
fn signed_as_instance(sim: &Sim, instance: &str, params: &[(&str, &str)]) -> Resp {
    let creds = imds(
        sim,
        instance,
        "/latest/meta-data/iam/security-credentials/eks-node-role",
    );
    let v: serde_json::Value = serde_json::from_str(&creds.body).unwrap();
    let key = v["AccessKeyId"].as_str().unwrap();
    let auth = format!("AWS4-HMAC-SHA256 Credential={key}/20240101/us-west-2/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=00");
    let mut all = vec![("Version", "2016-11-15")];
    all.extend_from_slice(params);
    http(
        &sim.ec2_url(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &auth),
        ],
        form(&all).as_bytes(),
    )
}

#[test]
fn deny_is_unauthorized_operation_403_naming_role_action_and_eni() {
    let sim = demo();
    sim.set_faults(deny(&["AssignPrivateIpAddresses"]));
    let r = assign(&sim, ENI_B1, &["198.18.1.20"], None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.code().as_deref(), Some("UnauthorizedOperation"));
    assert_eq!(
        r.message(),
        format!("You are not authorized to perform this operation. User: arn:aws:sts::111122223333:assumed-role/eks-node-role/{I1} is not authorized to perform: ec2:AssignPrivateIpAddresses on resource: arn:aws:ec2:us-west-2:111122223333:network-interface/{ENI_B1}")
    );
    assert!(r.tag("RequestID").is_some());
    assert!(
        sim.state().eni(ENI_B1).unwrap().private_ips.is_empty(),
        "nothing executed"
    );
    // Without IMDS credentials the caller is guessed from the ENI's instance.
    let r = assign(&sim, ENI_B2, &["198.18.1.20"], None);
    assert!(
        r.message()
            .contains(&format!("assumed-role/eks-node-role/{I2} ")),
        "{}",
        r.message()
    );
    // With them, the instance whose role credentials signed the call is named.
    let r = signed_as_instance(
        &sim,
        I2,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", ENI_B1),
            ("PrivateIpAddress.1", "198.18.1.20"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("UnauthorizedOperation"));
    assert!(
        r.message()
            .contains(&format!("assumed-role/eks-node-role/{I2} ")),
        "{}",
        r.message()
    );
    assert!(r
        .message()
        .ends_with(&format!("network-interface/{ENI_B1}")));
    // Denial precedes execution, so even a malformed id is refused by IAM first.
    let r = assign(&sim, "eni-bogus", &["198.18.1.20"], None);
    assert_eq!(r.code().as_deref(), Some("UnauthorizedOperation"));
    assert_eq!(
        unassign(&sim, ENI_B1, &["198.18.1.20"]).code().as_deref(),
        Some("InvalidParameterValue"),
        "other actions unaffected"
    );
    assert_eq!(assign(&sim, ENI_B1, &["198.18.1.20"], None).status, 403);
    let c = sim.calls();
    assert_eq!(
        c.ec2["AssignPrivateIpAddresses"], 5,
        "denied calls are counted"
    );
    assert_eq!((c.throttled, c.injected_errors), (0, 0));
    sim.reset();
    assert_eq!(assign(&sim, ENI_B1, &["198.18.1.20"], None).status, 200);
}

#[test]
fn deny_star_covers_every_implemented_action() {
    let sim = demo();
    sim.set_faults(deny(&["*"]));
    for action in [
        "DescribeNetworkInterfaces",
        "DescribeInstances",
        "DescribeSubnets",
    ] {
        let r = ec2(&sim, &[("Action", action)]);
        assert_eq!(
            (r.status, r.code().as_deref()),
            (403, Some("UnauthorizedOperation")),
            "{action}"
        );
        // Describe* have no resource-level permissions in EC2, so no resource is named.
        assert!(
            r.message()
                .ends_with(&format!("is not authorized to perform: ec2:{action}")),
            "{}",
            r.message()
        );
    }
    for r in [
        assign(&sim, ENI_B1, &["198.18.1.20"], None),
        unassign(&sim, ENI_B1, &["198.18.1.20"]),
        assign6(&sim, ENI_B1, &["2001:db8:100:1::5"]),
        unassign6(&sim, ENI_B1, &["2001:db8:100:1::5"]),
    ] {
        assert_eq!(r.code().as_deref(), Some("UnauthorizedOperation"));
        assert!(r
            .message()
            .ends_with(&format!("network-interface/{ENI_B1}")));
    }
    let r = ec2(&sim, &[("Action", "DescribeVpcs")]);
    assert_eq!(
        r.code().as_deref(),
        Some("InvalidAction"),
        "unimplemented actions fail to parse before IAM"
    );
    let r = http(&sim.ec2_url(), "POST", "/", &[], b"Action=DescribeSubnets");
    assert_eq!(r.code().as_deref(), Some("MissingAuthenticationToken"));
    assert_eq!(
        local_ipv4s(&sim, I1, MAC_B1),
        ["198.18.1.10"],
        "IMDS unaffected"
    );
}

#[test]
fn deny_comes_after_throttle_and_injected_errors() {
    let sim = demo();
    let mut f = throttle("DescribeSubnets", 2, 0.0);
    f.deny = vec!["DescribeSubnets".into()];
    f.error_rate.insert("DescribeSubnets".into(), 1.0);
    sim.set_faults(f.clone());
    let code = |sim: &Sim| {
        ec2(sim, &[("Action", "DescribeSubnets")])
            .code()
            .unwrap_or_default()
    };
    assert_eq!(code(&sim), "InternalError");
    f.error_rate.clear();
    sim.set_faults(f);
    assert_eq!(
        code(&sim),
        "UnauthorizedOperation",
        "token taken, then denied"
    );
    assert_eq!(code(&sim), "UnauthorizedOperation");
    assert_eq!(code(&sim), "RequestLimitExceeded");
    let c = sim.calls();
    assert_eq!(
        (c.ec2["DescribeSubnets"], c.throttled, c.injected_errors),
        (4, 1, 1)
    );
}

#[test]
fn latency_per_action_with_star_default() {
    let sim = demo();
    sim.set_faults(Faults {
        latency_ms: BTreeMap::from([("DescribeSubnets".into(), 600), ("*".into(), 100)]),
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(ec2(&sim, &[("Action", "DescribeSubnets")]).status, 200);
    let slow = t.elapsed();
    assert!(slow >= Duration::from_millis(600), "{slow:?}");
    let t = Instant::now();
    assert_eq!(describe(&sim).status, 200);
    let star = t.elapsed();
    assert!(
        star >= Duration::from_millis(100) && star < Duration::from_millis(300),
        "{star:?}"
    );
    // Latency applies before the auth check, so even refused calls are slow.
    let t = Instant::now();
    assert_eq!(
        http(&sim.ec2_url(), "POST", "/", &[], b"Action=DescribeSubnets").status,
        401
    );
    assert!(t.elapsed() >= Duration::from_millis(600));
}

#[test]
fn imds_latency() {
    let sim = demo();
    let tok = token(&sim, I1);
    sim.set_faults(Faults {
        imds_latency_ms: 200,
        ..Faults::default()
    });
    let t = Instant::now();
    let r = http(
        &sim.imds_url(I1),
        "GET",
        "/latest/meta-data/instance-id",
        &[("X-aws-ec2-metadata-token", &tok)],
        b"",
    );
    assert_eq!(r.body, I1);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn error_rate_one_always_fails_and_changes_nothing() {
    let sim = demo();
    sim.set_faults(Faults {
        error_rate: BTreeMap::from([("AssignPrivateIpAddresses".into(), 1.0)]),
        ..Faults::default()
    });
    let r = assign(&sim, ENI_B1, &["198.18.1.20"], None);
    assert_eq!(r.status, 500);
    assert_eq!(r.code().as_deref(), Some("InternalError"));
    assert!(sim.state().eni(ENI_B1).unwrap().private_ips.is_empty());
    assert_eq!(describe(&sim).status, 200, "other actions unaffected");
    assert_eq!(sim.calls().injected_errors, 1);
    sim.set_faults(Faults {
        unavailable_rate: BTreeMap::from([("*".into(), 1.0)]),
        ..Faults::default()
    });
    let r = describe(&sim);
    assert_eq!((r.status, r.code().as_deref()), (503, Some("Unavailable")));
}

fn outcomes(sim: &Sim, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| ec2(sim, &[("Action", "DescribeSubnets")]).status)
        .collect()
}

#[test]
fn seed_makes_injected_errors_repeat() {
    let faults = |seed| Faults {
        seed: Some(seed),
        error_rate: BTreeMap::from([("*".into(), 0.5)]),
        ..Faults::default()
    };
    let sim = demo();
    sim.set_faults(faults(42));
    let a = outcomes(&sim, 40);
    assert!(a.contains(&200) && a.contains(&500), "{a:?}");
    sim.set_faults(faults(42));
    assert_eq!(outcomes(&sim, 40), a, "same seed, same sequence");
    let mut world = World::demo();
    world.faults = faults(42);
    let other = Sim::start(world).unwrap();
    assert_eq!(outcomes(&other, 40), a, "another simulator, same seed");
    other.reset();
    assert_eq!(outcomes(&other, 40), a, "reset reseeds");
    sim.set_faults(faults(7));
    assert_ne!(outcomes(&sim, 40), a, "another seed");
}

#[test]
fn imds_down_answers_503_to_everything() {
    let sim = demo();
    let tok = token(&sim, I1);
    sim.set_faults(Faults {
        imds_down: true,
        ..Faults::default()
    });
    let url = sim.imds_url(I1);
    let r = http(
        &url,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        b"",
    );
    assert_eq!(r.status, 503);
    let r = http(
        &url,
        "GET",
        "/latest/meta-data/instance-id",
        &[("X-aws-ec2-metadata-token", &tok)],
        b"",
    );
    assert_eq!(r.status, 503);
    assert_eq!(http(&url, "GET", "/nope", &[], b"").status, 503);
    assert_eq!(describe(&sim).status, 200, "EC2 is up");
    sim.set_faults(Faults::default());
    let r = http(
        &url,
        "GET",
        "/latest/meta-data/instance-id",
        &[("X-aws-ec2-metadata-token", &tok)],
        b"",
    );
    assert_eq!((r.status, r.body.as_str()), (200, I1));
}

#[test]
fn imds_token_refused_is_403_on_put_only() {
    let sim = demo();
    let tok = token(&sim, I1);
    sim.set_faults(Faults {
        imds_token_refused: true,
        ..Faults::default()
    });
    let url = sim.imds_url(I1);
    let r = http(
        &url,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        b"",
    );
    assert_eq!(r.status, 403);
    let r = http(
        &url,
        "GET",
        "/latest/meta-data/instance-id",
        &[("X-aws-ec2-metadata-token", &tok)],
        b"",
    );
    assert_eq!(r.status, 200, "tokens issued before still work");
}

#[test]
fn consistency_lag_delays_describe_and_imds_not_state() {
    let sim = demo();
    sim.set_faults(Faults {
        consistency_lag_ms: 400,
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(assign(&sim, ENI_B1, &["198.18.1.20"], None).status, 200);
    assert_eq!(
        sim.state().eni(ENI_B1).unwrap().private_ips.len(),
        1,
        "truth is immediate"
    );
    let seen = eni_ids(&describe_filter(
        &sim,
        "addresses.private-ip-address",
        &["198.18.1.20"],
    ));
    let imds_now = local_ipv4s(&sim, I1, MAC_B1);
    let early = t.elapsed();
    if early < Duration::from_millis(380) {
        assert!(
            seen.is_empty(),
            "DescribeNetworkInterfaces shows the old state"
        );
        assert_eq!(imds_now, ["198.18.1.10"], "IMDS shows the old state");
    }
    // Mutations check the truth: the address is already held.
    assert_eq!(
        assign(&sim, ENI_B1, &["198.18.1.20"], None)
            .code()
            .as_deref(),
        Some("InvalidIPAddress.InUse")
    );
    std::thread::sleep(Duration::from_millis(450).saturating_sub(t.elapsed()));
    assert_eq!(
        eni_ids(&describe_filter(
            &sim,
            "addresses.private-ip-address",
            &["198.18.1.20"]
        )),
        [ENI_B1]
    );
    assert_eq!(
        local_ipv4s(&sim, I1, MAC_B1),
        ["198.18.1.10", "198.18.1.20"]
    );
    // And the other way round.
    let t = Instant::now();
    assert_eq!(unassign(&sim, ENI_B1, &["198.18.1.20"]).status, 200);
    let seen = eni_ids(&describe_filter(
        &sim,
        "addresses.private-ip-address",
        &["198.18.1.20"],
    ));
    if t.elapsed() < Duration::from_millis(380) {
        assert_eq!(seen, [ENI_B1]);
    }
    std::thread::sleep(Duration::from_millis(450).saturating_sub(t.elapsed()));
    assert!(eni_ids(&describe_filter(
        &sim,
        "addresses.private-ip-address",
        &["198.18.1.20"]
    ))
    .is_empty());
}

#[test]
fn consistency_lag_applies_to_eni_deletion() {
    let sim = demo();
    sim.set_faults(Faults {
        consistency_lag_ms: 400,
        ..Faults::default()
    });
    let t = Instant::now();
    sim.delete_eni(ENI_B1);
    assert!(sim.state().eni(ENI_B1).is_none(), "truth is immediate");
    assert_eq!(
        assign(&sim, ENI_B1, &["198.18.1.20"], None)
            .code()
            .as_deref(),
        Some("InvalidNetworkInterfaceID.NotFound"),
        "mutations check the truth"
    );
    let by_id = ec2(
        &sim,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", ENI_B1),
        ],
    );
    let macs = imds(&sim, I1, "/latest/meta-data/network/interfaces/macs/");
    if t.elapsed() < Duration::from_millis(380) {
        assert_eq!(eni_ids(&by_id), [ENI_B1], "Describe shows the old state");
        assert!(macs.body.contains(MAC_B1), "IMDS shows the old state");
    }
    std::thread::sleep(Duration::from_millis(450).saturating_sub(t.elapsed()));
    let by_id = ec2(
        &sim,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", ENI_B1),
        ],
    );
    assert_eq!(
        by_id.code().as_deref(),
        Some("InvalidNetworkInterfaceID.NotFound")
    );
    let macs = imds(&sim, I1, "/latest/meta-data/network/interfaces/macs/");
    assert!(!macs.body.contains(MAC_B1), "{}", macs.body);
}

#[test]
fn reset_restores_world_state_calls_and_faults() {
    let mut world = World::demo();
    world.enis[1].private_ips = vec!["198.18.1.44".parse().unwrap()];
    world.faults = Faults {
        latency_ms: BTreeMap::from([("*".into(), 1)]),
        ..Faults::default()
    };
    let sim = Sim::start(world.clone()).unwrap();
    let initial = sim.state();
    assert_eq!(
        initial.eni(ENI_B1).unwrap().private_ips,
        world.enis[1].private_ips
    );
    assert_eq!(sim.faults(), world.faults, "world faults apply at start");
    assert_eq!(unassign(&sim, ENI_B1, &["198.18.1.44"]).status, 200);
    assert_eq!(assign6(&sim, ENI_B2, &["2001:db8:100:1::9"]).status, 200);
    let _ = imds(&sim, I2, "/latest/meta-data/mac");
    sim.set_faults(Faults {
        imds_down: true,
        ..Faults::default()
    });
    assert_ne!(sim.state(), initial);
    sim.reset();
    assert_eq!(sim.state(), initial);
    assert_eq!(sim.calls(), ec2_sim::Calls::default());
    assert_eq!(sim.faults(), world.faults);
}

#[test]
#[should_panic(expected = "invalid faults")]
fn set_faults_refuses_nonsense() {
    demo().set_faults(Faults {
        error_rate: BTreeMap::from([("*".into(), 1.5)]),
        ..Faults::default()
    });
}

#[test]
fn faults_json_shape() {
    let f: Faults = serde_json::from_str(
        r#"{ "seed": 1,
  "throttle": {"AssignPrivateIpAddresses": {"capacity": 20, "refillPerSecond": 10}, "*": {"capacity": 5, "refillPerSecond": 1.5}},
  "latencyMs": {"AssignPrivateIpAddresses": 50, "*": 0},
  "errorRate": {"*": 0.0},
  "imdsLatencyMs": 0, "imdsDown": false, "imdsTokenRefused": false,
  "consistencyLagMs": 0 }"#,
    )
    .unwrap();
    assert_eq!(f.seed, Some(1));
    assert_eq!(f.throttle["*"].refill_per_second, 1.5);
    assert!(f.validate().is_ok());
    assert_eq!(
        serde_json::from_str::<Faults>("{}").unwrap(),
        Faults::default()
    );
    let e = serde_json::from_str::<Faults>(r#"{"latency": {}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field"), "{e}");
    let bad: Faults =
        serde_json::from_str(r#"{"latencyMs": {"AssignPrivateIpAddress": 5}}"#).unwrap();
    assert!(bad.validate().unwrap_err().contains("unknown action"));
    let d: Faults = serde_json::from_str(r#"{"deny": ["AssignPrivateIpAddresses", "*"]}"#).unwrap();
    assert_eq!(d.deny, ["AssignPrivateIpAddresses", "*"]);
    assert!(d.validate().is_ok());
    assert_eq!(
        serde_json::to_value(&d).unwrap()["deny"],
        serde_json::json!(["AssignPrivateIpAddresses", "*"])
    );
    let empty = serde_json::to_value(Faults::default()).unwrap();
    assert!(empty.get("deny").is_none(), "{empty}");
    let bad: Faults = serde_json::from_str(r#"{"deny": ["DescribeVpcs"]}"#).unwrap();
    let e = bad.validate().unwrap_err();
    assert!(
        e.contains("faults.deny: unknown action \"DescribeVpcs\""),
        "{e}"
    );
}
