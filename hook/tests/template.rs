//! install/node-group-hook.yaml against the hook's code: every EC2 and Auto Scaling call the code
//! makes is allowed by a statement of the function's role on every resource type the Service
//! Authorization Reference lists for it that the call touches; the EventBridge rule, the lifecycle
//! hooks and the function agree on the hook names; the template's defaults make a valid config.

use aws_eni_ip_hook::config::{HookConfig, DEFAULT_HOOKS};
use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each call, and the resource types EC2 authorizes it against (Service Authorization Reference,
/// "Actions defined by Amazon EC2" / "by Amazon EC2 Auto Scaling"); `*` = no resource-level
/// permissions, the statement must say Resource "*".
const CALLS: &[(&str, &[&str])] = &[
    ("ec2:DescribeInstances", &["*"]),
    ("ec2:DescribeSubnets", &["*"]),
    ("ec2:DescribeNetworkInterfaces", &["*"]),
    ("ec2:GetSubnetCidrReservations", &["*"]),
    // subnet* and network-interface* required; security-group when groups are given.
    (
        "ec2:CreateNetworkInterface",
        &["subnet", "security-group", "network-interface"],
    ),
    // Tags in CreateNetworkInterface's TagSpecification are authorized as CreateTags.
    ("ec2:CreateTags", &["network-interface"]),
    (
        "ec2:AttachNetworkInterface",
        &["instance", "network-interface"],
    ),
    (
        "ec2:DetachNetworkInterface",
        &["instance", "network-interface"],
    ),
    // network-interface* required; instance listed too (DeleteOnTermination is an attachment's).
    (
        "ec2:ModifyNetworkInterfaceAttribute",
        &["network-interface", "instance"],
    ),
    ("ec2:DeleteNetworkInterface", &["network-interface"]),
    ("autoscaling:CompleteLifecycleAction", &["autoScalingGroup"]),
];

/// Auto Scaling's actions among those the code names; the rest are EC2's.
const AUTOSCALING: &[&str] = &["CompleteLifecycleAction", "RecordLifecycleActionHeartbeat"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(p: &str) -> String {
    std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Every quoted CamelCase word right after `sdk_call(…, ` or in `let action = "…"`.
fn actions_named_in(src: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in src.match_indices('"') {
        let before = &src[..i];
        let named = before.trim_end().ends_with("let action =")
            || before
                .rfind("sdk_call(")
                .is_some_and(|at| !before[at..].contains(')') && before[at..].contains(','))
            || before.trim_end().ends_with(".call(");
        if !named {
            continue;
        }
        let word: String = src[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if word.starts_with(|c: char| c.is_ascii_uppercase())
            && src[i + 1 + word.len()..].starts_with('"')
        {
            found.insert(word);
        }
    }
    found
}

/// The bodies of the library's SubnetEc2 methods, by name.
fn library_method_actions(method: &str) -> BTreeSet<String> {
    let src = read("src/cloud/aws/subnet.rs");
    let start = src
        .find(&format!("async fn {method}("))
        .unwrap_or_else(|| panic!("src/cloud/aws/subnet.rs has no fn {method}"));
    let end = src[start + 1..]
        .find("async fn ")
        .map_or(src.len(), |e| start + 1 + e);
    let body = &src[start..end];
    let mut named = actions_named_in(body);
    // Its helpers name actions in plain string literals too (e.g. the reply checks).
    for w in [
        "DescribeSubnets",
        "DescribeNetworkInterfaces",
        "GetSubnetCidrReservations",
    ] {
        if body.contains(&format!("\"{w}\"")) {
            named.insert(w.to_string());
        }
    }
    named
}

/// Every action the hook's code calls, as IAM spells it.
fn calls_in_code() -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    let dir = root().join("hook/src");
    let mut src_all = String::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "rs") {
            let src = std::fs::read_to_string(&p).unwrap();
            actions.extend(actions_named_in(&src));
            src_all.push_str(&src);
        }
    }
    // The library's subnet view (AwsEc2 as SubnetEc2), reached through `subnets()`.
    for method in ["subnet", "interfaces", "reservations"] {
        if src_all.contains(&format!(".{method}(")) {
            actions.extend(library_method_actions(method));
        }
    }
    let mut iam: BTreeSet<String> = actions
        .into_iter()
        .map(|a| match AUTOSCALING.contains(&a.as_str()) {
            true => format!("autoscaling:{a}"),
            false => format!("ec2:{a}"),
        })
        .collect();
    if src_all.contains(".tag_specifications(") {
        iam.insert("ec2:CreateTags".into());
    }
    iam
}

fn template() -> Value {
    serde_yaml_ng::from_str(&read("install/node-group-hook.yaml")).expect("the template is YAML")
}

/// A scalar, or what a `!Sub`/`!Ref` tag wraps.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Tagged(t) => text(&t.value),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s.iter().filter_map(text).collect(),
        other => text(other).into_iter().collect(),
    }
}

fn statements(t: &Value) -> Vec<Value> {
    t["Resources"]["HookRole"]["Properties"]["Policies"]
        .as_sequence()
        .expect("HookRole has inline policies")
        .iter()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn allows(statement: &Value, action: &str, resource_type: &str) -> bool {
    if text(&statement["Effect"]).as_deref() != Some("Allow")
        || !strings(&statement["Action"]).iter().any(|a| a == action)
    {
        return false;
    }
    strings(&statement["Resource"])
        .iter()
        .any(|r| match resource_type {
            "*" => r == "*",
            "autoScalingGroup" => r == "*" || r.contains(":autoScalingGroup:"),
            t => r == "*" || r.contains(&format!(":{t}/")),
        })
}

#[test]
fn every_ec2_and_autoscaling_call_in_the_hooks_code_is_listed_with_its_resource_types() {
    let listed: BTreeSet<String> = CALLS.iter().map(|(a, _)| a.to_string()).collect();
    let called = calls_in_code();
    assert!(
        called.contains("ec2:AttachNetworkInterface") && called.contains("ec2:DescribeSubnets"),
        "the scan of the code found too little: {called:?}"
    );
    assert_eq!(
        called, listed,
        "the code's calls and this test's list differ: add the new call with its resource types from the Service Authorization Reference"
    );
}

#[test]
fn every_call_is_allowed_by_a_statement_of_the_role_on_each_resource_type_it_touches() {
    let t = template();
    let st = statements(&t);
    let missing: Vec<String> = CALLS
        .iter()
        .flat_map(|(action, types)| types.iter().map(move |ty| (*action, *ty)))
        .filter(|(action, ty)| !st.iter().any(|s| allows(s, action, ty)))
        .map(|(action, ty)| format!("{action} on {ty}"))
        .collect();
    assert!(
        missing.is_empty(),
        "install/node-group-hook.yaml's HookRole allows no: {missing:?}"
    );
}

#[test]
fn the_rule_the_hooks_and_the_function_agree_on_the_hook_names() {
    let t = template();
    let r = &t["Resources"];
    let rule: BTreeSet<String> = strings(
        &r["LifecycleEventsRule"]["Properties"]["EventPattern"]["detail"]["LifecycleHookName"],
    )
    .into_iter()
    .collect();
    let hooks: BTreeSet<String> = r
        .as_mapping()
        .unwrap()
        .values()
        .filter(|v| text(&v["Type"]).as_deref() == Some("AWS::AutoScaling::LifecycleHook"))
        .filter_map(|v| text(&v["Properties"]["LifecycleHookName"]))
        .collect();
    let env =
        text(&r["HookFunction"]["Properties"]["Environment"]["Variables"]["LIFECYCLE_HOOK_NAMES"])
            .unwrap_or_default();
    let function: BTreeSet<String> = env.split(',').map(|s| s.trim().to_string()).collect();
    let defaults: BTreeSet<String> = DEFAULT_HOOKS.iter().map(|s| s.to_string()).collect();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert_eq!(
        rule, hooks,
        "the rule must match only the stack's own hooks"
    );
    assert_eq!(function, hooks);
    assert_eq!(defaults, hooks, "the function's default names");
}

#[test]
fn the_templates_defaults_make_a_configuration_the_function_accepts() {
    let t = template();
    let params = &t["Parameters"];
    let vars = t["Resources"]["HookFunction"]["Properties"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap()
        .clone();
    let get = |k: &str| -> Option<String> {
        let v = vars.get(k)?;
        match v {
            Value::Tagged(tag) if tag.tag == "Ref" => {
                let p = text(&tag.value)?;
                text(&params[p.as_str()]["Default"])
            }
            Value::Tagged(tag) if tag.tag == "Join" => {
                Some("subnet-0a1".into()).filter(|_| k == "MULTUS_SUBNETS")
            }
            other => text(other),
        }
    };
    let cfg = HookConfig::from_env(get).expect("the template's defaults");
    assert_eq!(cfg.drain_timeout.as_secs(), 180);
    assert_eq!(cfg.heartbeat_timeout.as_secs(), 300);
    for hook in ["LaunchHook", "TerminateHook"] {
        let h = &t["Resources"][hook]["Properties"]["HeartbeatTimeout"];
        assert_eq!(
            text(h).as_deref(),
            Some("HeartbeatTimeoutSeconds"),
            "{hook}'s heartbeat is the parameter the function is told"
        );
    }
}
