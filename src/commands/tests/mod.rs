//! Command logic against the fakes: no root, no network.

pub(crate) mod fake;

use super::{add::add, check::check, del::del, gc::gc, Ctx};
use crate::cloud::CloudError;
use crate::cni::{Environment, ErrorCode, NetConf};
use crate::config::PluginConfig;
use crate::store::tests::temp_store;
use crate::store::Store;
use fake::{block, FakeAws, FakeHost, ENI, OTHER};
use serde_json::json;
use std::net::IpAddr;

struct Bed {
    aws: FakeAws,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        let (dir, store) = temp_store();
        Bed {
            aws: FakeAws::new(),
            store,
            _dir: dir,
        }
    }

    fn run<T>(
        &self,
        cmd: &str,
        container: &str,
        conf: serde_json::Value,
        f: impl AsyncFnOnce(&Ctx<'_, FakeAws, FakeHost>) -> T,
    ) -> T {
        let env = env(cmd, container);
        let conf = NetConf::parse(conf.to_string().as_bytes()).unwrap();
        let config = PluginConfig::from_map(&conf.raw).unwrap();
        let ctx = Ctx {
            env: &env,
            conf: &conf,
            config: &config,
            store: &self.store,
            aws: &self.aws,
            host: &FakeHost,
            deadline: std::time::Instant::now() + config.timeout,
        };
        block(f(&ctx))
    }
}

/// The runtime's environment for `cmd` on `container`'s net1.
fn env(cmd: &str, container: &str) -> Environment {
    Environment::from_vars(|k| match k {
        "CNI_COMMAND" => Some(cmd.to_string()),
        "CNI_CONTAINERID" => Some(container.to_string()),
        "CNI_IFNAME" => Some("net1".into()),
        "CNI_NETNS" => Some("/var/run/netns/pod".into()),
        _ => None,
    })
    .unwrap()
}

impl Bed {
    /// The next call of `action` fails with EC2 error `code`.
    fn fail_next(&self, action: &'static str, code: &str) {
        self.aws.fail_next.borrow_mut().insert(
            action,
            CloudError::Api {
                action,
                code: code.into(),
                message: format!("{code} (injected)"),
                maybe_applied: false,
            },
        );
    }
}

fn conf(addrs: &[&str]) -> serde_json::Value {
    let ips: Vec<_> = addrs
        .iter()
        .map(|a| json!({"address": a, "interface": 0}))
        .collect();
    json!({"cniVersion": "1.0.0", "name": "net", "type": "aws-eni-ip",
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": "/x"}], "ips": ips}})
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn add_assigns_with_one_call_per_family_and_records_it() {
    let bed = Bed::new();
    bed.run(
        "ADD",
        "c1",
        conf(&["198.18.1.5/24", "198.18.1.6/24", "2001:db8:100:1::5/64"]),
        add,
    )
    .unwrap();
    assert_eq!(
        bed.aws.holds(ENI),
        vec![ip("198.18.1.5"), ip("198.18.1.6"), ip("2001:db8:100:1::5")]
    );
    assert_eq!(bed.aws.count("AssignPrivateIpAddresses"), 1);
    assert_eq!(bed.aws.count("AssignIpv6Addresses"), 1);
    let record = &bed.store.all().unwrap()[0];
    assert_eq!(record.phase, crate::store::Phase::Assigned);
    assert_eq!(record.eni_id, ENI);
}

#[test]
fn a_repeated_add_is_harmless_even_without_reassignment() {
    let bed = Bed::new();
    let mut c = conf(&["198.18.1.5/24", "2001:db8:100:1::5/64"]);
    c["allowReassignment"] = json!(false);
    bed.run("ADD", "c1", c.clone(), add).unwrap();
    bed.run("ADD", "c1", c, add).unwrap();
    assert_eq!(bed.aws.holds(ENI).len(), 2);
    assert_eq!(bed.store.all().unwrap().len(), 1);
}

#[test]
fn an_ipv6_failure_takes_back_the_ipv4_of_the_same_add() {
    let bed = Bed::new();
    bed.fail_next("AssignIpv6Addresses", "PrivateIpAddressLimitExceeded");
    let e = bed
        .run(
            "ADD",
            "c1",
            conf(&["198.18.1.5/24", "2001:db8:100:1::5/64"]),
            add,
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AddressLimit);
    assert!(bed.aws.holds(ENI).is_empty(), "nothing half-done stays");
    assert!(
        bed.store.all().unwrap().is_empty(),
        "no record of a failed ADD"
    );
}

#[test]
fn a_transient_failure_keeps_the_write_ahead_record_for_del() {
    let bed = Bed::new();
    bed.aws.fail_next.borrow_mut().insert(
        "AssignPrivateIpAddresses",
        CloudError::Transient {
            action: "AssignPrivateIpAddresses",
            reason: "RequestLimitExceeded".into(),
        },
    );
    let e = bed
        .run("ADD", "c1", conf(&["198.18.1.5/24"]), add)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TryAgainLater);
    let records = bed.store.all().unwrap();
    assert_eq!(records[0].phase, crate::store::Phase::Assigning);
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert!(bed.store.all().unwrap().is_empty());
}

#[test]
fn del_leaves_an_address_that_moved_to_another_eni() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24", "198.18.1.6/24"]), add)
        .unwrap();
    // Another node took .5 over.
    bed.aws.move_addr("198.18.1.5", Some(ENI), Some(OTHER));
    let summary = bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert_eq!(summary.addresses, vec![ip("198.18.1.6")]);
    assert_eq!(bed.aws.holds(OTHER), vec![ip("198.18.1.5")]);
    assert!(bed.aws.holds(ENI).is_empty());
}

#[test]
fn del_of_a_deleted_eni_succeeds() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.fail_next(
        "UnassignPrivateIpAddresses",
        "InvalidNetworkInterfaceID.NotFound",
    );
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert!(bed.store.all().unwrap().is_empty());
}

#[test]
fn del_failing_for_a_permanent_reason_keeps_the_record_and_names_the_eni() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
    let e = bed.run("DEL", "c1", conf(&[]), del).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotAuthorized);
    assert!(
        e.msg.contains(ENI) && e.msg.contains("198.18.1.5"),
        "{}",
        e.msg
    );
    assert_eq!(bed.store.all().unwrap().len(), 1);
}

#[test]
fn check_names_the_missing_address_and_eni() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.run("CHECK", "c1", conf(&["198.18.1.5/24"]), check)
        .unwrap();
    bed.aws.move_addr("198.18.1.5", Some(ENI), None);
    let e = bed
        .run("CHECK", "c1", conf(&["198.18.1.5/24"]), check)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::CheckFailed);
    assert!(
        e.msg.contains("198.18.1.5") && e.msg.contains(ENI),
        "{}",
        e.msg
    );
}

#[test]
fn gc_keeps_going_past_a_failure_and_reports_it() {
    let bed = Bed::new();
    for (c, a) in [("a", "198.18.1.5/24"), ("b", "198.18.1.6/24")] {
        bed.run("ADD", c, conf(&[a]), add).unwrap();
    }
    bed.fail_next("UnassignPrivateIpAddresses", "UnauthorizedOperation");
    let mut c = conf(&[]);
    c["cniVersion"] = json!("1.1.0");
    c["cni.dev/valid-attachments"] = json!([]);
    let e = bed.run("GC", "", c, gc).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotAuthorized);
    assert_eq!(
        bed.store.all().unwrap().len(),
        1,
        "the other record was released"
    );
    assert_eq!(bed.aws.holds(ENI).len(), 1);
}

mod batching;
mod handoff;
mod hardening;
mod unknown;
