//! DEL: the state store is the authority (prevResult may be missing). Idempotent: no record, a
//! missing netns, an address already gone — all succeed. A transient failure keeps the record and
//! returns 11. A failure the runtime's retry would not fix (108, ENI gone, another EC2 refusal)
//! must not block the chain's teardown: with a live node agent the record is marked `releasing`
//! and DEL succeeds; the agent retries until the release is done.

use super::release::release_locked;
use super::{Ctx, Summary};
use crate::cloud::Aws;
use crate::cni::CniError;
use crate::node::Host;
use crate::store::{Attachment, Phase};

pub async fn del<A: Aws, H: Host>(ctx: &Ctx<'_, A, H>) -> Result<Summary, CniError> {
    // Read under the locks: the agent may add a run-time address to the record meanwhile.
    let (_locks, record) = ctx.store.lock_record(&ctx.key(), &[], ctx.deadline)?;
    let Some(record) = record else {
        return Ok(Summary::note("no record: nothing this node assigned"));
    };
    let released = match release_locked(ctx.store, ctx.aws, &record, ctx.deadline).await {
        Ok(r) => r,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => return hand_off(ctx, record, e),
    };
    let kept = record
        .addresses
        .len()
        .saturating_sub(released.addresses.len());
    Ok(Summary {
        eni: Some(record.eni_id.clone()),
        addresses: released.addresses,
        note: if released.eni_detached {
            "ENI no longer attached to this instance: record dropped, EC2 untouched".into()
        } else if kept == 0 {
            "released".into()
        } else {
            format!(
                "released; {kept} kept (adopted, held by another record, or no longer on the ENI)"
            )
        },
        handed_off: false,
    })
}

/// Leaves the release to the agent when one runs on the node (the caller holds the locks).
fn hand_off<A, H>(
    ctx: &Ctx<'_, A, H>,
    mut record: Attachment,
    error: CniError,
) -> Result<Summary, CniError> {
    if let Err(why) = ctx.store.node().hand_off_to_agent(ctx.store.root()) {
        let details = match error.details.as_str() {
            "" => String::new(),
            d => format!("{d}; "),
        };
        return Err(error.with_details(format!(
            "{details}the pod's other plugins get no DEL until this succeeds, and it is not handed over: {why}"
        )));
    }
    record.phase = Phase::Releasing;
    record.release_error = Some(error.to_string());
    if let Err(e) = ctx.store.put(&record) {
        tracing::warn!(error = %e, "could not hand the release to the agent");
        return Err(error);
    }
    tracing::warn!(eni = %record.eni_id, addresses = %super::list(&record.addresses), error = %error,
        "DEL could not release; handed to the node agent, which retries");
    Ok(Summary {
        eni: Some(record.eni_id.clone()),
        addresses: Vec::new(),
        note: format!("handed to the node agent: {}", error.msg),
        handed_off: true,
    })
}
