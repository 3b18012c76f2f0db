//! DEL: the state store is the authority (prevResult may be missing). Idempotent: no record, a
//! missing netns, an address already gone — all succeed. A transient failure keeps the record.

use super::release::release;
use super::{Ctx, Summary};
use crate::cloud::Aws;
use crate::cni::CniError;
use crate::node::Host;

pub async fn del<A: Aws, H: Host>(ctx: &Ctx<'_, A, H>) -> Result<Summary, CniError> {
    let Some(record) = ctx.store.get(&ctx.key())? else {
        return Ok(Summary::note("no record: nothing this node assigned"));
    };
    let released = release(ctx.store, ctx.aws, &record, ctx.deadline).await?;
    let kept = record.addresses.len() - released.addresses.len();
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
    })
}
