//! The node-group hook: an AWS Lambda function on the Auto Scaling group's lifecycle hooks
//! (events from EventBridge) that gives each new node its Multus ENIs and removes them when the
//! node goes. The seed's node side (shared/seed), in Rust, on the plugin's cloud layer.

pub mod aws;
pub mod config;
pub mod drain;
pub mod event;
pub mod lifecycle;
pub mod settle;
pub mod worker_ip;
