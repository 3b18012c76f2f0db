//! The last look before an attempt goes on the wire. A batch leader may wait for the node's budget,
//! or retry after "slow down", long after it claimed its requests; a request sent for a requester
//! that gave up meanwhile would land after its runtime had moved on (a DEL, another node's ADD).

use std::future::Future;

tokio::task_local! {
    static GATE: Box<dyn Fn() -> bool + Send + Sync>;
}

/// Runs `call` with `open` asked, right before each attempt is sent, whether it is still wanted.
pub async fn gated<F: Future>(
    open: impl Fn() -> bool + Send + Sync + 'static,
    call: F,
) -> F::Output {
    GATE.scope(Box::new(open), call).await
}

/// Whether the attempt about to be sent is still wanted: always, outside [`gated`].
pub(crate) fn is_open() -> bool {
    GATE.try_with(|open| open()).unwrap_or(true)
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
        let seen = gated(move || w.load(Ordering::SeqCst), async {
            let before = is_open();
            wanted.store(false, Ordering::SeqCst);
            (before, is_open())
        })
        .await;
        assert_eq!(seen, (true, false));
        assert!(is_open());
    }
}
