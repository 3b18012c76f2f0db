//! Wire compatibility of the node side's actions: the real aws-sdk-ec2 and aws-sdk-autoscaling
//! clients parse every reply and every error code of the reservation, ENI and lifecycle actions.

use aws_sdk_autoscaling as autoscaling;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ResourceType, SubnetCidrReservationType, Tag, TagSpecification};
use ec2_sim::{Sim, World};

const SUBNET: &str = "subnet-0sim000000000002";
const I1: &str = "i-0a1b2c3d4e5f60001";

fn ec2(sim: &Sim) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new("AKIDSIMTEST", "s", None, None, "test"))
        .endpoint_url(sim.ec2_url())
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

fn asg(sim: &Sim) -> autoscaling::Client {
    let conf = autoscaling::Config::builder()
        .behavior_version(autoscaling::config::BehaviorVersion::latest())
        .region(autoscaling::config::Region::new("us-west-2"))
        .credentials_provider(autoscaling::config::Credentials::new(
            "AKIDSIMTEST",
            "s",
            None,
            None,
            "test",
        ))
        .endpoint_url(sim.autoscaling_url())
        .build();
    autoscaling::Client::from_conf(conf)
}

#[tokio::test]
async fn subnet_cidr_reservations_round_trip_through_the_sdk() {
    let sim = Sim::start(World::demo()).unwrap();
    let c = ec2(&sim);
    let out = c
        .create_subnet_cidr_reservation()
        .subnet_id(SUBNET)
        .cidr("198.18.1.128/25")
        .reservation_type(SubnetCidrReservationType::Explicit)
        .description("multus pods")
        .send()
        .await
        .unwrap();
    let r = out.subnet_cidr_reservation().unwrap();
    assert_eq!(r.cidr(), Some("198.18.1.128/25"));
    assert_eq!(
        r.reservation_type(),
        Some(&SubnetCidrReservationType::Explicit)
    );
    assert_eq!(r.description(), Some("multus pods"));
    let id = r.subnet_cidr_reservation_id().unwrap().to_string();
    c.create_subnet_cidr_reservation()
        .subnet_id(SUBNET)
        .cidr("2001:db8:100:1::/80")
        .reservation_type(SubnetCidrReservationType::Prefix)
        .send()
        .await
        .unwrap();
    let got = c
        .get_subnet_cidr_reservations()
        .subnet_id(SUBNET)
        .send()
        .await
        .unwrap();
    assert_eq!(got.subnet_ipv4_cidr_reservations().len(), 1);
    assert_eq!(got.subnet_ipv6_cidr_reservations().len(), 1);
    assert_eq!(
        got.subnet_ipv6_cidr_reservations()[0].reservation_type(),
        Some(&SubnetCidrReservationType::Prefix)
    );
    let err = c
        .create_subnet_cidr_reservation()
        .subnet_id(SUBNET)
        .cidr("198.18.1.192/26")
        .reservation_type(SubnetCidrReservationType::Explicit)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    let del = c
        .delete_subnet_cidr_reservation()
        .subnet_cidr_reservation_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        del.deleted_subnet_cidr_reservation()
            .and_then(|r| r.subnet_cidr_reservation_id()),
        Some(id.as_str())
    );
}

#[tokio::test]
async fn an_eni_is_created_tagged_attached_modified_detached_and_deleted_through_the_sdk() {
    let sim = Sim::start(World::demo()).unwrap();
    let c = ec2(&sim);
    let created = c
        .create_network_interface()
        .subnet_id(SUBNET)
        .private_ip_address("198.18.1.40")
        .groups("sg-0123456789abcdef0")
        .description("multus")
        .client_token("tok-1")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::NetworkInterface)
                .tags(
                    Tag::builder()
                        .key("node.k8s.amazonaws.com/no_manage")
                        .value("true")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.client_token(), Some("tok-1"));
    let ni = created.network_interface().unwrap();
    let id = ni.network_interface_id().unwrap().to_string();
    assert_eq!(ni.private_ip_address(), Some("198.18.1.40"));
    assert_eq!(ni.subnet_id(), Some(SUBNET));
    assert_eq!(ni.tag_set().len(), 1);
    assert_eq!(ni.groups()[0].group_id(), Some("sg-0123456789abcdef0"));
    assert!(ni.mac_address().is_some_and(|m| m.len() == 17));
    let err = c
        .create_network_interface()
        .subnet_id(SUBNET)
        .private_ip_address("198.18.1.40")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidIPAddress.InUse"));
    let att = c
        .attach_network_interface()
        .network_interface_id(&id)
        .instance_id("i-0a1b2c3d4e5f60002")
        .device_index(2)
        .send()
        .await
        .unwrap();
    let attachment = att.attachment_id().unwrap().to_string();
    assert_eq!(att.network_card_index(), Some(0));
    c.modify_network_interface_attribute()
        .network_interface_id(&id)
        .attachment(
            aws_sdk_ec2::types::NetworkInterfaceAttachmentChanges::builder()
                .attachment_id(&attachment)
                .delete_on_termination(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let d = c
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values("i-0a1b2c3d4e5f60002")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ours = d
        .network_interfaces()
        .iter()
        .find(|n| n.network_interface_id() == Some(id.as_str()))
        .unwrap();
    let a = ours.attachment().unwrap();
    assert_eq!(
        (a.device_index(), a.delete_on_termination()),
        (Some(2), Some(true))
    );
    let err = c
        .delete_network_interface()
        .network_interface_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidNetworkInterface.InUse"));
    c.detach_network_interface()
        .attachment_id(&attachment)
        .send()
        .await
        .unwrap();
    c.delete_network_interface()
        .network_interface_id(&id)
        .send()
        .await
        .unwrap();
    assert!(sim.state().eni(&id).is_none());
    let inst = c
        .describe_instances()
        .instance_ids(I1)
        .send()
        .await
        .unwrap();
    let az = inst.reservations()[0].instances()[0]
        .placement()
        .and_then(|p| p.availability_zone());
    assert_eq!(az, Some("us-west-2a"));
}

#[tokio::test]
async fn complete_lifecycle_action_and_its_validation_error_reach_the_autoscaling_sdk() {
    let sim = Sim::start(World::demo()).unwrap();
    let a = sim.open_lifecycle_action(
        "ng",
        "launch",
        I1,
        "autoscaling:EC2_INSTANCE_LAUNCHING",
        None,
    );
    let c = asg(&sim);
    let complete = || {
        c.complete_lifecycle_action()
            .auto_scaling_group_name("ng")
            .lifecycle_hook_name("launch")
            .lifecycle_action_token(&a.lifecycle_action_token)
            .instance_id(I1)
            .lifecycle_action_result("ABANDON")
            .send()
    };
    complete().await.unwrap();
    let err = complete().await.unwrap_err();
    assert_eq!(err.code(), Some("ValidationError"));
    assert!(err
        .message()
        .unwrap()
        .contains("No active Lifecycle Action"));
    assert_eq!(
        sim.lifecycle_actions()[0].result.as_deref(),
        Some("ABANDON")
    );
}
