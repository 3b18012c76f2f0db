//! EC2 semantics over the raw Query protocol: every rule of the brief, one test each.

mod common;
use common::*;
use ec2_sim::{Sim, World};
use std::net::IpAddr;

fn secondaries(sim: &Sim, eni: &str) -> Vec<String> {
    sim.state()
        .eni(eni)
        .unwrap()
        .private_ips
        .iter()
        .map(|a| a.to_string())
        .collect()
}

fn ipv6s(sim: &Sim, eni: &str) -> Vec<String> {
    sim.state()
        .eni(eni)
        .unwrap()
        .ipv6s
        .iter()
        .map(|a| a.to_string())
        .collect()
}

#[test]
fn assign_private_ip_happy_path_and_response_shape() {
    let sim = demo();
    let r = assign(&sim, ENI_B1, &["198.18.1.20", "198.18.1.21"], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/xml;charset=UTF-8"));
    assert!(r.body.contains(
        "<AssignPrivateIpAddressesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
    ));
    let rid = r.tag("requestId").unwrap();
    assert_eq!(rid.len(), 36);
    assert_eq!(r.header("x-amzn-requestid"), Some(rid.as_str()));
    assert_eq!(r.tag("networkInterfaceId").as_deref(), Some(ENI_B1));
    assert_eq!(r.tags("privateIpAddress"), ["198.18.1.20", "198.18.1.21"]);
    assert_eq!(secondaries(&sim, ENI_B1), ["198.18.1.20", "198.18.1.21"]);
    assert_eq!(
        local_ipv4s(&sim, I1, MAC_B1),
        ["198.18.1.10", "198.18.1.20", "198.18.1.21"]
    );
}

#[test]
fn secondary_count_picks_free_addresses() {
    let sim = demo();
    sim.assign(ENI_B2, &["198.18.1.4".parse().unwrap()]);
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", ENI_B1),
            ("SecondaryPrivateIpAddressCount", "2"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let got = r.tags("privateIpAddress");
    assert_eq!(got.len(), 2);
    assert_ne!(got[0], got[1]);
    assert_eq!(secondaries(&sim, ENI_B1), got);
    for a in &got {
        let last: u8 = a.strip_prefix("198.18.1.").unwrap().parse().unwrap();
        assert!(
            (4..255).contains(&last),
            "{a} is one of the subnet's reserved addresses"
        );
        assert!(![4, 10, 11, 12].contains(&last), "{a} is in use");
    }
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", ENI_B1),
            ("SecondaryPrivateIpAddressCount", "0"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", ENI_B1),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("MissingParameter"));
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", ENI_B1),
            ("PrivateIpAddress.1", "198.18.1.30"),
            ("SecondaryPrivateIpAddressCount", "1"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidParameterCombination"));
}

#[test]
fn address_outside_subnet_is_invalid_parameter_value() {
    let sim = demo();
    for bad in [
        "198.18.0.50",
        "192.0.2.5",
        "198.18.1.0",
        "198.18.1.3",
        "198.18.1.255",
    ] {
        let r = assign(&sim, ENI_B1, &["198.18.1.20", bad], None);
        assert_eq!(r.status, 400);
        assert_eq!(
            r.code().as_deref(),
            Some("InvalidParameterValue"),
            "{bad}: {}",
            r.body
        );
    }
    assert!(secondaries(&sim, ENI_B1).is_empty(), "all-or-nothing");
    let r = assign6(&sim, ENI_B1, &["2001:db8:100:2::5"]);
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
    // Subnet 1 has no IPv6 block at all.
    let r = assign6(&sim, ENI_A1, &["2001:db8:100:1::5"]);
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
    assert!(r.message().contains("no IPv6"), "{}", r.message());
}

#[test]
fn address_that_is_not_an_ip_is_invalid_parameter_value() {
    let sim = demo();
    for bad in [
        "not-an-ip",
        "198.18.1",
        "2001:db8:100:1::5",
        "",
        "198.18.1.20/32",
    ] {
        let r = assign(&sim, ENI_B1, &[bad], None);
        let want = if bad.is_empty() {
            "MissingParameter"
        } else {
            "InvalidParameterValue"
        };
        let code = r.code().unwrap();
        assert!(
            code == want || code == "InvalidParameterValue",
            "{bad:?}: {}",
            r.body
        );
    }
    for bad in ["nope", "198.18.1.20"] {
        assert_eq!(
            assign6(&sim, ENI_B1, &[bad]).code().as_deref(),
            Some("InvalidParameterValue")
        );
        assert_eq!(
            unassign6(&sim, ENI_B1, &[bad]).code().as_deref(),
            Some("InvalidParameterValue")
        );
    }
    assert_eq!(
        unassign(&sim, ENI_B1, &["nope"]).code().as_deref(),
        Some("InvalidParameterValue")
    );
    let r = assign(&sim, ENI_B1, &["198.18.1.20"], None);
    assert_eq!(r.status, 200);
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", ENI_B1),
            ("PrivateIpAddress.1", "198.18.1.21"),
            ("AllowReassignment", "maybe"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
}

#[test]
fn ipv4_limit_counts_the_primary_and_is_all_or_nothing() {
    let sim = demo();
    // m5.large: 10 per ENI including the primary, so 9 secondaries.
    let nine: Vec<String> = (20..29).map(|i| format!("198.18.1.{i}")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    let r = assign(&sim, ENI_B1, &nine[..5], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = assign(
        &sim,
        ENI_B1,
        &[
            "198.18.1.25",
            "198.18.1.26",
            "198.18.1.27",
            "198.18.1.28",
            "198.18.1.29",
        ],
        None,
    );
    assert_eq!(
        r.code().as_deref(),
        Some("PrivateIpAddressLimitExceeded"),
        "{}",
        r.body
    );
    assert_eq!(
        secondaries(&sim, ENI_B1).len(),
        5,
        "nothing of the failed request applied"
    );
    let r = assign(&sim, ENI_B1, &nine[5..], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(secondaries(&sim, ENI_B1).len(), 9);
    let r = assign(&sim, ENI_B1, &["198.18.1.40"], None);
    assert_eq!(r.code().as_deref(), Some("PrivateIpAddressLimitExceeded"));
    // A no-op re-assignment does not count against the limit.
    let r = assign(&sim, ENI_B1, &["198.18.1.20"], Some(true));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn ipv6_limit_is_the_same_number_per_eni() {
    let sim = demo();
    let ten: Vec<String> = (1..=10).map(|i| format!("2001:db8:100:1::{i:x}")).collect();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    assert_eq!(assign6(&sim, ENI_B1, &ten).status, 200);
    let r = assign6(&sim, ENI_B1, &["2001:db8:100:1::100"]);
    assert_eq!(
        r.code().as_deref(),
        Some("PrivateIpAddressLimitExceeded"),
        "{}",
        r.body
    );
    assert_eq!(ipv6s(&sim, ENI_B1).len(), 10);
}

#[test]
fn ipv4_held_by_another_eni_needs_allow_reassignment_and_then_moves() {
    let sim = demo();
    assert_eq!(assign(&sim, ENI_B2, &["198.18.1.50"], None).status, 200);
    let r = assign(&sim, ENI_B1, &["198.18.1.50"], None);
    assert_eq!(
        r.code().as_deref(),
        Some("InvalidIPAddress.InUse"),
        "{}",
        r.body
    );
    let r = assign(&sim, ENI_B1, &["198.18.1.50"], Some(false));
    assert_eq!(r.code().as_deref(), Some("InvalidIPAddress.InUse"));
    assert_eq!(secondaries(&sim, ENI_B2), ["198.18.1.50"]);
    let r = assign(&sim, ENI_B1, &["198.18.1.50"], Some(true));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(secondaries(&sim, ENI_B1), ["198.18.1.50"]);
    assert!(
        secondaries(&sim, ENI_B2).is_empty(),
        "moved, gone from the old ENI"
    );
    assert_eq!(local_ipv4s(&sim, I2, "02:00:c6:12:01:02"), ["198.18.1.11"]);
    // Another ENI's primary address never moves.
    let r = assign(&sim, ENI_B1, &["198.18.1.11"], Some(true));
    assert_eq!(r.code().as_deref(), Some("InvalidIPAddress.InUse"));
}

#[test]
fn ipv4_already_on_the_same_eni() {
    let sim = demo();
    assert_eq!(assign(&sim, ENI_B1, &["198.18.1.60"], None).status, 200);
    let r = assign(&sim, ENI_B1, &["198.18.1.60"], Some(true));
    assert_eq!(r.status, 200, "no-op with AllowReassignment");
    assert_eq!(secondaries(&sim, ENI_B1), ["198.18.1.60"]);
    let r = assign(&sim, ENI_B1, &["198.18.1.60"], None);
    assert_eq!(r.code().as_deref(), Some("InvalidIPAddress.InUse"));
    let r = assign(&sim, ENI_B1, &["198.18.1.10"], None);
    assert_eq!(
        r.code().as_deref(),
        Some("InvalidIPAddress.InUse"),
        "own primary"
    );
    let r = assign(&sim, ENI_B1, &["198.18.1.61", "198.18.1.61"], None);
    assert_eq!(
        r.code().as_deref(),
        Some("InvalidParameterValue"),
        "duplicate in one request"
    );
}

#[test]
fn ipv6_has_no_reassignment() {
    let sim = demo();
    assert_eq!(assign6(&sim, ENI_B2, &["2001:db8:100:1::50"]).status, 200);
    let r = assign6(&sim, ENI_B1, &["2001:db8:100:1::50"]);
    assert_eq!(
        r.code().as_deref(),
        Some("InvalidIPAddress.InUse"),
        "{}",
        r.body
    );
    // AllowReassignment is not an AssignIpv6Addresses parameter; it changes nothing.
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignIpv6Addresses"),
            ("NetworkInterfaceId", ENI_B1),
            ("Ipv6Addresses.1", "2001:db8:100:1::50"),
            ("AllowReassignment", "true"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidIPAddress.InUse"));
    assert_eq!(ipv6s(&sim, ENI_B2), ["2001:db8:100:1::50"]);
    let r = assign6(&sim, ENI_B2, &["2001:db8:100:1::50"]);
    assert_eq!(
        r.code().as_deref(),
        Some("InvalidIPAddress.InUse"),
        "same ENI"
    );
    // The documented move: unassign from the holder first.
    assert_eq!(unassign6(&sim, ENI_B2, &["2001:db8:100:1::50"]).status, 200);
    let r = assign6(&sim, ENI_B1, &["2001:DB8:100:1:0::50"]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.tags("item"), ["2001:db8:100:1::50"], "canonical form");
    assert_eq!(ipv6s(&sim, ENI_B1), ["2001:db8:100:1::50"]);
}

#[test]
fn ipv6_count_and_unassign_shapes() {
    let sim = demo();
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignIpv6Addresses"),
            ("NetworkInterfaceId", ENI_B1),
            ("Ipv6AddressCount", "2"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<assignedIpv6Addresses>"));
    assert_eq!(r.tags("item").len(), 2);
    let got = ipv6s(&sim, ENI_B1);
    let r = unassign6(&sim, ENI_B1, &[&got[0]]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<unassignedIpv6Addresses>"));
    assert_eq!(r.tags("item"), [got[0].clone()]);
    assert_eq!(ipv6s(&sim, ENI_B1), [got[1].clone()]);
}

#[test]
fn unassign_not_held_fails_whole_request() {
    let sim = demo();
    assert_eq!(
        assign(&sim, ENI_B1, &["198.18.1.70", "198.18.1.71"], None).status,
        200
    );
    let r = unassign(&sim, ENI_B1, &["198.18.1.70", "198.18.1.99"]);
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
    assert_eq!(
        r.message(),
        format!("Some of the specified addresses are not assigned to interface {ENI_B1}")
    );
    assert_eq!(
        secondaries(&sim, ENI_B1),
        ["198.18.1.70", "198.18.1.71"],
        "nothing changed"
    );
    let r = unassign(&sim, ENI_B1, &["198.18.1.70"]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.tag("return").as_deref(), Some("true"));
    assert_eq!(secondaries(&sim, ENI_B1), ["198.18.1.71"]);
    // Held by another ENI is "not assigned to" this one.
    sim.assign(ENI_B2, &["198.18.1.72".parse().unwrap()]);
    let r = unassign(&sim, ENI_B1, &["198.18.1.72"]);
    assert_eq!(
        r.message(),
        format!("Some of the specified addresses are not assigned to interface {ENI_B1}")
    );
    // IPv6 likewise.
    assert_eq!(assign6(&sim, ENI_B1, &["2001:db8:100:1::70"]).status, 200);
    let r = unassign6(&sim, ENI_B1, &["2001:db8:100:1::70", "2001:db8:100:1::71"]);
    assert_eq!(
        r.message(),
        format!("Some of the specified addresses are not assigned to interface {ENI_B1}")
    );
    assert_eq!(ipv6s(&sim, ENI_B1), ["2001:db8:100:1::70"]);
    let r = unassign(&sim, ENI_B1, &[]);
    assert_eq!(r.code().as_deref(), Some("MissingParameter"));
}

#[test]
fn primary_ip_cannot_be_unassigned() {
    let sim = demo();
    assert_eq!(assign(&sim, ENI_B1, &["198.18.1.80"], None).status, 200);
    let r = unassign(&sim, ENI_B1, &["198.18.1.80", "198.18.1.10"]);
    assert_eq!(
        r.code().as_deref(),
        Some("InvalidParameterValue"),
        "{}",
        r.body
    );
    assert!(r.message().contains("primary"), "{}", r.message());
    assert_eq!(secondaries(&sim, ENI_B1), ["198.18.1.80"]);
}

#[test]
fn unknown_and_malformed_eni_ids() {
    let sim = demo();
    for (id, code) in [
        (
            "eni-0123456789abcdef0",
            "InvalidNetworkInterfaceID.NotFound",
        ),
        ("eni-01234567", "InvalidNetworkInterfaceID.NotFound"),
        ("eni-xyz", "InvalidNetworkInterfaceID.Malformed"),
        (
            "eni-0123456789ABCDEF0",
            "InvalidNetworkInterfaceID.Malformed",
        ),
        ("i-0123456789abcdef0", "InvalidNetworkInterfaceID.Malformed"),
    ] {
        assert_eq!(
            assign(&sim, id, &["198.18.1.20"], None).code().as_deref(),
            Some(code),
            "{id}"
        );
        assert_eq!(
            unassign(&sim, id, &["198.18.1.20"]).code().as_deref(),
            Some(code),
            "{id}"
        );
        assert_eq!(
            assign6(&sim, id, &["2001:db8:100:1::5"]).code().as_deref(),
            Some(code),
            "{id}"
        );
        assert_eq!(
            unassign6(&sim, id, &["2001:db8:100:1::5"])
                .code()
                .as_deref(),
            Some(code),
            "{id}"
        );
        let r = ec2(
            &sim,
            &[
                ("Action", "DescribeNetworkInterfaces"),
                ("NetworkInterfaceId.1", id),
            ],
        );
        assert_eq!(r.code().as_deref(), Some(code), "{id}");
    }
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("PrivateIpAddress.1", "198.18.1.20"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("MissingParameter"));
}

#[test]
fn missing_authorization_is_missing_authentication_token_401() {
    let sim = demo();
    let body = form(&[
        ("Action", "AssignPrivateIpAddresses"),
        ("Version", "2016-11-15"),
        ("NetworkInterfaceId", ENI_B1),
        ("PrivateIpAddress.1", "198.18.1.20"),
    ]);
    let r = http(
        &sim.ec2_url(),
        "POST",
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.code().as_deref(), Some("MissingAuthenticationToken"));
    assert!(r
        .body
        .contains("<Response><Errors><Error><Code>MissingAuthenticationToken</Code>"));
    assert!(r.tag("RequestID").is_some());
    let r = http(
        &sim.ec2_url(),
        "POST",
        "/",
        &[("Authorization", "Basic Zm9vOmJhcg==")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("IncompleteSignature"));
    assert!(secondaries(&sim, ENI_B1).is_empty());
    assert_eq!(
        sim.calls().ec2["AssignPrivateIpAddresses"],
        2,
        "counted before the auth check"
    );
}

#[test]
fn unknown_action_is_invalid_action() {
    let sim = demo();
    let r = ec2(&sim, &[("Action", "RunInstances")]);
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("InvalidAction"));
    let r = ec2(&sim, &[]);
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("MissingAction"));
}

#[test]
fn describe_network_interfaces_filters() {
    let sim = demo();
    sim.assign(
        ENI_B1,
        &[
            "198.18.1.20".parse().unwrap(),
            "2001:db8:100:1::20".parse().unwrap(),
        ],
    );
    let all = eni_ids(&ec2(&sim, &[("Action", "DescribeNetworkInterfaces")]));
    assert_eq!(all, [ENI_A1, ENI_B1, ENI_A2, ENI_B2, ENI_C1]);
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("network-interface-id", &[ENI_B1, ENI_C1], &[ENI_B1, ENI_C1]),
        ("mac-address", &[MAC_B1], &[ENI_B1]),
        ("attachment.instance-id", &[I2], &[ENI_A2, ENI_B2]),
        ("attachment.device-index", &["1"], &[ENI_B1, ENI_B2]),
        ("addresses.private-ip-address", &["198.18.1.20"], &[ENI_B1]),
        ("addresses.private-ip-address", &["198.18.0.11"], &[ENI_A2]),
        (
            "ipv6-addresses.ipv6-address",
            &["2001:db8:100:1::20"],
            &[ENI_B1],
        ),
        ("ipv6-addresses.ipv6-address", &["2001:db8:100:1::21"], &[]),
        ("subnet-id", &["subnet-0sim000000000001"], &[ENI_A1, ENI_A2]),
        (
            "tag:node.k8s.amazonaws.com/no_manage",
            &["true"],
            &[ENI_B1, ENI_B2],
        ),
        ("tag:node.k8s.amazonaws.com/no_manage", &["false"], &[]),
        ("network-interface-id", &["eni-0b*"], &[ENI_B1, ENI_B2]),
        (
            "vpc-id",
            &["vpc-0sim0000000000001"],
            &[ENI_A1, ENI_B1, ENI_A2, ENI_B2, ENI_C1],
        ),
    ];
    for (name, values, want) in cases {
        assert_eq!(
            eni_ids(&describe_filter(&sim, name, values)),
            *want,
            "{name}={values:?}"
        );
    }
    // Filters AND together; NetworkInterfaceId.N narrows further.
    let r = ec2(
        &sim,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("Filter.1.Name", "attachment.instance-id"),
            ("Filter.1.Value.1", I1),
            ("Filter.2.Name", "attachment.device-index"),
            ("Filter.2.Value.1", "1"),
            ("Filter.2.Value.2", "2"),
            ("NetworkInterfaceId.1", ENI_C1),
            ("NetworkInterfaceId.2", ENI_A1),
        ],
    );
    assert_eq!(eni_ids(&r), [ENI_C1]);
    let r = describe_filter(&sim, "bogus-filter", &["x"]);
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
}

#[test]
fn describe_network_interfaces_item_shape() {
    let sim = demo();
    sim.assign(
        ENI_B1,
        &[
            "198.18.1.20".parse().unwrap(),
            "2001:db8:100:1::20".parse().unwrap(),
        ],
    );
    let r = ec2(
        &sim,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", ENI_B1),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for needle in [
        "<networkInterfaceSet>",
        "<subnetId>subnet-0sim000000000002</subnetId>",
        "<vpcId>vpc-0sim0000000000001</vpcId>",
        "<availabilityZone>us-west-2a</availabilityZone>",
        "<macAddress>02:00:c6:12:01:01</macAddress>",
        "<status>in-use</status>",
        "<interfaceType>interface</interfaceType>",
        "<instanceId>i-0a1b2c3d4e5f60001</instanceId>",
        "<deviceIndex>1</deviceIndex>",
        "<status>attached</status>",
        "<item><key>node.k8s.amazonaws.com/no_manage</key><value>true</value></item>",
        "<item><ipv6Address>2001:db8:100:1::20</ipv6Address>",
    ] {
        assert!(r.body.contains(needle), "missing {needle} in {}", r.body);
    }
    assert_eq!(r.tags("primary"), ["true", "false"]);
    assert_eq!(
        r.tags("privateIpAddress"),
        ["198.18.1.10", "198.18.1.10", "198.18.1.20"]
    );
}

#[test]
fn describe_paging() {
    let sim = demo();
    let r = ec2(
        &sim,
        &[("Action", "DescribeNetworkInterfaces"), ("MaxResults", "5")],
    );
    assert_eq!(eni_ids(&r).len(), 5);
    assert!(r.tag("nextToken").is_none());
    let mut world = World::demo();
    for i in 0..4u32 {
        world.enis.push(ec2_sim::Eni {
            id: format!("eni-0d00000000000000{i}"),
            mac: format!("02:00:c6:12:02:0{i}"),
            instance_id: None,
            device_index: None,
            subnet_id: "subnet-0sim000000000002".into(),
            primary_ip: format!("198.18.1.{}", 100 + i).parse().unwrap(),
            private_ips: vec![],
            ipv6s: vec![],
            tags: Default::default(),
        });
    }
    let sim = Sim::start(world).unwrap();
    let r = ec2(
        &sim,
        &[("Action", "DescribeNetworkInterfaces"), ("MaxResults", "5")],
    );
    assert_eq!(eni_ids(&r).len(), 5);
    let next = r.tag("nextToken").unwrap();
    let r = ec2(
        &sim,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("MaxResults", "5"),
            ("NextToken", &next),
        ],
    );
    let ids = eni_ids(&r);
    assert_eq!(ids.len(), 4);
    assert!(r.tag("nextToken").is_none());
    assert!(
        r.body.contains("<status>available</status>"),
        "unattached ENIs"
    );
    for bad in [
        ("MaxResults", "3"),
        ("MaxResults", "x"),
        ("NextToken", "garbage"),
    ] {
        let r = ec2(&sim, &[("Action", "DescribeNetworkInterfaces"), bad]);
        assert_eq!(r.status, 400, "{bad:?}");
    }
}

#[test]
fn describe_instances_and_subnets() {
    let sim = demo();
    let r = ec2(
        &sim,
        &[("Action", "DescribeInstances"), ("InstanceId.1", I1)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.tag("instanceType").as_deref(), Some("m5.large"));
    assert_eq!(r.tags("instanceId"), [I1]);
    assert_eq!(r.tags("networkInterfaceId"), [ENI_A1, ENI_B1, ENI_C1]);
    let r = ec2(&sim, &[("Action", "DescribeInstances")]);
    assert_eq!(r.tags("instanceId"), [I1, I2]);
    let r = ec2(
        &sim,
        &[
            ("Action", "DescribeInstances"),
            ("Filter.1.Name", "network-interface.network-interface-id"),
            ("Filter.1.Value.1", ENI_B2),
        ],
    );
    assert_eq!(r.tags("instanceId"), [I2]);
    let r = ec2(
        &sim,
        &[
            ("Action", "DescribeInstances"),
            ("InstanceId.1", "i-0123456789abcdef0"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidInstanceID.NotFound"));
    let r = ec2(
        &sim,
        &[("Action", "DescribeInstances"), ("InstanceId.1", "i-zz")],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidInstanceID.Malformed"));

    sim.assign(ENI_B1, &["198.18.1.20".parse().unwrap()]);
    let r = ec2(&sim, &[("Action", "DescribeSubnets")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.tags("subnetId"),
        ["subnet-0sim000000000001", "subnet-0sim000000000002"]
    );
    assert_eq!(r.tags("cidrBlock"), ["198.18.0.0/24", "198.18.1.0/24"]);
    // 256 - 5 reserved - primaries .10 .11 .12 - secondary .20
    assert_eq!(r.tags("availableIpAddressCount"), ["249", "247"]);
    assert_eq!(r.tags("ipv6CidrBlock"), ["2001:db8:100:1::/64"]);
    let r = ec2(
        &sim,
        &[
            ("Action", "DescribeSubnets"),
            ("SubnetId.1", "subnet-0sim000000000002"),
        ],
    );
    assert_eq!(r.tags("subnetId"), ["subnet-0sim000000000002"]);
    let r = ec2(
        &sim,
        &[("Action", "DescribeSubnets"), ("SubnetId.1", "subnet-nope")],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidSubnetID.NotFound"));
}

#[test]
fn out_of_band_assign_and_unassign() {
    let sim = demo();
    let a: IpAddr = "198.18.1.90".parse().unwrap();
    let v6: IpAddr = "2001:db8:100:1::90".parse().unwrap();
    sim.assign(ENI_B2, &[a, v6]);
    sim.assign(ENI_B1, &[a, v6]);
    assert_eq!(secondaries(&sim, ENI_B1), ["198.18.1.90"]);
    assert!(secondaries(&sim, ENI_B2).is_empty(), "moved");
    assert_eq!(ipv6s(&sim, ENI_B1), ["2001:db8:100:1::90"]);
    assert!(ipv6s(&sim, ENI_B2).is_empty());
    sim.unassign(ENI_B1, &[a, "198.18.1.91".parse().unwrap()]);
    assert!(secondaries(&sim, ENI_B1).is_empty());
}

#[test]
#[should_panic(expected = "unknown ENI")]
fn out_of_band_assign_unknown_eni_panics() {
    demo().assign("eni-0123456789abcdef0", &["198.18.1.5".parse().unwrap()]);
}

#[test]
#[should_panic(expected = "does not fall within")]
fn out_of_band_assign_checks_subnet() {
    demo().assign(ENI_B1, &["198.18.0.50".parse().unwrap()]);
}

#[test]
fn deleted_eni_disappears_from_ec2_and_imds_until_reset() {
    let sim = demo();
    let v6: IpAddr = "2001:db8:100:1::20".parse().unwrap();
    sim.assign(ENI_B1, &["198.18.1.20".parse().unwrap(), v6]);
    let macs_path = "/latest/meta-data/network/interfaces/macs/";
    assert_eq!(
        imds(&sim, I1, macs_path).body,
        "02:00:c6:12:00:01/\n02:00:c6:12:01:01/\n02:00:c6:12:01:03/"
    );
    sim.delete_eni(ENI_B1);
    assert!(sim.state().eni(ENI_B1).is_none());
    assert_eq!(sim.state().enis.len(), 4);

    let nf = Some("InvalidNetworkInterfaceID.NotFound");
    let r = assign(&sim, ENI_B1, &["198.18.1.21"], None);
    assert_eq!(r.code().as_deref(), nf);
    assert!(
        r.message().contains(ENI_B1) && r.message().ends_with("does not exist"),
        "{}",
        r.message()
    );
    let by_count = ec2(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", ENI_B1),
            ("SecondaryPrivateIpAddressCount", "1"),
        ],
    );
    assert_eq!(by_count.code().as_deref(), nf);
    assert_eq!(
        unassign(&sim, ENI_B1, &["198.18.1.20"]).code().as_deref(),
        nf
    );
    assert_eq!(
        assign6(&sim, ENI_B1, &["2001:db8:100:1::21"])
            .code()
            .as_deref(),
        nf
    );
    assert_eq!(
        unassign6(&sim, ENI_B1, &["2001:db8:100:1::20"])
            .code()
            .as_deref(),
        nf
    );
    let r = ec2(
        &sim,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("NetworkInterfaceId.1", ENI_A1),
            ("NetworkInterfaceId.2", ENI_B1),
        ],
    );
    assert_eq!(r.code().as_deref(), nf, "one deleted id fails the request");

    for (name, value) in [
        ("network-interface-id", ENI_B1),
        ("mac-address", MAC_B1),
        ("addresses.private-ip-address", "198.18.1.20"),
        ("addresses.private-ip-address", "198.18.1.10"),
        ("ipv6-addresses.ipv6-address", "2001:db8:100:1::20"),
    ] {
        assert!(
            eni_ids(&describe_filter(&sim, name, &[value])).is_empty(),
            "{name}={value}"
        );
    }
    assert_eq!(
        eni_ids(&describe_filter(&sim, "attachment.instance-id", &[I1])),
        [ENI_A1, ENI_C1]
    );
    assert_eq!(
        eni_ids(&ec2(&sim, &[("Action", "DescribeNetworkInterfaces")])),
        [ENI_A1, ENI_A2, ENI_B2, ENI_C1]
    );
    let r = ec2(
        &sim,
        &[("Action", "DescribeInstances"), ("InstanceId.1", I1)],
    );
    assert_eq!(r.tags("networkInterfaceId"), [ENI_A1, ENI_C1]);
    let r = ec2(
        &sim,
        &[
            ("Action", "DescribeSubnets"),
            ("SubnetId.1", "subnet-0sim000000000002"),
        ],
    );
    // 256 - 5 reserved - primaries .11 .12: .10 and .20 went with the ENI.
    assert_eq!(r.tags("availableIpAddressCount"), ["249"]);
    // Its addresses, the primary included, are free for others without reassignment.
    assert_eq!(
        assign(&sim, ENI_C1, &["198.18.1.10", "198.18.1.20"], None).status,
        200
    );
    assert_eq!(assign6(&sim, ENI_C1, &["2001:db8:100:1::20"]).status, 200);

    assert_eq!(
        imds(&sim, I1, macs_path).body,
        "02:00:c6:12:00:01/\n02:00:c6:12:01:03/"
    );
    for key in [
        "",
        "interface-id",
        "local-ipv4s",
        "ipv6s",
        "device-number",
        "mac",
    ] {
        let r = imds(&sim, I1, &format!("{macs_path}{MAC_B1}/{key}"));
        assert_eq!(r.status, 404, "{key}");
    }
    assert_eq!(imds(&sim, I1, "/latest/meta-data/instance-id").body, I1);
    assert_eq!(
        local_ipv4s(&sim, I1, "02:00:c6:12:01:03"),
        ["198.18.1.12", "198.18.1.10", "198.18.1.20"]
    );

    sim.reset();
    let fresh = Sim::start(World::demo()).unwrap();
    assert_eq!(sim.state(), fresh.state(), "state back to the world file");
    assert_eq!(
        eni_ids(&describe_filter(&sim, "network-interface-id", &[ENI_B1])),
        [ENI_B1]
    );
    assert_eq!(assign(&sim, ENI_B1, &["198.18.1.20"], None).status, 200);
    assert_eq!(
        local_ipv4s(&sim, I1, MAC_B1),
        ["198.18.1.10", "198.18.1.20"]
    );
}

#[test]
#[should_panic(expected = "unknown ENI eni-0b000000000000001")]
fn deleting_an_eni_twice_panics() {
    let sim = demo();
    sim.delete_eni(ENI_B1);
    sim.delete_eni(ENI_B1);
}

#[test]
#[should_panic(expected = "primary network interface")]
fn deleting_a_primary_eni_panics() {
    demo().delete_eni(ENI_A1);
}

#[test]
#[should_panic(expected = "unknown ENI")]
fn out_of_band_assign_to_a_deleted_eni_panics() {
    let sim = demo();
    sim.delete_eni(ENI_C1);
    sim.assign(ENI_C1, &["198.18.1.5".parse().unwrap()]);
}

#[test]
fn every_request_is_all_or_nothing_across_enis() {
    let sim = demo();
    sim.assign(ENI_B2, &["198.18.1.30".parse().unwrap()]);
    // The move is valid but the second address is out of the subnet: nothing may move.
    let r = assign(&sim, ENI_B1, &["198.18.1.30", "198.18.9.9"], Some(true));
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
    assert_eq!(secondaries(&sim, ENI_B2), ["198.18.1.30"]);
    assert!(secondaries(&sim, ENI_B1).is_empty());
    let r = assign6(&sim, ENI_B1, &["2001:db8:100:1::1", "2001:db8:100:1::1"]);
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
    assert!(ipv6s(&sim, ENI_B1).is_empty());
}

#[test]
fn garbage_input_never_breaks_the_server() {
    let sim = demo();
    let url = sim.ec2_url();
    let bodies: &[&[u8]] = &[
        b"",
        b"&&&===&",
        b"Action=%",
        b"Action=%zz%",
        b"Action=AssignPrivateIpAddresses&NetworkInterfaceId=%FF%FE",
        b"Action=AssignPrivateIpAddresses&NetworkInterfaceId=eni-0b000000000000001&PrivateIpAddress.99999999999999999999=198.18.1.5",
        b"Action=AssignPrivateIpAddresses&NetworkInterfaceId=eni-0b000000000000001&PrivateIpAddress.1=%00",
        b"Action=DescribeNetworkInterfaces&Filter.1.Value.1=x",
        b"Action=DescribeNetworkInterfaces&Filter.1.Name=tag:&Filter.1.Value.1=*",
        b"Action=DescribeNetworkInterfaces&Filter.x.Name=a&MaxResults=-1",
        b"Action=DescribeNetworkInterfaces&NextToken=sim-99999999999999999999999",
        b"Action=DescribeNetworkInterfaces&NextToken=sim-100",
        b"Action=DescribeNetworkInterfaces&NextToken=sim-18446744073709551615&MaxResults=1000",
        b"Action=AssignIpv6Addresses&NetworkInterfaceId=eni-0b000000000000001&Ipv6AddressCount=99999999999",
        b"Action=AssignPrivateIpAddresses&NetworkInterfaceId=eni-0b000000000000001&SecondaryPrivateIpAddressCount=4294967295",
        b"Action=AssignPrivateIpAddresses&NetworkInterfaceId=eni-0b000000000000001&Ipv4PrefixCount=1",
        b"\xff\xfe\x00binary",
    ];
    for b in bodies {
        let r = http(&url, "POST", "/", &[("Authorization", SIGV4)], b);
        assert!(
            r.status < 500,
            "{:?} -> {} {}",
            String::from_utf8_lossy(b),
            r.status,
            r.body
        );
        assert!(r.body.starts_with("<?xml"), "{}", r.body);
    }
    // Declared too large: refused before any body is read.
    let r = raw(&url, "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 x\r\nContent-Length: 2097152\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let r = raw(&url, "GARBAGE\r\n\r\n");
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    let r = http(&url, "DELETE", "/", &[("Authorization", SIGV4)], b"");
    assert_eq!(r.status, 405);
    // Query-string requests work like form bodies.
    let r = http(
        &url,
        "GET",
        "/?Action=DescribeSubnets&Version=2016-11-15",
        &[("Authorization", SIGV4)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(assign(&sim, ENI_B1, &["198.18.1.20"], None).status, 200);
}
