//! The agent's loop (fairness under an event storm) and the ENI links it brings up.

use super::*;

/// A pod whose addresses change without pause: every wait returns at once.
struct Storm;
struct StormWatch;

impl AddressWatch for StormWatch {
    async fn next(&mut self) -> std::io::Result<Vec<AddressChange>> {
        Ok(vec![AddressChange::Added(ip("198.18.1.5"))])
    }
}

impl AddressSource for Storm {
    type Watch = StormWatch;
    fn open(&self, _: &Path, _: &str) -> Result<(StormWatch, Vec<IpAddr>), HostError> {
        Ok((StormWatch, vec![ip("198.18.1.5")]))
    }
}

/// Counts the runtime's listings; lists `c1` and the agent's own pod.
#[derive(Clone, Default)]
struct CountingRuntime(std::rc::Rc<std::cell::Cell<u64>>);

impl crate::agent::cri::Liveness for CountingRuntime {
    async fn sandboxes(&self) -> Result<HashSet<String>, crate::agent::cri::LivenessError> {
        self.0.set(self.0.get() + 1);
        Ok(live(&["c1", "agent-pod"]))
    }
}

#[test]
fn a_storm_of_address_events_does_not_starve_the_passes() {
    let node = Node::new();
    node.put(&follow_record("c1", &["198.18.1.5"], &[]));
    let listings = CountingRuntime::default();
    let agent = crate::agent::run::Agent::new(
        node.store.node().clone(),
        FakeAws::new(),
        listings.clone(),
        Follower::new(Storm, Duration::from_secs(2)),
        Reconciler::new(settings(0, 20)),
        Default::default(),
        crate::agent::run::LoopSettings {
            interval: Duration::from_millis(50),
            drift_interval: None,
            op_timeout: Duration::from_secs(1),
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new()
        .block_on(&rt, async {
            agent
                .run(tokio::time::sleep(Duration::from_millis(1_000)))
                .await
        })
        .unwrap();
    assert!(
        listings.0.get() >= 10,
        "only {} passes in 1 s at a 50 ms interval under an event storm",
        listings.0.get()
    );
}

/// The host's links as a test sets them; records which it was asked to bring up.
struct FakeLinks(std::cell::RefCell<Vec<crate::node::HostLink>>);

impl crate::agent::links::LinkHost for FakeLinks {
    fn links(&self) -> Result<Vec<crate::node::HostLink>, HostError> {
        Ok(self.0.borrow().clone())
    }

    fn set_up(&self, index: u32) -> Result<(), HostError> {
        for l in self.0.borrow_mut().iter_mut().filter(|l| l.index == index) {
            l.up = true;
        }
        Ok(())
    }
}

fn host_link(index: u32, name: &str, mac: &str, up: bool) -> crate::node::HostLink {
    crate::node::HostLink {
        index,
        name: name.into(),
        mac: Some(mac.into()),
        up,
    }
}

#[test]
fn a_down_no_manage_enis_link_is_brought_up_and_every_other_link_left_alone() {
    let aws = FakeAws::new();
    // OTHER's ENI loses its no_manage tag: the VPC CNI's, not ours.
    aws.enis
        .borrow_mut()
        .get_mut(crate::commands::tests::fake::OTHER)
        .unwrap()
        .tags
        .clear();
    let host = FakeLinks(std::cell::RefCell::new(vec![
        host_link(2, "ens5", "02:00:c6:12:09:99", false),
        host_link(3, "ens6", MAC, false),
        host_link(4, "ens7", "02:00:c6:12:01:02", false),
    ]));
    let mut keeper = crate::agent::links::LinkKeeper::default();
    let up = block(keeper.ensure(&aws, &host));
    assert_eq!(up, vec!["ens6"]);
    let links = host.0.borrow().clone();
    assert_eq!(
        links
            .iter()
            .map(|l| (l.name.as_str(), l.up))
            .collect::<Vec<_>>(),
        vec![("ens5", false), ("ens6", true), ("ens7", false)],
        "not this instance's ENI, ours, the VPC CNI's"
    );
    // Down again later: brought up again without describing the ENI a second time.
    host.0.borrow_mut()[1].up = false;
    let describes = aws.count("DescribeNetworkInterfaces");
    assert_eq!(block(keeper.ensure(&aws, &host)), vec!["ens6"]);
    assert_eq!(aws.count("DescribeNetworkInterfaces"), describes);
}
