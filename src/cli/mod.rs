//! CLI mode: what operators and the DaemonSet run (no `CNI_COMMAND` in the environment).

pub mod agent;
pub mod budget;
pub mod install;
pub mod state;
pub mod subnet;
