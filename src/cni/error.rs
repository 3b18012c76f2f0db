//! Error replies: every failure becomes `{"cniVersion","code","msg","details"}` on stdout.

use serde::Serialize;
use std::fmt;

/// CNI error codes: the spec's well-known ones (< 100) and this plugin's own (>= 100).
/// <https://github.com/containernetworking/cni/blob/main/SPEC.md#error>
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The config's cniVersion is not one this plugin speaks, or the command needs a newer one.
    IncompatibleVersion = 1,
    /// A field of the config is not supported.
    UnsupportedField = 2,
    /// A `CNI_*` variable is missing or malformed.
    InvalidEnvironment = 4,
    /// The state dir or stdin could not be read or written.
    Io = 5,
    /// stdin (or prevResult) is not the JSON the spec describes.
    Decode = 6,
    /// A key of the network config has a bad value.
    InvalidConfig = 7,
    /// EC2 or IMDS is throttling, slow or down: the runtime should retry.
    TryAgainLater = 11,
    /// STATUS: the plugin cannot serve ADD now.
    NotAvailable = 50,
    /// ADD or CHECK without prevResult: the plugin only works chained after ipvlan/macvlan.
    NotChained = 100,
    /// The master link (config `master`, or the pod interface's parent) is missing or not Ethernet.
    MasterNotFound = 101,
    /// The master's MAC is not an ENI of this instance (IMDS 404), or EC2 does not know the ENI.
    EniNotFound = 102,
    /// The master is the primary ENI (device index 0) and `allowPrimaryEni` is off.
    PrimaryEni = 103,
    /// The ENI lacks `node.k8s.amazonaws.com/no_manage=true`: the VPC CNI manages it.
    ManagedEni = 104,
    /// A pod address is outside every subnet CIDR of the ENI.
    OutsideSubnet = 105,
    /// The ENI holds as many addresses as its instance type allows.
    AddressLimit = 106,
    /// Another ENI holds the address (and may not lose it), or it is the ENI's primary IP.
    AddressInUse = 107,
    /// IAM denied the call (or the credentials are invalid).
    NotAuthorized = 108,
    /// CHECK: a pod address is not recorded, or no longer on the recorded ENI.
    CheckFailed = 109,
    /// EC2 refused the request for a reason not listed above; the message is EC2's own.
    Ec2Rejected = 110,
    /// The subnet has no free address (`InsufficientFreeAddressesInSubnet`).
    SubnetFull = 111,
    /// IMDS refused the token (IMDSv2 disabled, or the hop limit too low for this process).
    ImdsUnusable = 112,
}

impl ErrorCode {
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

/// A failure with its CNI code, a message naming the thing, and optional details (the fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: ErrorCode,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidConfig, msg)
    }

    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEnvironment, msg)
    }

    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::Io, msg)
    }

    /// True for failures that a later retry of the same command may cure.
    pub fn is_transient(&self) -> bool {
        self.code == ErrorCode::TryAgainLater
    }

    /// The JSON reply the runtime reads from stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Reply<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Reply {
            cni_version,
            code: self.code.as_u32(),
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_else(|_| format!("{{\"code\":{}}}", self.code.as_u32()))
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_code_msg_and_details() {
        let e = CniError::new(ErrorCode::OutsideSubnet, "198.18.9.1 is outside")
            .with_details("use an address in 198.18.1.0/24");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["code"], 105);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["msg"], "198.18.9.1 is outside");
        assert_eq!(v["details"], "use an address in 198.18.1.0/24");
    }

    #[test]
    fn empty_details_are_omitted() {
        let e = CniError::io("state dir");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("0.3.0")).unwrap();
        assert!(v.get("details").is_none());
        assert_eq!(v["code"], 5);
    }
}
