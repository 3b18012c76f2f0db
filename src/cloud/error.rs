/// EC2 error codes that mean "slow down", not "no".
pub const THROTTLING_CODES: [&str; 4] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "EC2ThrottledException",
];

/// A failed AWS call, classified for whoever reports it (a CNI reply, the agent's log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// EC2 answered with an error code; retrying the same request will not help.
    #[error("EC2 {action} failed: {code}: {message}")]
    Api {
        action: &'static str,
        code: String,
        message: String,
        /// An earlier attempt of this same request timed out or failed on the server: it may
        /// have taken effect, so what EC2 refuses now may be what that attempt did.
        maybe_applied: bool,
    },
    /// Throttling, 5xx, timeouts and connection failures that outlived the deadline.
    #[error("{action} did not succeed before the deadline: {reason}")]
    Transient {
        action: &'static str,
        reason: String,
    },
    /// IMDS answered, but not with what we need (e.g. 404 for an unknown MAC).
    #[error("IMDS {path}{}: {reason}", status.map(|s| format!(" answered HTTP {s}")).unwrap_or_default())]
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

    /// See [`CloudError::Api`]'s `maybe_applied`.
    pub fn maybe_applied(&self) -> bool {
        matches!(
            self,
            CloudError::Api {
                maybe_applied: true,
                ..
            }
        )
    }
}
