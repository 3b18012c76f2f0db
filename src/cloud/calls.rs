//! Every EC2 request this process sent and how many came back throttled, per action: the plugin
//! adds them to the node's counters file, the agent serves its own as metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Requests of one EC2 action, throttled ones included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallCount {
    pub calls: u64,
    pub throttled: u64,
}

static SENT: Mutex<BTreeMap<&'static str, CallCount>> = Mutex::new(BTreeMap::new());

/// One request of `action` went out; `throttled` when EC2 answered "slow down".
pub fn sent(action: &'static str, throttled: bool) {
    let mut map = SENT.lock().unwrap_or_else(|e| e.into_inner());
    let c = map.entry(action).or_default();
    c.calls += 1;
    c.throttled += u64::from(throttled);
}

/// What this process sent so far, by action.
pub fn snapshot() -> BTreeMap<&'static str, CallCount> {
    SENT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
