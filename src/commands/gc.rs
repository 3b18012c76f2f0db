//! GC (CNI 1.1): release this network's records that the runtime no longer lists. Keeps going past
//! errors and reports the last one.

use super::release::release;
use super::{Ctx, Summary};
use crate::cloud::Aws;
use crate::cni::CniError;
use crate::node::Host;

pub async fn gc<A: Aws, H: Host>(ctx: &Ctx<'_, A, H>) -> Result<Summary, CniError> {
    let valid = ctx.conf.valid_attachments()?.ok_or_else(|| {
        CniError::invalid_config(
            "GC without \"cni.dev/valid-attachments\": refusing to release everything",
        )
        .with_details("the runtime must list the attachments that are still in use")
    })?;
    let stale: Vec<_> = ctx
        .store
        .all()?
        .into_iter()
        .filter(|r| r.network == ctx.conf.name)
        .filter(|r| {
            !valid
                .iter()
                .any(|v| v.container_id == r.container_id && v.ifname == r.ifname)
        })
        .collect();
    let mut summary = Summary::default();
    let mut last_error = None;
    for record in &stale {
        match release(ctx.store, ctx.aws, record, ctx.deadline).await {
            Ok(released) => summary.addresses.extend(released.addresses),
            Err(e) => {
                tracing::warn!(container = %record.container_id, ifname = %record.ifname, error = %e, "GC could not release");
                last_error = Some(e);
            }
        }
    }
    match last_error {
        Some(e) => Err(e),
        None => {
            summary.note = format!("{} stale record(s) released", stale.len());
            Ok(summary)
        }
    }
}
