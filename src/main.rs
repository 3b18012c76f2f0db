//! With `CNI_COMMAND` set: a CNI plugin. Without: the operators' and installer's CLI.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_some() {
        let reply =
            aws_eni_ip::plugin::run(|k| std::env::var(k).ok(), &mut std::io::stdin().lock());
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(reply.stdout.as_bytes());
        let _ = out.flush();
        return ExitCode::from(reply.exit_code);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("install") => aws_eni_ip::cli::install::run(&args[1..]),
        Some("agent") => aws_eni_ip::cli::agent::run(&args[1..]),
        Some("state") => aws_eni_ip::cli::state::run(&args[1..]),
        Some("budget") => aws_eni_ip::cli::budget::run(&args[1..]),
        Some("subnet") => aws_eni_ip::cli::subnet::run(&args[1..]),
        Some("version" | "--version" | "-V") => {
            println!("{}", aws_eni_ip::plugin::version_text());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "aws-eni-ip {}: a chained CNI plugin (run by the container runtime with CNI_COMMAND set)\n\
                 usage: aws-eni-ip install [--cni-bin-dir DIR] [--keep] | aws-eni-ip agent [FLAGS] | aws-eni-ip state [--state-dir DIR] [--json] [--check]\n       \
                 | aws-eni-ip budget [--burst N --refill-per-second R]\n       \
                 | aws-eni-ip subnet check|reserve --subnet S --cidr C [--json] | aws-eni-ip version",
                aws_eni_ip::VERSION
            );
            ExitCode::from(2)
        }
    }
}
