//! The follower: which pod interfaces are watched, and the debounce.

use super::*;

/// Watches whose addresses the test sets, and whose events never come (the test feeds them).
struct FakeSource(std::collections::HashMap<String, Vec<IpAddr>>);
struct Silent;

impl AddressWatch for Silent {
    async fn next(&mut self) -> std::io::Result<Vec<AddressChange>> {
        std::future::pending().await
    }
}

impl AddressSource for FakeSource {
    type Watch = Silent;
    fn open(&self, netns: &Path, ifname: &str) -> Result<(Silent, Vec<IpAddr>), HostError> {
        self.0
            .get(netns.to_str().unwrap())
            .map(|a| (Silent, a.clone()))
            .ok_or(HostError::NoPodInterface {
                ifname: ifname.into(),
                netns: netns.display().to_string(),
            })
    }
}

fn in_local_set<T>(f: impl FnOnce() -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async { f() })
}

#[test]
fn sync_catches_up_with_what_the_pod_has_and_lost_what_it_lost() {
    in_local_set(|| {
        let pod = "/var/run/netns/c1";
        let source = FakeSource(
            [(
                pod.to_string(),
                vec![ip("198.18.1.5"), ip("198.18.1.50"), ip("fe80::1")],
            )]
            .into(),
        );
        let mut f = Follower::new(source, Duration::from_secs(2));
        let (tx, _rx) = tokio::sync::mpsc::channel::<Event>(8);
        let r = follow_record("c1", &["198.18.1.5", "198.18.1.60"], &["198.18.1.60"]);
        let actions = f.sync(
            std::slice::from_ref(&r),
            Some(&listing(&["c1"], now_unix_ms())),
            &tx,
        );
        assert_eq!(
            actions,
            vec![Action::Add {
                key: r.key(),
                addr: ip("198.18.1.50"),
                retry: false
            }]
        );
        assert!(
            f.next_due().is_some(),
            "the lost .60 waits out the debounce"
        );
        assert_eq!(f.watched(), 1);
        // The sandbox died: its watch goes, and so does the pending removal.
        f.sync(
            std::slice::from_ref(&r),
            Some(&listing(&[], now_unix_ms())),
            &tx,
        );
        assert_eq!((f.watched(), f.next_due()), (0, None));
    });
}

#[test]
fn a_pod_committed_after_the_last_listing_is_followed_at_once() {
    in_local_set(|| {
        let pod = "/var/run/netns/new";
        let source = FakeSource([(pod.to_string(), vec![ip("198.18.1.5")])].into());
        let mut f = Follower::new(source, Duration::from_secs(2));
        let (tx, _rx) = tokio::sync::mpsc::channel::<Event>(8);
        let last_pass = listing(&["agent-pod"], now_unix_ms() - 30_000);
        let mut r = follow_record("new", &["198.18.1.5"], &[]);
        r.committed_unix_ms = Some(now_unix_ms());
        f.sync(std::slice::from_ref(&r), Some(&last_pass), &tx);
        assert_eq!(f.watched(), 1, "not listed yet, but newer than the listing");
        // Once a listing after its commit lacks it, the sandbox is gone: the watch goes.
        let later = listing(&["agent-pod"], now_unix_ms() + 1);
        f.sync(std::slice::from_ref(&r), Some(&later), &tx);
        assert_eq!(f.watched(), 0);
    });
}

#[test]
fn a_flap_within_the_debounce_cancels_the_removal_and_only_confirms() {
    in_local_set(|| {
        let pod = "/var/run/netns/c1";
        let source =
            FakeSource([(pod.to_string(), vec![ip("198.18.1.5"), ip("198.18.1.50")])].into());
        let mut f = Follower::new(source, Duration::from_millis(200));
        let (tx, _rx) = tokio::sync::mpsc::channel::<Event>(8);
        let r = follow_record("c1", &["198.18.1.5", "198.18.1.50"], &["198.18.1.50"]);
        assert!(f.sync(std::slice::from_ref(&r), None, &tx).is_empty());
        let vip = ip("198.18.1.50");
        assert!(f
            .on_event(Event::Changes(r.key(), vec![AddressChange::Removed(vip)]))
            .is_empty());
        let back = f.on_event(Event::Changes(r.key(), vec![AddressChange::Added(vip)]));
        assert_eq!(
            back,
            vec![Action::Confirm {
                key: r.key(),
                addr: vip
            }],
            "checked in IMDS, not EC2"
        );
        assert_eq!(f.next_due(), None, "the re-add cancelled the removal");
        // A real removal comes due after the debounce, not before.
        f.on_event(Event::Changes(r.key(), vec![AddressChange::Removed(vip)]));
        assert!(f.take_due(Instant::now()).is_empty());
        let due = f.take_due(Instant::now() + Duration::from_millis(250));
        assert_eq!(
            due,
            vec![Action::Remove {
                key: r.key(),
                addr: vip
            }]
        );
        // An ADD-time address leaving the pod is not ours to give back.
        f.on_event(Event::Changes(
            r.key(),
            vec![AddressChange::Removed(ip("198.18.1.5"))],
        ));
        assert_eq!(f.next_due(), None);
    });
}
