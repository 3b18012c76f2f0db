//! aws-eni-ip: a chained CNI plugin that makes Multus secondary-interface pod addresses routable in
//! the VPC by assigning them as secondary IPs of the master interface's ENI.

pub mod agent;
pub mod cli;
pub mod cloud;
pub mod cni;
pub mod commands;
pub mod config;
pub mod crash;
pub mod log;
pub mod node;
pub mod plugin;
pub mod store;

/// The plugin's own version, printed by `aws-eni-ip version` and checked by `install`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
