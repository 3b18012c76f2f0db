//! One HTTP port for Prometheus and kubelet: `/metrics`, `/healthz` (the process answers) and
//! `/readyz` (the runtime answers ListPodSandbox, IMDS and the state dir are usable). It runs on a
//! thread of its own, so a reconcile pass waiting on a lock never fails a probe.

use super::cri::CriRuntime;
use super::metrics::{render, SharedMetrics};
use crate::cloud::aws::AwsMetadata;
use crate::cloud::Metadata;
use crate::store::{NodeDir, Store};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

/// One readiness check: its name and, when it fails, why.
pub type Check = (&'static str, Result<(), String>);

/// What `/readyz` asks; the fake in tests answers from a list.
#[allow(async_fn_in_trait)]
pub trait Readiness {
    async fn checks(&self) -> Vec<Check>;
}

/// How long one IMDS answer stands for `/readyz`: a probe storm must not become an IMDS storm.
pub const IMDS_CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The node's real dependencies.
pub struct NodeReadiness {
    pub runtime: CriRuntime,
    pub metadata: AwsMetadata,
    pub node: NodeDir,
    /// The agent's loop says how its last ListPodSandbox went.
    pub metrics: SharedMetrics,
    pub imds: std::cell::RefCell<Option<(std::time::Instant, Result<(), String>)>>,
}

impl NodeReadiness {
    /// The runtime as the loop last saw it; before its first pass, whether the socket accepts.
    fn runtime(&self) -> Result<(), String> {
        let m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = &m.runtime_error {
            return Err(if m.last_listing_unix_ms == 0 {
                format!("{e} (never listed)")
            } else {
                format!(
                    "{e} (last listed {} s ago)",
                    crate::store::now_unix_ms().saturating_sub(m.last_listing_unix_ms) / 1000
                )
            });
        }
        if m.last_listing_unix_ms > 0 {
            return Ok(());
        }
        drop(m);
        self.runtime
            .socket()
            .map_err(|e| e.to_string())
            .and_then(|s| {
                std::os::unix::net::UnixStream::connect(&s)
                    .map(|_| ())
                    .map_err(|e| format!("cannot connect to {}: {e}", s.display()))
            })
    }

    async fn imds(&self) -> Result<(), String> {
        if let Some((at, last)) = self.imds.borrow().as_ref() {
            if at.elapsed() < IMDS_CHECK_TTL {
                return last.clone();
            }
        }
        let now = self
            .metadata
            .instance_id()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        *self.imds.borrow_mut() = Some((std::time::Instant::now(), now.clone()));
        now
    }
}

impl Readiness for NodeReadiness {
    async fn checks(&self) -> Vec<Check> {
        let runtime = self.runtime();
        let imds = self.imds().await;
        let state = Store::open(self.node.root(), self.node.clone())
            .and_then(|s| s.probe_writable())
            .map_err(|e| e.to_string());
        vec![("runtime", runtime), ("IMDS", imds), ("state dir", state)]
    }
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

async fn route<R: Readiness>(
    req: Request<Incoming>,
    metrics: &SharedMetrics,
    node: &NodeDir,
    readiness: &R,
) -> Resp {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match req.uri().path() {
        "/metrics" => {
            let snapshot = metrics.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let body = render(
                &snapshot,
                &node.plugin_counters(),
                &crate::cloud::calls::snapshot(),
            );
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => {
            let checks = readiness.checks().await;
            let ready = checks.iter().all(|(_, r)| r.is_ok());
            let body: String = checks
                .iter()
                .map(|(name, r)| match r {
                    Ok(()) => format!("{name}: ok\n"),
                    Err(e) => format!("{name}: {e}\n"),
                })
                .collect();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, PLAIN, body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// Serves until the runtime it runs on is dropped.
pub async fn serve<R: Readiness + 'static>(
    listener: tokio::net::TcpListener,
    metrics: SharedMetrics,
    node: NodeDir,
    readiness: R,
) {
    let shared = Rc::new((metrics, node, readiness));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    let (metrics, node, readiness) = &*shared;
                    Ok::<_, Infallible>(route(req, metrics, node, readiness).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds now (so a port in use fails the agent's start) and serves on a thread of its own.
pub fn start<R: Readiness + 'static>(
    bind: SocketAddr,
    metrics: SharedMetrics,
    node: NodeDir,
    readiness: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(bind)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "metrics server: cannot start its runtime");
                    return;
                }
            };
            let local_set = tokio::task::LocalSet::new();
            local_set.block_on(&runtime, async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => serve(l, metrics, node, readiness()).await,
                    Err(e) => tracing::error!(error = %e, "metrics server: cannot listen"),
                }
            });
        })?;
    Ok(local)
}
