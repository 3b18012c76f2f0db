//! `aws-eni-ip subnet check|reserve`, the real binary with the standard credential chain (here
//! from the environment) against ec2-sim: a DHCP collision found and named, a clear range counted,
//! an idempotent reserve, refusals on a collision and on an overlapping reservation.

use ec2_sim::{Sim, World};
use serde_json::Value;
use std::process::Output;

const SUBNET: &str = "subnet-0sim000000000002";

fn run(sim: &Sim, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aws-eni-ip"))
        .arg("subnet")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_ACCESS_KEY_ID", "AKIDSIMOPERATOR")
        .env("AWS_SECRET_ACCESS_KEY", "operator-secret")
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ENDPOINT_URL_EC2", sim.ec2_url())
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run aws-eni-ip")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn created(sim: &Sim) -> u64 {
    sim.calls()
        .ec2
        .get("CreateSubnetCidrReservation")
        .copied()
        .unwrap_or(0)
}

#[test]
fn check_names_each_eni_and_instance_whose_primary_ip_lies_in_the_range() {
    let sim = Sim::start(World::demo()).unwrap();
    let o = run(
        &sim,
        &["check", "--subnet", SUBNET, "--cidr", "198.18.1.0/28"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for (ip, eni, instance) in [
        (
            "198.18.1.10",
            "eni-0b000000000000001",
            "i-0a1b2c3d4e5f60001",
        ),
        (
            "198.18.1.11",
            "eni-0b000000000000002",
            "i-0a1b2c3d4e5f60002",
        ),
        (
            "198.18.1.12",
            "eni-0c000000000000001",
            "i-0a1b2c3d4e5f60001",
        ),
    ] {
        assert!(
            out.contains(&format!(
                "{ip} primary IP (DHCP collision) of {eni} on {instance}"
            )),
            "{}",
            text(&o)
        );
    }
    assert!(out.contains("collision:"), "{out}");
    let o = run(
        &sim,
        &[
            "check",
            "--subnet",
            SUBNET,
            "--cidr",
            "198.18.1.0/28",
            "--json",
        ],
    );
    let v = json(&o);
    assert_eq!(v["outcome"], "collision");
    assert_eq!(v["inUse"].as_array().unwrap().len(), 3);
    assert_eq!(v["inUse"][0]["primary"], true);
    assert_eq!(v["usable"], 12, "198.18.1.0-3 are EC2's");
    assert_eq!(v["free"], 9);
    assert_eq!(created(&sim), 0, "check is read-only");
}

#[test]
fn check_of_a_clear_range_counts_free_addresses_and_lists_secondaries() {
    let sim = Sim::start(World::demo()).unwrap();
    sim.assign("eni-0b000000000000001", &["198.18.1.140".parse().unwrap()]);
    let o = run(
        &sim,
        &[
            "check",
            "--subnet",
            SUBNET,
            "--cidr",
            "198.18.1.128/25",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["outcome"], "clear");
    assert_eq!(v["usable"], 127);
    assert_eq!(v["free"], 126);
    assert_eq!(v["inUse"][0]["address"], "198.18.1.140");
    assert_eq!(v["inUse"][0]["primary"], false);
    assert_eq!(v["explicitlyReserved"], false);
    assert_eq!(v["subnet"]["availabilityZone"], "us-west-2a");
    let o = run(
        &sim,
        &["check", "--subnet", SUBNET, "--cidr", "198.18.1.128/25"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("it is not reserved"), "{out}");
    assert!(
        out.contains("198.18.1.140 secondary IP of eni-0b000000000000001 on i-0a1b2c3d4e5f60001"),
        "{out}"
    );
}

#[test]
fn reserve_creates_the_explicit_reservation_once() {
    let sim = Sim::start(World::demo()).unwrap();
    let args = [
        "reserve",
        "--subnet",
        SUBNET,
        "--cidr",
        "198.18.1.128/25",
        "--json",
    ];
    let o = run(&sim, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["outcome"], "reserved");
    let id = v["reservation"]["reservationId"]
        .as_str()
        .unwrap()
        .to_string();
    let state = sim.state();
    assert_eq!(state.subnet_cidr_reservations.len(), 1);
    let r = &state.subnet_cidr_reservations[0];
    assert_eq!(
        (r.id.as_str(), r.reservation_type.as_str()),
        (id.as_str(), "explicit")
    );
    assert_eq!(r.cidr.to_string(), "198.18.1.128/25");
    let o = run(&sim, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&o)["outcome"], "already-reserved");
    let o = run(
        &sim,
        &["reserve", "--subnet", SUBNET, "--cidr", "198.18.1.192/26"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("already reserved"));
    assert_eq!(
        created(&sim),
        1,
        "idempotent: one CreateSubnetCidrReservation"
    );
    let o = run(
        &sim,
        &["check", "--subnet", SUBNET, "--cidr", "198.18.1.128/25"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "reservation {id} explicit 198.18.1.128/25 (covers the range)"
        )),
        "{out}"
    );
}

#[test]
fn reserve_refuses_a_range_that_holds_eni_primary_ips() {
    let sim = Sim::start(World::demo()).unwrap();
    let o = run(
        &sim,
        &["reserve", "--subnet", SUBNET, "--cidr", "198.18.1.8/29"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("198.18.1.10 (eni-0b000000000000001 on i-0a1b2c3d4e5f60001)"),
        "{out}"
    );
    assert!(
        out.contains("198.18.1.12 (eni-0c000000000000001 on i-0a1b2c3d4e5f60001)"),
        "{out}"
    );
    assert!(sim.state().subnet_cidr_reservations.is_empty());
    assert_eq!(created(&sim), 0);
}

#[test]
fn reserve_refuses_a_range_that_overlaps_a_reservation_it_does_not_match() {
    let sim = Sim::start(World::demo()).unwrap();
    let o = run(
        &sim,
        &["reserve", "--subnet", SUBNET, "--cidr", "198.18.1.128/26"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(
        &sim,
        &[
            "reserve",
            "--subnet",
            SUBNET,
            "--cidr",
            "198.18.1.128/25",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["outcome"], "overlaps-reservation");
    assert!(v["reservationId"].as_str().unwrap().starts_with("scr-"));
    assert_eq!(sim.state().subnet_cidr_reservations.len(), 1);
}

#[test]
fn bad_arguments_and_ranges_outside_the_subnet_are_refused_with_the_fix() {
    let sim = Sim::start(World::demo()).unwrap();
    for args in [
        vec!["check"],
        vec!["check", "--subnet", SUBNET, "--cidr", "198.18.1.5/24"],
        vec!["check", "--subnet", SUBNET, "--cidr", "nope"],
        vec!["drop", "--subnet", SUBNET],
    ] {
        let o = run(&sim, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    let o = run(
        &sim,
        &["check", "--subnet", SUBNET, "--cidr", "198.18.2.0/24"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("is not inside subnet subnet-0sim000000000002 (198.18.1.0/24"));
    let o = run(
        &sim,
        &[
            "check",
            "--subnet",
            "subnet-0sim00000000000ff",
            "--cidr",
            "198.18.2.0/24",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("InvalidSubnetID.NotFound"),
        "{}",
        text(&o)
    );
}
