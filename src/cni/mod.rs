//! The CNI protocol, and nothing else: environment, network configuration, result versions and
//! error replies. No AWS, no netlink.

pub mod env;
pub mod error;
pub mod netconf;
pub mod result;
pub mod version;

pub use env::{Command, Environment};
pub use error::{CniError, ErrorCode};
pub use netconf::NetConf;
pub use result::CniResult;
pub use version::CniVersion;
