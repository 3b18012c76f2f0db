//! The `CNI_*` environment: `Environment::from_vars`, `parse_args`, `validate_container_id` and
//! `validate_ifname`, each checked against a model of its rule; then `plugin::run` where it stops
//! before any side effect (env rejected, VERSION, or a stdin config that does not parse).
//!
//! Input: fields separated by NUL (environment values cannot hold one): CNI_COMMAND, CNI_CONTAINERID,
//! CNI_NETNS, CNI_IFNAME, CNI_ARGS, then stdin. A missing field is an unset variable. A one-byte
//! CNI_COMMAND picks a command by index, so the fuzzer reaches every command easily.

#![no_main]

use aws_eni_ip::cni::env::{parse_args, validate_container_id, validate_ifname};
use aws_eni_ip::cni::{Command, Environment, ErrorCode, NetConf};
use aws_eni_ip::plugin;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const COMMANDS: [&str; 7] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "add"];
const VARS: [&str; 5] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
];

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let mut fields = data.splitn(VARS.len() + 1, |b| *b == 0);
    let mut vars: Vec<Option<String>> = VARS
        .iter()
        .map(|_| {
            fields
                .next()
                .map(|f| String::from_utf8_lossy(f).into_owned())
        })
        .collect();
    let stdin = fields.next().unwrap_or_default();
    if let Some(cmd) = vars[0].as_mut().filter(|c| c.len() == 1) {
        *cmd = COMMANDS[usize::from(cmd.as_bytes()[0]) % COMMANDS.len()].to_string();
    }
    let get = |k: &str| {
        let i = VARS.iter().position(|v| *v == k)?;
        vars[i].clone()
    };

    let args = check_parse_args(vars[4].as_deref().unwrap_or_default());
    for id in vars[1].iter() {
        assert_eq!(
            validate_container_id(id).is_ok(),
            container_id_model(id),
            "{id:?}"
        );
    }
    for name in vars[3].iter() {
        assert_eq!(
            validate_ifname(name).is_ok(),
            ifname_model(name),
            "{name:?}"
        );
    }

    let env = Environment::from_vars(get);
    match &env {
        Ok(env) => {
            assert_eq!(Some(env.command.as_str()), vars[0].as_deref());
            assert_eq!(Some(&env.args), args.as_ref());
            assert_eq!(env.netns, vars[2].clone().filter(|n| !n.is_empty()));
            if matches!(env.command, Command::Add | Command::Del | Command::Check) {
                assert_eq!(Some(&env.container_id), vars[1].as_ref());
                assert_eq!(Some(&env.ifname), vars[3].as_ref());
                assert!(container_id_model(&env.container_id));
                assert!(ifname_model(&env.ifname));
            }
            if matches!(env.command, Command::Add | Command::Check) {
                assert!(env.netns.is_some());
            }
        }
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{e}"),
    }

    // Only where run() returns before it touches the disk, the network or the log file.
    let stops_early = match &env {
        Err(_) => true,
        Ok(env) => env.command == Command::Version || NetConf::parse(stdin).is_err(),
    };
    if stops_early {
        let reply = plugin::run(get, &mut &stdin[..]);
        let v: Value = serde_json::from_str(&reply.stdout).expect("reply is JSON");
        assert!(v["cniVersion"].is_string(), "{v}");
        match &env {
            Ok(env) if env.command == Command::Version => assert_eq!(reply.exit_code, 0, "{v}"),
            _ => {
                assert_eq!(reply.exit_code, 1, "{v}");
                let code = v["code"].as_u64().expect("error reply has a code");
                assert!([1, 4, 6, 7].contains(&code), "{v}");
                if env.is_err() {
                    assert_eq!(code, 4, "{v}");
                }
            }
        }
    }
}

/// `K=V;K=V`: empty segments are skipped, each other segment needs a non-empty key before '='.
fn check_parse_args(raw: &str) -> Option<Vec<(String, String)>> {
    let model: Option<Vec<(String, String)>> = raw
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let eq = s.find('=').filter(|i| *i > 0)?;
            Some((s[..eq].to_string(), s[eq + 1..].to_string()))
        })
        .collect();
    match parse_args(raw) {
        Ok(pairs) => {
            assert_eq!(Some(&pairs), model.as_ref(), "{raw:?}");
            for (k, v) in &pairs {
                assert!(!k.is_empty() && !k.contains([';', '=']) && !v.contains(';'));
            }
        }
        Err(e) => {
            assert_eq!(model, None, "{raw:?} rejected: {e}");
            assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        }
    }
    model
}

/// libcni's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, plus this plugin's 200-byte cap.
fn container_id_model(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// libcni's ValidateInterfaceName (1-15 bytes, not "." or "..", no '/', ':' or white space),
/// plus this plugin's refusal of control characters.
fn ifname_model(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}
