//! Admin endpoint, world loading, and the binary's start-up contract.

mod common;
use common::*;
use ec2_sim::{Sim, World};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn admin(sim: &Sim, method: &str, path: &str, body: &str) -> Resp {
    http(
        &sim.ec2_url(),
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn state_and_calls_json() {
    let sim = demo();
    sim.assign(ENI_B1, &["198.18.1.20".parse().unwrap()]);
    let _ = ec2(&sim, &[("Action", "DescribeSubnets")]);
    let r = admin(&sim, "GET", "/_sim/state", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let b1 = &v["enis"][1];
    assert_eq!(b1["id"], ENI_B1);
    assert_eq!(b1["instanceId"], I1);
    assert_eq!(b1["deviceIndex"], 1);
    assert_eq!(b1["subnetId"], "subnet-0sim000000000002");
    assert_eq!(b1["primaryIp"], "198.18.1.10");
    assert_eq!(b1["privateIps"], serde_json::json!(["198.18.1.20"]));
    assert_eq!(b1["ipv6s"], serde_json::json!([]));
    assert_eq!(b1["tags"]["node.k8s.amazonaws.com/no_manage"], "true");
    let state: ec2_sim::State = serde_json::from_str(&r.body).unwrap();
    assert_eq!(state, sim.state());
    let r = admin(&sim, "GET", "/_sim/calls", "");
    let calls: ec2_sim::Calls = serde_json::from_str(&r.body).unwrap();
    assert_eq!(calls.ec2["DescribeSubnets"], 1);
    assert!(r.body.contains("\"injectedErrors\""), "{}", r.body);
}

#[test]
fn faults_reset_assign_unassign_endpoints() {
    let sim = demo();
    let r = admin(
        &sim,
        "POST",
        "/_sim/faults",
        r#"{"errorRate": {"*": 1.0}, "imdsDown": true}"#,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(sim.faults().imds_down);
    let r = admin(&sim, "GET", "/_sim/faults", "");
    let f: ec2_sim::Faults = serde_json::from_str(&r.body).unwrap();
    assert_eq!(f, sim.faults());
    assert_eq!(ec2(&sim, &[("Action", "DescribeSubnets")]).status, 500);
    for bad in [r#"{"errorRate": {"*": 2}}"#, "not json", r#"{"bogus": 1}"#] {
        let r = admin(&sim, "POST", "/_sim/faults", bad);
        assert_eq!(r.status, 400, "{bad}");
        assert!(serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["error"].is_string());
    }
    let r = admin(
        &sim,
        "POST",
        "/_sim/assign",
        &format!(r#"{{"eniId":"{ENI_B1}","addresses":["198.18.1.5","2001:db8:100:1::5"]}}"#),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let e = sim.state().eni(ENI_B1).unwrap().clone();
    assert_eq!(
        e.private_ips,
        ["198.18.1.5".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(e.ipv6s.len(), 1);
    let r = admin(
        &sim,
        "POST",
        "/_sim/unassign",
        &format!(r#"{{"eniId":"{ENI_B1}","addresses":["198.18.1.5","198.18.1.6"]}}"#),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(sim.state().eni(ENI_B1).unwrap().private_ips.is_empty());
    let r = admin(
        &sim,
        "POST",
        "/_sim/assign",
        r#"{"eniId":"eni-0123456789abcdef0","addresses":["198.18.1.5"]}"#,
    );
    assert_eq!(r.status, 404);
    let r = admin(
        &sim,
        "POST",
        "/_sim/assign",
        &format!(r#"{{"eniId":"{ENI_B1}","addresses":["198.18.7.5"]}}"#),
    );
    assert_eq!(r.status, 400);
    let r = admin(
        &sim,
        "POST",
        "/_sim/assign",
        &format!(r#"{{"eniId":"{ENI_B1}","addresses":["x"]}}"#),
    );
    assert_eq!(r.status, 400);
    let r = admin(&sim, "POST", "/_sim/reset", "");
    assert_eq!(r.status, 204);
    assert_eq!(sim.faults(), ec2_sim::Faults::default());
    assert!(sim.state().eni(ENI_B1).unwrap().ipv6s.is_empty());
    assert_eq!(
        sim.calls(),
        ec2_sim::Calls::default(),
        "admin calls are not counted"
    );
    assert_eq!(admin(&sim, "GET", "/_sim/nope", "").status, 404);
    assert_eq!(admin(&sim, "DELETE", "/_sim/state", "").status, 405);
    assert_eq!(admin(&sim, "GET", "/_sim/reset", "").status, 405);
    let r = admin(&sim, "GET", "/_sim/endpoints", "");
    assert_eq!(r.body, sim.endpoints_json());
}

#[test]
fn delete_eni_endpoint() {
    let sim = demo();
    let body = |id: &str| format!(r#"{{"eniId":"{id}"}}"#);
    let r = admin(&sim, "POST", "/_sim/delete-eni", &body(ENI_C1));
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(sim.state().eni(ENI_C1).is_none());
    let r = admin(&sim, "GET", "/_sim/state", "");
    assert!(!r.body.contains(ENI_C1), "{}", r.body);
    let error = |r: &Resp| {
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = admin(&sim, "POST", "/_sim/delete-eni", &body(ENI_C1));
    assert_eq!(r.status, 404, "already deleted");
    assert_eq!(error(&r), format!("unknown ENI {ENI_C1}"));
    let r = admin(
        &sim,
        "POST",
        "/_sim/delete-eni",
        &body("eni-0123456789abcdef0"),
    );
    assert_eq!(r.status, 404);
    let r = admin(&sim, "POST", "/_sim/delete-eni", &body(ENI_A1));
    assert_eq!(r.status, 400, "primary ENI");
    assert!(
        error(&r).contains("primary network interface"),
        "{}",
        r.body
    );
    assert!(sim.state().eni(ENI_A1).is_some());
    for bad in [
        "not json",
        "{}",
        r#"{"eniId": "eni-0c000000000000001", "x": 1}"#,
    ] {
        let r = admin(&sim, "POST", "/_sim/delete-eni", bad);
        assert_eq!(r.status, 400, "{bad}");
        assert!(!error(&r).is_empty());
    }
    assert_eq!(admin(&sim, "GET", "/_sim/delete-eni", "").status, 405);
    let r = admin(
        &sim,
        "POST",
        "/_sim/assign",
        &format!(r#"{{"eniId":"{ENI_C1}","addresses":["198.18.1.5"]}}"#),
    );
    assert_eq!(r.status, 404, "out-of-band assign to a deleted ENI");
    assert_eq!(
        ec2(
            &sim,
            &[
                ("Action", "DescribeNetworkInterfaces"),
                ("NetworkInterfaceId.1", ENI_C1)
            ]
        )
        .code()
        .as_deref(),
        Some("InvalidNetworkInterfaceID.NotFound")
    );
    assert_eq!(admin(&sim, "POST", "/_sim/reset", "").status, 204);
    assert!(sim.state().eni(ENI_C1).is_some(), "reset brings it back");
    assert_eq!(
        admin(&sim, "POST", "/_sim/delete-eni", &body(ENI_C1)).status,
        204
    );
}

#[test]
fn world_validation_messages() {
    let demo_json = serde_json::to_string(&World::demo()).unwrap();
    assert_eq!(
        World::from_json(&demo_json).unwrap(),
        World::demo(),
        "round trip"
    );
    let cases: &[(&str, &str, &str)] = &[
        ("\"type\": \"m5.large\"", "\"type\": \"m9.huge\"", "unknown instance type \"m9.huge\""),
        ("02:00:c6:12:01:01", "02:00:C6:12:01:01", "lowercase"),
        ("02:00:c6:12:01:01", "02:00:c6:12:00:01", "duplicate mac"),
        ("\"primaryIp\": \"198.18.1.10\"", "\"primaryIp\": \"198.18.2.10\"", "does not fall within"),
        ("\"primaryIp\": \"198.18.1.10\"", "\"primaryIp\": \"198.18.1.11\"", "also held by"),
        ("\"primaryIp\": \"198.18.1.10\"", "\"primaryIp\": \"198.18.1.1\"", "reserved"),
        ("eni-0b000000000000001", "eni-0a000000000000001", "duplicate ENI id"),
        ("eni-0b000000000000001", "eni-nothex", "8 or 17 lowercase hex"),
        ("\"subnetId\": \"subnet-0sim000000000002\", \"primaryIp\": \"198.18.1.10\"", "\"subnetId\": \"subnet-nope\", \"primaryIp\": \"198.18.1.10\"", "subnetId subnet-nope is not in subnets"),
        ("\"ipv4Cidr\": \"198.18.1.0/24\"", "\"ipv4Cidr\": \"198.18.1.1/24\"", "host bits"),
        ("\"ipv4Cidr\": \"198.18.1.0/24\"", "\"ipv4Cidr\": \"198.19.1.0/24\"", "not inside the VPC"),
        ("\"accountId\": \"111122223333\"", "\"accountId\": \"42\"", "accountId"),
        ("\"deviceIndex\": 0,\n     \"subnetId\": \"subnet-0sim000000000001\", \"primaryIp\": \"198.18.0.10\"", "\"deviceIndex\": 3,\n     \"subnetId\": \"subnet-0sim000000000001\", \"primaryIp\": \"198.18.0.10\"", "no ENI with deviceIndex 0"),
        ("\"faults\": {}", "\"faults\": {\"errorRate\": {\"*\": 7}}", "errorRate"),
        ("\"faults\": {}", "\"faults\": {}, \"extra\": 1", "unknown field `extra`"),
    ];
    let pretty = serde_json::to_string_pretty(&World::demo()).unwrap();
    let _ = pretty;
    let src = include_str!("../src/world.rs");
    let start =
        src.find("const DEMO_JSON: &str = r#\"").unwrap() + "const DEMO_JSON: &str = r#\"".len();
    let end = src[start..].find("\"#;").unwrap() + start;
    let demo = &src[start..end];
    for (from, to, want) in cases {
        assert!(demo.contains(from), "test bug: {from}");
        let bad = demo.replacen(from, to, 1);
        let err = World::from_json(&bad).unwrap_err();
        assert!(err.contains(want), "{to}: {err}");
    }
    // Limits: m5.large allows 9 secondaries.
    let mut w = World::demo();
    w.enis[1].private_ips = (20..30)
        .map(|i| format!("198.18.1.{i}").parse().unwrap())
        .collect();
    assert!(w.validate().unwrap_err().contains("exceed the limit of 10"));
    let mut w = World::demo();
    w.instances[0].imds_port = 40000;
    w.instances[1].imds_port = 40000;
    assert!(w.validate().unwrap_err().contains("imdsPort"));
    let err = Sim::start(w).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn fixed_imds_port_and_drop_closes_listeners() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut w = World::demo();
    w.instances[1].imds_port = port;
    let sim = Sim::start(w).unwrap();
    assert_eq!(sim.imds_url(I2), format!("http://127.0.0.1:{port}"));
    assert_eq!(imds(&sim, I2, "/latest/meta-data/instance-id").body, I2);
    let ec2_url = sim.ec2_url();
    sim.shutdown();
    let addr = ec2_url.trim_start_matches("http://");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed"
    );
}

#[test]
#[should_panic(expected = "no instance")]
fn imds_url_of_unknown_instance_panics() {
    demo().imds_url("i-0123456789abcdef0");
}

#[test]
fn binary_prints_ready_json_and_exits_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("ec2-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready.json");
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ec2-sim"))
        .args(["--ready-file", ready.to_str().unwrap(), "--ec2-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let startup = t.elapsed();
    assert!(startup < Duration::from_secs(1), "{startup:?}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(std::fs::read_to_string(&ready).unwrap().trim(), line.trim());
    let ec2_url = v["ec2"].as_str().unwrap().to_string();
    assert!(ec2_url.starts_with("http://127.0.0.1:"));
    let imds_url = v["imds"][I1].as_str().unwrap();
    assert!(v["imds"][I2].is_string());
    let r = http(
        imds_url,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        b"",
    );
    assert_eq!(r.status, 200);
    let r = http(
        &ec2_url,
        "POST",
        "/",
        &[("Authorization", SIGV4)],
        b"Action=DescribeSubnets&Version=2016-11-15",
    );
    assert_eq!(r.status, 200);
    let r = http(
        &ec2_url,
        "POST",
        "/",
        &[],
        b"Action=DescribeSubnets&Version=2016-11-15",
    );
    assert_eq!(r.status, 401);
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].contains(&format!("imds:{I1} PUT /latest/api/token 200")),
        "{log}"
    );
    assert!(lines[1].contains("ec2 DescribeSubnets 200 ok"), "{log}");
    assert!(
        lines[2].contains("ec2 DescribeSubnets 401 MissingAuthenticationToken"),
        "{log}"
    );
    assert!(lines[2].ends_with("ms"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_rejects_bad_arguments_and_worlds() {
    let out = Command::new(env!("CARGO_BIN_EXE_ec2-sim"))
        .arg("--frob")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let dir = std::env::temp_dir().join(format!("ec2-sim-test-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let world = dir.join("world.json");
    std::fs::write(&world, r#"{"accountId": "111122223333", "instances": [{"id": "i-0123456789abcdef0", "type": "x1.tiny", "region": "us-west-2", "availabilityZone": "us-west-2a"}]}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ec2-sim"))
        .args(["--world", world.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown instance type \"x1.tiny\""));
    assert!(out.stdout.is_empty());
    let out = Command::new(env!("CARGO_BIN_EXE_ec2-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
