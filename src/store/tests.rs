//! The store against a temp dir: layout, quarantine, torn records, modes, node-wide refcounts, locks.
use super::*;

/// A state dir and a node dir in a fresh temporary directory (kept while the TempDir lives).
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("state"),
        NodeDir::new(dir.path().join("node")),
    )
    .unwrap();
    (dir, store)
}

fn record(container: &str, eni: &str, addrs: &[&str]) -> Attachment {
    Attachment {
        network: "net-a".into(),
        container_id: container.into(),
        ifname: "net1".into(),
        eni_id: eni.into(),
        mac: "02:00:c6:12:01:01".into(),
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        phase: Phase::Assigned,
        created_unix: 1,
        netns: None,
        pod: None,
        instance_id: None,
        adopted: Vec::new(),
        by_ipam: false,
        follow: None,
        release_error: None,
        committed_unix_ms: None,
        eni_before: None,
    }
}

#[test]
fn put_get_remove_and_list() {
    let (_dir, store) = temp_store();
    let r = record("c1", "eni-1", &["198.18.1.5"]);
    store.put(&r).unwrap();
    assert_eq!(store.get(&r.key()).unwrap(), Some(r.clone()));
    assert_eq!(store.all().unwrap(), vec![r.clone()]);
    store.remove(&r.key()).unwrap();
    store.remove(&r.key()).unwrap();
    assert_eq!(store.get(&r.key()).unwrap(), None);
}

#[test]
fn state_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    Store::open(&root, NodeDir::new(dir.path().join("node"))).unwrap();
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn an_address_held_by_another_record_on_the_same_eni_is_not_releasable() {
    let (_dir, store) = temp_store();
    let a = record("c1", "eni-1", &["198.18.1.5", "198.18.1.6"]);
    let b = record("c2", "eni-1", &["198.18.1.5"]);
    let c = record("c3", "eni-2", &["198.18.1.6"]);
    for r in [&a, &b, &c] {
        store.put(r).unwrap();
    }
    assert_eq!(
        store.releasable(&a).unwrap(),
        vec!["198.18.1.6".parse::<IpAddr>().unwrap()]
    );
    store.remove(&b.key()).unwrap();
    assert_eq!(store.releasable(&a).unwrap().len(), 2);
}

fn two_stores(dir: &Path) -> (Store, Store) {
    let node = NodeDir::new(dir.join("node"));
    (
        Store::open(&dir.join("a"), node.clone()).unwrap(),
        Store::open(&dir.join("b"), node).unwrap(),
    )
}

#[test]
fn a_corrupt_record_is_quarantined_and_blocks_neither_listing_nor_its_own_lookup() {
    let (_dir, store) = temp_store();
    let bad = record("c1", "eni-1", &["198.18.1.5"]);
    let good = record("c2", "eni-1", &["198.18.1.6"]);
    store.put(&bad).unwrap();
    store.put(&good).unwrap();
    for p in [
        store.record_path(&bad.key()).unwrap(),
        wal_path(&store.record_path(&bad.key()).unwrap()),
    ] {
        std::fs::write(p, b"{not json").unwrap();
    }
    assert_eq!(store.all().unwrap(), vec![good.clone()]);
    assert_eq!(store.quarantined(), 1);
    assert_eq!(store.get(&bad.key()).unwrap(), None);
    assert!(
        !store.record_path(&bad.key()).unwrap().exists(),
        "moved aside"
    );
    assert_eq!(store.releasable(&good).unwrap().len(), 1);
}

#[test]
fn a_record_torn_by_a_power_loss_after_update_is_read_from_its_durable_version() {
    let (_dir, store) = temp_store();
    let mut r = record("c1", "eni-1", &["198.18.1.5"]);
    r.phase = Phase::Assigning;
    store.put(&r).unwrap();
    let mut done = r.clone();
    done.phase = Phase::Assigned;
    store.update(&done).unwrap();
    assert_eq!(store.get(&r.key()).unwrap(), Some(done));
    // What a rename committed before its data leaves behind.
    std::fs::write(store.record_path(&r.key()).unwrap(), b"").unwrap();
    assert_eq!(store.get(&r.key()).unwrap(), Some(r.clone()));
    assert_eq!(store.all().unwrap(), vec![r.clone()]);
    assert_eq!(store.quarantined(), 0);
    store.remove(&r.key()).unwrap();
    assert!(!wal_path(&store.record_path(&r.key()).unwrap()).exists());
}

#[test]
fn a_read_only_store_skips_a_corrupt_record_and_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeDir::new(dir.path().join("node"));
    let store = Store::open(&dir.path().join("state"), node.clone()).unwrap();
    let r = record("c1", "eni-1", &["198.18.1.5"]);
    store.put(&r).unwrap();
    for p in [
        store.record_path(&r.key()).unwrap(),
        wal_path(&store.record_path(&r.key()).unwrap()),
    ] {
        std::fs::write(p, b"{not json").unwrap();
    }
    let view = Store::open_existing(&dir.path().join("state"), node).unwrap();
    assert!(view.all().unwrap().is_empty());
    assert!(
        store.record_path(&r.key()).unwrap().exists(),
        "left in place"
    );
    assert!(Store::open_existing(&dir.path().join("absent"), NodeDir::new(dir.path())).is_err());
    assert!(!dir.path().join("absent").exists(), "created nothing");
}

#[test]
fn an_existing_state_dir_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    Store::open(&root, NodeDir::new(dir.path().join("node"))).unwrap();
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "not ours: its mode is left alone");
    let ours = std::fs::metadata(root.join("attachments"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(ours, 0o700);
}

#[test]
fn the_refcount_sees_records_of_every_state_dir_on_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_stores(dir.path());
    let ra = record("c1", "eni-1", &["198.18.1.5", "198.18.1.6"]);
    let mut rb = record("c2", "eni-1", &["198.18.1.5"]);
    rb.network = "net-b".into();
    a.put(&ra).unwrap();
    b.put(&rb).unwrap();
    assert_eq!(
        a.releasable(&ra).unwrap(),
        vec!["198.18.1.6".parse::<IpAddr>().unwrap()],
        "net-b's record in another state dir holds .5"
    );
    assert_eq!(a.node().state_dirs().len(), 3);
}

#[test]
fn adopted_addresses_are_never_releasable() {
    let (_dir, store) = temp_store();
    let mut r = record("c1", "eni-1", &["198.18.1.5", "198.18.1.6"]);
    r.adopted = vec!["198.18.1.5".parse().unwrap()];
    store.put(&r).unwrap();
    assert_eq!(
        store.releasable(&r).unwrap(),
        vec!["198.18.1.6".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn a_lock_held_past_the_deadline_times_out_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_stores(dir.path());
    let addr: IpAddr = "198.18.1.5".parse().unwrap();
    let held = a
        .lock_addresses(&[addr], Instant::now() + std::time::Duration::from_secs(1))
        .unwrap();
    let started = Instant::now();
    let e = b
        .lock_addresses(
            &[addr],
            Instant::now() + std::time::Duration::from_millis(200),
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::LockTimeout { .. }), "{e}");
    assert!(e.to_string().contains("198.18.1.5.lock"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    drop(held);
    b.lock_addresses(
        &[addr],
        Instant::now() + std::time::Duration::from_millis(200),
    )
    .unwrap();
}

/// Records are read as root by the agent and DEL: a hostile file costs one warning, never a
/// hang, a path outside the state dir, or memory.
#[test]
fn a_hostile_record_file_blocks_nothing_and_is_set_aside() {
    let (dir, store) = temp_store();
    let good = record("c0", "eni-1", &["198.18.1.5"]);
    store.put(&good).unwrap();
    let net = dir.path().join("state/attachments/net-a");
    // A FIFO: a plain read would wait for a writer forever.
    nix::unistd::mkfifo(&net.join("fifo:net1.json"), nix::sys::stat::Mode::S_IRUSR).unwrap();
    // A symlink to a file that is not ours.
    std::os::unix::fs::symlink("/etc/hostname", net.join("link:net1.json")).unwrap();
    // Larger than any record.
    std::fs::write(net.join("big:net1.json"), vec![b' '; 2 << 20]).unwrap();
    // A record whose contents name another attachment (its DEL would remove another file).
    let mut other = record("c9", "eni-1", &["198.18.1.9"]);
    other.network = "../../../etc".into();
    std::fs::write(
        net.join("liar:net1.json"),
        serde_json::to_vec(&other).unwrap(),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = store.clone();
    std::thread::spawn(move || tx.send(reader.all()).unwrap());
    let all = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("listing records never hangs")
        .unwrap();
    assert_eq!(all, vec![good]);
    assert_eq!(store.quarantined(), 4);
    assert!(std::path::Path::new("/etc/hostname").exists());
}

#[test]
fn a_key_that_could_name_another_path_is_refused() {
    let (_dir, store) = temp_store();
    for (network, container, ifname) in [
        ("..", "c1", "net1"),
        ("net/a", "c1", "net1"),
        ("net", "../c1", "net1"),
        ("net", "c1", "a/b"),
        ("net", "c\0", "net1"),
        ("net", "c:1", "net1"),
        ("net", "", "net1"),
    ] {
        let mut r = record("c1", "eni-1", &["198.18.1.5"]);
        r.network = network.into();
        r.container_id = container.into();
        r.ifname = ifname.into();
        assert!(
            matches!(store.put(&r), Err(StoreError::BadKey { .. })),
            "{network:?}/{container:?}:{ifname:?}"
        );
        assert!(matches!(
            store.remove(&r.key()),
            Err(StoreError::BadKey { .. })
        ));
    }
    let long = record(&"c".repeat(201), "eni-1", &[]);
    assert!(matches!(store.put(&long), Err(StoreError::BadKey { .. })));
}
