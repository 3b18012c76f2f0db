//! IPAM mode through the real binary against ec2-sim: the plugin is called as ipvlan/macvlan call
//! their IPAM (the parent's whole config on stdin, `ipam.type` = aws-eni-ip), for every cniVersion:
//! EC2-chosen and static addresses, the result's shape, gateway and prefix, DEL, CHECK, GC, and a
//! chained aws-eni-ip after it that makes no call.

mod common;

use common::*;
use serde_json::{json, Value};

/// The config macvlan hands its IPAM plugin: its own keys, and ours under `ipam`.
fn ipam_conf(fx: &Fixture, version: &str, ipam: Value) -> Value {
    let mut own = fx.plugin_conf(NODE1, ENI1);
    let master = own["master"].take();
    own.as_object_mut().unwrap().remove("master");
    for (k, v) in ipam.as_object().unwrap() {
        own[k] = v.clone();
    }
    json!({"cniVersion": version, "name": "ipam-net", "type": "macvlan", "master": master,
        "mode": "bridge", "ipam": own})
}

fn with_prev(mut conf: Value, version: &str, addrs: &[&str]) -> Value {
    conf["prevResult"] = prev_result(version, addrs);
    conf
}

fn run_ipam(command: &str, container: &str, conf: &Value, args: Option<&str>) -> Reply {
    let cni_args = match args {
        Some(extra) => format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=ran;K8S_POD_NAME=upf-0;{extra}"),
        None => "IgnoreUnknown=1;K8S_POD_NAMESPACE=ran;K8S_POD_NAME=upf-0".into(),
    };
    run_plugin_with(
        command,
        container,
        "net1",
        Some("/var/run/netns/unused"),
        conf.to_string().as_bytes(),
        &[("CNI_ARGS", cni_args.as_str())],
    )
}

#[test]
fn ec2_chooses_the_address_in_every_cni_version_with_gateway_and_prefix() {
    let fx = Fixture::new();
    let mut chosen = Vec::new();
    for (i, version) in versions().into_iter().enumerate() {
        let conf = ipam_conf(&fx, version, json!({}));
        let c = format!("ipam-{i}");
        let out = run_ipam("ADD", &c, &conf, None);
        out.ok();
        let r = &out.json;
        assert_eq!(r["cniVersion"], version);
        assert!(
            r.get("interfaces").is_none(),
            "an IPAM result names no interface"
        );
        let ips = r["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 1, "{r}");
        let address = ips[0]["address"].as_str().unwrap();
        assert!(address.ends_with("/24"), "the subnet's prefix: {address}");
        assert_eq!(ips[0]["gateway"], "198.18.1.1", "the VPC router");
        assert_eq!(
            ips[0].get("version").is_some(),
            version.starts_with("0."),
            "{version}: {r}"
        );
        let addr = address.split('/').next().unwrap().to_string();
        assert!(
            fx.addresses(ENI1).contains(&ip(&addr)),
            "{addr} is on the ENI"
        );
        chosen.push(addr.clone());

        // CHECK (0.4.0+) sees the chain's result as prevResult; DEL releases.
        let checked = with_prev(conf.clone(), version, &[address]);
        if version != "0.3.0" && version != "0.3.1" {
            run_ipam("CHECK", &c, &checked, None).ok();
        }
        let del = run_ipam("DEL", &c, &conf, None);
        del.ok();
        assert!(
            !fx.addresses(ENI1).contains(&ip(&addr)),
            "{version}: {addr} released: {}",
            fx.log_lines(NODE1).join("\n")
        );
    }
    assert_eq!(fx.calls("AssignPrivateIpAddresses"), 5, "one call per ADD");
}

#[test]
fn dual_stack_gets_one_address_of_each_family() {
    let fx = Fixture::new();
    let conf = ipam_conf(&fx, "1.0.0", json!({"ipv6": true}));
    let out = run_ipam("ADD", "dual", &conf, None);
    out.ok();
    let ips = out.json["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2, "{}", out.stdout);
    assert!(ips[1]["address"].as_str().unwrap().ends_with("/64"));
    assert!(
        ips[1].get("gateway").is_none(),
        "IPv6 takes its router from RAs"
    );
    assert_eq!(fx.addresses(ENI1).len(), 2);
    let del = run_ipam("DEL", "dual", &conf, None);
    del.ok();
    assert!(
        fx.addresses(ENI1).is_empty(),
        "{:?} {}",
        fx.addresses(ENI1),
        fx.log_lines(NODE1).join("\n")
    );
}

#[test]
fn static_addresses_follow_the_ips_capability_then_cni_args_then_the_config() {
    let fx = Fixture::new();
    let mut conf = ipam_conf(
        &fx,
        "1.1.0",
        json!({"addresses": ["198.18.1.63/24"], "routes": [{"dst": "198.18.64.0/18"}]}),
    );
    let config_only = run_ipam("ADD", "cfg", &conf, None);
    assert_eq!(config_only.json["ips"][0]["address"], "198.18.1.63/24");
    assert_eq!(config_only.json["routes"][0]["dst"], "198.18.64.0/18");
    let args = run_ipam("ADD", "args", &conf, Some("IP=198.18.1.62/24"));
    assert_eq!(
        args.json["ips"][0]["address"], "198.18.1.62/24",
        "{}",
        args.stdout
    );
    conf["runtimeConfig"] = json!({"ips": ["198.18.1.61/24"]});
    let runtime = run_ipam("ADD", "rt", &conf, Some("IP=198.18.1.62/24"));
    assert_eq!(
        runtime.json["ips"][0]["address"], "198.18.1.61/24",
        "{}",
        runtime.stdout
    );
    let mut held = fx.addresses(ENI1);
    held.sort();
    assert_eq!(
        held,
        vec![ip("198.18.1.61"), ip("198.18.1.62"), ip("198.18.1.63")]
    );
    for c in ["cfg", "args", "rt"] {
        run_ipam("DEL", c, &conf, None).ok();
    }
    assert!(fx.addresses(ENI1).is_empty());
}

#[test]
fn a_static_address_that_a_vpc_cni_eni_holds_is_refused_as_in_chained_mode() {
    let fx = Fixture::new();
    fx.sim.assign(ENI_MANAGED, &[ip("198.18.1.64")]);
    let mut conf = ipam_conf(&fx, "1.0.0", json!({}));
    conf["runtimeConfig"] = json!({"ips": ["198.18.1.64/24"]});
    let r = run_ipam("ADD", "c", &conf, None);
    assert_eq!(r.err_code(), 107, "{}", r.stdout);
    assert!(r.msg().contains(ENI_MANAGED), "{}", r.msg());
}

#[test]
fn ipv6_on_an_ipv4_only_subnet_is_code_7_naming_the_subnet() {
    let mut world = ec2_sim::World::demo();
    for s in &mut world.subnets {
        s.ipv6_cidr = None;
    }
    for e in &mut world.enis {
        e.ipv6s.clear();
    }
    let fx = Fixture::with_world(world);
    let conf = ipam_conf(&fx, "1.0.0", json!({"ipv6": true}));
    let r = run_ipam("ADD", "c", &conf, None);
    assert_eq!(r.err_code(), 7, "{}", r.stdout);
    assert!(r.msg().contains("subnet-"), "{}", r.msg());
    assert_eq!(fx.calls("AssignPrivateIpAddresses"), 0);
}

#[test]
fn gc_releases_ipam_attachments_the_runtime_no_longer_lists() {
    let fx = Fixture::new();
    let conf = ipam_conf(&fx, "1.1.0", json!({}));
    run_ipam("ADD", "keep", &conf, None).ok();
    run_ipam("ADD", "gone", &conf, None).ok();
    assert_eq!(fx.addresses(ENI1).len(), 2);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "net1"}]);
    run_plugin("GC", "", "", None, &gc).ok();
    assert_eq!(fx.addresses(ENI1).len(), 1);
    assert_eq!(fx.records(NODE1).len(), 1);
}

#[test]
fn chained_aws_eni_ip_after_ipam_mode_makes_no_call() {
    let fx = Fixture::new();
    let conf = ipam_conf(&fx, "1.0.0", json!({}));
    let out = run_ipam("ADD", "both", &conf, None);
    out.ok();
    let address = out.json["ips"][0]["address"].as_str().unwrap().to_string();
    let before = fx.sim.calls();
    // The chain's next plugin: aws-eni-ip chained, same network name, prevResult from macvlan.
    let mut chained = fx.conf(
        "1.0.0",
        NODE1,
        ENI1,
        Some(prev_result("1.0.0", &[&address])),
    );
    chained["name"] = json!("ipam-net");
    fx.run("ADD", "both", "net1", &chained).ok();
    assert_eq!(fx.sim.calls().ec2, before.ec2, "no EC2 call");
    // DEL runs in reverse: the chained plugin first, then macvlan's IPAM.
    fx.run("DEL", "both", "net1", &chained).ok();
    run_ipam("DEL", "both", &conf, None).ok();
    assert!(fx.addresses(ENI1).is_empty());
}
