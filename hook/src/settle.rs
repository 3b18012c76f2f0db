//! Retries for EC2's eventual consistency right after a launch: the new instance is not visible
//! to every API yet (`InvalidInstanceID.NotFound`), still `pending` (`IncorrectInstanceState`),
//! or a fresh ENI or attachment is not known everywhere yet. Backoff doubles up to a cap, and the
//! retries stop early enough to leave time for cleanup and completing the lifecycle action.

use aws_eni_ip::cloud::CloudError;
use std::future::Future;
use std::time::{Duration, Instant};

/// EC2 error codes that mean "not yet", not "no", in the minutes after a launch.
pub const SETTLING_CODES: [&str; 4] = [
    "InvalidInstanceID.NotFound",
    "IncorrectInstanceState",
    "InvalidNetworkInterfaceID.NotFound",
    "InvalidAttachmentID.NotFound",
];

/// How long to wait between attempts, and how much time before the deadline to leave alone.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub longest: Duration,
    /// Kept free of retries: removing what was made and ABANDONing takes time too.
    pub reserve: Duration,
}

pub const AFTER_LAUNCH: Backoff = Backoff {
    first: Duration::from_millis(500),
    longest: Duration::from_secs(10),
    reserve: Duration::from_secs(20),
};

pub fn is_settling(e: &CloudError) -> bool {
    e.api_code().is_some_and(|c| SETTLING_CODES.contains(&c))
}

/// Runs `op` again while it fails with a settling error and time remains before `deadline`
/// (less the reserve); `what` names the step in the log.
pub async fn settled<T, F, Fut>(
    backoff: Backoff,
    deadline: Instant,
    what: &str,
    mut op: F,
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CloudError>>,
{
    let until = deadline
        .checked_sub(backoff.reserve)
        .unwrap_or_else(Instant::now);
    let mut wait = backoff.first;
    let mut attempt = 1u32;
    loop {
        match op().await {
            Err(e) if is_settling(&e) && Instant::now() + wait < until => {
                tracing::info!(step = what, attempt, wait_ms = wait.as_millis() as u64, error = %e,
                    "EC2 has not caught up with the new instance yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(backoff.longest);
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn api(code: &str) -> CloudError {
        CloudError::Api {
            action: "AttachNetworkInterface",
            code: code.into(),
            message: "m".into(),
            maybe_applied: false,
        }
    }

    const QUICK: Backoff = Backoff {
        first: Duration::from_millis(5),
        longest: Duration::from_millis(40),
        reserve: Duration::from_millis(200),
    };

    #[tokio::test]
    async fn an_instance_not_yet_visible_or_still_pending_is_retried_until_it_is() {
        let calls = Cell::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = settled(QUICK, deadline, "attach", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                match n {
                    1 => Err(api("InvalidInstanceID.NotFound")),
                    2 => Err(api("IncorrectInstanceState")),
                    _ => Ok(n),
                }
            }
        })
        .await;
        assert_eq!(r, Ok(3));
    }

    #[tokio::test]
    async fn other_errors_fail_at_once_and_settling_ones_stop_before_the_cleanup_reserve() {
        let calls = Cell::new(0);
        let deadline = Instant::now() + Duration::from_millis(700);
        let r: Result<(), _> = settled(QUICK, deadline, "attach", || {
            calls.set(calls.get() + 1);
            async { Err(api("InvalidParameterValue")) }
        })
        .await;
        assert_eq!(r.unwrap_err().api_code(), Some("InvalidParameterValue"));
        assert_eq!(calls.get(), 1);
        let start = Instant::now();
        let last_attempt = Cell::new(start);
        let r: Result<(), _> = settled(QUICK, deadline, "attach", || {
            last_attempt.set(Instant::now());
            async { Err(api("IncorrectInstanceState")) }
        })
        .await;
        assert_eq!(r.unwrap_err().api_code(), Some("IncorrectInstanceState"));
        let until = deadline - QUICK.reserve;
        // A loaded machine oversleeps; what matters is that no retry is planned into the reserve.
        assert!(
            last_attempt.get() < until + Duration::from_millis(100),
            "an attempt {:?} into the reserve",
            last_attempt.get().saturating_duration_since(until)
        );
        assert!(
            last_attempt.get() >= until - QUICK.longest - Duration::from_millis(5),
            "gave up {:?} early",
            until.saturating_duration_since(last_attempt.get())
        );
    }
}
