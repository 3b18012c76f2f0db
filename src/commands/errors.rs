//! The one place where the lower layers' errors (cloud, store, host) become CNI replies that name
//! the ENI, address or path and say what to do.

use crate::cloud::CloudError;
use crate::cni::{CniError, ErrorCode};
use crate::node::HostError;
use crate::store::StoreError;

/// `subject` names what was being done, e.g. "assign 198.18.1.5 to eni-0b…".
pub fn from_cloud(err: &CloudError, subject: &str) -> CniError {
    match err {
        CloudError::Transient { .. } => CniError::new(
            ErrorCode::TryAgainLater,
            format!("could not {subject}: {err}"),
        )
        .with_details("EC2 is throttling or unavailable; the runtime's retry completes the operation (raise \"timeoutMs\" if this persists)"),
        CloudError::Metadata { transient: true, .. } => CniError::new(
            ErrorCode::TryAgainLater,
            format!("could not {subject}: {err}"),
        )
        .with_details("IMDS did not answer; check the instance metadata options (IMDSv2, hop limit) and retry"),
        CloudError::Metadata { status: Some(404), .. } => CniError::new(
            ErrorCode::EniNotFound,
            format!("could not {subject}: {err}"),
        )
        .with_details("the master link's MAC is not an ENI of this instance; set \"master\" to the link of an attached ENI"),
        CloudError::Metadata { .. } => CniError::new(
            ErrorCode::ImdsUnusable,
            format!("could not {subject}: {err}"),
        )
        .with_details("IMDS refused the request; enable IMDSv2 with a hop limit of at least 1 for host-network processes"),
        CloudError::Api { code, .. } => {
            let (code_num, details) = match code.as_str() {
                "InvalidNetworkInterfaceID.NotFound" | "InvalidNetworkInterfaceID.Malformed" => (
                    ErrorCode::EniNotFound,
                    "the ENI no longer exists or is not in this region; check the master link and \"region\"",
                ),
                "PrivateIpAddressLimitExceeded" | "AddressLimitExceeded" => (
                    ErrorCode::AddressLimit,
                    "the ENI holds as many addresses as its instance type allows; use a larger instance type or another ENI",
                ),
                "InvalidIPAddress.InUse" => (
                    ErrorCode::AddressInUse,
                    "another ENI holds the address; set \"allowReassignment\": true to move it, or fix the IPAM range",
                ),
                "UnauthorizedOperation" | "AuthFailure" | "InvalidClientTokenId"
                | "SignatureDoesNotMatch" | "MissingAuthenticationToken" | "OptInRequired"
                | "Blocked" => (
                    ErrorCode::NotAuthorized,
                    "the node role lacks permission; attach install/iam-policy.json and tag the ENI node.k8s.amazonaws.com/no_manage=true",
                ),
                "InsufficientFreeAddressesInSubnet" => (
                    ErrorCode::SubnetFull,
                    "the subnet has no free addresses; free some or use a larger subnet",
                ),
                _ => (
                    ErrorCode::Ec2Rejected,
                    "EC2 rejected the request; the message above is EC2's own",
                ),
            };
            CniError::new(code_num, format!("could not {subject}: {err}")).with_details(details)
        }
    }
}

impl From<StoreError> for CniError {
    fn from(e: StoreError) -> CniError {
        let (code, details) = match &e {
            StoreError::Corrupt { .. } => (
                ErrorCode::Io,
                "inspect it; removing it makes the plugin forget that attachment",
            ),
            StoreError::Io { .. } => (
                ErrorCode::Io,
                "the plugin runs as root; check free space and permissions of the state dir, or set \"stateDir\"",
            ),
            StoreError::LockTimeout { .. } => (
                ErrorCode::TryAgainLater,
                "another plugin process on this node holds it (a slow EC2 call for the same address); the runtime's retry completes the operation",
            ),
            StoreError::BadKey { .. } => (
                ErrorCode::InvalidConfig,
                "network names, container ids and interface names may not contain '/', '\\' or NUL, nor be '.' or '..'",
            ),
        };
        CniError::new(code, e.to_string()).with_details(details)
    }
}

impl From<HostError> for CniError {
    fn from(e: HostError) -> CniError {
        let details = match &e {
            HostError::NoSuchLink { .. } => {
                "check \"master\" in the NetworkAttachmentDefinition against `ip link` on the node".into()
            }
            HostError::NotEthernet { .. } => {
                "set \"master\" to the host link of a secondary ENI".into()
            }
            HostError::Netns { .. } => {
                "the pod sandbox is gone, or set \"master\" in the config".into()
            }
            HostError::NoPodInterface { .. } => {
                "aws-eni-ip must come after the plugin that creates the interface".into()
            }
            HostError::NoParent { .. } => {
                "it is not an ipvlan/macvlan link; set \"master\" in the config".into()
            }
            HostError::ParentElsewhere { .. } => {
                "run the plugin in the node's network namespace, or set \"master\"".into()
            }
            HostError::Netlink(_) => {
                "set \"master\" in the config, or report this with the log".into()
            }
            HostError::MasterDown { name, .. } => format!(
                "the aws-eni-ip agent brings this instance's no_manage ENIs up; check that it runs on this node (kubectl -n kube-system get pods -l app.kubernetes.io/name=aws-eni-ip -o wide), or run `ip link set {name} up`"
            ),
        };
        // The agent brings a no_manage ENI's link up within seconds: the runtime's retry succeeds.
        let code = match e {
            HostError::MasterDown { .. } => ErrorCode::TryAgainLater,
            _ => ErrorCode::MasterNotFound,
        };
        CniError::new(code, e.to_string()).with_details(details)
    }
}
