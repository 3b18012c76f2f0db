//! STATUS (CNI 1.1): ready for ADD when IMDS answers and the state dir is writable. No EC2 calls.

use crate::cloud::{Aws, Metadata};
use crate::cni::{CniError, ErrorCode};
use crate::store::{Store, StoreError};

pub async fn status(store: Result<Store, StoreError>, aws: &impl Aws) -> Result<(), CniError> {
    let not_ready = |msg: String| CniError::new(ErrorCode::NotAvailable, msg);
    let store = store.map_err(|e| not_ready(format!("state dir unusable: {e}")))?;
    store
        .probe_writable()
        .map_err(|e| not_ready(format!("state dir is not writable: {e}")))?;
    aws.metadata().instance_id().await.map(|_| ()).map_err(|e| {
        not_ready(format!("IMDS does not answer: {e}"))
            .with_details("ADD needs IMDSv2 to map the master's MAC to its ENI; check the instance metadata options")
    })
}
