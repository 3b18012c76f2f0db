//! The function's configuration, from its environment variables; read once at cold start so a bad
//! value fails the init (visible in the function's log) instead of every instance launch.

use std::collections::BTreeMap;
use std::time::Duration;

/// How a new Multus ENI gets its primary address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerIpMode {
    /// EC2's DHCP chooses, outside explicit subnet CIDR reservations (approach 2 of the seed).
    Dhcp,
    /// The lowest free address of the subnet outside every reservation (approach 1: pod ranges
    /// live at the subnet's end, worker addresses at its start).
    StaticFromStart,
}

/// One Multus subnet and the device index its ENI takes on the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultusSubnet {
    pub subnet_id: String,
    pub device_index: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    pub subnets: Vec<MultusSubnet>,
    pub security_groups: Vec<String>,
    pub extra_tags: BTreeMap<String, String>,
    pub worker_ip_mode: WorkerIpMode,
    /// The lifecycle hooks this function completes; any other hook's event is logged and ignored.
    pub own_hooks: Vec<String>,
    /// How long terminate waits for the node's Multus ENIs to lose their pod addresses.
    pub drain_timeout: Duration,
    /// The lifecycle hooks' heartbeat timeout: no work may outlast it (Auto Scaling moves on).
    pub heartbeat_timeout: Duration,
}

/// Time kept, after the drain wait, for detaching, deleting and completing the action.
pub const REMOVAL_RESERVE: Duration = Duration::from_secs(30);
/// The hook names install/node-group-hook.yaml creates.
pub const DEFAULT_HOOKS: [&str; 2] = ["aws-eni-ip-launch", "aws-eni-ip-terminate"];
const DEFAULT_DRAIN_SECONDS: u64 = 180;
const DEFAULT_HEARTBEAT_SECONDS: u64 = 300;
/// A Lambda invocation lasts at most 15 minutes.
const LAMBDA_MAX_SECONDS: u64 = 900;

pub const SUBNETS: &str = "MULTUS_SUBNETS";
pub const DEVICE_INDEXES: &str = "MULTUS_DEVICE_INDEXES";
pub const SECURITY_GROUPS: &str = "MULTUS_SECURITY_GROUPS";
pub const TAGS: &str = "MULTUS_TAGS";
pub const MODE: &str = "WORKER_IP_MODE";
pub const HOOK_NAMES: &str = "LIFECYCLE_HOOK_NAMES";
pub const DRAIN_TIMEOUT: &str = "DRAIN_TIMEOUT_SECONDS";
pub const HEARTBEAT_TIMEOUT: &str = "HEARTBEAT_TIMEOUT_SECONDS";

fn list(v: Option<String>) -> Vec<String> {
    v.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl HookConfig {
    /// Reads the variables through `get`; the error names the variable and the fix.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<HookConfig, String> {
        let subnet_ids = list(get(SUBNETS));
        if subnet_ids.is_empty() {
            return Err(format!(
                "{SUBNETS} is empty: set it to the Multus subnets, comma-separated (e.g. subnet-0a1,subnet-0b2)"
            ));
        }
        if let Some(bad) = subnet_ids.iter().find(|s| !s.starts_with("subnet-")) {
            return Err(format!("{SUBNETS}: {bad:?} is not a subnet id (subnet-…)"));
        }
        let indexes = list(get(DEVICE_INDEXES));
        let device_indexes: Vec<i32> = if indexes.is_empty() {
            (1..).take(subnet_ids.len()).collect()
        } else {
            if indexes.len() != subnet_ids.len() {
                return Err(format!(
                    "{DEVICE_INDEXES} has {} entries, {SUBNETS} {}: give one device index per subnet",
                    indexes.len(),
                    subnet_ids.len()
                ));
            }
            indexes
                .iter()
                .map(|i| match i.parse::<i32>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(format!(
                        "{DEVICE_INDEXES}: {i:?} is not a device index of 1 or more (0 is the primary ENI)"
                    )),
                })
                .collect::<Result<_, _>>()?
        };
        let security_groups = list(get(SECURITY_GROUPS));
        if let Some(bad) = security_groups.iter().find(|s| !s.starts_with("sg-")) {
            return Err(format!(
                "{SECURITY_GROUPS}: {bad:?} is not a security group id (sg-…)"
            ));
        }
        let mut extra_tags = BTreeMap::new();
        for pair in list(get(TAGS)) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(format!("{TAGS}: {pair:?} is not key=value"));
            };
            if k.is_empty() || k.starts_with("aws:") {
                return Err(format!(
                    "{TAGS}: tag key {k:?} is empty or in the reserved aws: namespace"
                ));
            }
            extra_tags.insert(k.to_string(), v.to_string());
        }
        let worker_ip_mode = match get(MODE).as_deref().map(str::trim) {
            None | Some("") | Some("dhcp") => WorkerIpMode::Dhcp,
            Some("static-from-start") => WorkerIpMode::StaticFromStart,
            Some(other) => {
                return Err(format!(
                    "{MODE}: {other:?} is not dhcp or static-from-start"
                ))
            }
        };
        let mut own_hooks = list(get(HOOK_NAMES));
        if own_hooks.is_empty() {
            own_hooks = DEFAULT_HOOKS.iter().map(|h| h.to_string()).collect();
        }
        let seconds = |var: &str, default: u64, min: u64| -> Result<u64, String> {
            match get(var).as_deref().map(str::trim) {
                None | Some("") => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (min..=LAMBDA_MAX_SECONDS).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "{var}: {v:?} is not a number of seconds from {min} to {LAMBDA_MAX_SECONDS}"
                    )),
                },
            }
        };
        let drain = seconds(DRAIN_TIMEOUT, DEFAULT_DRAIN_SECONDS, 0)?;
        let heartbeat = seconds(HEARTBEAT_TIMEOUT, DEFAULT_HEARTBEAT_SECONDS, 30)?;
        if drain + REMOVAL_RESERVE.as_secs() > heartbeat {
            return Err(format!(
                "{DRAIN_TIMEOUT} ({drain}) leaves less than {} s of {HEARTBEAT_TIMEOUT} ({heartbeat}) for removing the ENIs: lower the drain timeout or raise the lifecycle hooks' heartbeat timeout",
                REMOVAL_RESERVE.as_secs()
            ));
        }
        Ok(HookConfig {
            subnets: subnet_ids
                .into_iter()
                .zip(device_indexes)
                .map(|(subnet_id, device_index)| MultusSubnet {
                    subnet_id,
                    device_index,
                })
                .collect(),
            security_groups,
            extra_tags,
            worker_ip_mode,
            own_hooks,
            drain_timeout: Duration::from_secs(drain),
            heartbeat_timeout: Duration::from_secs(heartbeat),
        })
    }

    /// Whether this function created `hook`, so may complete its actions.
    pub fn owns(&self, hook: &str) -> bool {
        self.own_hooks.iter().any(|h| h == hook)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn subnets_pair_with_device_indexes_in_order() {
        let c = HookConfig::from_env(env(&[
            (SUBNETS, "subnet-a, subnet-b"),
            (SECURITY_GROUPS, "sg-1"),
            (TAGS, "team=core,cost=5g"),
            (MODE, "static-from-start"),
        ]))
        .unwrap();
        assert_eq!(
            c.subnets[1],
            MultusSubnet {
                subnet_id: "subnet-b".into(),
                device_index: 2
            }
        );
        assert_eq!(c.extra_tags["cost"], "5g");
        assert_eq!(c.worker_ip_mode, WorkerIpMode::StaticFromStart);
        let c = HookConfig::from_env(env(&[
            (SUBNETS, "subnet-a,subnet-b"),
            (DEVICE_INDEXES, "1,1"),
        ]))
        .unwrap();
        assert_eq!(
            c.subnets[1].device_index, 1,
            "one subnet per zone may share an index"
        );
        assert_eq!(c.worker_ip_mode, WorkerIpMode::Dhcp);
    }

    #[test]
    fn each_bad_variable_is_named() {
        for (pairs, word) in [
            (vec![], SUBNETS),
            (vec![(SUBNETS, "sn-a")], SUBNETS),
            (
                vec![(SUBNETS, "subnet-a"), (DEVICE_INDEXES, "1,2")],
                DEVICE_INDEXES,
            ),
            (
                vec![(SUBNETS, "subnet-a"), (DEVICE_INDEXES, "0")],
                DEVICE_INDEXES,
            ),
            (
                vec![(SUBNETS, "subnet-a"), (SECURITY_GROUPS, "default")],
                SECURITY_GROUPS,
            ),
            (vec![(SUBNETS, "subnet-a"), (TAGS, "novalue")], TAGS),
            (vec![(SUBNETS, "subnet-a"), (TAGS, "aws:x=1")], TAGS),
            (vec![(SUBNETS, "subnet-a"), (MODE, "static")], MODE),
            (
                vec![(SUBNETS, "subnet-a"), (DRAIN_TIMEOUT, "3m")],
                DRAIN_TIMEOUT,
            ),
            (
                vec![(SUBNETS, "subnet-a"), (HEARTBEAT_TIMEOUT, "7200")],
                HEARTBEAT_TIMEOUT,
            ),
            (
                vec![
                    (SUBNETS, "subnet-a"),
                    (DRAIN_TIMEOUT, "280"),
                    (HEARTBEAT_TIMEOUT, "300"),
                ],
                DRAIN_TIMEOUT,
            ),
        ] {
            let e = HookConfig::from_env(env(&pairs)).unwrap_err();
            assert!(e.starts_with(word), "{e}");
        }
    }

    #[test]
    fn only_the_named_lifecycle_hooks_are_owned_and_the_templates_names_are_the_default() {
        let c = HookConfig::from_env(env(&[(SUBNETS, "subnet-a")])).unwrap();
        assert!(c.owns("aws-eni-ip-launch") && c.owns("aws-eni-ip-terminate"));
        assert!(!c.owns("eks-node-drain"), "a foreign hook is not ours");
        let c = HookConfig::from_env(env(&[
            (SUBNETS, "subnet-a"),
            (HOOK_NAMES, "ng1-multus-launch, ng1-multus-terminate"),
        ]))
        .unwrap();
        assert!(c.owns("ng1-multus-terminate"));
        assert!(
            !c.owns("aws-eni-ip-launch"),
            "the default is replaced, not added to"
        );
        assert_eq!(c.drain_timeout, Duration::from_secs(180));
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(300));
    }
}
