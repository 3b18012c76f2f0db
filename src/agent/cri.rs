//! Which sandboxes are alive: CRI `ListPodSandbox` on the container runtime's socket. A record's
//! container id is its sandbox id (the `CNI_CONTAINERID` Multus passes to delegates).

use super::cri_api::runtime_service_client::RuntimeServiceClient;
use super::cri_api::ListPodSandboxRequest;
use crate::cloud::aws::causes;
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Endpoint, Uri};

/// Where containerd and CRI-O listen, in the order they are tried.
pub const DEFAULT_RUNTIME_SOCKETS: [&str; 2] =
    ["/run/containerd/containerd.sock", "/var/run/crio/crio.sock"];

/// How long one ListPodSandbox may take before the pass gives up on the runtime.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the runtime could not say which sandboxes live; the pass then releases nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LivenessError {
    #[error("no container runtime socket at {tried}; pass --runtime-endpoint")]
    NoSocket { tried: String },
    #[error("cannot reach the container runtime at {socket}: {reason}")]
    Unreachable { socket: String, reason: String },
    #[error("ListPodSandbox on {socket} failed: {reason}")]
    Refused { socket: String, reason: String },
}

/// The edge the reconciler asks; the fake in tests answers from a list.
#[allow(async_fn_in_trait)]
pub trait Liveness {
    /// Every sandbox the runtime lists, ready or not: a listed sandbox may still get its DEL.
    async fn sandboxes(&self) -> Result<HashSet<String>, LivenessError>;
}

/// The real runtime, over its unix socket.
#[derive(Debug, Clone)]
pub struct CriRuntime {
    /// `--runtime-endpoint`; `None`: the first of [`DEFAULT_RUNTIME_SOCKETS`] that exists.
    pub endpoint: Option<PathBuf>,
}

impl CriRuntime {
    /// The socket to use now: the runtime may come up after the agent.
    pub fn socket(&self) -> Result<PathBuf, LivenessError> {
        if let Some(p) = &self.endpoint {
            return Ok(p.clone());
        }
        DEFAULT_RUNTIME_SOCKETS
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .map(Path::to_path_buf)
            .ok_or_else(|| LivenessError::NoSocket {
                tried: DEFAULT_RUNTIME_SOCKETS.join(", "),
            })
    }

    async fn list(&self, socket: &Path) -> Result<HashSet<String>, LivenessError> {
        let name = socket.display().to_string();
        let unreachable = |reason: String| LivenessError::Unreachable {
            socket: name.clone(),
            reason,
        };
        let path = socket.to_path_buf();
        // The URI is required by tonic and ignored: every connection goes to the socket.
        let channel = Endpoint::from_static("http://[::1]:1")
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| unreachable(causes(&e)))?;
        let reply = RuntimeServiceClient::new(channel)
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(|s| LivenessError::Refused {
                socket: name.clone(),
                reason: format!("{:?}: {}", s.code(), s.message()),
            })?;
        Ok(reply.into_inner().items.into_iter().map(|s| s.id).collect())
    }
}

impl Liveness for CriRuntime {
    async fn sandboxes(&self) -> Result<HashSet<String>, LivenessError> {
        let socket = self.socket()?;
        self.list(&socket).await
    }
}
