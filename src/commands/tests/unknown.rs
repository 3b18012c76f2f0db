//! IPAM mode's count-based assign whose outcome is unknown: a retry keeps exactly the one address
//! EC2 chose, and DEL releases it, without asking EC2 for another.

use super::fake::{FakeAws, FakeHost, ENI};
use super::*;
use crate::commands::ipam;
use crate::config::ipam::IpamConfig;

fn ipam_conf() -> serde_json::Value {
    json!({"cniVersion": "1.0.0", "name": "ipam-net", "type": "macvlan", "master": "eth1",
        "ipam": {"type": "aws-eni-ip"}})
}

impl Bed {
    fn ipam(&self, cmd: &str, container: &str) -> Result<Vec<IpAddr>, crate::cni::CniError> {
        let env = env(cmd, container);
        let conf = NetConf::parse(ipam_conf().to_string().as_bytes()).unwrap();
        let ipam = IpamConfig::from_netconf(&conf.raw).unwrap();
        let ctx = Ctx {
            env: &env,
            conf: &conf,
            config: &ipam.plugin,
            store: &self.store,
            aws: &self.aws,
            host: &FakeHost,
            deadline: std::time::Instant::now() + ipam.plugin.timeout,
        };
        block(async {
            match cmd {
                "ADD" => ipam::add(&ctx, &ipam).await.map(|(_, s)| s.addresses),
                _ => del(&ctx).await.map(|s| s.addresses),
            }
        })
    }
}

fn held(aws: &FakeAws) -> Vec<IpAddr> {
    let mut h = aws.holds(ENI);
    h.retain(|a| *a != ip("198.18.1.10"));
    h
}

#[test]
fn a_count_assign_whose_answer_was_lost_is_found_on_retry_not_taken_twice() {
    let bed = Bed::new();
    *bed.aws.applied_by_an_earlier_attempt.borrow_mut() = true;
    let e = bed.ipam("ADD", "c1").unwrap_err();
    assert_eq!(e.code, ErrorCode::TryAgainLater);
    let chosen = held(&bed.aws);
    assert_eq!(chosen.len(), 1, "EC2 carried it out: {chosen:?}");
    let kept = bed.store.all().unwrap();
    assert_eq!(kept.len(), 1, "the write-ahead record stays for the retry");
    // The runtime retries ADD: it finds what EC2 chose and asks for nothing more.
    let calls = bed.aws.count("AssignPrivateIpAddresses");
    let got = bed.ipam("ADD", "c1").unwrap();
    assert_eq!(got, chosen);
    assert_eq!(bed.aws.count("AssignPrivateIpAddresses"), calls);
    assert_eq!(held(&bed.aws), chosen, "exactly one address");
    bed.ipam("DEL", "c1").unwrap();
    assert!(held(&bed.aws).is_empty());
    assert!(bed.store.all().unwrap().is_empty());
}

#[test]
fn del_after_a_lost_count_assign_releases_what_ec2_chose() {
    let bed = Bed::new();
    // Another pod's address on the same ENI must stay.
    bed.ipam("ADD", "c0").unwrap();
    let theirs = held(&bed.aws);
    *bed.aws.applied_by_an_earlier_attempt.borrow_mut() = true;
    bed.ipam("ADD", "c1").unwrap_err();
    assert_eq!(held(&bed.aws).len(), 2);
    bed.ipam("DEL", "c1").unwrap();
    assert_eq!(held(&bed.aws), theirs, "no leak, and c0 keeps its own");
}
