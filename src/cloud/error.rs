use std::fmt;

/// A failed AWS call, classified for the CNI reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudError {
    /// EC2 answered with an error code; retrying the same request will not help.
    Api {
        action: &'static str,
        code: String,
        message: String,
    },
    /// Throttling, 5xx, timeouts and connection failures that outlived the deadline.
    Transient {
        action: &'static str,
        reason: String,
    },
    /// IMDS answered, but not with what we need (e.g. 404 for an unknown MAC).
    Metadata {
        path: String,
        status: Option<u16>,
        reason: String,
        /// IMDS did not answer in time or answered 5xx: a retry may succeed.
        transient: bool,
    },
}

impl CloudError {
    pub fn api_code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// EC2's answer to unassigning an address the ENI does not hold.
    pub fn is_not_assigned(&self) -> bool {
        matches!(self, CloudError::Api { code, message, .. }
            if code == "InvalidParameterValue" && message.contains("not assigned"))
    }

    pub fn is_eni_not_found(&self) -> bool {
        self.api_code() == Some("InvalidNetworkInterfaceID.NotFound")
    }

    pub fn is_in_use(&self) -> bool {
        self.api_code() == Some("InvalidIPAddress.InUse")
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloudError::Api {
                action,
                code,
                message,
            } => write!(f, "EC2 {action} failed: {code}: {message}"),
            CloudError::Transient { action, reason } => {
                write!(f, "{action} did not succeed before the deadline: {reason}")
            }
            CloudError::Metadata {
                path,
                status: Some(s),
                reason,
                ..
            } => write!(f, "IMDS {path} answered HTTP {s}: {reason}"),
            CloudError::Metadata { path, reason, .. } => write!(f, "IMDS {path}: {reason}"),
        }
    }
}

impl std::error::Error for CloudError {}
