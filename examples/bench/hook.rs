//! Section 8, the node-group hook: its release binary's size, and its cold start (process start
//! to the first lifecycle event handled) through a minimal Lambda Runtime API served here.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

pub(crate) struct HookRun {
    /// Process start to the launch event's response posted (cold: includes init).
    pub cold_ms: f64,
    /// The terminate event, handled next by the same process (warm).
    pub warm_ms: f64,
}

pub(crate) struct HookBench {
    pub size: u64,
    pub runs: Vec<HookRun>,
    pub failures: Vec<String>,
}

/// One request of a keep-alive HTTP/1.1 connection: (method, path, body); None at EOF.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, String, String)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

/// Serves `events` in order to one function process; sends (request id, body, time) per answer.
fn runtime_api(
    listener: TcpListener,
    events: Vec<Value>,
    answers: mpsc::Sender<(String, String, Instant)>,
) {
    let queue = Arc::new(Mutex::new(
        events.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    for stream in listener.incoming().flatten() {
        let (queue, answers) = (queue.clone(), answers.clone());
        std::thread::spawn(move || {
            let mut w = match stream.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            let mut r = BufReader::new(stream);
            while let Some((method, path, body)) = read_request(&mut r) {
                let reply = if method == "GET" && path.ends_with("/invocation/next") {
                    let next = {
                        let mut q = queue.lock().unwrap();
                        (!q.is_empty()).then(|| q.remove(0))
                    };
                    let Some((i, event)) = next else {
                        // No more events: leave the function waiting, as Lambda does.
                        std::thread::sleep(Duration::from_secs(3600));
                        return;
                    };
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        + Duration::from_secs(60);
                    let b = event.to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: bench-{i}\r\nLambda-Runtime-Deadline-Ms: {}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-west-2:111122223333:function:hook\r\nContent-Length: {}\r\n\r\n{b}",
                        deadline.as_millis(),
                        b.len()
                    )
                } else {
                    if method == "POST" {
                        let _ = answers.send((path, body, Instant::now()));
                    }
                    "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}".to_string()
                };
                if w.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
}

fn event(instance: &str, transition: &str, token: &str) -> Value {
    json!({"version": "0", "source": "aws.autoscaling", "detail-type": "lifecycle",
        "detail": {"LifecycleActionToken": token, "AutoScalingGroupName": "bench-ng",
            "LifecycleHookName": "hook", "EC2InstanceId": instance, "LifecycleTransition": transition}})
}

pub(crate) fn hook(ctx: &Ctx, binary: &Path, runs: usize) -> Result<HookBench, String> {
    let size = std::fs::metadata(binary)
        .map_err(|e| format!("{}: {e}", binary.display()))?
        .len();
    let mut out = HookBench {
        size,
        runs: Vec::new(),
        failures: Vec::new(),
    };
    for node in ctx.layout.scale.iter().take(runs) {
        let launch = "autoscaling:EC2_INSTANCE_LAUNCHING";
        let terminate = "autoscaling:EC2_INSTANCE_TERMINATING";
        let a = ctx
            .sim
            .open_lifecycle_action("bench-ng", "hook", &node.instance, launch, None);
        let t = ctx
            .sim
            .open_lifecycle_action("bench-ng", "hook", &node.instance, terminate, None);
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let events = vec![
            event(&node.instance, launch, &a.lifecycle_action_token),
            event(&node.instance, terminate, &t.lifecycle_action_token),
        ];
        std::thread::spawn(move || runtime_api(listener, events, tx));
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "hook")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_ACCESS_KEY_ID", "ASIABENCHHOOK")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", REGION)
            .env("AWS_ENDPOINT_URL_EC2", ctx.sim.ec2_url())
            .env("AWS_ENDPOINT_URL_AUTO_SCALING", ctx.sim.autoscaling_url())
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("MULTUS_SUBNETS", layout::SUBNET_BENCH)
            .env("MULTUS_DEVICE_INDEXES", "2")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let answer = |what: &str| match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((path, body, at))
                if path.ends_with("/response") && body.contains("\"CONTINUE\"") =>
            {
                Ok(at)
            }
            Ok((path, body, _)) => Err(format!("{what} of {}: {path}: {body}", node.instance)),
            Err(_) => Err(format!(
                "{what} of {}: no answer within 60 s",
                node.instance
            )),
        };
        let cold = answer("launch");
        let warm_from = Instant::now();
        let warm = answer("terminate");
        let _ = child.kill();
        let _ = child.wait();
        match (cold, warm) {
            (Ok(c), Ok(w)) => out.runs.push(HookRun {
                cold_ms: c.duration_since(started).as_secs_f64() * 1000.0,
                warm_ms: w.duration_since(warm_from).as_secs_f64() * 1000.0,
            }),
            (Err(e), _) | (_, Err(e)) => out.failures.push(e),
        }
    }
    Ok(out)
}

pub(crate) fn report(w: &mut String, h: &Result<HookBench, String>) {
    let _ = writeln!(w, "## 8. Node-group hook (Lambda)\n");
    let h = match h {
        Ok(h) => h,
        Err(e) => {
            let _ = writeln!(w, "Not measured: {e}\n");
            return;
        }
    };
    let _ = writeln!(
        w,
        "- Binary (`bootstrap`, release, native target): {} bytes ({:.2} MiB)",
        h.size,
        h.size as f64 / 1048576.0
    );
    let cold: Vec<f64> = h.runs.iter().map(|r| r.cold_ms).collect();
    let warm: Vec<f64> = h.runs.iter().map(|r| r.warm_ms).collect();
    let _ = writeln!(
        w,
        "- Cold start, process start to the first launch event handled (init, AWS config, DescribeInstances, DescribeSubnets, DescribeNetworkInterfaces, CreateNetworkInterface, AttachNetworkInterface, ModifyNetworkInterfaceAttribute, CompleteLifecycleAction against ec2-sim on loopback): {} ms over {} runs",
        fmt(summarize(&cold), 1),
        cold.len()
    );
    let _ = writeln!(
        w,
        "- The terminate event next, same process (warm; detach, delete, complete): {} ms\n",
        fmt(summarize(&warm), 1)
    );
    for f in &h.failures {
        let _ = writeln!(w, "- failed: {f}");
    }
    let _ = writeln!(
        w,
        "The Runtime API is served by the bench on 127.0.0.1, so this is the function's own start and work, not Lambda's sandbox start.\n"
    );
}
