//! The hardening rules (issue 11), each against the fake: one bad file, one unusual EC2 answer or
//! one odd config never costs a pod its address.

use super::fake::{INSTANCE, MAC, MANAGED};
use super::*;
use crate::store::{CachedEni, Phase};

fn record_file(bed: &Bed, container: &str) -> std::path::PathBuf {
    bed.store
        .root()
        .join("attachments/net")
        .join(format!("{container}:net1.json"))
}

fn on_eth2(mut c: serde_json::Value) -> serde_json::Value {
    c["master"] = json!("eth2");
    c
}

#[test]
fn a_corrupt_record_blocks_no_del_or_gc_and_its_own_del_succeeds() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.run("ADD", "c2", conf(&["198.18.1.6/24"]), add).unwrap();
    let file = record_file(&bed, "c1");
    std::fs::write(&file, b"\0\0garbage").unwrap();
    std::fs::write(file.with_extension("json.wal"), b"{").unwrap();
    bed.run("DEL", "c2", conf(&[]), del).unwrap();
    assert!(!bed.aws.holds(ENI).contains(&ip("198.18.1.6")));
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert_eq!(bed.store.quarantined(), 1);
    let mut c = conf(&[]);
    c["cniVersion"] = json!("1.1.0");
    c["cni.dev/valid-attachments"] = json!([]);
    bed.run("GC", "", c, gc).unwrap();
}

#[test]
fn a_record_torn_by_a_power_loss_after_add_still_releases_on_del() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    std::fs::write(record_file(&bed, "c1"), b"").unwrap();
    let s = bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert_eq!(s.addresses, vec![ip("198.18.1.5")]);
    assert!(bed.aws.holds(ENI).is_empty());
}

#[test]
fn ipv6_takeover_decides_from_the_holder_not_from_the_error_code() {
    let bed = Bed::new();
    *bed.aws.in_use_code.borrow_mut() = "InvalidParameterValue";
    bed.aws.move_addr("2001:db8:100:1::5", None, Some(OTHER));
    let s = bed
        .run("ADD", "c1", conf(&["2001:db8:100:1::5/64"]), add)
        .unwrap()
        .1;
    assert_eq!(bed.aws.holds(ENI), vec![ip("2001:db8:100:1::5")]);
    assert!(bed.aws.holds(OTHER).is_empty());
    assert!(s.note.contains(OTHER), "{}", s.note);
}

#[test]
fn ipv6_takeover_retries_while_ec2_still_reports_the_moved_address_in_use() {
    let bed = Bed::new();
    *bed.aws.remap_lag.borrow_mut() = 2;
    bed.aws.move_addr("2001:db8:100:1::5", None, Some(OTHER));
    bed.run("ADD", "c1", conf(&["2001:db8:100:1::5/64"]), add)
        .unwrap();
    assert_eq!(bed.aws.holds(ENI), vec![ip("2001:db8:100:1::5")]);
    assert_eq!(
        *bed.aws.remap_lag.borrow(),
        0,
        "the lag was met and waited out"
    );
}

#[test]
fn guarded_reassignment_refuses_an_address_a_vpc_cni_eni_holds() {
    for addr in ["198.18.1.5", "2001:db8:100:1::5"] {
        let bed = Bed::new();
        bed.aws.move_addr(addr, None, Some(MANAGED));
        let prefix = if addr.contains(':') { 64 } else { 24 };
        let e = bed
            .run("ADD", "c1", conf(&[&format!("{addr}/{prefix}")]), add)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AddressInUse, "{addr}: {e}");
        for name in [MANAGED, "i-0a1b2c3d4e5f60009", "of i-0a1b2c3d4e5f60009"] {
            assert!(e.msg.contains(name), "{addr}: {} lacks {name}", e.msg);
        }
        assert_eq!(bed.aws.holds(MANAGED), vec![ip(addr)], "{addr}: untouched");
        assert!(
            bed.store.all().unwrap().is_empty(),
            "no record of a refused ADD"
        );
    }
}

#[test]
fn a_free_address_costs_exactly_one_mutating_call_and_no_describe() {
    let bed = Bed::new();
    bed.run("ADD", "c0", conf(&["198.18.1.4/24"]), add).unwrap();
    let (m, d) = (
        bed.aws.mutating(),
        bed.aws.count("DescribeNetworkInterfaces"),
    );
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    assert_eq!(bed.aws.mutating() - m, 1);
    assert_eq!(bed.aws.count("DescribeNetworkInterfaces") - d, 0);
}

#[test]
fn an_address_on_a_tagged_eni_is_taken_over_and_refused_without_reassignment() {
    let bed = Bed::new();
    bed.aws.move_addr("198.18.1.5", None, Some(OTHER));
    let mut strict = conf(&["198.18.1.5/24"]);
    strict["allowReassignment"] = json!(false);
    let e = bed.run("ADD", "c1", strict, add).unwrap_err();
    assert_eq!(e.code, ErrorCode::AddressInUse);
    assert!(
        e.msg.contains(OTHER) && e.msg.contains("allowReassignment"),
        "{}",
        e.msg
    );
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    assert_eq!(bed.aws.holds(ENI), vec![ip("198.18.1.5")]);
    assert!(bed.aws.holds(OTHER).is_empty());
}

#[test]
fn del_of_an_eni_no_longer_attached_here_drops_the_record_without_touching_ec2() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    assert_eq!(
        bed.store.all().unwrap()[0].instance_id.as_deref(),
        Some(INSTANCE)
    );
    bed.aws.detached.borrow_mut().push(MAC.into());
    let before = bed.aws.mutating();
    let s = bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert!(s.note.contains("no longer attached"), "{}", s.note);
    assert_eq!(bed.aws.mutating(), before, "EC2 untouched");
    assert!(bed.store.all().unwrap().is_empty());
}

#[test]
fn an_address_already_on_the_eni_is_adopted_and_never_released() {
    let bed = Bed::new();
    bed.aws.move_addr("198.18.1.5", None, Some(ENI)); // a VIP another tool assigned
    let s = bed
        .run("ADD", "c1", conf(&["198.18.1.5/24", "198.18.1.6/24"]), add)
        .unwrap()
        .1;
    assert!(s.note.contains("adopted 198.18.1.5"), "{}", s.note);
    assert_eq!(bed.store.all().unwrap()[0].adopted, vec![ip("198.18.1.5")]);
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert_eq!(bed.aws.holds(ENI), vec![ip("198.18.1.5")]);
}

#[test]
fn a_repeated_add_is_not_adoption() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    assert!(bed.store.all().unwrap()[0].adopted.is_empty());
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert!(bed.aws.holds(ENI).is_empty());
}

#[test]
fn a_repeated_add_after_a_crash_before_its_record_update_is_not_adoption() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    let mut r = bed.store.all().unwrap().remove(0);
    r.phase = Phase::Assigning;
    bed.store.put(&r).unwrap();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    assert!(bed.store.all().unwrap()[0].adopted.is_empty());
}

#[test]
fn a_pod_sharing_an_adopted_address_keeps_it_adopted() {
    let bed = Bed::new();
    bed.aws.move_addr("198.18.1.5", None, Some(ENI));
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.run("ADD", "c2", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.run("DEL", "c1", conf(&[]), del).unwrap();
    bed.run("DEL", "c2", conf(&[]), del).unwrap();
    assert_eq!(bed.aws.holds(ENI), vec![ip("198.18.1.5")]);
}

#[test]
fn a_repeated_add_on_another_eni_releases_what_the_first_one_assigned() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    bed.run("ADD", "c1", on_eth2(conf(&["198.18.1.6/24"])), add)
        .unwrap();
    assert!(
        bed.aws.holds(ENI).is_empty(),
        "nothing leaks on the first ENI"
    );
    assert_eq!(bed.aws.holds(OTHER), vec![ip("198.18.1.6")]);
    let records = bed.store.all().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].eni_id, OTHER);
    assert_eq!(records[0].addresses, vec![ip("198.18.1.6")]);
}

#[test]
fn a_lock_held_past_the_deadline_is_code_11_naming_the_lock() {
    let bed = Bed::new();
    let _held = bed
        .store
        .lock_addresses(
            &[ip("198.18.1.5")],
            std::time::Instant::now() + std::time::Duration::from_secs(5),
        )
        .unwrap();
    let mut c = conf(&["198.18.1.5/24"]);
    c["timeoutMs"] = json!(1000);
    let started = std::time::Instant::now();
    let e = bed.run("ADD", "c1", c, add).unwrap_err();
    assert_eq!(e.code, ErrorCode::TryAgainLater, "{e}");
    assert!(e.msg.contains("198.18.1.5.lock"), "{}", e.msg);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[test]
fn a_cache_written_before_the_primary_ip_guard_is_refreshed() {
    let bed = Bed::new();
    let mut facts = bed.aws.facts[MAC].clone();
    facts.primary_ipv4 = None;
    facts.instance_id = None;
    bed.store.cache_eni(&CachedEni {
        facts,
        unmanaged_verified: true,
    });
    let e = bed
        .run("ADD", "c1", conf(&["198.18.1.10/24"]), add)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AddressInUse, "{e}");
    assert!(e.msg.contains("primary IP"), "{}", e.msg);
}

#[test]
fn release_never_unassigns_the_enis_primary_ip() {
    let bed = Bed::new();
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    // A record written before the guard existed, holding the node's own address.
    let mut r = bed.store.all().unwrap().remove(0);
    r.addresses.push(ip("198.18.1.10"));
    bed.store.put(&r).unwrap();
    let s = bed.run("DEL", "c1", conf(&[]), del).unwrap();
    assert_eq!(s.addresses, vec![ip("198.18.1.5")]);
    assert!(bed.store.all().unwrap().is_empty());
}

#[test]
fn more_than_64_pod_addresses_is_code_7() {
    let bed = Bed::new();
    let many: Vec<String> = (1..=65).map(|i| format!("198.18.2.{i}/24")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = bed.run("ADD", "c1", conf(&refs), add).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidConfig);
    assert!(e.msg.contains("65") && e.msg.contains("64"), "{}", e.msg);
    assert_eq!(bed.aws.calls.borrow().len(), 0, "refused before any call");
}

#[test]
fn an_imds_404_for_a_mac_ec2_shows_attached_here_is_retried() {
    let bed = Bed::new();
    bed.aws.imds_lag.borrow_mut().insert(MAC.into(), 2);
    bed.run("ADD", "c1", conf(&["198.18.1.5/24"]), add).unwrap();
    assert_eq!(bed.aws.holds(ENI), vec![ip("198.18.1.5")]);
}

#[test]
fn an_imds_404_that_outlasts_the_deadline_is_code_11_and_an_unknown_mac_is_102() {
    let bed = Bed::new();
    bed.aws.imds_lag.borrow_mut().insert(MAC.into(), 1000);
    let mut c = conf(&["198.18.1.5/24"]);
    c["timeoutMs"] = json!(1000);
    let e = bed.run("ADD", "c1", c, add).unwrap_err();
    assert_eq!(e.code, ErrorCode::TryAgainLater, "{e}");
    assert!(e.msg.contains(MAC) && e.msg.contains(ENI), "{}", e.msg);
    let mut unknown = conf(&["198.18.1.5/24"]);
    unknown["master"] = json!("eth9");
    let e = bed.run("ADD", "c2", unknown, add).unwrap_err();
    assert_eq!(e.code, ErrorCode::EniNotFound, "{e}");
}
