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
    let released = release(ctx.store, ctx.aws, &record).await?;
    let kept = record.addresses.len() - released.len();
    Ok(Summary {
        eni: Some(record.eni_id.clone()),
        addresses: released,
        note: if kept == 0 {
            "released".into()
        } else {
            format!("released; {kept} kept (held by another record or no longer on the ENI)")
        },
    })
}
