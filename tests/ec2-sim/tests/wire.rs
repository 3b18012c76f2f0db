//! Wire compatibility: the real aws-sdk-ec2 client and aws-config's IMDS client against the
//! simulator, for every action and every error code the plugin may see.

use aws_config::imds;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;
use aws_smithy_types::retry::RetryConfig;
use ec2_sim::{Faults, Sim, Throttle, World};
use std::collections::BTreeMap;
use std::time::Duration;

const ENI_A1: &str = "eni-0a000000000000001";
const ENI_B1: &str = "eni-0b000000000000001";
const ENI_B2: &str = "eni-0b000000000000002";
const ENI_C1: &str = "eni-0c000000000000001";
const I1: &str = "i-0a1b2c3d4e5f60001";
const I2: &str = "i-0a1b2c3d4e5f60002";
const MAC_B1: &str = "02:00:c6:12:01:01";

fn client_with(sim: &Sim, retry: RetryConfig) -> Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new(
            "AKIDSIMTEST",
            "simsecret",
            None,
            None,
            "test",
        ))
        .endpoint_url(sim.ec2_url())
        .retry_config(retry)
        .build();
    Client::from_conf(conf)
}

fn client(sim: &Sim) -> Client {
    client_with(sim, RetryConfig::disabled())
}

fn imds_client(sim: &Sim, instance: &str) -> imds::Client {
    imds::Client::builder()
        .endpoint(sim.imds_url(instance))
        .unwrap()
        .max_attempts(1)
        .build()
}

fn code<E, R>(r: Result<impl std::fmt::Debug, SdkError<E, R>>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let err = r.expect_err("expected an EC2 error");
    assert!(
        matches!(err, SdkError::ServiceError(_)),
        "{}",
        DisplayErrorContext(&err)
    );
    let c = err.code().expect("error has a code").to_string();
    assert!(err.message().is_some_and(|m| !m.is_empty()));
    c
}

fn filter(name: &str, values: &[&str]) -> Filter {
    let mut f = Filter::builder().name(name);
    for v in values {
        f = f.values(*v);
    }
    f.build()
}

#[tokio::test]
async fn assign_and_unassign_private_ip_addresses() {
    let sim = Sim::start(World::demo()).unwrap();
    let ec2 = client(&sim);
    let out = ec2
        .assign_private_ip_addresses()
        .network_interface_id(ENI_B1)
        .private_ip_addresses("198.18.1.20")
        .private_ip_addresses("198.18.1.21")
        .send()
        .await
        .unwrap();
    assert_eq!(out.network_interface_id(), Some(ENI_B1));
    let got: Vec<&str> = out
        .assigned_private_ip_addresses()
        .iter()
        .filter_map(|a| a.private_ip_address())
        .collect();
    assert_eq!(got, ["198.18.1.20", "198.18.1.21"]);
    assert_eq!(out.request_id().map(str::len), Some(36));
    let out = ec2
        .assign_private_ip_addresses()
        .network_interface_id(ENI_B1)
        .secondary_private_ip_address_count(1)
        .send()
        .await
        .unwrap();
    assert_eq!(out.assigned_private_ip_addresses().len(), 1);
    let out = ec2
        .unassign_private_ip_addresses()
        .network_interface_id(ENI_B1)
        .private_ip_addresses("198.18.1.20")
        .send()
        .await
        .unwrap();
    assert!(out.request_id().is_some());
    let ips = sim.state().eni(ENI_B1).unwrap().private_ips.clone();
    assert_eq!(ips.len(), 2);
    assert_eq!(ips[0].to_string(), "198.18.1.21");
}

#[tokio::test]
async fn assign_and_unassign_ipv6_addresses() {
    let sim = Sim::start(World::demo()).unwrap();
    let ec2 = client(&sim);
    let out = ec2
        .assign_ipv6_addresses()
        .network_interface_id(ENI_B1)
        .ipv6_addresses("2001:db8:100:1::20")
        .send()
        .await
        .unwrap();
    assert_eq!(out.network_interface_id(), Some(ENI_B1));
    assert_eq!(out.assigned_ipv6_addresses(), ["2001:db8:100:1::20"]);
    let out = ec2
        .assign_ipv6_addresses()
        .network_interface_id(ENI_B1)
        .ipv6_address_count(2)
        .send()
        .await
        .unwrap();
    assert_eq!(out.assigned_ipv6_addresses().len(), 2);
    let out = ec2
        .unassign_ipv6_addresses()
        .network_interface_id(ENI_B1)
        .ipv6_addresses("2001:db8:100:1::20")
        .send()
        .await
        .unwrap();
    assert_eq!(out.network_interface_id(), Some(ENI_B1));
    assert_eq!(out.unassigned_ipv6_addresses(), ["2001:db8:100:1::20"]);
    assert_eq!(sim.state().eni(ENI_B1).unwrap().ipv6s.len(), 2);
}

#[tokio::test]
async fn describe_network_interfaces_fields_and_filters() {
    let sim = Sim::start(World::demo()).unwrap();
    sim.assign(
        ENI_B1,
        &[
            "198.18.1.20".parse().unwrap(),
            "2001:db8:100:1::20".parse().unwrap(),
        ],
    );
    let ec2 = client(&sim);
    let out = ec2
        .describe_network_interfaces()
        .filters(filter("mac-address", &[MAC_B1]))
        .send()
        .await
        .unwrap();
    let nis = out.network_interfaces();
    assert_eq!(nis.len(), 1);
    let ni = &nis[0];
    assert_eq!(ni.network_interface_id(), Some(ENI_B1));
    assert_eq!(ni.subnet_id(), Some("subnet-0sim000000000002"));
    assert_eq!(ni.vpc_id(), Some("vpc-0sim0000000000001"));
    assert_eq!(ni.availability_zone(), Some("us-west-2a"));
    assert_eq!(ni.mac_address(), Some(MAC_B1));
    assert_eq!(ni.private_ip_address(), Some("198.18.1.10"));
    assert_eq!(ni.status().map(|s| s.as_str()), Some("in-use"));
    assert_eq!(ni.interface_type().map(|s| s.as_str()), Some("interface"));
    let att = ni.attachment().expect("attachment");
    assert_eq!(att.instance_id(), Some(I1));
    assert_eq!(att.device_index(), Some(1));
    assert_eq!(att.status().map(|s| s.as_str()), Some("attached"));
    assert!(att.attachment_id().is_some());
    assert!(att.attach_time().is_some());
    let addrs: Vec<(Option<&str>, Option<bool>)> = ni
        .private_ip_addresses()
        .iter()
        .map(|p| (p.private_ip_address(), p.primary()))
        .collect();
    assert_eq!(
        addrs,
        [
            (Some("198.18.1.10"), Some(true)),
            (Some("198.18.1.20"), Some(false))
        ]
    );
    let v6: Vec<&str> = ni
        .ipv6_addresses()
        .iter()
        .filter_map(|a| a.ipv6_address())
        .collect();
    assert_eq!(v6, ["2001:db8:100:1::20"]);
    let tags: Vec<(Option<&str>, Option<&str>)> =
        ni.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(
        tags,
        [(Some("node.k8s.amazonaws.com/no_manage"), Some("true"))]
    );

    let ids = |out: &aws_sdk_ec2::operation::describe_network_interfaces::DescribeNetworkInterfacesOutput| -> Vec<String> {
        out.network_interfaces().iter().filter_map(|n| n.network_interface_id().map(str::to_string)).collect()
    };
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("network-interface-id", &[ENI_C1], &[ENI_C1]),
        ("attachment.instance-id", &[I1], &[ENI_A1, ENI_B1, ENI_C1]),
        (
            "attachment.device-index",
            &["0"],
            &[ENI_A1, "eni-0a000000000000002"],
        ),
        ("addresses.private-ip-address", &["198.18.1.20"], &[ENI_B1]),
        (
            "ipv6-addresses.ipv6-address",
            &["2001:db8:100:1::20"],
            &[ENI_B1],
        ),
        (
            "subnet-id",
            &["subnet-0sim000000000002"],
            &[ENI_B1, ENI_B2, ENI_C1],
        ),
        (
            "tag:node.k8s.amazonaws.com/no_manage",
            &["true"],
            &[ENI_B1, ENI_B2],
        ),
    ];
    for (name, values, want) in cases {
        let out = ec2
            .describe_network_interfaces()
            .filters(filter(name, values))
            .send()
            .await
            .unwrap();
        assert_eq!(ids(&out), *want, "{name}");
    }
    let out = ec2
        .describe_network_interfaces()
        .network_interface_ids(ENI_B2)
        .network_interface_ids(ENI_A1)
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&out), [ENI_A1, ENI_B2]);
    // The SDK paginator follows nextToken.
    let pages: Vec<_> = ec2
        .describe_network_interfaces()
        .max_results(5)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].as_ref().unwrap().network_interfaces().len(), 5);
}

#[tokio::test]
async fn describe_instances_and_subnets() {
    let sim = Sim::start(World::demo()).unwrap();
    let ec2 = client(&sim);
    let out = ec2
        .describe_instances()
        .instance_ids(I2)
        .send()
        .await
        .unwrap();
    let res = out.reservations();
    assert_eq!(res.len(), 1);
    let inst = &res[0].instances()[0];
    assert_eq!(inst.instance_id(), Some(I2));
    assert_eq!(inst.instance_type().map(|t| t.as_str()), Some("m5.large"));
    assert_eq!(
        inst.placement().and_then(|p| p.availability_zone()),
        Some("us-west-2a")
    );
    assert_eq!(inst.private_ip_address(), Some("198.18.0.11"));
    let enis: Vec<(Option<&str>, Option<i32>)> = inst
        .network_interfaces()
        .iter()
        .map(|n| {
            (
                n.network_interface_id(),
                n.attachment().and_then(|a| a.device_index()),
            )
        })
        .collect();
    assert_eq!(
        enis,
        [
            (Some("eni-0a000000000000002"), Some(0)),
            (Some(ENI_B2), Some(1))
        ]
    );
    assert_eq!(
        inst.network_interfaces()[1].mac_address(),
        Some("02:00:c6:12:01:02")
    );

    let out = ec2.describe_subnets().send().await.unwrap();
    let ids: Vec<&str> = out.subnets().iter().filter_map(|s| s.subnet_id()).collect();
    assert_eq!(ids, ["subnet-0sim000000000001", "subnet-0sim000000000002"]);
    let s2 = &out.subnets()[1];
    assert_eq!(s2.cidr_block(), Some("198.18.1.0/24"));
    assert_eq!(s2.vpc_id(), Some("vpc-0sim0000000000001"));
    assert_eq!(
        s2.ipv6_cidr_block_association_set()[0].ipv6_cidr_block(),
        Some("2001:db8:100:1::/64")
    );
    assert!(s2.available_ip_address_count().unwrap() > 200);
    let out = ec2
        .describe_subnets()
        .subnet_ids("subnet-0sim000000000001")
        .send()
        .await
        .unwrap();
    assert_eq!(out.subnets().len(), 1);
}

#[tokio::test]
async fn describe_instance_types_gives_the_per_eni_address_limits() {
    use aws_sdk_ec2::types::InstanceType;
    let sim = Sim::start(World::demo()).unwrap();
    let ec2 = client(&sim);
    let out = ec2
        .describe_instance_types()
        .instance_types(InstanceType::M5Large)
        .send()
        .await
        .unwrap();
    let t = &out.instance_types()[0];
    assert_eq!(t.instance_type(), Some(&InstanceType::M5Large));
    let net = t.network_info().expect("networkInfo");
    assert_eq!(net.ipv4_addresses_per_interface(), Some(10));
    assert_eq!(net.ipv6_addresses_per_interface(), Some(10));
    assert_eq!(net.maximum_network_interfaces(), Some(3));
    let all = ec2.describe_instance_types().send().await.unwrap();
    assert_eq!(all.instance_types().len(), 5);
    let bad = ec2
        .describe_instance_types()
        .instance_types(InstanceType::from("x9.huge"))
        .send()
        .await;
    assert_eq!(code(bad), "InvalidInstanceType");
}

#[tokio::test]
async fn every_error_code_reaches_the_sdk() {
    let sim = Sim::start(World::demo()).unwrap();
    let ec2 = client(&sim);
    let assign = |eni: &str, ip: &str, allow: Option<bool>| {
        ec2.assign_private_ip_addresses()
            .network_interface_id(eni)
            .private_ip_addresses(ip)
            .set_allow_reassignment(allow)
            .send()
    };
    sim.assign(
        ENI_B2,
        &[
            "198.18.1.50".parse().unwrap(),
            "2001:db8:100:1::50".parse().unwrap(),
        ],
    );
    assert_eq!(
        code(assign(ENI_B1, "198.18.0.50", None).await),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(assign(ENI_B1, "not-an-ip", None).await),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(assign(ENI_B1, "198.18.1.50", None).await),
        "InvalidIPAddress.InUse"
    );
    assert_eq!(
        code(assign("eni-0123456789abcdef0", "198.18.1.20", None).await),
        "InvalidNetworkInterfaceID.NotFound"
    );
    assert_eq!(
        code(assign("eni-bogus", "198.18.1.20", None).await),
        "InvalidNetworkInterfaceID.Malformed"
    );
    // Reassignment moves the address.
    assign(ENI_B1, "198.18.1.50", Some(true)).await.unwrap();
    assert!(sim.state().eni(ENI_B2).unwrap().private_ips.is_empty());
    assign(ENI_B1, "198.18.1.50", Some(true))
        .await
        .expect("no-op on the same ENI");
    assert_eq!(
        code(assign(ENI_B1, "198.18.1.50", None).await),
        "InvalidIPAddress.InUse"
    );
    // Limit: 10 including the primary; one secondary is held, 8 more fit.
    let mut req = ec2
        .assign_private_ip_addresses()
        .network_interface_id(ENI_B1);
    for i in 60..69 {
        req = req.private_ip_addresses(format!("198.18.1.{i}"));
    }
    assert_eq!(code(req.send().await), "PrivateIpAddressLimitExceeded");

    let v6 = |eni: &str, ip: &str| {
        ec2.assign_ipv6_addresses()
            .network_interface_id(eni)
            .ipv6_addresses(ip)
            .send()
    };
    assert_eq!(
        code(v6(ENI_B1, "2001:db8:100:1::50").await),
        "InvalidIPAddress.InUse"
    );
    assert_eq!(
        code(v6(ENI_B2, "2001:db8:100:1::50").await),
        "InvalidIPAddress.InUse"
    );
    assert_eq!(
        code(v6(ENI_B1, "2001:db8:999::1").await),
        "InvalidParameterValue"
    );

    let un = ec2
        .unassign_private_ip_addresses()
        .network_interface_id(ENI_B1)
        .private_ip_addresses("198.18.1.99")
        .send()
        .await;
    let err = un.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    assert_eq!(
        err.message(),
        Some(
            format!("Some of the specified addresses are not assigned to interface {ENI_B1}")
                .as_str()
        )
    );
    assert!(err.request_id().is_some());
    let un = ec2
        .unassign_private_ip_addresses()
        .network_interface_id(ENI_B1)
        .private_ip_addresses("198.18.1.10")
        .send()
        .await;
    assert_eq!(code(un), "InvalidParameterValue");
    let un = ec2
        .unassign_ipv6_addresses()
        .network_interface_id(ENI_B1)
        .ipv6_addresses("2001:db8:100:1::51")
        .send()
        .await;
    assert_eq!(code(un), "InvalidParameterValue");
    let d = ec2
        .describe_network_interfaces()
        .network_interface_ids("eni-0123456789abcdef0")
        .send()
        .await;
    assert_eq!(code(d), "InvalidNetworkInterfaceID.NotFound");
    let d = ec2
        .describe_network_interfaces()
        .filters(filter("no-such-filter", &["x"]))
        .send()
        .await;
    assert_eq!(code(d), "InvalidParameterValue");
    let d = ec2
        .describe_instances()
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await;
    assert_eq!(code(d), "InvalidInstanceID.NotFound");
    let d = ec2
        .describe_subnets()
        .subnet_ids("subnet-nope")
        .send()
        .await;
    assert_eq!(code(d), "InvalidSubnetID.NotFound");
    // An action the simulator does not implement.
    let d = ec2.describe_vpcs().send().await;
    assert_eq!(code(d), "InvalidAction");
}

#[tokio::test]
async fn injected_faults_reach_the_sdk() {
    let sim = Sim::start(World::demo()).unwrap();
    let ec2 = client(&sim);
    sim.set_faults(Faults {
        throttle: BTreeMap::from([(
            "DescribeSubnets".into(),
            Throttle {
                capacity: 0,
                refill_per_second: 0.0,
            },
        )]),
        error_rate: BTreeMap::from([("DescribeInstances".into(), 1.0)]),
        unavailable_rate: BTreeMap::from([("DescribeNetworkInterfaces".into(), 1.0)]),
        ..Faults::default()
    });
    assert_eq!(
        code(ec2.describe_subnets().send().await),
        "RequestLimitExceeded"
    );
    assert_eq!(code(ec2.describe_instances().send().await), "InternalError");
    assert_eq!(
        code(ec2.describe_network_interfaces().send().await),
        "Unavailable"
    );
    // The SDK's standard retry classifies RequestLimitExceeded as throttling and retries it.
    let retrying = client_with(
        &sim,
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1)),
    );
    sim.reset();
    sim.set_faults(Faults {
        throttle: BTreeMap::from([(
            "DescribeSubnets".into(),
            Throttle {
                capacity: 0,
                refill_per_second: 0.0,
            },
        )]),
        error_rate: BTreeMap::from([("DescribeInstances".into(), 1.0)]),
        ..Faults::default()
    });
    assert_eq!(
        code(retrying.describe_subnets().send().await),
        "RequestLimitExceeded"
    );
    assert_eq!(
        code(retrying.describe_instances().send().await),
        "InternalError"
    );
    let calls = sim.calls();
    assert_eq!(calls.ec2["DescribeSubnets"], 3, "throttling retried");
    assert_eq!(calls.ec2["DescribeInstances"], 3, "InternalError retried");
    assert_eq!((calls.throttled, calls.injected_errors), (3, 3));
}

#[tokio::test]
async fn denied_call_is_unauthorized_operation_and_not_retried() {
    use aws_sdk_ec2::config::ProvideCredentials;
    let sim = Sim::start(World::demo()).unwrap();
    sim.set_faults(Faults {
        deny: vec!["AssignPrivateIpAddresses".into()],
        ..Faults::default()
    });
    let retrying = client_with(
        &sim,
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1)),
    );
    let err = retrying
        .assign_private_ip_addresses()
        .network_interface_id(ENI_B1)
        .private_ip_addresses("198.18.1.20")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some("UnauthorizedOperation"),
        "{}",
        DisplayErrorContext(&err)
    );
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    let msg = err.message().unwrap();
    assert!(
        msg.starts_with("You are not authorized to perform this operation. User: arn:aws:sts::111122223333:assumed-role/eks-node-role/"),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            "is not authorized to perform: ec2:AssignPrivateIpAddresses on resource: arn:aws:ec2:us-west-2:111122223333:network-interface/{ENI_B1}"
        )),
        "{msg}"
    );
    assert!(err.request_id().is_some());
    assert_eq!(
        sim.calls().ec2["AssignPrivateIpAddresses"],
        1,
        "a denial is not transient"
    );
    assert!(sim.state().eni(ENI_B1).unwrap().private_ips.is_empty());
    let ec2 = client(&sim);
    ec2.describe_network_interfaces().send().await.unwrap();
    // Signed with the role credentials IMDS hands I2, the denial names I2's role session.
    let creds = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(imds_client(&sim, I2))
        .build()
        .provide_credentials()
        .await
        .unwrap();
    let as_i2 = Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .credentials_provider(creds)
            .endpoint_url(sim.ec2_url())
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let err = as_i2
        .assign_private_ip_addresses()
        .network_interface_id(ENI_B1)
        .private_ip_addresses("198.18.1.20")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.message()
            .unwrap()
            .contains(&format!("assumed-role/eks-node-role/{I2} ")),
        "{:?}",
        err.message()
    );
    sim.set_faults(Faults {
        deny: vec!["*".into()],
        ..Faults::default()
    });
    assert_eq!(
        code(ec2.describe_network_interfaces().send().await),
        "UnauthorizedOperation"
    );
    assert_eq!(
        code(
            ec2.unassign_ipv6_addresses()
                .network_interface_id(ENI_B1)
                .ipv6_addresses("2001:db8:100:1::20")
                .send()
                .await
        ),
        "UnauthorizedOperation"
    );
}

#[tokio::test]
async fn deleted_eni_is_not_found_in_ec2_and_gone_from_imds() {
    let sim = Sim::start(World::demo()).unwrap();
    sim.assign(ENI_B1, &["198.18.1.20".parse().unwrap()]);
    let ec2 = client(&sim);
    let c = imds_client(&sim, I1);
    let mac_path = format!("/latest/meta-data/network/interfaces/macs/{MAC_B1}/local-ipv4s");
    assert_eq!(
        c.get(mac_path.clone()).await.unwrap().as_ref(),
        "198.18.1.10\n198.18.1.20"
    );
    sim.delete_eni(ENI_B1);
    let nf = "InvalidNetworkInterfaceID.NotFound";
    assert_eq!(
        code(
            ec2.assign_private_ip_addresses()
                .network_interface_id(ENI_B1)
                .private_ip_addresses("198.18.1.21")
                .send()
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            ec2.unassign_private_ip_addresses()
                .network_interface_id(ENI_B1)
                .private_ip_addresses("198.18.1.20")
                .send()
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            ec2.assign_ipv6_addresses()
                .network_interface_id(ENI_B1)
                .ipv6_address_count(1)
                .send()
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            ec2.unassign_ipv6_addresses()
                .network_interface_id(ENI_B1)
                .ipv6_addresses("2001:db8:100:1::20")
                .send()
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            ec2.describe_network_interfaces()
                .network_interface_ids(ENI_B1)
                .send()
                .await
        ),
        nf
    );
    for f in [
        filter("mac-address", &[MAC_B1]),
        filter("addresses.private-ip-address", &["198.18.1.20"]),
    ] {
        let out = ec2
            .describe_network_interfaces()
            .filters(f)
            .send()
            .await
            .unwrap();
        assert!(out.network_interfaces().is_empty());
    }
    assert_eq!(
        c.get("/latest/meta-data/network/interfaces/macs/")
            .await
            .unwrap()
            .as_ref(),
        "02:00:c6:12:00:01/\n02:00:c6:12:01:03/"
    );
    match c.get(mac_path.clone()).await {
        Err(imds::client::error::ImdsError::ErrorResponse(e)) => {
            assert_eq!(e.response().status().as_u16(), 404)
        }
        other => panic!("expected 404, got {other:?}"),
    }
    sim.reset();
    let out = ec2
        .describe_network_interfaces()
        .network_interface_ids(ENI_B1)
        .send()
        .await
        .unwrap();
    assert_eq!(out.network_interfaces().len(), 1);
    assert_eq!(c.get(mac_path).await.unwrap().as_ref(), "198.18.1.10");
}

#[tokio::test]
async fn unsigned_request_is_missing_authentication_token() {
    let sim = Sim::start(World::demo()).unwrap();
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .endpoint_url(sim.ec2_url())
        .allow_no_auth()
        .retry_config(RetryConfig::disabled())
        .build();
    let ec2 = Client::from_conf(conf);
    let r = ec2.describe_subnets().send().await;
    let err = r.unwrap_err();
    assert_eq!(
        err.code(),
        Some("MissingAuthenticationToken"),
        "{}",
        DisplayErrorContext(&err)
    );
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(401));
}

#[tokio::test]
async fn imds_client_reads_every_path() {
    let sim = Sim::start(World::demo()).unwrap();
    sim.assign(
        ENI_B1,
        &[
            "198.18.1.20".parse().unwrap(),
            "2001:db8:100:1::20".parse().unwrap(),
        ],
    );
    let c = imds_client(&sim, I1);
    let get = |p: &'static str| {
        let c = c.clone();
        async move { c.get(p).await.map(|s| s.as_ref().to_string()) }
    };
    assert_eq!(get("/latest/meta-data/instance-id").await.unwrap(), I1);
    assert_eq!(
        get("/latest/meta-data/instance-type").await.unwrap(),
        "m5.large"
    );
    assert_eq!(
        get("/latest/meta-data/placement/region").await.unwrap(),
        "us-west-2"
    );
    assert_eq!(
        get("/latest/meta-data/placement/availability-zone")
            .await
            .unwrap(),
        "us-west-2a"
    );
    assert_eq!(
        get("/latest/meta-data/mac").await.unwrap(),
        "02:00:c6:12:00:01"
    );
    assert_eq!(
        get("/latest/meta-data/network/interfaces/macs/")
            .await
            .unwrap(),
        "02:00:c6:12:00:01/\n02:00:c6:12:01:01/\n02:00:c6:12:01:03/"
    );
    let mac = |k: &str| {
        let c = c.clone();
        let p = format!("/latest/meta-data/network/interfaces/macs/{MAC_B1}/{k}");
        async move { c.get(p).await.map(|s| s.as_ref().to_string()) }
    };
    assert_eq!(mac("interface-id").await.unwrap(), ENI_B1);
    assert_eq!(mac("device-number").await.unwrap(), "1");
    assert_eq!(mac("subnet-id").await.unwrap(), "subnet-0sim000000000002");
    assert_eq!(mac("vpc-id").await.unwrap(), "vpc-0sim0000000000001");
    assert_eq!(
        mac("subnet-ipv4-cidr-block").await.unwrap(),
        "198.18.1.0/24"
    );
    assert_eq!(
        mac("subnet-ipv6-cidr-blocks").await.unwrap(),
        "2001:db8:100:1::/64"
    );
    assert_eq!(
        mac("local-ipv4s").await.unwrap(),
        "198.18.1.10\n198.18.1.20"
    );
    assert_eq!(mac("ipv6s").await.unwrap(), "2001:db8:100:1::20");
    let doc = get("/latest/dynamic/instance-identity/document")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["instanceId"], I1);
    assert_eq!(v["privateIp"], "198.18.0.10");
    // 404 for an absent list and an unknown path.
    let c_eni = c.clone();
    match c_eni
        .get("/latest/meta-data/network/interfaces/macs/02:00:c6:12:01:03/ipv6s")
        .await
    {
        Err(imds::client::error::ImdsError::ErrorResponse(e)) => {
            assert_eq!(e.response().status().as_u16(), 404)
        }
        other => panic!("expected 404, got {other:?}"),
    }
    match c.get("/latest/meta-data/does-not-exist").await {
        Err(imds::client::error::ImdsError::ErrorResponse(e)) => {
            assert_eq!(e.response().status().as_u16(), 404)
        }
        other => panic!("expected 404, got {other:?}"),
    }
    // The other instance has its own listener.
    let c2 = imds_client(&sim, I2);
    assert_eq!(
        c2.get("/latest/meta-data/instance-id")
            .await
            .unwrap()
            .as_ref(),
        I2
    );
}

#[tokio::test]
async fn imds_credentials_and_region_providers() {
    use aws_sdk_ec2::config::ProvideCredentials;
    let sim = Sim::start(World::demo()).unwrap();
    let creds = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(imds_client(&sim, I1))
        .build()
        .provide_credentials()
        .await
        .unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert!(creds.session_token().is_some());
    let left = creds
        .expiry()
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(5 * 3600) && left <= Duration::from_secs(6 * 3600),
        "{left:?}"
    );
    let region = aws_config::imds::region::ImdsRegionProvider::builder()
        .imds_client(imds_client(&sim, I1))
        .build()
        .region()
        .await;
    assert_eq!(region.as_ref().map(|r| r.as_ref()), Some("us-west-2"));
}

#[tokio::test]
async fn imds_faults_reach_the_imds_client() {
    let sim = Sim::start(World::demo()).unwrap();
    sim.set_faults(Faults {
        imds_token_refused: true,
        ..Faults::default()
    });
    let err = imds_client(&sim, I1)
        .get("/latest/meta-data/instance-id")
        .await
        .unwrap_err();
    assert!(
        matches!(err, imds::client::error::ImdsError::FailedToLoadToken(_)),
        "{err:?}"
    );
    let text = format!("{}", DisplayErrorContext(&err));
    assert!(text.contains("forbidden"), "{text}");
    sim.set_faults(Faults {
        imds_down: true,
        ..Faults::default()
    });
    let err = imds_client(&sim, I1)
        .get("/latest/meta-data/instance-id")
        .await
        .unwrap_err();
    let text = format!("{}", DisplayErrorContext(&err));
    assert!(
        matches!(err, imds::client::error::ImdsError::FailedToLoadToken(_)),
        "{text}"
    );
    assert!(text.contains("StatusCode(503)"), "{text}");
    sim.set_faults(Faults::default());
    let c = imds_client(&sim, I1);
    assert_eq!(
        c.get("/latest/meta-data/instance-id")
            .await
            .unwrap()
            .as_ref(),
        I1
    );
    // Bounded eventual consistency: IMDS lags behind the assignment.
    sim.set_faults(Faults {
        consistency_lag_ms: 300,
        ..Faults::default()
    });
    sim.assign(ENI_B1, &["198.18.1.20".parse().unwrap()]);
    let p = format!("/latest/meta-data/network/interfaces/macs/{MAC_B1}/local-ipv4s");
    let start = std::time::Instant::now();
    let early = c.get(p.clone()).await.unwrap().as_ref().to_string();
    if start.elapsed() < Duration::from_millis(250) {
        assert_eq!(early, "198.18.1.10");
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(c.get(p).await.unwrap().as_ref(), "198.18.1.10\n198.18.1.20");
}
