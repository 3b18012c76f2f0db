//! What the agent counts, and its rendering in the Prometheus text format (version 0.0.4). The
//! plugin's own counts come from the node's counters file, read at scrape time.

use crate::cloud::calls::CallCount;
use crate::commands::drift::EniDrift;
use crate::store::PluginCounters;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// The agent's counters and gauges, shared between its loop and the HTTP server's thread.
#[derive(Debug, Default, Clone)]
pub struct AgentMetrics {
    pub passes: u64,
    /// Passes in which the runtime could not be asked: only hand-offs were finished.
    pub runtime_failures: u64,
    /// Why the last ListPodSandbox failed; `None` after a successful one (or before any).
    pub runtime_error: Option<String>,
    /// When the runtime last answered ListPodSandbox (Unix ms); 0: never.
    pub last_listing_unix_ms: u64,
    pub throttled_passes: u64,
    pub last_pass_unix: u64,
    /// Releases done, by reason (`handed_off`, `assigning_stuck`, `sandbox_gone`).
    pub releases: BTreeMap<&'static str, u64>,
    pub release_failures: u64,
    /// Records due for release and not yet released.
    pub pending_releases: u64,
    /// Records on the node, and how many of them are `releasing`.
    pub records: u64,
    pub releasing: u64,
    /// The last drift check, per ENI.
    pub drift: Vec<EniDrift>,
    /// Per-ENI address limits (IPv4, primary included), from the instance type.
    pub eni_limits: BTreeMap<String, u32>,
    /// Run-time address operations, by result.
    pub follow: BTreeMap<&'static str, u64>,
    pub watches: u64,
    /// Links of no_manage ENIs the agent found DOWN and brought up.
    pub links_brought_up: u64,
}

pub type SharedMetrics = Arc<Mutex<AgentMetrics>>;

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP aws_eni_ip_{name} {help}");
        let _ = writeln!(self.0, "# TYPE aws_eni_ip_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        let _ = write!(self.0, "aws_eni_ip_{name}");
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole scrape: the agent's metrics, the plugin's counters, and both sides' EC2 requests.
pub fn render(
    m: &AgentMetrics,
    plugin: &PluginCounters,
    agent_ec2: &BTreeMap<&'static str, CallCount>,
) -> String {
    let mut o = Out(String::new());
    o.family(
        "plugin_operations_total",
        "counter",
        "Plugin runs on this node, by CNI command, outcome (ok, error, handed_off) and CNI code.",
    );
    for op in &plugin.operations {
        let code = op.code.to_string();
        let labels = [
            ("command", op.command.as_str()),
            ("outcome", op.outcome.as_str()),
            ("code", code.as_str()),
        ];
        o.sample("plugin_operations_total", &labels, op.count);
    }
    o.family(
        "ec2_requests_total",
        "counter",
        "EC2 requests sent from this node, throttled ones included, by sender and action.",
    );
    let plugin_ec2: Vec<(&str, u64, u64)> = plugin
        .ec2
        .iter()
        .map(|c| (c.action.as_str(), c.calls, c.throttled))
        .collect();
    let agent: Vec<(&str, u64, u64)> = agent_ec2
        .iter()
        .map(|(a, c)| (*a, c.calls, c.throttled))
        .collect();
    for (source, rows) in [("plugin", &plugin_ec2), ("agent", &agent)] {
        for (action, calls, _) in rows {
            o.sample(
                "ec2_requests_total",
                &[("source", source), ("action", action)],
                *calls,
            );
        }
    }
    o.family(
        "ec2_throttled_total",
        "counter",
        "EC2 requests answered with throttling (RequestLimitExceeded and kin).",
    );
    for (source, rows) in [("plugin", &plugin_ec2), ("agent", &agent)] {
        for (action, _, throttled) in rows {
            o.sample(
                "ec2_throttled_total",
                &[("source", source), ("action", action)],
                *throttled,
            );
        }
    }
    reconciler(&mut o, m);
    drift(&mut o, m);
    o.family(
        "follow_operations_total",
        "counter",
        "Run-time address changes handled, by result (assigned, released, forgotten, ignored, failed).",
    );
    for (result, n) in &m.follow {
        o.sample("follow_operations_total", &[("result", result)], *n);
    }
    o.family(
        "followed_interfaces",
        "gauge",
        "Pod interfaces whose addresses the agent watches.",
    );
    o.sample("followed_interfaces", &[], m.watches);
    o.family(
        "links_brought_up_total",
        "counter",
        "Links of this instance's no_manage ENIs that the agent found DOWN and brought up.",
    );
    o.sample("links_brought_up_total", &[], m.links_brought_up);
    o.0
}

fn reconciler(o: &mut Out, m: &AgentMetrics) {
    o.family("reconcile_passes_total", "counter", "Reconcile passes run.");
    o.sample("reconcile_passes_total", &[], m.passes);
    o.family(
        "reconcile_runtime_failures_total",
        "counter",
        "Passes in which the container runtime could not be asked (only hand-offs were finished).",
    );
    o.sample("reconcile_runtime_failures_total", &[], m.runtime_failures);
    o.family(
        "runtime_reachable",
        "gauge",
        "1 while the container runtime answers ListPodSandbox; 0 while it does not (only hand-offs are finished, DEL hands nothing new over).",
    );
    let reachable = m.runtime_error.is_none() && m.last_listing_unix_ms > 0;
    o.sample("runtime_reachable", &[], u64::from(reachable));
    o.family(
        "runtime_last_listing_timestamp_seconds",
        "gauge",
        "When the container runtime last answered ListPodSandbox (Unix time; 0: never).",
    );
    o.sample(
        "runtime_last_listing_timestamp_seconds",
        &[],
        m.last_listing_unix_ms / 1000,
    );
    o.family(
        "reconcile_throttled_passes_total",
        "counter",
        "Passes cut short because EC2 throttled or timed out.",
    );
    o.sample("reconcile_throttled_passes_total", &[], m.throttled_passes);
    o.family(
        "reconcile_last_pass_timestamp_seconds",
        "gauge",
        "When the last pass ran (Unix time).",
    );
    o.sample(
        "reconcile_last_pass_timestamp_seconds",
        &[],
        m.last_pass_unix,
    );
    o.family(
        "releases_total",
        "counter",
        "Releases done by the agent, by reason (handed_off, assigning_stuck, sandbox_gone).",
    );
    for reason in super::reconcile::Reason::ALL {
        let n = m.releases.get(reason.as_str()).copied().unwrap_or(0);
        o.sample("releases_total", &[("reason", reason.as_str())], n);
    }
    o.family(
        "release_failures_total",
        "counter",
        "Releases that failed; each is tried again on the next pass.",
    );
    o.sample("release_failures_total", &[], m.release_failures);
    o.family(
        "pending_releases",
        "gauge",
        "Records due for release and not released yet (cap per pass, throttling, failures).",
    );
    o.sample("pending_releases", &[], m.pending_releases);
    o.family("records", "gauge", "Attachment records on the node.");
    o.sample("records", &[], m.records);
    o.family(
        "releasing_records",
        "gauge",
        "Records whose DEL handed the release to the agent.",
    );
    o.sample("releasing_records", &[], m.releasing);
}

fn drift(o: &mut Out, m: &AgentMetrics) {
    o.family(
        "drift_unrecorded_addresses",
        "gauge",
        "Addresses on an ENI named in the records that no record holds (never removed automatically).",
    );
    for d in &m.drift {
        o.sample(
            "drift_unrecorded_addresses",
            &[("eni", &d.eni_id)],
            d.unrecorded.len() as u64,
        );
    }
    o.family(
        "drift_missing_addresses",
        "gauge",
        "Recorded addresses that are no longer on their ENI.",
    );
    for d in &m.drift {
        o.sample(
            "drift_missing_addresses",
            &[("eni", &d.eni_id)],
            d.missing.len() as u64,
        );
    }
    o.family(
        "drift_check_failed",
        "gauge",
        "1 when the last describe of the ENI failed (its drift is unknown).",
    );
    for d in &m.drift {
        o.sample(
            "drift_check_failed",
            &[("eni", &d.eni_id)],
            u64::from(d.error.is_some()),
        );
    }
    o.family(
        "eni_addresses_in_use",
        "gauge",
        "Addresses on the ENI now (IPv4 with its primary, and IPv6), at the last drift check.",
    );
    for d in m.drift.iter().filter(|d| d.error.is_none()) {
        let eni = d.eni_id.as_str();
        o.sample(
            "eni_addresses_in_use",
            &[("eni", eni), ("family", "ipv4")],
            d.ipv4_in_use as u64,
        );
        o.sample(
            "eni_addresses_in_use",
            &[("eni", eni), ("family", "ipv6")],
            d.ipv6_in_use as u64,
        );
    }
    o.family(
        "eni_address_limit",
        "gauge",
        "The instance type's addresses per ENI (IPv4, primary included; IPv6 alike).",
    );
    for (eni, limit) in &m.eni_limits {
        o.sample("eni_address_limit", &[("eni", eni)], u64::from(*limit));
    }
}
