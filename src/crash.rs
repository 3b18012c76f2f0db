//! Crash points for tests: in debug builds only, `AWS_ENI_IP_CRASH_AT=<point>` SIGKILLs the plugin
//! there, so tests prove that a plugin killed mid-command leaves a state the runtime's follow-up
//! (DEL, GC or a repeated ADD) repairs. Release builds compile this to nothing.

/// Where a command may die: the names tests use in `AWS_ENI_IP_CRASH_AT`. `release:*` fire in
/// every release (DEL, GC, a rollback).
pub const POINTS: [&str; 8] = [
    "add:before-record",
    "add:before-ec2",
    "add:after-ec2",
    "add:after-record",
    "release:before-ec2",
    "release:after-ec2",
    "release:after-record",
    "batch:after-shared-ec2",
];

#[inline]
pub fn point(name: &'static str) {
    #[cfg(debug_assertions)]
    if std::env::var("AWS_ENI_IP_CRASH_AT").is_ok_and(|p| p == name) && first_to_crash() {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// With `AWS_ENI_IP_CRASH_ONCE=FILE`, only the first process to create FILE dies: the others of a
/// test's group carry on past the same point.
#[cfg(debug_assertions)]
fn first_to_crash() -> bool {
    match std::env::var_os("AWS_ENI_IP_CRASH_ONCE") {
        None => true,
        Some(marker) => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
            .is_ok(),
    }
}
