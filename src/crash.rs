//! Crash points for tests: in debug builds only, `AWS_ENI_IP_CRASH_AT=<point>` SIGKILLs the plugin
//! there, so tests prove that a plugin killed mid-command leaves a state the runtime's follow-up
//! (DEL, GC or a repeated ADD) repairs. Release builds compile this to nothing.

/// Where a command may die: the names tests use in `AWS_ENI_IP_CRASH_AT`. `release:*` fire in
/// every release (DEL, GC, a rollback).
pub const POINTS: [&str; 7] = [
    "add:before-record",
    "add:before-ec2",
    "add:after-ec2",
    "add:after-record",
    "release:before-ec2",
    "release:after-ec2",
    "release:after-record",
];

#[inline]
pub fn point(name: &'static str) {
    #[cfg(debug_assertions)]
    if std::env::var("AWS_ENI_IP_CRASH_AT").is_ok_and(|p| p == name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
