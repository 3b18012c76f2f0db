//! One AWS SDK call under our retry policy and the node budget, and how its failures are
//! classified: the same for the plugin, the agent, operator commands and the node-group hook.

use super::causes;
use crate::cloud::error::THROTTLING_CODES;
use crate::cloud::retry::{Outcome, RetryPolicy, Verdict};
use crate::cloud::{CallBudget, CloudError};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

const SERVER_CODES: [&str; 4] = [
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// The SDK's shared config from the standard chain, with the SDK's own retries off.
pub async fn standard_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}

/// [`budgeted_call`] without a budget: operator commands and the node-group hook.
pub async fn sdk_call<T, E, F, Fut>(
    policy: &RetryPolicy,
    action: &'static str,
    op: F,
) -> Result<T, CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
    >,
{
    budgeted_call(policy, None, action, Repeat::Safe, op).await
}

/// Whether an attempt whose outcome is unknown may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Explicit addresses, describes, unassigns: a repeat changes nothing more.
    Safe,
    /// A count-based assign: a repeat after an unknown outcome could take a second address, so
    /// the caller resolves it from the ENI's listing instead.
    NotAfterUnknown,
}

/// One call of any AWS SDK (EC2, Auto Scaling) under the retry policy, each attempt paced by
/// `budget` when there is one, its failure classified into a [`CloudError`] the same way for every
/// caller.
pub(crate) async fn budgeted_call<T, E, F, Fut>(
    policy: &RetryPolicy,
    budget: Option<&dyn CallBudget>,
    action: &'static str,
    repeat: Repeat,
    mut op: F,
) -> Result<T, CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
    >,
{
    let started = std::time::Instant::now();
    let uncertain = std::cell::Cell::new(false);
    let last_refusal: std::cell::RefCell<Option<String>> = Default::default();
    let last_sent = std::sync::Mutex::new(started);
    let deadline = policy.call_deadline();
    // A plugin command refused is run again by its runtime; the agent waits for its next pass.
    let lend = policy.per_call.is_none();
    let outcome = policy
        .run(
            || {
                // Lazy: nothing is sent until the budget's wait is over.
                let request = op();
                let wait = match budget {
                    Some(b) => reserve(b, action, started, deadline, lend),
                    None => Some(std::time::Duration::ZERO),
                };
                let last_sent = &last_sent;
                async move {
                    let wait = wait.ok_or(Attempt::OverBudget)?;
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    if !crate::cloud::gate::is_open() {
                        return Err(Attempt::NotSent);
                    }
                    if let Ok(mut t) = last_sent.lock() {
                        *t = std::time::Instant::now();
                    }
                    let result = request.await;
                    let throttled = result.as_ref().is_err_and(|e| is_throttled(e));
                    crate::cloud::calls::sent(action, throttled);
                    result.map_err(Attempt::Sdk)
                }
            },
            |e| match e {
                Attempt::OverBudget | Attempt::NotSent => Verdict::Fail,
                Attempt::Sdk(e) => {
                    if let Some(b) = budget {
                        // Any answer but "slow down" means the account's bucket had a token.
                        match is_throttled(e) {
                            true => {
                                b.throttled(action, last_sent.lock().map(|t| *t).unwrap_or(started))
                            }
                            false => b.accepted(action),
                        }
                    }
                    if let SdkError::ServiceError(ctx) = e {
                        *last_refusal.borrow_mut() = Some(format!(
                            "{}: {}",
                            ctx.err().code().unwrap_or("HTTP error"),
                            ctx.err().message().unwrap_or_default()
                        ));
                    }
                    if may_have_applied(e) {
                        uncertain.set(true);
                        if repeat == Repeat::NotAfterUnknown {
                            return Verdict::Fail;
                        }
                    }
                    match classify_ec2(e) {
                        // The budget's wait at its lowered pace is the backoff.
                        Verdict::RetryThrottled if budget.is_some() => Verdict::RetryPaced,
                        v => v,
                    }
                }
            },
        )
        .await;
    tracing::debug!(
        action,
        ok = matches!(outcome, Outcome::Done(_)),
        ms = started.elapsed().as_millis() as u64,
        "EC2"
    );
    let over_budget = || {
        CloudError::Transient {
            action,
            reason: match last_refusal.borrow().as_deref() {
                Some(last) => format!("{last}; the node's EC2 budget has no token for a further attempt before the deadline (timeoutMs), even at its configured rate: the account is throttling; raise timeoutMs, or see `aws-eni-ip budget`"),
                None => "the node's EC2 budget has no token before the deadline (timeoutMs): other calls from this node came first".into(),
            },
        }
    };
    let uncertain = uncertain.get();
    match outcome {
        Outcome::Done(v) => {
            if let Some(b) = budget {
                b.accepted(action);
            }
            Ok(v)
        }
        Outcome::Failed(Attempt::Sdk(e)) => Err(ec2_error(action, &e, false, uncertain)),
        Outcome::OutOfTime(Some(Attempt::Sdk(e))) => Err(ec2_error(action, &e, true, uncertain)),
        Outcome::Failed(Attempt::OverBudget) | Outcome::OutOfTime(Some(Attempt::OverBudget)) => {
            Err(over_budget())
        }
        Outcome::Failed(Attempt::NotSent) | Outcome::OutOfTime(Some(Attempt::NotSent)) => {
            Err(CloudError::Transient {
                action,
                reason: "not sent: the requests it carried were given up while it waited".into(),
            })
        }
        Outcome::OutOfTime(None) => Err(CloudError::Transient {
            action,
            reason: "no answer before the deadline (timeoutMs)".into(),
        }),
    }
}

/// The budget's wait for an attempt: by the first deadline of the requesters a shared call carries
/// (a token lent rather than that requester's code 11), else by the call's own.
fn reserve(
    budget: &dyn CallBudget,
    action: &'static str,
    started: std::time::Instant,
    deadline: std::time::Instant,
    lend: bool,
) -> Option<std::time::Duration> {
    let take = |by| match lend {
        true => budget.lend(action, started, by),
        false => budget.reserve(action, started, by),
    };
    crate::cloud::gate::send_by()
        .filter(|by| *by < deadline)
        .and_then(take)
        .or_else(|| take(deadline))
}

/// One attempt's failure: EC2's (or the transport's), or the node budget's refusal to wait that long.
enum Attempt<E> {
    Sdk(E),
    OverBudget,
    /// The gate closed while the attempt waited: nothing was sent.
    NotSent,
}

fn is_throttled<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> bool {
    matches!(e, SdkError::ServiceError(ctx) if THROTTLING_CODES.contains(&ctx.err().code().unwrap_or_default()))
}

/// A request that timed out, broke mid-flight or failed on the server may still have been carried
/// out; one that was throttled or refused was not.
fn may_have_applied<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default();
            !THROTTLING_CODES.contains(&code)
                && (SERVER_CODES.contains(&code) || ctx.raw().status().as_u16() >= 500)
        }
        _ => false,
    }
}

fn classify_ec2<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> Verdict {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Verdict::Retry
        }
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default();
            if THROTTLING_CODES.contains(&code) {
                Verdict::RetryThrottled
            } else if SERVER_CODES.contains(&code) || ctx.raw().status().as_u16() >= 500 {
                Verdict::Retry
            } else if code == "InvalidNetworkInterfaceID.NotFound" {
                // EC2 is eventually consistent: a fresh ENI can be briefly unknown.
                Verdict::RetryBriefly
            } else {
                Verdict::Fail
            }
        }
        _ => Verdict::Fail,
    }
}

fn ec2_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    action: &'static str,
    e: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    out_of_time: bool,
    maybe_applied: bool,
) -> CloudError {
    let transient =
        out_of_time || matches!(classify_ec2(e), Verdict::Retry | Verdict::RetryThrottled);
    match e {
        SdkError::ServiceError(ctx) if !transient => CloudError::Api {
            action,
            code: ctx.err().code().unwrap_or("Unknown").to_string(),
            message: ctx.err().message().unwrap_or_default().to_string(),
            maybe_applied,
        },
        SdkError::ServiceError(ctx) => CloudError::Transient {
            action,
            reason: format!(
                "{}: {}",
                ctx.err().code().unwrap_or("HTTP error"),
                ctx.err().message().unwrap_or_default()
            ),
        },
        other if transient => CloudError::Transient {
            action,
            reason: causes(other),
        },
        other => CloudError::Api {
            action,
            code: "ClientError".into(),
            message: causes(other),
            maybe_applied,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A budget that gives nothing by `refuse_by`, and records each deadline it was asked for,
    /// and whether a loan was allowed.
    struct Asked {
        asked: std::sync::Mutex<Vec<(Instant, bool)>>,
        refuse_by: Option<Instant>,
    }

    impl Asked {
        fn ask(&self, deadline: Instant, lend: bool) -> Option<Duration> {
            self.asked.lock().unwrap().push((deadline, lend));
            (Some(deadline) != self.refuse_by).then_some(Duration::ZERO)
        }
    }

    impl CallBudget for Asked {
        fn reserve(&self, _: &'static str, _: Instant, deadline: Instant) -> Option<Duration> {
            self.ask(deadline, false)
        }
        fn lend(&self, _: &'static str, _: Instant, deadline: Instant) -> Option<Duration> {
            self.ask(deadline, true)
        }
        fn ready_in(&self, _: &'static str) -> Duration {
            Duration::ZERO
        }
        fn throttled(&self, _: &'static str, _: Instant) {}
        fn accepted(&self, _: &'static str) {}
    }

    fn asked(refuse_by: Option<Instant>) -> Asked {
        Asked {
            asked: Default::default(),
            refuse_by,
        }
    }

    const A: &str = "AssignPrivateIpAddresses";

    #[tokio::test(flavor = "current_thread")]
    async fn a_shared_call_asks_the_budget_by_its_first_requesters_deadline_then_by_its_own() {
        let now = Instant::now();
        let (first, own) = (now + Duration::from_secs(5), now + Duration::from_secs(30));
        let mut seen = Vec::new();
        for refuse_by in [None, Some(first)] {
            let b = asked(refuse_by);
            let gated = crate::cloud::gate::gated(|| true, Some(first), async {
                reserve(&b, A, now, own, true)
            });
            assert_eq!(gated.await, Some(Duration::ZERO));
            seen.push(b.asked.into_inner().unwrap());
        }
        assert_eq!(
            seen,
            vec![vec![(first, true)], vec![(first, true), (own, true)]]
        );
        // Outside a shared call, or with a first deadline past its own: by its own only; the
        // agent's calls (no runtime to run them again) are never lent.
        let b = asked(None);
        reserve(&b, A, now, own, true);
        let later = Some(own + Duration::from_secs(1));
        crate::cloud::gate::gated(|| true, later, async { reserve(&b, A, now, own, true) }).await;
        reserve(&b, A, now, own, false);
        assert_eq!(
            b.asked.into_inner().unwrap(),
            vec![(own, true), (own, true), (own, false)]
        );
    }
}
