//! A fake container runtime for the agent's tests: a gRPC server on a unix socket that answers
//! CRI `runtime.v1.RuntimeService/ListPodSandbox` with the same generated protobuf messages the
//! agent decodes, from a sandbox list the test edits. Every other method is UNIMPLEMENTED.

use aws_eni_ip::agent::cri_api::{ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const LIST: &str = "/runtime.v1.RuntimeService/ListPodSandbox";

/// The fake runtime; stops (socket removed) on [`FakeCri::stop`] or drop.
pub struct FakeCri {
    pub socket: PathBuf,
    sandboxes: Arc<Mutex<Vec<String>>>,
    calls: Arc<Mutex<u64>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeCri {
    /// Listens on `socket` and lists `sandboxes`.
    pub fn start(socket: &Path, sandboxes: &[&str]) -> FakeCri {
        let _ = std::fs::remove_file(socket);
        let listener = std::os::unix::net::UnixListener::bind(socket)
            .unwrap_or_else(|e| panic!("bind the fake CRI socket {}: {e}", socket.display()));
        listener.set_nonblocking(true).unwrap();
        let list = Arc::new(Mutex::new(
            sandboxes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ));
        let calls = Arc::new(Mutex::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (shared, counted) = (list.clone(), calls.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = stopped => {}
                    _ = serve(listener, shared, counted) => {}
                }
            });
        });
        FakeCri {
            socket: socket.to_path_buf(),
            sandboxes: list,
            calls,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The sandboxes the runtime lists from now on.
    pub fn set(&self, sandboxes: &[&str]) {
        *self.sandboxes.lock().unwrap() = sandboxes.iter().map(|s| s.to_string()).collect();
    }

    /// How many ListPodSandbox calls were answered.
    pub fn calls(&self) -> u64 {
        *self.calls.lock().unwrap()
    }

    /// The runtime goes away: the socket is closed and removed.
    pub fn stop(&mut self) {
        let Some(s) = self.stop.take() else {
            return;
        };
        let _ = s.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for FakeCri {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(
    listener: tokio::net::UnixListener,
    sandboxes: Arc<Mutex<Vec<String>>>,
    calls: Arc<Mutex<u64>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (sandboxes, calls) = (sandboxes.clone(), calls.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (sandboxes, calls) = (sandboxes.clone(), calls.clone());
                async move {
                    if req.uri().path() != LIST {
                        return Ok::<_, Infallible>(
                            tonic::Status::unimplemented("the fake runtime lists sandboxes only")
                                .into_http(),
                        );
                    }
                    let list =
                        tower::service_fn(move |_: tonic::Request<ListPodSandboxRequest>| {
                            let items = sandboxes
                                .lock()
                                .unwrap()
                                .iter()
                                .map(|id| PodSandbox {
                                    id: id.clone(),
                                    state: 0,
                                    ..PodSandbox::default()
                                })
                                .collect();
                            *calls.lock().unwrap() += 1;
                            async move {
                                Ok::<_, tonic::Status>(tonic::Response::new(
                                    ListPodSandboxResponse { items },
                                ))
                            }
                        });
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    Ok(grpc.unary(list, req).await)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
