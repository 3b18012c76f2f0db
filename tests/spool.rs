//! The batch spool across processes: a killed leader hands over, a waiter whose answer is written
//! never waits for the batch lock, and a requester in another PID namespace is never taken for
//! dead while it holds its ticket (liveness is a flock, not a pid).

use aws_eni_ip::cloud::{wait_for_token, CallBudget, CloudError, Ec2, EniView};
use aws_eni_ip::commands::batch::Batched;
use aws_eni_ip::store::{BatchOp, BatchOutcome, BudgetLimits, NodeBudget, NodeDir, NodeSettings};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const ENI: &str = "eni-0b000000000000001";
const CHILD_ROLE: &str = "AEI_SPOOL_CHILD_ROLE";
const CHILD_DIR: &str = "AEI_SPOOL_CHILD_NODE_DIR";

/// EC2 as far as the spool needs it: the ENI's addresses, and every call made.
#[derive(Default)]
struct Recording {
    held: Mutex<Vec<Ipv4Addr>>,
    calls: Mutex<Vec<String>>,
    /// The node budget a leader waits on before it claims, as the AWS client's.
    budget: Option<NodeBudget>,
}

impl Ec2 for Recording {
    async fn pace(&self, action: &'static str, until: Instant) {
        if let Some(b) = &self.budget {
            wait_for_token(b, action, until).await;
        }
    }
    async fn assign_ipv4(&self, eni: &str, a: &[Ipv4Addr], _: bool) -> Result<(), CloudError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("assign {eni} {a:?}"));
        self.held.lock().unwrap().extend_from_slice(a);
        Ok(())
    }
    async fn unassign_ipv4(&self, eni: &str, a: &[Ipv4Addr]) -> Result<(), CloudError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("unassign {eni} {a:?}"));
        self.held.lock().unwrap().retain(|h| !a.contains(h));
        Ok(())
    }
    async fn assign_ipv6(&self, _: &str, _: &[Ipv6Addr]) -> Result<(), CloudError> {
        unreachable!("IPv4 only here")
    }
    async fn unassign_ipv6(&self, _: &str, _: &[Ipv6Addr]) -> Result<(), CloudError> {
        unreachable!("IPv4 only here")
    }
    async fn assign_ipv4_count(&self, _: &str, _: u32) -> Result<Vec<Ipv4Addr>, CloudError> {
        unreachable!("explicit addresses only here")
    }
    async fn assign_ipv6_count(&self, _: &str, _: u32) -> Result<Vec<Ipv6Addr>, CloudError> {
        unreachable!("explicit addresses only here")
    }
    async fn describe_eni(&self, eni: &str) -> Result<EniView, CloudError> {
        self.calls.lock().unwrap().push(format!("describe {eni}"));
        Ok(EniView {
            eni_id: eni.into(),
            primary_ipv4: None,
            ipv4: self.held.lock().unwrap().clone(),
            ipv6: Vec::new(),
            tags: Default::default(),
            instance_id: None,
            description: String::new(),
        })
    }
    async fn holders(&self, _: &[IpAddr]) -> Result<Vec<EniView>, CloudError> {
        Ok(Vec::new())
    }
    async fn eni_by_mac(&self, _: &str) -> Result<Option<EniView>, CloudError> {
        Ok(None)
    }
}

fn node() -> (tempfile::TempDir, NodeDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("locks")).unwrap();
    let node = NodeDir::new(dir.path());
    (dir, node)
}

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, last)
}

/// One assign through the spool, as ADD makes it, with `timeout` to go.
fn assign(
    ec2: &Recording,
    node: &NodeDir,
    a: Ipv4Addr,
    timeout: Duration,
) -> Result<(), CloudError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let batched = Batched::new(ec2, node, Instant::now() + timeout);
    rt.block_on(batched.assign_ipv4(ENI, &[a], false))
}

/// Runs this test binary's `spool_child_process` as `role`, optionally under `wrap` (e.g. unshare),
/// and waits for its first line.
fn child(dir: &Path, role: &str, wrap: &[&str]) -> (Child, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut c = cmd
        .args([
            "--ignored",
            "--exact",
            "spool_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    let started = Instant::now();
    // libtest may print "test spool_child_process ... " on the same line first.
    while !line.contains("ready ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child {role} ended before it was ready"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    let at = line.find("ready ").unwrap_or(0);
    (c, line[at..].trim().to_string())
}

#[test]
fn a_killed_leader_hands_over_and_its_waiter_completes() {
    let (dir, node) = node();
    // The leader files its own request, claims it as if sending, and is killed mid-call.
    let (mut leader, _) = child(dir.path(), "leader", &[]);
    let ec2 = Recording::default();
    let result = std::thread::scope(|s| {
        let waiter = s.spawn(|| assign(&ec2, &node, addr(5), Duration::from_secs(20)));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            ec2.calls.lock().unwrap().is_empty(),
            "the live leader leads"
        );
        leader.kill().unwrap();
        leader.wait().unwrap();
        let killed = Instant::now();
        let r = waiter.join().unwrap();
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "handed over in {:?}",
            killed.elapsed()
        );
        r
    });
    result.unwrap();
    let calls = ec2.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![format!("assign {ENI} [{}]", addr(5))],
        "nothing for the dead leader's request"
    );
    assert!(node.spool(ENI).pending().is_empty());
}

#[test]
fn requests_that_come_while_the_leader_waits_for_the_nodes_token_share_its_call() {
    let (_dir, node) = node();
    node.write_settings(&NodeSettings {
        ec2_budget: Some(BudgetLimits {
            burst: 1,
            refill_per_second: 1.0,
        }),
        node_ec2_rate: None,
    })
    .unwrap();
    let budget = node.budget();
    // Another call of the node just took the only token: the next comes in a second.
    let far = Instant::now() + Duration::from_secs(30);
    let action = "AssignPrivateIpAddresses";
    assert_eq!(
        budget.reserve(action, Instant::now(), far),
        Some(Duration::ZERO)
    );
    let ec2 = Recording {
        budget: Some(budget),
        ..Recording::default()
    };
    std::thread::scope(|s| {
        let first = s.spawn(|| assign(&ec2, &node, addr(5), Duration::from_secs(20)));
        std::thread::sleep(Duration::from_millis(300));
        let second = s.spawn(|| assign(&ec2, &node, addr(6), Duration::from_secs(20)));
        first.join().unwrap().unwrap();
        second.join().unwrap().unwrap();
    });
    assert_eq!(
        ec2.calls.lock().unwrap().clone(),
        vec![format!("assign {ENI} [{}, {}]", addr(5), addr(6))],
        "one token, one call for both"
    );
    assert!(node.spool(ENI).pending().is_empty());
}

#[test]
fn a_waiter_whose_answer_is_written_is_never_blocked_by_the_batch_lock() {
    let (_dir, node) = node();
    let spool = node.spool(ENI);
    let _held = spool.try_lead().unwrap().expect("the batch lock is free");
    let ec2 = Recording::default();
    let started = Instant::now();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| assign(&ec2, &node, addr(6), Duration::from_secs(20)));
        // This thread is the leader: it finds the request, claims it and answers it.
        let (ticket, mut req) = loop {
            if let Some(p) = spool.pending().into_iter().next() {
                break p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "no request filed"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(spool.claim(&ticket, &mut req));
        spool.answer(&ticket, &BatchOutcome::Done);
        let answered = Instant::now();
        waiter.join().unwrap().unwrap();
        assert!(
            answered.elapsed() < Duration::from_millis(500),
            "{:?}",
            answered.elapsed()
        );
    });
    assert!(
        ec2.calls.lock().unwrap().is_empty(),
        "the leader's answer, no call of its own"
    );
}

#[test]
fn a_requester_in_another_pid_namespace_is_never_taken_for_dead() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("run as root: unshare --pid needs it");
    }
    let (dir, node) = node();
    let (mut requester, ready) = child(
        dir.path(),
        "requester",
        &["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"],
    );
    let spool = node.spool(ENI);
    let _lead = spool.try_lead().unwrap().expect("the batch lock is free");
    let ticket = ready.strip_prefix("ready ").unwrap().to_string();
    for _ in 0..3 {
        let pending: Vec<String> = spool.pending().into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            pending,
            vec![ticket.clone()],
            "the requester in its own PID namespace still waits"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    requester.kill().unwrap();
    requester.wait().unwrap();
    // unshare's child dies with it (the namespace's init is gone): its flock goes too.
    let started = Instant::now();
    while !spool.pending().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a dead requester's request stays"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes the tests above start: not a test of its own.
#[test]
#[ignore = "run only as a child process of the spool tests"]
fn spool_child_process() {
    let role = std::env::var(CHILD_ROLE).expect("started by a spool test");
    let node = NodeDir::new(std::env::var(CHILD_DIR).unwrap());
    let spool = node.spool(ENI);
    let far = Instant::now() + Duration::from_secs(60);
    let op = BatchOp::AssignIpv4 {
        allow_reassignment: false,
    };
    match role.as_str() {
        "leader" => {
            let _lead = spool.try_lead().unwrap().expect("first to lead");
            let ticket = spool.submit(op, &[IpAddr::V4(addr(4))], far).unwrap();
            let (name, mut req) = spool.pending().remove(0);
            assert!(spool.claim(&name, &mut req));
            println!("ready {}", ticket.name());
            std::thread::sleep(Duration::from_secs(60));
        }
        "requester" => {
            let ticket = spool.submit(op, &[IpAddr::V4(addr(7))], far).unwrap();
            println!("ready {}", ticket.name());
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}
