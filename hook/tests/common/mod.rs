//! A Lambda Runtime API server (the part of the Lambda service a custom runtime talks to), the
//! hook's `bootstrap` started against it and ec2-sim, and lifecycle events as EventBridge sends them.
#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
pub const GROUP: &str = "multus-ng";

#[derive(Default)]
struct Queue {
    pending: VecDeque<(String, Value)>,
    done: HashMap<String, Result<Value, Value>>,
    init_errors: Vec<Value>,
    serial: u64,
}

/// The Runtime API: invocations queue up, every `bootstrap` polling `/next` takes one.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    state: Arc<(Mutex<Queue>, Condvar)>,
    notify: Arc<tokio::sync::Notify>,
    _rt: tokio::runtime::Runtime,
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r
}

async fn serve(
    req: Request<Incoming>,
    state: Arc<(Mutex<Queue>, Condvar)>,
    notify: Arc<tokio::sync::Notify>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return reply(404, "");
    };
    if method == hyper::Method::GET && rest == "invocation/next" {
        loop {
            let waiter = notify.notified();
            if let Some((id, event)) = state.0.lock().unwrap().pending.pop_front() {
                let deadline =
                    SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(60);
                let mut r = reply(200, event.to_string());
                let h = r.headers_mut();
                h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                h.insert(
                    "lambda-runtime-deadline-ms",
                    deadline.as_millis().to_string().parse().unwrap(),
                );
                h.insert(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-west-2:111122223333:function:aws-eni-ip-hook"
                        .parse()
                        .unwrap(),
                );
                h.insert(
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000".parse().unwrap(),
                );
                return r;
            }
            waiter.await;
        }
    }
    if method == hyper::Method::POST && rest == "init/error" {
        state.0.lock().unwrap().init_errors.push(parsed);
        state.1.notify_all();
        return reply(202, "{}");
    }
    if let Some(tail) = rest.strip_prefix("invocation/") {
        if let Some((id, kind)) = tail.split_once('/') {
            let outcome = match kind {
                "response" => Ok(parsed),
                "error" => Err(parsed),
                _ => return reply(404, ""),
            };
            state.0.lock().unwrap().done.insert(id.to_string(), outcome);
            state.1.notify_all();
            return reply(202, "{}");
        }
    }
    reply(404, "")
}

impl RuntimeApi {
    pub fn start() -> RuntimeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let notify = Arc::new(tokio::sync::Notify::new());
        let (s, n) = (state.clone(), notify.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, n) = (s.clone(), n.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (s, n) = (s.clone(), n.clone());
                        async move { Ok::<_, std::convert::Infallible>(serve(req, s, n).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        RuntimeApi {
            addr,
            state,
            notify,
            _rt: rt,
        }
    }

    /// Queues an invocation; returns its request id.
    pub fn invoke(&self, event: Value) -> String {
        let mut q = self.state.0.lock().unwrap();
        q.serial += 1;
        let id = format!("req-{:04}", q.serial);
        q.pending.push_back((id.clone(), event));
        drop(q);
        self.notify.notify_waiters();
        self.notify.notify_one();
        id
    }

    /// The function's response (Ok) or error (Err) to one invocation.
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<Value, Value> {
        let end = Instant::now() + timeout;
        let mut q = self.state.0.lock().unwrap();
        loop {
            if let Some(r) = q.done.remove(id) {
                return r;
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no answer to {id} within {timeout:?}");
            q = self.state.1.wait_timeout(q, left).unwrap().0;
        }
    }
}

/// One execution environment: a `bootstrap` process polling the Runtime API.
pub struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_function(api: &RuntimeApi, sim: &ec2_sim::Sim, config: &[(&str, &str)]) -> Function {
    start_function_at(api, &sim.ec2_url(), &sim.autoscaling_url(), config)
}

/// The function against any EC2 and Auto Scaling endpoints (moto, a proxy, the simulator).
pub fn start_function_at(
    api: &RuntimeApi,
    ec2_url: &str,
    autoscaling_url: &str,
    config: &[(&str, &str)],
) -> Function {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aws-eni-ip-hook"));
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "aws-eni-ip-hook")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_ACCESS_KEY_ID", "ASIASIMLAMBDAROLE")
        .env("AWS_SECRET_ACCESS_KEY", "lambda-secret")
        .env("AWS_SESSION_TOKEN", "lambda-session")
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ENDPOINT_URL_EC2", ec2_url)
        .env("AWS_ENDPOINT_URL_AUTO_SCALING", autoscaling_url)
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in config {
        c.env(k, v);
    }
    Function(c.spawn().expect("start the hook's bootstrap"))
}

/// A lifecycle event as EventBridge delivers it.
pub fn event(instance: &str, transition: &str, hook: &str, token: &str) -> Value {
    let detail_type = if transition == LAUNCHING {
        "EC2 Instance-launch Lifecycle Action"
    } else {
        "EC2 Instance-terminate Lifecycle Action"
    };
    json!({
        "version": "0", "id": format!("evt-{token}"), "detail-type": detail_type,
        "source": "aws.autoscaling", "account": "111122223333", "time": "2024-01-01T00:00:00Z",
        "region": "us-west-2",
        "resources": [format!("arn:aws:autoscaling:us-west-2:111122223333:autoScalingGroup:0:autoScalingGroupName/{GROUP}")],
        "detail": {
            "LifecycleActionToken": token, "AutoScalingGroupName": GROUP, "LifecycleHookName": hook,
            "EC2InstanceId": instance, "LifecycleTransition": transition,
            "Origin": "EC2", "Destination": "AutoScalingGroup"
        }
    })
}

/// The hooks install/node-group-hook.yaml creates (the function's default LIFECYCLE_HOOK_NAMES).
pub const OUR_LAUNCH_HOOK: &str = "aws-eni-ip-launch";
pub const OUR_TERMINATE_HOOK: &str = "aws-eni-ip-terminate";

/// Opens the lifecycle action of our hook in the simulator, as Auto Scaling does, and queues its event.
pub fn fire(
    api: &RuntimeApi,
    sim: &ec2_sim::Sim,
    instance: &str,
    transition: &str,
) -> (String, Value) {
    let hook = if transition == LAUNCHING {
        OUR_LAUNCH_HOOK
    } else {
        OUR_TERMINATE_HOOK
    };
    fire_hook(api, sim, instance, transition, hook)
}

/// The same for any hook of the group, ours or another tool's.
pub fn fire_hook(
    api: &RuntimeApi,
    sim: &ec2_sim::Sim,
    instance: &str,
    transition: &str,
    hook: &str,
) -> (String, Value) {
    let a = sim.open_lifecycle_action(GROUP, hook, instance, transition, None);
    let e = event(instance, transition, hook, &a.lifecycle_action_token);
    (api.invoke(e.clone()), e)
}

/// Node subnet 198.18.0.0/24 and Multus subnets 198.18.1.0/24 and 198.18.2.0/24 in us-west-2a,
/// 198.18.3.0/24 in us-west-2b; `n` m5.large nodes in us-west-2a with their primary ENI only.
pub fn world(n: usize) -> ec2_sim::World {
    let instances: Vec<Value> = (1..=n)
        .map(|i| json!({"id": instance(i), "type": "m5.large", "region": "us-west-2", "availabilityZone": "us-west-2a"}))
        .collect();
    let enis: Vec<Value> = (1..=n)
        .map(|i| json!({"id": format!("eni-0a00000000000{i:04x}"), "mac": format!("02:00:c6:12:00:{i:02x}"),
            "instanceId": instance(i), "deviceIndex": 0, "subnetId": "subnet-0sim00000000node",
            "primaryIp": format!("198.18.0.{}", 10 + i)}))
        .collect();
    let w = json!({
        "accountId": "111122223333",
        "vpcs": [{"id": "vpc-0sim0000000000001", "cidr": "198.18.0.0/16"}],
        "subnets": [
            {"id": "subnet-0sim00000000node", "vpcId": "vpc-0sim0000000000001", "availabilityZone": "us-west-2a", "ipv4Cidr": "198.18.0.0/24"},
            {"id": MULTUS_A, "vpcId": "vpc-0sim0000000000001", "availabilityZone": "us-west-2a", "ipv4Cidr": "198.18.1.0/24"},
            {"id": MULTUS_A2, "vpcId": "vpc-0sim0000000000001", "availabilityZone": "us-west-2a", "ipv4Cidr": "198.18.2.0/24"},
            {"id": MULTUS_B, "vpcId": "vpc-0sim0000000000001", "availabilityZone": "us-west-2b", "ipv4Cidr": "198.18.3.0/24"}],
        "instances": instances,
        "enis": enis,
    });
    ec2_sim::World::from_json(&w.to_string()).expect("test world")
}

pub const MULTUS_A: &str = "subnet-0sim0000multus1";
pub const MULTUS_A2: &str = "subnet-0sim0000multus2";
pub const MULTUS_B: &str = "subnet-0sim0000multus3";

pub fn instance(i: usize) -> String {
    format!("i-0a1b2c3d4e5f6{i:04x}")
}

/// Creates an explicit subnet CIDR reservation through the simulator's EC2 Query API.
pub fn reserve(sim: &ec2_sim::Sim, subnet: &str, cidr: &str) {
    use std::io::{Read, Write};
    let body = format!(
        "Action=CreateSubnetCidrReservation&Version=2016-11-15&SubnetId={subnet}&Cidr={}&ReservationType=explicit",
        cidr.replace('/', "%2F")
    );
    let host = sim.ec2_url().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/20240101/us-west-2/ec2/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "reserve {cidr}: {out}");
}
