//! IMDSv2 over raw HTTP: tokens, every path, 404s, and per-instance listeners.

mod common;
use common::*;
use ec2_sim::Sim;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn put_token(sim: &Sim, ttl: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = ttl
        .map(|t| ("X-aws-ec2-metadata-token-ttl-seconds", t))
        .into_iter()
        .collect();
    http(&sim.imds_url(I1), "PUT", "/latest/api/token", &headers, b"")
}

#[test]
fn token_ttl_bounds() {
    let sim = demo();
    for ok in ["1", "21600", "300"] {
        let r = put_token(&sim, Some(ok));
        assert_eq!(r.status, 200, "{ok}");
        assert_eq!(r.header("x-aws-ec2-metadata-token-ttl-seconds"), Some(ok));
        assert!(r.body.len() > 20);
    }
    for bad in [
        Some("0"),
        Some("21601"),
        Some("-1"),
        Some("abc"),
        Some(""),
        None,
    ] {
        assert_eq!(put_token(&sim, bad).status, 400, "{bad:?}");
    }
    let r = http(&sim.imds_url(I1), "GET", "/latest/api/token", &[], b"");
    assert_eq!(r.status, 405);
}

#[test]
fn get_needs_a_valid_token_of_this_instance() {
    let sim = demo();
    let url = sim.imds_url(I1);
    assert_eq!(
        http(&url, "GET", "/latest/meta-data/instance-id", &[], b"").status,
        401
    );
    assert_eq!(
        http(
            &url,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", "forged")],
            b""
        )
        .status,
        401
    );
    let other = token(&sim, I2);
    assert_eq!(
        http(
            &url,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &other)],
            b""
        )
        .status,
        401
    );
    let short = put_token(&sim, Some("1")).body;
    let r = http(
        &url,
        "GET",
        "/latest/meta-data/instance-id",
        &[("X-aws-ec2-metadata-token", &short)],
        b"",
    );
    assert_eq!((r.status, r.body.as_str()), (200, I1));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        http(
            &url,
            "GET",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &short)],
            b""
        )
        .status,
        401,
        "expired"
    );
    assert_eq!(
        http(
            &url,
            "POST",
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &other)],
            b""
        )
        .status,
        405
    );
}

#[test]
fn instance_paths() {
    let sim = demo();
    let get = |p: &str| {
        let r = imds(&sim, I1, p);
        assert_eq!(r.status, 200, "{p}: {}", r.body);
        r.body
    };
    assert_eq!(get("/latest/meta-data/instance-id"), I1);
    assert_eq!(get("/latest/meta-data/instance-type"), "m5.large");
    assert_eq!(get("/latest/meta-data/placement/region"), "us-west-2");
    assert_eq!(
        get("/latest/meta-data/placement/availability-zone"),
        "us-west-2a"
    );
    assert_eq!(get("/latest/meta-data/mac"), "02:00:c6:12:00:01");
    assert_eq!(get("/latest/meta-data/local-ipv4"), "198.18.0.10");
    assert_eq!(
        get("/latest/meta-data/network/interfaces/macs/"),
        "02:00:c6:12:00:01/\n02:00:c6:12:01:01/\n02:00:c6:12:01:03/"
    );
    assert_eq!(
        get("/latest/meta-data/network/interfaces/macs"),
        get("/latest/meta-data/network/interfaces/macs/")
    );
    assert!(get("/latest/meta-data/").contains("instance-id"));
    // The other instance answers as itself.
    assert_eq!(imds(&sim, I2, "/latest/meta-data/instance-id").body, I2);
    assert_eq!(
        imds(&sim, I2, "/latest/meta-data/network/interfaces/macs/").body,
        "02:00:c6:12:00:02/\n02:00:c6:12:01:02/"
    );
}

#[test]
fn per_mac_paths() {
    let sim = demo();
    let base = format!("/latest/meta-data/network/interfaces/macs/{MAC_B1}");
    let get = |k: &str| imds(&sim, I1, &format!("{base}/{k}"));
    let ok = |k: &str| {
        let r = get(k);
        assert_eq!(r.status, 200, "{k}: {}", r.body);
        r.body
    };
    assert_eq!(ok("interface-id"), ENI_B1);
    assert_eq!(ok("device-number"), "1");
    assert_eq!(ok("subnet-id"), "subnet-0sim000000000002");
    assert_eq!(ok("vpc-id"), "vpc-0sim0000000000001");
    assert_eq!(ok("subnet-ipv4-cidr-block"), "198.18.1.0/24");
    assert_eq!(ok("subnet-ipv6-cidr-blocks"), "2001:db8:100:1::/64");
    assert_eq!(ok("local-ipv4s"), "198.18.1.10");
    assert_eq!(get("ipv6s").status, 404, "absent list");
    assert!(!ok("").contains("ipv6s"));
    sim.assign(
        ENI_B1,
        &[
            "198.18.1.21".parse().unwrap(),
            "198.18.1.20".parse().unwrap(),
            "2001:db8:100:1::7".parse().unwrap(),
        ],
    );
    assert_eq!(
        ok("local-ipv4s"),
        "198.18.1.10\n198.18.1.21\n198.18.1.20",
        "primary first, then assignment order"
    );
    assert_eq!(ok("ipv6s"), "2001:db8:100:1::7");
    assert!(ok("").contains("ipv6s"));
    // Subnet 1 has no IPv6 block.
    let r = imds(
        &sim,
        I1,
        "/latest/meta-data/network/interfaces/macs/02:00:c6:12:00:01/subnet-ipv6-cidr-blocks",
    );
    assert_eq!(r.status, 404);
    assert_eq!(get("no-such-key").status, 404);
    // A MAC of another instance is unknown here.
    let r = imds(
        &sim,
        I1,
        "/latest/meta-data/network/interfaces/macs/02:00:c6:12:01:02/interface-id",
    );
    assert_eq!(r.status, 404);
}

#[test]
fn iam_credentials() {
    let sim = demo();
    let r = imds(&sim, I1, "/latest/meta-data/iam/security-credentials/");
    assert_eq!((r.status, r.body.as_str()), (200, "eks-node-role"));
    let r = imds(
        &sim,
        I1,
        "/latest/meta-data/iam/security-credentials/eks-node-role",
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["Code"], "Success");
    assert_eq!(v["Type"], "AWS-HMAC");
    for k in [
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "LastUpdated",
        "Expiration",
    ] {
        assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "{k}");
    }
    let exp = v["Expiration"].as_str().unwrap();
    assert!(exp.ends_with('Z') && exp.len() == 20, "{exp}");
    // ~6 h ahead: compare the hour against now + 6 h, tolerant of a boundary.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hour = |secs: u64| format!("T{:02}:", secs / 3600 % 24);
    assert!(
        exp.contains(&hour(now + 6 * 3600)) || exp.contains(&hour(now + 6 * 3600 + 60)),
        "{exp}"
    );
    assert_eq!(
        imds(
            &sim,
            I1,
            "/latest/meta-data/iam/security-credentials/other-role"
        )
        .status,
        404
    );
}

#[test]
fn instance_identity_document() {
    let sim = demo();
    let r = imds(&sim, I2, "/latest/dynamic/instance-identity/document");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["instanceId"], I2);
    assert_eq!(v["instanceType"], "m5.large");
    assert_eq!(v["region"], "us-west-2");
    assert_eq!(v["availabilityZone"], "us-west-2a");
    assert_eq!(v["accountId"], "111122223333");
    assert_eq!(v["privateIp"], "198.18.0.11");
}

#[test]
fn unknown_paths_are_404() {
    let sim = demo();
    for p in [
        "/",
        "/latest/meta-data/nope",
        "/latest/user-data",
        "/2009-04-04/meta-data/instance-id",
        "/latest/meta-data/placement/region/x",
    ] {
        assert_eq!(imds(&sim, I1, p).status, 404, "{p}");
    }
}

#[test]
fn imds_calls_are_counted_per_instance() {
    let sim = demo();
    let _ = imds(&sim, I1, "/latest/meta-data/mac");
    let _ = imds(&sim, I2, "/latest/meta-data/mac");
    let _ = imds(&sim, I2, "/latest/meta-data/mac");
    let c = sim.calls();
    assert_eq!(c.imds[I1], 2, "token PUT + GET");
    assert_eq!(c.imds[I2], 4);
    assert!(c.ec2.is_empty());
}
