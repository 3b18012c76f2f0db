//! HTTP glue: listeners, routing to EC2 / IMDS / admin, and the per-call log line.

use crate::engine::{Ec2Error, Engine, OobError};
use crate::util::{iso8601, parse_form, uuid};
use crate::{autoscaling, ec2, imds};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::net::TcpListener;

const MAX_BODY: usize = 1 << 20;

pub(crate) struct Shared {
    pub engine: Engine,
    pub log: bool,
    /// The ready JSON (`{"ec2":…,"imds":{…}}`), served at /_sim/endpoints.
    pub endpoints: String,
}

#[derive(Clone)]
pub(crate) enum Listener {
    Ec2,
    AutoScaling,
    Imds(Arc<str>),
}

type Resp = Response<Full<Bytes>>;

fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn log_line(
    shared: &Shared,
    listener: &str,
    what: &str,
    status: u16,
    outcome: &str,
    started: Instant,
) {
    if shared.log {
        eprintln!(
            "{} {listener} {what} {status} {outcome} {}ms",
            iso8601(SystemTime::now(), true),
            started.elapsed().as_millis()
        );
    }
}

/// Accepts connections until the runtime is dropped.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, kind: Listener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Typically EMFILE: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let kind = kind.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let kind = kind.clone();
                async move { Ok::<_, Infallible>(route(&shared, &kind, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ()> {
    let declared = header(&req, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(());
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(()),
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn route(shared: &Shared, kind: &Listener, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    match kind {
        Listener::Imds(id) => {
            let method = req.method().as_str().to_string();
            let path = req.uri().path().to_string();
            let r = imds::handle(
                &shared.engine,
                id,
                imds::Request {
                    method: &method,
                    path: &path,
                    ttl_header: header(&req, imds::TTL_HEADER),
                    token: header(&req, imds::TOKEN_HEADER),
                },
            )
            .await;
            log_line(
                shared,
                &format!("imds:{id}"),
                &format!("{method} {path}"),
                r.status,
                if r.status < 400 { "ok" } else { "error" },
                started,
            );
            let mut resp = response(r.status, "text/plain", r.body);
            if let Some(ttl) = r.ttl {
                resp.headers_mut()
                    .insert(imds::TTL_HEADER, HeaderValue::from(ttl));
            }
            resp
        }
        Listener::Ec2 if req.uri().path().starts_with("/_sim/") => {
            let what = format!("{} {}", req.method(), req.uri().path());
            let resp = admin(shared, req).await;
            log_line(shared, "admin", &what, resp.status().as_u16(), "-", started);
            resp
        }
        Listener::Ec2 | Listener::AutoScaling => {
            let api = if matches!(kind, Listener::Ec2) {
                "ec2"
            } else {
                "autoscaling"
            };
            let r = query_request(shared, kind, req).await;
            log_line(
                shared,
                api,
                if r.action.is_empty() { "-" } else { &r.action },
                r.status,
                &r.outcome,
                started,
            );
            let mut resp = response(r.status, "text/xml;charset=UTF-8", r.body);
            if let Ok(v) = HeaderValue::from_str(&r.request_id) {
                resp.headers_mut().insert("x-amzn-requestid", v);
            }
            resp.headers_mut()
                .insert("server", HeaderValue::from_static("AmazonEC2"));
            resp
        }
    }
}

async fn query_request(shared: &Shared, kind: &Listener, req: Request<Incoming>) -> ec2::Reply {
    let transport_error = |status: u16, code: &str, msg: &str| {
        let id = uuid();
        let e = Ec2Error::new(code, msg).status(status);
        ec2::Reply {
            status,
            body: ec2::error_body(&e, &id),
            request_id: id,
            action: String::new(),
            outcome: e.code,
        }
    };
    if req.method() != Method::POST && req.method() != Method::GET {
        return transport_error(
            405,
            "UnsupportedHttpVerb",
            "The EC2 Query API accepts GET and POST",
        );
    }
    let auth = header(&req, "authorization").map(str::to_string);
    let mut pairs = parse_form(req.uri().query().unwrap_or(""));
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(()) => {
            return transport_error(
                413,
                "RequestEntityTooLarge",
                "Request body is larger than 1 MiB or unreadable",
            )
        }
    };
    pairs.extend(parse_form(&String::from_utf8_lossy(&body)));
    let params = ec2::Params::new(pairs);
    match kind {
        Listener::AutoScaling => autoscaling::handle(&shared.engine, auth.as_deref(), params).await,
        _ => ec2::handle(&shared.engine, auth.as_deref(), params).await,
    }
}

fn json_response(status: u16, v: &impl serde::Serialize) -> Resp {
    match serde_json::to_string_pretty(v) {
        Ok(s) => response(status, "application/json", s),
        Err(e) => admin_error(500, &e.to_string()),
    }
}

fn admin_error(status: u16, msg: &str) -> Resp {
    response(
        status,
        "application/json",
        serde_json::json!({ "error": msg }).to_string(),
    )
}

fn no_content() -> Resp {
    response(204, "application/json", Bytes::new())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OobRequest {
    eni_id: String,
    addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteRequest {
    eni_id: String,
}

async fn admin(shared: &Shared, req: Request<Incoming>) -> Resp {
    let engine = &shared.engine;
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(()) => return admin_error(413, "body larger than 1 MiB or unreadable"),
    };
    match (method, path.as_str()) {
        (Method::GET, "/_sim/state") => json_response(200, &engine.state()),
        (Method::GET, "/_sim/calls") => json_response(200, &engine.calls()),
        (Method::GET, "/_sim/faults") => json_response(200, &engine.faults()),
        (Method::GET, "/_sim/world") => json_response(200, &engine.model.world),
        (Method::GET, "/_sim/endpoints") => {
            response(200, "application/json", shared.endpoints.clone())
        }
        (Method::POST, "/_sim/reset") => {
            engine.reset();
            no_content()
        }
        (Method::POST, "/_sim/faults") => {
            let faults = match serde_json::from_slice(&body) {
                Ok(f) => f,
                Err(e) => return admin_error(400, &format!("faults: {e}")),
            };
            match engine.set_faults(faults) {
                Ok(()) => no_content(),
                Err(e) => admin_error(400, &e),
            }
        }
        (Method::POST, p @ ("/_sim/assign" | "/_sim/unassign")) => {
            let r: OobRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return admin_error(400, &format!("{p}: {e}")),
            };
            let addrs = match ec2::parse_ips(&r.addresses) {
                Ok(a) => a,
                Err(e) => return admin_error(400, &e),
            };
            let res = if p == "/_sim/assign" {
                engine.oob_assign(&r.eni_id, &addrs)
            } else {
                engine.oob_unassign(&r.eni_id, &addrs)
            };
            match res {
                Ok(()) => no_content(),
                Err(OobError::UnknownEni(id)) => admin_error(404, &format!("unknown ENI {id}")),
                Err(OobError::Refused(m)) => admin_error(400, &m),
            }
        }
        (Method::GET, "/_sim/lifecycle-actions") => json_response(200, &engine.lifecycle_actions()),
        (Method::POST, "/_sim/lifecycle-actions") => {
            let r: autoscaling::OpenAction = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return admin_error(400, &format!("/_sim/lifecycle-actions: {e}")),
            };
            match engine.open_lifecycle_action(r) {
                Ok(a) => json_response(201, &a),
                Err(e) => admin_error(400, &e),
            }
        }
        (Method::POST, "/_sim/delete-eni") => {
            let r: DeleteRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return admin_error(400, &format!("/_sim/delete-eni: {e}")),
            };
            match engine.oob_delete(&r.eni_id) {
                Ok(()) => no_content(),
                Err(OobError::UnknownEni(id)) => admin_error(404, &format!("unknown ENI {id}")),
                Err(OobError::Refused(m)) => admin_error(400, &m),
            }
        }
        (
            _,
            "/_sim/state"
            | "/_sim/calls"
            | "/_sim/faults"
            | "/_sim/world"
            | "/_sim/endpoints"
            | "/_sim/reset"
            | "/_sim/assign"
            | "/_sim/unassign"
            | "/_sim/delete-eni"
            | "/_sim/lifecycle-actions",
        ) => admin_error(405, "method not allowed"),
        (_, p) => admin_error(404, &format!("no admin endpoint {p}")),
    }
}
