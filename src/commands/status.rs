//! STATUS (CNI 1.1): ready for ADD when IMDS answers and the state dir is writable. No EC2 calls.

use crate::cloud::{Aws, Metadata};
use crate::cni::{CniError, ErrorCode};
use crate::store::Store;

pub async fn status(store: Result<Store, CniError>, aws: &impl Aws) -> Result<(), CniError> {
    let not_ready = |msg: String| CniError::new(ErrorCode::NotAvailable, msg);
    let store = store.map_err(|e| not_ready(format!("state dir unusable: {e}")))?;
    let probe = store
        .root()
        .join(format!(".status-probe.{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            not_ready(format!(
                "state dir {} is not writable: {e}",
                store.root().display()
            ))
        })?;
    aws.metadata().ping().await.map_err(|e| {
        not_ready(format!("IMDS does not answer: {e}"))
            .with_details("ADD needs IMDSv2 to map the master's MAC to its ENI; check the instance metadata options")
    })
}
