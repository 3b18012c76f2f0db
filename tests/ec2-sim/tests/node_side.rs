//! The node side's EC2 and Auto Scaling semantics over the raw Query protocol: subnet CIDR
//! reservations, addresses EC2 chooses (never reserved, never in use), ENIs created, attached,
//! modified, detached and deleted, and lifecycle actions completed once.

mod common;
use common::*;
use ec2_sim::{Sim, World};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

const SUBNET: &str = "subnet-0sim0000000000a1";
const SUBNET_B: &str = "subnet-0sim0000000000b1";
const NODE: &str = "i-0a1b2c3d4e5f6aaa1";
const NODE_ENI: &str = "eni-0a00000000000aaa1";
const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";

/// One /28 per zone (11 usable addresses each) and a t3.medium (3 ENIs) in zone a whose primary
/// ENI sits in the zone-a subnet at 192.0.2.4.
fn small() -> Sim {
    let w = World::from_json(
        r#"{ "accountId": "111122223333",
  "vpcs": [{"id": "vpc-0sim00000000000a1", "cidr": "192.0.2.0/24", "ipv6Cidr": "2001:db8:200::/56"}],
  "subnets": [
    {"id": "subnet-0sim0000000000a1", "vpcId": "vpc-0sim00000000000a1", "availabilityZone": "us-west-2a",
     "ipv4Cidr": "192.0.2.0/28", "ipv6Cidr": "2001:db8:200:1::/64"},
    {"id": "subnet-0sim0000000000b1", "vpcId": "vpc-0sim00000000000a1", "availabilityZone": "us-west-2b",
     "ipv4Cidr": "192.0.2.16/28"}],
  "instances": [{"id": "i-0a1b2c3d4e5f6aaa1", "type": "t3.medium", "region": "us-west-2", "availabilityZone": "us-west-2a"}],
  "enis": [{"id": "eni-0a00000000000aaa1", "mac": "02:00:c0:00:02:04", "instanceId": "i-0a1b2c3d4e5f6aaa1", "deviceIndex": 0,
            "subnetId": "subnet-0sim0000000000a1", "primaryIp": "192.0.2.4"}] }"#,
    )
    .unwrap();
    Sim::start(w).unwrap()
}

fn reserve(sim: &Sim, subnet: &str, cidr: &str, kind: &str) -> Resp {
    ec2(
        sim,
        &[
            ("Action", "CreateSubnetCidrReservation"),
            ("SubnetId", subnet),
            ("Cidr", cidr),
            ("ReservationType", kind),
        ],
    )
}

fn create(sim: &Sim, subnet: &str, extra: &[(&str, &str)]) -> Resp {
    let mut p = vec![("Action", "CreateNetworkInterface"), ("SubnetId", subnet)];
    p.extend_from_slice(extra);
    ec2(sim, &p)
}

fn created_eni(r: &Resp) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    (
        r.tag("networkInterfaceId").unwrap(),
        r.tag("privateIpAddress").unwrap(),
    )
}

fn attach(sim: &Sim, eni: &str, instance: &str, dev: &str) -> Resp {
    ec2(
        sim,
        &[
            ("Action", "AttachNetworkInterface"),
            ("NetworkInterfaceId", eni),
            ("InstanceId", instance),
            ("DeviceIndex", dev),
        ],
    )
}

fn last_octet(a: &str) -> u8 {
    a.parse::<Ipv4Addr>().unwrap().octets()[3]
}

#[test]
fn reservations_are_created_listed_by_family_and_deleted() {
    let sim = small();
    let r = ec2(
        &sim,
        &[
            ("Action", "CreateSubnetCidrReservation"),
            ("SubnetId", SUBNET),
            ("Cidr", "192.0.2.8/30"),
            ("ReservationType", "explicit"),
            ("Description", "pods"),
            ("TagSpecification.1.ResourceType", "subnet-cidr-reservation"),
            ("TagSpecification.1.Tag.1.Key", "team"),
            ("TagSpecification.1.Tag.1.Value", "core"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<subnetCidrReservation>"), "{}", r.body);
    let id = r.tag("subnetCidrReservationId").unwrap();
    assert!(id.starts_with("scr-") && id.len() == 21, "{id}");
    assert_eq!(r.tag("reservationType").as_deref(), Some("explicit"));
    assert_eq!(r.tag("ownerId").as_deref(), Some("111122223333"));
    assert_eq!(r.tag("description").as_deref(), Some("pods"));
    let r6 = reserve(&sim, SUBNET, "2001:db8:200:1:8000::/65", "prefix");
    assert_eq!(r6.status, 200, "{}", r6.body);
    let got = ec2(
        &sim,
        &[
            ("Action", "GetSubnetCidrReservations"),
            ("SubnetId", SUBNET),
        ],
    );
    assert_eq!(got.status, 200, "{}", got.body);
    let v4 = got
        .body
        .split("<subnetIpv6CidrReservationSet>")
        .next()
        .unwrap();
    assert!(
        v4.contains("192.0.2.8/30") && !v4.contains("2001:db8"),
        "{}",
        got.body
    );
    assert!(got.body.contains("2001:db8:200:1:8000::/65"));
    let only_prefix = ec2(
        &sim,
        &[
            ("Action", "GetSubnetCidrReservations"),
            ("SubnetId", SUBNET),
            ("Filter.1.Name", "reservationType"),
            ("Filter.1.Value.1", "prefix"),
        ],
    );
    assert_eq!(only_prefix.tags("cidr"), ["2001:db8:200:1:8000::/65"]);
    let del = ec2(
        &sim,
        &[
            ("Action", "DeleteSubnetCidrReservation"),
            ("SubnetCidrReservationId", &id),
        ],
    );
    assert_eq!(del.status, 200, "{}", del.body);
    assert!(del.body.contains("<deletedSubnetCidrReservation>"));
    assert_eq!(sim.state().subnet_cidr_reservations.len(), 1);
    let again = ec2(
        &sim,
        &[
            ("Action", "DeleteSubnetCidrReservation"),
            ("SubnetCidrReservationId", &id),
        ],
    );
    assert_eq!(
        again.code().as_deref(),
        Some("InvalidSubnetCidrReservationID.NotFound")
    );
}

#[test]
fn reservations_must_be_canonical_inside_the_subnet_and_not_overlap() {
    let sim = small();
    for (subnet, cidr, kind, code) in [
        (
            "subnet-0sim0000000000zz",
            "192.0.2.8/30",
            "explicit",
            "InvalidSubnetID.NotFound",
        ),
        (SUBNET, "192.0.2.16/30", "explicit", "InvalidParameterValue"),
        (SUBNET, "192.0.2.9/30", "explicit", "InvalidParameterValue"),
        (SUBNET, "192.0.2.8/30", "static", "InvalidParameterValue"),
        (SUBNET, "not-a-cidr", "explicit", "InvalidParameterValue"),
        (
            SUBNET_B,
            "2001:db8:200:2::/64",
            "explicit",
            "InvalidParameterValue",
        ),
    ] {
        let r = reserve(&sim, subnet, cidr, kind);
        assert_eq!(
            r.code().as_deref(),
            Some(code),
            "{subnet} {cidr} {kind}: {}",
            r.body
        );
    }
    let r = ec2(
        &sim,
        &[
            ("Action", "CreateSubnetCidrReservation"),
            ("SubnetId", SUBNET),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("MissingParameter"));
    assert_eq!(
        reserve(&sim, SUBNET, "192.0.2.8/29", "explicit").status,
        200
    );
    let r = reserve(&sim, SUBNET, "192.0.2.12/30", "prefix");
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
    assert!(r.message().contains("overlaps"), "{}", r.message());
    assert!(sim.state().subnet_cidr_reservations.len() == 1);
}

#[test]
fn ec2_chosen_addresses_avoid_reservations_reserved_ends_and_addresses_in_use() {
    let sim = small();
    // Free in 192.0.2.0/28: .4–.14 less the primary .4 and the reservations .8–.11 and .13.
    assert_eq!(
        reserve(&sim, SUBNET, "192.0.2.8/30", "explicit").status,
        200
    );
    assert_eq!(reserve(&sim, SUBNET, "192.0.2.13/32", "prefix").status, 200);
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("NetworkInterfaceId", NODE_ENI),
            ("SecondaryPrivateIpAddressCount", "5"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let got: BTreeSet<u8> = r
        .tags("privateIpAddress")
        .iter()
        .map(|a| last_octet(a))
        .collect();
    assert_eq!(got, BTreeSet::from([5, 6, 7, 12, 14]));
    let r = create(&sim, SUBNET, &[]);
    assert_eq!(
        r.code().as_deref(),
        Some("InsufficientFreeAddressesInSubnet"),
        "{}",
        r.body
    );
    // Explicit assignment into an explicit reservation is what the reservation is for.
    assert_eq!(unassign(&sim, NODE_ENI, &["192.0.2.5"]).status, 200);
    let r = assign(&sim, NODE_ENI, &["192.0.2.9"], None);
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn ec2_chosen_ipv6_addresses_avoid_reservations() {
    let sim = small();
    assert_eq!(
        reserve(&sim, SUBNET, "2001:db8:200:1::/65", "explicit").status,
        200
    );
    let r = ec2(
        &sim,
        &[
            ("Action", "AssignIpv6Addresses"),
            ("NetworkInterfaceId", NODE_ENI),
            ("Ipv6AddressCount", "6"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let upper: ipnetwork::Ipv6Network = "2001:db8:200:1:8000::/65".parse().unwrap();
    let got = sim.state().eni(NODE_ENI).unwrap().ipv6s.clone();
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|a| upper.contains(*a)), "{got:?}");
}

#[test]
fn dhcp_primaries_of_new_enis_are_distinct_free_and_outside_reservations() {
    let sim = small();
    assert_eq!(
        reserve(&sim, SUBNET, "192.0.2.8/29", "explicit").status,
        200
    );
    // Free: .5, .6, .7 (.4 is the node's primary, .8–.15 reserved or the broadcast).
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let (_, ip) = created_eni(&create(&sim, SUBNET, &[]));
        seen.insert(last_octet(&ip));
    }
    assert_eq!(seen, BTreeSet::from([5, 6, 7]));
    let r = create(&sim, SUBNET, &[]);
    assert_eq!(
        r.code().as_deref(),
        Some("InsufficientFreeAddressesInSubnet")
    );
}

#[test]
fn explicit_primary_is_checked_like_any_explicit_address() {
    let sim = small();
    assert_eq!(
        reserve(&sim, SUBNET, "192.0.2.8/30", "explicit").status,
        200
    );
    let (_, ip) = created_eni(&create(&sim, SUBNET, &[("PrivateIpAddress", "192.0.2.9")]));
    assert_eq!(
        ip, "192.0.2.9",
        "explicit reservations allow explicit assignment"
    );
    for (addr, code) in [
        ("192.0.2.9", "InvalidIPAddress.InUse"),
        ("192.0.2.4", "InvalidIPAddress.InUse"),
        ("192.0.2.3", "InvalidParameterValue"),
        ("192.0.2.15", "InvalidParameterValue"),
        ("192.0.2.20", "InvalidParameterValue"),
        ("2001:db8::1", "InvalidParameterValue"),
    ] {
        let r = create(&sim, SUBNET, &[("PrivateIpAddress", addr)]);
        assert_eq!(r.code().as_deref(), Some(code), "{addr}: {}", r.body);
    }
    let r = create(&sim, "subnet-0sim0000000000zz", &[]);
    assert_eq!(r.code().as_deref(), Some("InvalidSubnetID.NotFound"));
    let r = create(&sim, SUBNET, &[("SecondaryPrivateIpAddressCount", "2")]);
    assert_eq!(
        r.code().as_deref(),
        Some("UnsupportedOperation"),
        "refused, not ignored"
    );
    let r = create(&sim, SUBNET, &[("SecurityGroupId.1", "default")]);
    assert_eq!(
        r.code().as_deref(),
        Some("InvalidSecurityGroupID.Malformed")
    );
}

#[test]
fn new_enis_carry_their_tags_description_and_groups() {
    let sim = small();
    let r = create(
        &sim,
        SUBNET,
        &[
            ("Description", "multus eth1"),
            ("SecurityGroupId.1", "sg-0123456789abcdef0"),
            ("TagSpecification.1.ResourceType", "network-interface"),
            (
                "TagSpecification.1.Tag.1.Key",
                "node.k8s.amazonaws.com/no_manage",
            ),
            ("TagSpecification.1.Tag.1.Value", "true"),
            ("TagSpecification.1.Tag.2.Key", "aws-eni-ip/instance-id"),
            ("TagSpecification.1.Tag.2.Value", NODE),
        ],
    );
    let (id, _) = created_eni(&r);
    assert!(
        r.body.contains("<networkInterface>")
            && !r.body.contains("<item>\n            <networkInterfaceId>")
    );
    assert_eq!(r.tag("status").as_deref(), Some("available"));
    let e = sim.state().eni(&id).unwrap().clone();
    assert_eq!(e.tags["node.k8s.amazonaws.com/no_manage"], "true");
    assert_eq!(e.tags["aws-eni-ip/instance-id"], NODE);
    assert_eq!(e.description, "multus eth1");
    assert_eq!(e.security_groups, ["sg-0123456789abcdef0"]);
    let d = describe_filter(&sim, "tag:aws-eni-ip/instance-id", &[NODE]);
    assert_eq!(eni_ids(&d), [id]);
    assert!(d.body.contains("<groupId>sg-0123456789abcdef0</groupId>"));
    let r = create(
        &sim,
        SUBNET,
        &[
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "a"),
            ("TagSpecification.1.Tag.1.Value", "b"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
}

#[test]
fn client_token_makes_create_idempotent() {
    let sim = small();
    let (a, ip) = created_eni(&create(&sim, SUBNET, &[("ClientToken", "launch-1")]));
    let r = create(&sim, SUBNET, &[("ClientToken", "launch-1")]);
    assert_eq!(created_eni(&r), (a.clone(), ip.clone()));
    assert_eq!(r.tag("clientToken").as_deref(), Some("launch-1"));
    assert_eq!(sim.state().enis.len(), 2, "no second ENI");
    let r = create(
        &sim,
        SUBNET,
        &[("ClientToken", "launch-1"), ("Description", "other")],
    );
    assert_eq!(r.code().as_deref(), Some("IdempotentParameterMismatch"));
}

#[test]
fn attach_puts_the_eni_on_the_instance_at_its_device_index() {
    let sim = small();
    let (id, ip) = created_eni(&create(&sim, SUBNET, &[]));
    let r = attach(&sim, &id, NODE, "1");
    assert_eq!(r.status, 200, "{}", r.body);
    let attachment = r.tag("attachmentId").unwrap();
    assert!(attachment.starts_with("eni-attach-"));
    assert_eq!(r.tag("networkCardIndex").as_deref(), Some("0"));
    let e = sim.state().eni(&id).unwrap().clone();
    assert_eq!(
        (e.instance_id.as_deref(), e.device_index),
        (Some(NODE), Some(1))
    );
    assert!(
        !e.delete_on_termination,
        "EC2 leaves it false for attached interfaces"
    );
    let macs = imds(&sim, NODE, "/latest/meta-data/network/interfaces/macs/");
    assert!(macs.body.contains(&format!("{}/", e.mac)), "{}", macs.body);
    let local = imds(
        &sim,
        NODE,
        &format!(
            "/latest/meta-data/network/interfaces/macs/{}/local-ipv4s",
            e.mac
        ),
    );
    assert_eq!(local.body, ip);
    let d = ec2(
        &sim,
        &[("Action", "DescribeInstances"), ("InstanceId.1", NODE)],
    );
    assert!(d.body.contains(&id), "{}", d.body);
    let d = describe_filter(&sim, "network-interface-id", &[&id]);
    assert_eq!(d.tag("attachmentId"), Some(attachment));
    assert_eq!(d.tag("status").as_deref(), Some("in-use"));
}

#[test]
fn attach_refuses_busy_devices_other_zones_attached_enis_and_full_instances() {
    let sim = small();
    let (a, _) = created_eni(&create(&sim, SUBNET, &[]));
    let (b, _) = created_eni(&create(&sim, SUBNET, &[]));
    let (c, _) = created_eni(&create(&sim, SUBNET, &[]));
    let (other_zone, _) = created_eni(&create(&sim, SUBNET_B, &[]));
    assert_eq!(attach(&sim, &a, NODE, "1").status, 200);
    let r = attach(&sim, &b, NODE, "1");
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
    assert!(r.message().contains("device index"), "{}", r.message());
    let r = attach(&sim, &a, NODE, "2");
    assert_eq!(r.code().as_deref(), Some("InvalidNetworkInterface.InUse"));
    let r = attach(&sim, &other_zone, NODE, "2");
    assert_eq!(r.code().as_deref(), Some("InvalidParameterCombination"));
    assert_eq!(attach(&sim, &b, NODE, "2").status, 200);
    let r = attach(&sim, &c, NODE, "3");
    assert_eq!(
        r.code().as_deref(),
        Some("AttachmentLimitExceeded"),
        "t3.medium takes 3 ENIs"
    );
    let r = attach(&sim, &c, "i-0a1b2c3d4e5f6bbb1", "1");
    assert_eq!(r.code().as_deref(), Some("InvalidInstanceID.NotFound"));
    let r = attach(&sim, &c, NODE, "x");
    assert_eq!(r.code().as_deref(), Some("InvalidParameterValue"));
}

#[test]
fn delete_on_termination_is_set_through_the_attachment() {
    let sim = small();
    let (id, _) = created_eni(&create(&sim, SUBNET, &[]));
    let attachment = attach(&sim, &id, NODE, "1").tag("attachmentId").unwrap();
    let modify = |att: &str, v: &str| {
        ec2(
            &sim,
            &[
                ("Action", "ModifyNetworkInterfaceAttribute"),
                ("NetworkInterfaceId", &id),
                ("Attachment.AttachmentId", att),
                ("Attachment.DeleteOnTermination", v),
            ],
        )
    };
    assert_eq!(modify(&attachment, "true").status, 200);
    assert!(sim.state().eni(&id).unwrap().delete_on_termination);
    let d = describe_filter(&sim, "network-interface-id", &[&id]);
    assert_eq!(d.tag("deleteOnTermination").as_deref(), Some("true"));
    let r = modify("eni-attach-0000000000000000f", "true");
    assert_eq!(r.code().as_deref(), Some("InvalidAttachmentID.NotFound"));
    let r = ec2(
        &sim,
        &[
            ("Action", "ModifyNetworkInterfaceAttribute"),
            ("NetworkInterfaceId", &id),
            ("SourceDestCheck.Value", "false"),
        ],
    );
    assert_eq!(r.code().as_deref(), Some("UnsupportedOperation"));
}

#[test]
fn detach_then_delete_frees_the_eni_and_its_addresses() {
    let sim = small();
    let (id, ip) = created_eni(&create(&sim, SUBNET, &[]));
    let attachment = attach(&sim, &id, NODE, "1").tag("attachmentId").unwrap();
    let delete = || {
        ec2(
            &sim,
            &[
                ("Action", "DeleteNetworkInterface"),
                ("NetworkInterfaceId", &id),
            ],
        )
    };
    assert_eq!(
        delete().code().as_deref(),
        Some("InvalidNetworkInterface.InUse")
    );
    let detach = |att: &str| {
        ec2(
            &sim,
            &[("Action", "DetachNetworkInterface"), ("AttachmentId", att)],
        )
    };
    let primary_attachment = describe_filter(&sim, "network-interface-id", &[NODE_ENI])
        .tag("attachmentId")
        .unwrap();
    assert_eq!(
        detach(&primary_attachment).code().as_deref(),
        Some("OperationNotPermitted")
    );
    assert_eq!(detach(&attachment).status, 200);
    assert_eq!(
        detach(&attachment).code().as_deref(),
        Some("InvalidAttachmentID.NotFound")
    );
    let e = sim.state().eni(&id).unwrap().clone();
    assert_eq!(
        (e.instance_id, e.device_index, e.attachment_id),
        (None, None, None)
    );
    assert_eq!(delete().status, 200);
    assert!(sim.state().eni(&id).is_none());
    assert_eq!(
        delete().code().as_deref(),
        Some("InvalidNetworkInterfaceID.NotFound")
    );
    let (_, again) = created_eni(&create(&sim, SUBNET, &[("PrivateIpAddress", &ip)]));
    assert_eq!(again, ip, "a deleted ENI's address is free again");
}

#[test]
fn a_lifecycle_action_completes_once_and_its_result_is_recorded() {
    let sim = small();
    let a = sim.open_lifecycle_action("multus-ng", "launch", NODE, LAUNCHING, None);
    let complete = |extra: &[(&str, &str)]| {
        let mut p = vec![
            ("Version", "2011-01-01"),
            ("Action", "CompleteLifecycleAction"),
            ("AutoScalingGroupName", "multus-ng"),
            ("LifecycleHookName", "launch"),
        ];
        p.extend_from_slice(extra);
        http(
            &sim.autoscaling_url(),
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", SIGV4),
            ],
            form(&p).as_bytes(),
        )
    };
    let r = complete(&[("LifecycleActionResult", "MAYBE"), ("InstanceId", NODE)]);
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("ValidationError"));
    assert!(
        r.body.contains("<ErrorResponse"),
        "awsQuery error shape: {}",
        r.body
    );
    let r = complete(&[("LifecycleActionResult", "CONTINUE")]);
    assert_eq!(
        r.code().as_deref(),
        Some("ValidationError"),
        "token or instance needed"
    );
    let r = complete(&[
        ("LifecycleActionResult", "CONTINUE"),
        ("LifecycleActionToken", &a.lifecycle_action_token),
        ("InstanceId", NODE),
    ]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<CompleteLifecycleActionResult/>"));
    assert!(r.body.contains("<RequestId>"));
    let r = complete(&[("LifecycleActionResult", "ABANDON"), ("InstanceId", NODE)]);
    assert_eq!(r.code().as_deref(), Some("ValidationError"));
    assert!(r
        .message()
        .contains("No active Lifecycle Action found with instance ID"));
    let actions = sim.lifecycle_actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].result.as_deref(), Some("CONTINUE"));
    assert_eq!(sim.calls().autoscaling["CompleteLifecycleAction"], 4);
    let admin = http(&sim.ec2_url(), "GET", "/_sim/lifecycle-actions", &[], b"");
    assert!(
        admin.body.contains("\"result\": \"CONTINUE\""),
        "{}",
        admin.body
    );
    let ec2_side = ec2(&sim, &[("Action", "CompleteLifecycleAction")]);
    assert_eq!(
        ec2_side.code().as_deref(),
        Some("InvalidAction"),
        "EC2 does not answer it"
    );
}

#[test]
fn lifecycle_actions_open_through_the_admin_api_for_known_instances_only() {
    let sim = small();
    let open = |body: &str| {
        http(
            &sim.ec2_url(),
            "POST",
            "/_sim/lifecycle-actions",
            &[],
            body.as_bytes(),
        )
    };
    let r = open(&format!(
        r#"{{"autoScalingGroupName":"g","lifecycleHookName":"h","instanceId":"{NODE}","lifecycleTransition":"{LAUNCHING}","lifecycleActionToken":"t-1"}}"#
    ));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.contains("\"lifecycleActionToken\": \"t-1\""));
    let r = open(&format!(
        r#"{{"autoScalingGroupName":"g","lifecycleHookName":"h","instanceId":"i-0a1b2c3d4e5f6bbb1","lifecycleTransition":"{LAUNCHING}"}}"#
    ));
    assert_eq!(r.status, 400, "{}", r.body);
    sim.reset();
    assert!(sim.lifecycle_actions().is_empty());
}

#[test]
fn new_actions_take_faults_like_the_others() {
    let sim = small();
    sim.set_faults(ec2_sim::Faults {
        deny: vec![
            "CreateNetworkInterface".into(),
            "CompleteLifecycleAction".into(),
        ],
        ..Default::default()
    });
    let r = create(&sim, SUBNET, &[]);
    assert_eq!(r.code().as_deref(), Some("UnauthorizedOperation"));
    assert_eq!(r.status, 403);
    let w: Result<ec2_sim::Faults, _> = serde_json::from_str(
        r#"{"latencyMs": {"AttachNetworkInterface": 5, "CompleteLifecycleAction": 5}}"#,
    );
    assert!(w.unwrap().validate().is_ok());
    assert_eq!(sim.state().enis.len(), 1);
}
