//! Error replies: every failure becomes `{"cniVersion","code","msg","details"}` on stdout.

use serde::Serialize;
use std::fmt;

/// CNI error codes: the spec's well-known ones (< 100) and this plugin's own (>= 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// STATUS: the plugin cannot serve ADD now.
    NotAvailable = 50,
    NotChained = 100,
    MasterNotFound = 101,
    EniNotFound = 102,
    PrimaryEni = 103,
    ManagedEni = 104,
    OutsideSubnet = 105,
    AddressLimit = 106,
    AddressInUse = 107,
    NotAuthorized = 108,
    CheckFailed = 109,
    Ec2Rejected = 110,
    SubnetFull = 111,
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
