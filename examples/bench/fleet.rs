//! Section 11: a fleet on a virtual clock. Every node runs the plugin's own control law
//! (`aws_eni_ip::store::PaceLaw`, the code the node budget runs), its spool as batch.rs drives it
//! (one leader per ENI, requests that arrive meanwhile share the next call), against one account
//! bucket per FACTS.md (AssignPrivateIpAddresses: 100 burst, 5/s; a throttled call takes no token)
//! shared with a co-tenant (the VPC CNI's warm-pool refills) that calls once a second.

use aws_eni_ip::store::{Pace, PaceLaw};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// EC2's AssignPrivateIpAddresses bucket per account and region (FACTS.md).
pub const BUCKET_CAPACITY: f64 = 100.0;
pub const BUCKET_REFILL: f64 = 5.0;
const LATENCY_MS: u64 = 50;
/// The plugin's default timeoutMs.
const TIMEOUT_MS: u64 = aws_eni_ip::config::DEFAULT_TIMEOUT_MS;
/// kubelet runs a failed ADD again after about this long.
const KUBELET_RETRY_MS: u64 = 1_000;
/// The paced retry's jitter (RetryPolicy's base).
const RETRY_JITTER_MS: u64 = 50;
/// A plugin process's start, IMDS reads and spool submit before its request is pending (section 1).
const PROCESS_START_MS: u64 = 20;

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub nodes: usize,
    pub pods_per_node: usize,
    /// Nodes join over this long (a scale-out); each node's pods come over its first `pod_spread_ms`.
    pub join_over_ms: u64,
    pub pod_spread_ms: u64,
    /// Calls per second of the co-tenant on the same action.
    pub co_tenant_per_s: f64,
    pub seed: u64,
    /// `Some(n)`: section 6's closed loop instead: every node fresh at once, pods in pod-major
    /// order through `n` plugin processes, each pod's process held until its address is on the ENI.
    pub processes: Option<usize>,
    /// The account bucket's capacity and refill per second.
    pub bucket: (f64, f64),
}

#[derive(Debug, Clone, Default)]
pub struct FleetResult {
    pub nodes: usize,
    pub pods: usize,
    pub accepted: u64,
    pub throttled: u64,
    pub code11: u64,
    pub co_tenant_calls: u64,
    pub co_tenant_throttled: u64,
    pub co_tenant_accepted: u64,
    /// First arrival to last address on the ENI (s).
    pub converge_s: f64,
    /// What the bucket and the arrivals allow at best (s).
    pub bound_s: f64,
    pub add_ms: Vec<f64>,
    pub episodes: u64,
}

impl FleetResult {
    pub fn throttled_per_accepted(&self) -> f64 {
        self.throttled as f64 / self.accepted.max(1) as f64
    }
    pub fn converge(&self) -> f64 {
        self.converge_s / self.bound_s.max(1e-9)
    }
    pub fn co_tenant_share(&self) -> f64 {
        self.co_tenant_throttled as f64 / self.co_tenant_calls.max(1) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    PodArrives { node: usize, pod: usize },
    Send { node: usize },
    Answer { node: usize, ok: bool, sent: u64 },
    Retry { node: usize },
    CoTenant,
}

struct Pod {
    first_ms: u64,
    deadline_ms: u64,
    done: bool,
}

struct Node {
    pace: Pace,
    pending: Vec<usize>,
    batch: Vec<usize>,
    busy: bool,
}

struct Bucket {
    tokens: f64,
    at: u64,
    capacity: f64,
    refill: f64,
}

impl Bucket {
    fn admit(&mut self, now: u64) -> bool {
        let dt = now.saturating_sub(self.at) as f64 / 1000.0;
        self.tokens = (self.tokens + dt * self.refill).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Sim {
    law: PaceLaw,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    bucket: Bucket,
    r: FleetResult,
    last_done: u64,
    co_tenant_per_s: f64,
    /// Pods not yet started, in order, for the closed loop.
    backlog: std::collections::VecDeque<(usize, usize)>,
}

impl Sim {
    /// The closed loop's next pod takes the process a finished one left.
    fn start_next(&mut self, now: u64) {
        if let Some((node, pod)) = self.backlog.pop_front() {
            let t = now + PROCESS_START_MS;
            self.pods[pod].first_ms = t;
            self.pods[pod].deadline_ms = t + TIMEOUT_MS;
            self.at(t, Event::PodArrives { node, pod });
        }
    }

    fn at(&mut self, t: u64, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, e)));
    }

    /// The node's leader asks the budget when to send, and gathers what is pending once its
    /// token is there (batch.rs, call.rs): requests that come during the wait share the call.
    fn lead(&mut self, node: usize, now: u64) {
        let n = &mut self.nodes[node];
        if n.busy || n.pending.is_empty() {
            return;
        }
        n.busy = true;
        self.reserve(node, now);
    }

    /// The requests the leader's call carries: the claimed batch, else what is pending.
    fn carried(&self, node: usize) -> &Vec<usize> {
        let n = &self.nodes[node];
        match n.batch.is_empty() {
            true => &n.pending,
            false => &n.batch,
        }
    }

    fn reserve(&mut self, node: usize, now: u64) {
        let jitter = self.rng.random::<f64>();
        let leader_deadline = self
            .carried(node)
            .iter()
            .map(|p| self.pods[*p].deadline_ms)
            .min()
            .unwrap_or(now);
        let law = self.law;
        let n = &mut self.nodes[node];
        law.advance(&mut n.pace, now, jitter);
        match law.lend(&mut n.pace, now, leader_deadline) {
            Some(wait) => self.at(now + wait, Event::Send { node }),
            None => self.give_up(node, now),
        }
    }

    /// The leader's deadline came first: it ends in code 11; the others are pending again.
    fn give_up(&mut self, node: usize, now: u64) {
        let n = &mut self.nodes[node];
        let mut batch = match n.batch.is_empty() {
            true => std::mem::take(&mut n.pending),
            false => std::mem::take(&mut n.batch),
        };
        batch.sort_by_key(|p| self.pods[*p].deadline_ms);
        let mut again = Vec::new();
        for (i, p) in batch.into_iter().enumerate() {
            if i == 0 || self.pods[p].deadline_ms <= now {
                self.r.code11 += 1;
                self.pods[p].deadline_ms = now + KUBELET_RETRY_MS + TIMEOUT_MS;
                let pod = p;
                self.at(now + KUBELET_RETRY_MS, Event::PodArrives { node, pod });
            } else {
                again.push(p);
            }
        }
        let n = &mut self.nodes[node];
        n.pending.splice(0..0, again);
        n.busy = false;
        self.lead(node, now);
    }

    fn run(&mut self) {
        while let Some(Reverse((now, _, e))) = self.queue.pop() {
            match e {
                Event::PodArrives { node, pod } => {
                    if self.pods[pod].done {
                        continue;
                    }
                    self.nodes[node].pending.push(pod);
                    self.lead(node, now);
                }
                Event::Send { node } => {
                    let n = &mut self.nodes[node];
                    if n.batch.is_empty() {
                        n.batch = std::mem::take(&mut n.pending);
                    }
                    let ok = self.bucket.admit(now);
                    self.at(
                        now + LATENCY_MS,
                        Event::Answer {
                            node,
                            ok,
                            sent: now,
                        },
                    );
                }
                Event::Answer { node, ok, sent } => {
                    let law = self.law;
                    let jitter = self.rng.random::<f64>();
                    law.advance(&mut self.nodes[node].pace, now, jitter);
                    if ok {
                        self.r.accepted += 1;
                        law.accepted(&mut self.nodes[node].pace);
                        for p in std::mem::take(&mut self.nodes[node].batch) {
                            let pod = &mut self.pods[p];
                            pod.done = true;
                            self.r.add_ms.push((now - pod.first_ms) as f64);
                            self.start_next(now);
                        }
                        self.last_done = now;
                        self.nodes[node].busy = false;
                        self.lead(node, now);
                    } else {
                        self.r.throttled += 1;
                        let jitter = self.rng.random::<f64>();
                        law.throttled(&mut self.nodes[node].pace, now, sent, jitter);
                        let wait = self.rng.random_range(0..=RETRY_JITTER_MS);
                        self.at(now + wait, Event::Retry { node });
                    }
                }
                Event::Retry { node } => self.reserve(node, now),
                Event::CoTenant => {
                    self.r.co_tenant_calls += 1;
                    match self.bucket.admit(now) {
                        true => self.r.co_tenant_accepted += 1,
                        false => self.r.co_tenant_throttled += 1,
                    }
                    if self.r.add_ms.len() < self.pods.len() {
                        let gap = 1000.0 / self.co_tenant_per_s;
                        let next = now + self.rng.random_range(gap * 0.5..gap * 1.5) as u64;
                        self.at(next, Event::CoTenant);
                    }
                }
            }
        }
    }
}

/// A scale-out of `nodes`: one node joins every `join_s_per_node` s on average, and its pods
/// come within its first 20 s (the DaemonSets' and deployments' pods of a fresh node).
pub fn workload(nodes: usize, pods_per_node: usize, join_s_per_node: f64) -> Workload {
    Workload {
        nodes,
        pods_per_node,
        join_over_ms: (nodes as f64 * join_s_per_node * 1000.0) as u64,
        pod_spread_ms: 20_000,
        co_tenant_per_s: 1.0,
        seed: 26,
        processes: None,
        bucket: (BUCKET_CAPACITY, BUCKET_REFILL),
    }
}

/// Section 6's real-process run on the virtual clock: `nodes` fresh at once, 20 pods each through
/// `processes` plugin processes, against its stand-in bucket (100, 20/s) and co-tenant.
pub fn closed_loop(nodes: usize, pods_per_node: usize, processes: usize, seed: u64) -> Workload {
    Workload {
        nodes,
        pods_per_node,
        join_over_ms: 0,
        pod_spread_ms: 0,
        co_tenant_per_s: 1.0,
        seed,
        processes: Some(processes),
        bucket: (100.0, 20.0),
    }
}

/// Runs one fleet size; `share` is the operator's per-node rate, `None` the derived one.
pub fn simulate(w: Workload, share: Option<f64>) -> FleetResult {
    let law = PaceLaw {
        burst: 10.0,
        ceiling: 5.0,
        share,
    };
    let mut rng = StdRng::seed_from_u64(w.seed);
    let mut sim = Sim {
        law,
        queue: BinaryHeap::new(),
        seq: 0,
        nodes: Vec::new(),
        pods: Vec::new(),
        bucket: Bucket {
            tokens: w.bucket.0,
            at: 0,
            capacity: w.bucket.0,
            refill: w.bucket.1,
        },
        r: FleetResult {
            nodes: w.nodes,
            pods: w.nodes * w.pods_per_node,
            ..FleetResult::default()
        },
        last_done: 0,
        co_tenant_per_s: w.co_tenant_per_s.max(1e-6),
        backlog: Default::default(),
        rng: StdRng::seed_from_u64(w.seed ^ 0x5eed),
    };
    let mut last_arrival = 0;
    for node in 0..w.nodes {
        // The closed loop's nodes are all there at once; its pods come as processes free up.
        let joins = match w.processes {
            Some(_) => 0,
            None => rng.random_range(0..=w.join_over_ms),
        };
        sim.nodes.push(Node {
            pace: law.fresh(joins),
            pending: Vec::new(),
            batch: Vec::new(),
            busy: false,
        });
        let arriving = match w.processes {
            Some(_) => 0,
            None => w.pods_per_node,
        };
        for _ in 0..arriving {
            let t = joins + rng.random_range(0..=w.pod_spread_ms);
            last_arrival = last_arrival.max(t);
            let pod = sim.pods.len();
            sim.pods.push(Pod {
                first_ms: t,
                deadline_ms: t + TIMEOUT_MS,
                done: false,
            });
            sim.at(t, Event::PodArrives { node, pod });
        }
    }
    if let Some(processes) = w.processes {
        for i in 0..w.nodes * w.pods_per_node {
            sim.pods.push(Pod {
                first_ms: 0,
                deadline_ms: u64::MAX,
                done: false,
            });
            sim.backlog.push_back((i % w.nodes, i));
        }
        for _ in 0..processes {
            sim.start_next(0);
        }
    }
    if w.co_tenant_per_s > 0.0 {
        sim.at(rng.random_range(0..1000), Event::CoTenant);
    }
    sim.run();
    let mut r = sim.r;
    r.converge_s = sim.last_done as f64 / 1000.0;
    // The co-tenant's tokens are in the bound: no law of ours can have them. The closed loop's
    // calls are section 6's, one per pod.
    let calls = match w.processes {
        Some(_) => r.pods as u64,
        None => r.accepted,
    } + r.co_tenant_accepted;
    let bucket_bound = (calls as f64 - w.bucket.0).max(0.0) / w.bucket.1;
    r.bound_s = bucket_bound.max((last_arrival + LATENCY_MS) as f64 / 1000.0);
    r.episodes = sim.nodes.iter().map(|n| n.pace.episodes).sum();
    r.add_ms
        .sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    r
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The section's table row for one run.
pub fn row(name: &str, r: &FleetResult) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {:.3} | {:.1} | {:.1} | {:.2} | {:.0} / {:.0} | {} | {} / {} ({:.1}%) | {} |",
        r.nodes,
        r.pods,
        r.accepted,
        r.throttled,
        r.throttled_per_accepted(),
        r.converge_s,
        r.bound_s,
        r.converge(),
        pct(&r.add_ms, 50.0),
        pct(&r.add_ms, 99.0),
        r.code11,
        r.co_tenant_throttled,
        r.co_tenant_calls,
        r.co_tenant_share() * 100.0,
        r.episodes,
    )
}

pub const HEADER: &str = "| run | nodes | pods | accepted calls | throttled | throttled / accepted | converge, s | bound, s | converge / bound | ADD→address ms p50 / p99 | code 11 | co-tenant throttled / calls | congestion episodes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// The report's closing line for one fleet size.
pub fn final_line(
    kind: &str,
    nodes: usize,
    throttled: f64,
    converge: f64,
    code11: u64,
    co_tenant: f64,
) -> String {
    format!(
        "fleet {nodes} nodes ({kind}): throttled/accepted {throttled:.2}, converge {converge:.2}, code11 {code11}, co-tenant {:.1}%",
        co_tenant * 100.0
    )
}
