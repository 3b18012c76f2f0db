//! The last look before an attempt goes on the wire. A batch leader may wait for the node's budget,
//! or retry after "slow down", long after it claimed its requests; a request sent for a requester
//! that gave up meanwhile would land after its runtime had moved on (a DEL, another node's ADD).

use std::future::Future;
use std::time::Instant;

struct Gate {
    open: Box<dyn Fn() -> bool + Send + Sync>,
    send_by: Option<Instant>,
}

tokio::task_local! {
    static GATE: Gate;
}

/// Runs `call` with `open` asked, right before each attempt is sent, whether it is still wanted;
/// `send_by` is the first deadline of the requesters it carries.
pub async fn gated<F: Future>(
    open: impl Fn() -> bool + Send + Sync + 'static,
    send_by: Option<Instant>,
    call: F,
) -> F::Output {
    let gate = Gate {
        open: Box::new(open),
        send_by,
    };
    GATE.scope(gate, call).await
}

/// Whether the attempt about to be sent is still wanted: always, outside [`gated`].
pub(crate) fn is_open() -> bool {
    GATE.try_with(|g| (g.open)()).unwrap_or(true)
}

/// By when the call must go out for the first requester it carries: the node budget lends it a
/// token for that deadline rather than let that requester end in code 11.
pub(crate) fn send_by() -> Option<Instant> {
    GATE.try_with(|g| g.send_by).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "current_thread")]
    async fn the_gate_is_asked_inside_its_scope_only() {
        assert!(is_open(), "no gate: every attempt goes");
        let wanted = Arc::new(AtomicBool::new(true));
        let w = wanted.clone();
        let by = Instant::now();
        let seen = gated(move || w.load(Ordering::SeqCst), Some(by), async {
            let before = is_open();
            wanted.store(false, Ordering::SeqCst);
            (before, is_open(), send_by())
        })
        .await;
        assert_eq!(seen, (true, false, Some(by)));
        assert!(is_open());
        assert_eq!(send_by(), None);
    }
}
