//! The real hook (`bootstrap` through the Lambda Runtime API) against a third-party emulator:
//! moto's server (PyPI `moto[server]`) for EC2 and the Auto Scaling group, on loopback. The group
//! has the project's two lifecycle hooks and a foreign one; its instance comes from the group's
//! launch template, so it carries the group's tags as on AWS.
//!
//! moto 5.2.5 keeps lifecycle hooks as configuration only: its server answers
//! CompleteLifecycleAction (and RecordLifecycleActionHeartbeat) with HTTP 500 and never holds an
//! instance in Pending:Wait. So the lifecycle actions (which are open, how each was completed) live
//! in ec2-sim's Auto Scaling endpoint, which implements CompleteLifecycleAction; everything EC2 is
//! moto's. Between the function and moto sits a proxy that answers chosen EC2 calls with EC2's
//! eventual-consistency errors first, as EC2 does right after a launch. moto also ignores the
//! Attachment (DeleteOnTermination) of ModifyNetworkInterfaceAttribute: the call is checked here,
//! the flag in tests/lifecycle.rs.

mod common;
use common::*;
use ec2_sim::Sim;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const FOREIGN_LAUNCH_HOOK: &str = "eks-managed-launch";
const MOTO_VERSION: &str = "5.2.5";

/// moto's server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("AEI_MOTO_SERVER") {
        return p.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    std::path::Path::new(&home).join(".cache/aws-eni-ip/venv-moto/bin/moto_server")
}

impl Moto {
    fn start() -> Moto {
        let bin = moto_server_path();
        assert!(
            bin.exists(),
            "moto's server is not at {}: `make hook-e2e` installs moto[server]=={MOTO_VERSION} there (or set AEI_MOTO_SERVER)",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let end = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < end,
                "moto's server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

/// EC2 errors to answer before forwarding, per action, and every action seen with its status.
#[derive(Default)]
struct ProxyState {
    refuse: HashMap<String, VecDeque<(&'static str, String)>>,
    seen: Vec<(String, u16)>,
}

/// An EC2 endpoint in front of moto that first refuses chosen calls with EC2's own error shape.
struct ConsistencyProxy {
    url: String,
    state: Arc<Mutex<ProxyState>>,
    _rt: tokio::runtime::Runtime,
}

fn action_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or_default()
        .to_string()
}

fn ec2_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>proxy-0000</RequestID></Response>"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
    r
}

async fn relay(
    req: Request<Incoming>,
    moto: String,
    state: Arc<Mutex<ProxyState>>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let action = action_of(&body);
    let refusal = {
        let mut s = state.lock().unwrap();
        s.refuse.get_mut(&action).and_then(|q| q.pop_front())
    };
    if let Some((code, message)) = refusal {
        state.lock().unwrap().seen.push((action, 400));
        return ec2_error(code, &message);
    }
    let uri: hyper::Uri = format!(
        "{moto}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    )
    .parse()
    .unwrap();
    let mut fwd = Request::builder().method(parts.method).uri(uri);
    for (k, v) in parts.headers.iter() {
        if k != hyper::header::HOST {
            fwd = fwd.header(k, v);
        }
    }
    let answer = client.request(fwd.body(Full::new(body)).unwrap()).await;
    let (status, headers, bytes) = match answer {
        Ok(r) => {
            let (p, b) = r.into_parts();
            (p.status, p.headers, b.collect().await.unwrap().to_bytes())
        }
        Err(e) => (
            hyper::StatusCode::BAD_GATEWAY,
            Default::default(),
            Bytes::from(format!("proxy: moto: {e}")),
        ),
    };
    state.lock().unwrap().seen.push((action, status.as_u16()));
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = status;
    for (k, v) in headers.iter() {
        if k != hyper::header::CONTENT_LENGTH && k != hyper::header::TRANSFER_ENCODING {
            r.headers_mut().insert(k, v.clone());
        }
    }
    r
}

impl ConsistencyProxy {
    fn start(moto: &str) -> ConsistencyProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state: Arc<Mutex<ProxyState>> = Arc::default();
        let (s, moto) = (state.clone(), moto.to_string());
        rt.spawn(async move {
            // moto closes every connection after its answer: a pooled one would fail the next call.
            let client = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, moto, client) = (s.clone(), moto.clone(), client.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (s, moto, client) = (s.clone(), moto.clone(), client.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(relay(req, moto, s, client).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ConsistencyProxy {
            url: format!("http://{addr}"),
            state,
            _rt: rt,
        }
    }

    fn refuse(&self, action: &str, times: usize, code: &'static str, message: String) {
        let mut s = self.state.lock().unwrap();
        let q = s.refuse.entry(action.to_string()).or_default();
        q.extend((0..times).map(|_| (code, message.clone())));
    }

    /// The statuses of every call of `action` so far, in order.
    fn seen(&self, action: &str) -> Vec<u16> {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, st)| *st)
            .collect()
    }
}

/// The clients the test uses to build and inspect moto's world.
struct Aws {
    rt: tokio::runtime::Runtime,
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

impl Aws {
    fn new(url: &str) -> Aws {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-west-2"))
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                aws_sdk_ec2::config::Credentials::new("AKIDTEST", "s", None, None, "t"),
            ))
            .endpoint_url(url)
            .build();
        Aws {
            rt,
            ec2: aws_sdk_ec2::Client::new(&shared),
            autoscaling: aws_sdk_autoscaling::Client::new(&shared),
        }
    }
}

/// What the test built in moto.
struct Group {
    multus_subnet: String,
    security_group: String,
    instance: String,
}

fn build_group(aws: &Aws) -> Group {
    use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
    use aws_sdk_ec2::types::RequestLaunchTemplateData;
    aws.rt.block_on(async {
        let vpc = aws
            .ec2
            .create_vpc()
            .cidr_block("198.18.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = |cidr: &'static str| {
            let vpc = vpc.clone();
            async move {
                let s = aws
                    .ec2
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(cidr)
                    .availability_zone("us-west-2a")
                    .send()
                    .await
                    .unwrap();
                s.subnet().unwrap().subnet_id().unwrap().to_string()
            }
        };
        let node_subnet = subnet("198.18.0.0/24").await;
        let multus_subnet = subnet("198.18.1.0/24").await;
        let sg = aws
            .ec2
            .create_security_group()
            .group_name("multus")
            .description("Multus ENIs")
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap();
        aws.ec2
            .create_launch_template()
            .launch_template_name(GROUP)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id("ami-0sim0000000000001")
                    .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        aws.autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(GROUP)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(GROUP)
                    .build(),
            )
            .min_size(1)
            .max_size(2)
            .desired_capacity(1)
            .vpc_zone_identifier(&node_subnet)
            .send()
            .await
            .unwrap();
        for (hook, transition, default) in [
            (OUR_LAUNCH_HOOK, LAUNCHING, "ABANDON"),
            (OUR_TERMINATE_HOOK, TERMINATING, "CONTINUE"),
            (FOREIGN_LAUNCH_HOOK, LAUNCHING, "CONTINUE"),
        ] {
            aws.autoscaling
                .put_lifecycle_hook()
                .auto_scaling_group_name(GROUP)
                .lifecycle_hook_name(hook)
                .lifecycle_transition(transition)
                .heartbeat_timeout(300)
                .default_result(default)
                .send()
                .await
                .unwrap();
        }
        let g = aws
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GROUP)
            .send()
            .await
            .unwrap();
        let instance = g.auto_scaling_groups()[0].instances()[0]
            .instance_id()
            .unwrap()
            .to_string();
        Group {
            multus_subnet,
            security_group: sg.group_id().unwrap().to_string(),
            instance,
        }
    })
}

fn hooks_of_group(aws: &Aws) -> Vec<String> {
    aws.rt.block_on(async {
        let mut v: Vec<String> = aws
            .autoscaling
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(GROUP)
            .send()
            .await
            .unwrap()
            .lifecycle_hooks()
            .iter()
            .filter_map(|h| h.lifecycle_hook_name().map(str::to_string))
            .collect();
        v.sort();
        v
    })
}

/// The ENIs tagged for `instance`, as moto describes them.
fn enis_of(aws: &Aws, instance: &str) -> Vec<aws_sdk_ec2::types::NetworkInterface> {
    aws.rt.block_on(async {
        aws.ec2
            .describe_network_interfaces()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:aws-eni-ip/instance-id")
                    .values(instance)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .network_interfaces()
            .to_vec()
    })
}

fn result_of_hook(sim: &Sim, instance: &str, hook: &str) -> Vec<Option<String>> {
    sim.lifecycle_actions()
        .into_iter()
        .filter(|a| a.instance_id == instance && a.lifecycle_hook_name == hook)
        .map(|a| a.result)
        .collect()
}

fn open_and_fire(
    api: &RuntimeApi,
    sim: &Sim,
    instance: &str,
    transition: &str,
    hook: &str,
) -> String {
    let a = sim.open_lifecycle_action(GROUP, hook, instance, transition, None);
    api.invoke(event(instance, transition, hook, &a.lifecycle_action_token))
}

#[test]
fn against_motos_ec2_and_auto_scaling_a_node_gets_its_eni_after_retries_leaves_the_foreign_hook_pending_and_drains_before_removal(
) {
    let moto = Moto::start();
    let aws = Aws::new(&moto.url);
    let group = build_group(&aws);
    let node = group.instance.clone();
    assert_eq!(
        hooks_of_group(&aws),
        [OUR_LAUNCH_HOOK, OUR_TERMINATE_HOOK, FOREIGN_LAUNCH_HOOK],
        "the group holds our hooks and a foreign one"
    );
    // ec2-sim opens lifecycle actions only for instances it knows: it gets moto's, by id (its
    // EC2 side, with a primary ENI it requires, is never called).
    let sim_world = serde_json::json!({"accountId": "123456789012",
        "vpcs": [{"id": "vpc-0sim0000000000001", "cidr": "198.18.0.0/16"}],
        "subnets": [{"id": "subnet-0sim00000000node", "vpcId": "vpc-0sim0000000000001",
            "availabilityZone": "us-west-2a", "ipv4Cidr": "198.18.0.0/24"}],
        "instances": [{"id": node, "type": "m5.large", "region": "us-west-2", "availabilityZone": "us-west-2a"}],
        "enis": [{"id": "eni-0a000000000000001", "mac": "02:00:c6:12:00:01", "instanceId": node,
            "deviceIndex": 0, "subnetId": "subnet-0sim00000000node", "primaryIp": "198.18.0.11"}]});
    let sim = Sim::start(ec2_sim::World::from_json(&sim_world.to_string()).unwrap()).unwrap();
    let proxy = ConsistencyProxy::start(&moto.url);
    // Right after launch: EC2 does not know the instance yet, then it is still pending.
    proxy.refuse(
        "DescribeInstances",
        2,
        "InvalidInstanceID.NotFound",
        format!("The instance ID '{node}' does not exist"),
    );
    proxy.refuse(
        "AttachNetworkInterface",
        1,
        "IncorrectInstanceState",
        format!("The instance '{node}' is not in a valid state for this operation."),
    );
    let api = RuntimeApi::start();
    let _f = start_function_at(
        &api,
        &proxy.url,
        &sim.autoscaling_url(),
        &[
            ("MULTUS_SUBNETS", &group.multus_subnet),
            ("MULTUS_SECURITY_GROUPS", &group.security_group),
            ("DRAIN_TIMEOUT_SECONDS", "25"),
        ],
    );

    // Launch: the foreign hook's event first, then ours.
    let foreign = open_and_fire(&api, &sim, &node, LAUNCHING, FOREIGN_LAUNCH_HOOK);
    let r = api.wait(&foreign, WAIT).expect("foreign event answered");
    assert!(r["ignored"].is_string(), "{r}");
    assert!(
        enis_of(&aws, &node).is_empty(),
        "the foreign event made an ENI"
    );
    let launch = open_and_fire(&api, &sim, &node, LAUNCHING, OUR_LAUNCH_HOOK);
    let r: Value = api.wait(&launch, WAIT).expect("launch answered");
    assert_eq!(r["result"], "CONTINUE", "{r}");
    assert_eq!(
        proxy.seen("DescribeInstances")[..3],
        [400, 400, 200],
        "InvalidInstanceID.NotFound retried"
    );
    assert_eq!(
        proxy.seen("AttachNetworkInterface"),
        [400, 200],
        "IncorrectInstanceState retried"
    );
    let enis = enis_of(&aws, &node);
    assert_eq!(enis.len(), 1, "one ENI in moto");
    let eni = &enis[0];
    let eni_id = eni.network_interface_id().unwrap().to_string();
    let att = eni.attachment().expect("attached in moto");
    assert_eq!(att.instance_id(), Some(node.as_str()));
    assert_eq!(att.device_index(), Some(1));
    // moto 5.2.5 accepts ModifyNetworkInterfaceAttribute but drops its Attachment part; the
    // flag itself is checked against ec2-sim (tests/lifecycle.rs).
    assert_eq!(proxy.seen("ModifyNetworkInterfaceAttribute"), [200]);
    assert_eq!(eni.subnet_id(), Some(group.multus_subnet.as_str()));
    assert!(eni
        .tag_set()
        .iter()
        .any(|t| t.key() == Some("node.k8s.amazonaws.com/no_manage") && t.value() == Some("true")));
    assert_eq!(
        result_of_hook(&sim, &node, OUR_LAUNCH_HOOK),
        [Some("CONTINUE".into())]
    );
    assert_eq!(
        result_of_hook(&sim, &node, FOREIGN_LAUNCH_HOOK),
        [None],
        "the foreign launch action is still pending after ours completed"
    );

    // A pod on the node holds an address on the Multus ENI (the plugin's assign).
    let pod = "198.18.1.200";
    aws.rt.block_on(async {
        aws.ec2
            .assign_private_ip_addresses()
            .network_interface_id(&eni_id)
            .private_ip_addresses(pod)
            .send()
            .await
            .unwrap();
    });

    // Terminate: waits while the pod's address is there.
    let started = Instant::now();
    let terminate = open_and_fire(&api, &sim, &node, TERMINATING, OUR_TERMINATE_HOOK);
    std::thread::sleep(Duration::from_secs(3));
    let still = enis_of(&aws, &node);
    assert!(
        still.len() == 1 && still[0].attachment().is_some(),
        "detached while a pod still held an address"
    );
    assert_eq!(result_of_hook(&sim, &node, OUR_TERMINATE_HOOK), [None]);
    assert_eq!(proxy.seen("DetachNetworkInterface"), Vec::<u16>::new());
    // The pod's DEL: the plugin unassigns its address.
    aws.rt.block_on(async {
        aws.ec2
            .unassign_private_ip_addresses()
            .network_interface_id(&eni_id)
            .private_ip_addresses(pod)
            .send()
            .await
            .unwrap();
    });
    let r = api.wait(&terminate, WAIT).expect("terminate answered");
    assert_eq!(r["result"], "CONTINUE", "{r}");
    assert_eq!(r["drain"]["outcome"], "drained", "{r}");
    assert!(r["drain"]["waitedMs"].as_u64().unwrap() >= 3000, "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for the timeout, not the drain"
    );
    assert_eq!(r["removed"], serde_json::json!([eni_id]), "{r}");
    assert_eq!(proxy.seen("DetachNetworkInterface"), [200]);
    assert_eq!(proxy.seen("DeleteNetworkInterface"), [200]);
    assert!(enis_of(&aws, &node).is_empty(), "the ENI is gone from moto");
    assert_eq!(
        result_of_hook(&sim, &node, OUR_TERMINATE_HOOK),
        [Some("CONTINUE".into())]
    );
    assert_eq!(result_of_hook(&sim, &node, FOREIGN_LAUNCH_HOOK), [None]);
}
