//! EC2 Query API + IMDSv2 simulator for aws-eni-ip's tests, demo and benchmarks; see README.md.

mod addresses;
mod autoscaling;
mod ec2;
mod engine;
mod imds;
mod interfaces;
mod reservations;
mod server;
mod types;
mod util;
pub mod world;

pub use autoscaling::LifecycleAction;
pub use reservations::Reservation;
pub use world::{instance_type_limits, Eni, Faults, Instance, Subnet, Throttle, Vpc, World};

use serde::{Deserialize, Serialize};
use server::{Listener, Shared};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Snapshot of every ENI that exists (deleted ones are absent), the subnet CIDR reservations and
/// the lifecycle actions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub enis: Vec<EniState>,
    #[serde(default)]
    pub subnet_cidr_reservations: Vec<Reservation>,
    #[serde(default)]
    pub lifecycle_actions: Vec<LifecycleAction>,
}

impl State {
    /// The ENI with this id, if any.
    pub fn eni(&self, id: &str) -> Option<&EniState> {
        self.enis.iter().find(|e| e.id == id)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EniState {
    pub id: String,
    pub mac: String,
    pub instance_id: Option<String>,
    pub device_index: Option<u32>,
    pub subnet_id: String,
    pub primary_ip: Ipv4Addr,
    /// Secondary addresses only, in assignment order.
    pub private_ips: Vec<Ipv4Addr>,
    pub ipv6s: Vec<Ipv6Addr>,
    pub tags: BTreeMap<String, String>,
    /// `eni-attach-…` while attached.
    #[serde(default)]
    pub attachment_id: Option<String>,
    #[serde(default)]
    pub delete_on_termination: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub security_groups: Vec<String>,
}

/// Call counters; throttled and injected-error calls are also counted under their action.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Calls {
    pub ec2: BTreeMap<String, u64>,
    pub imds: BTreeMap<String, u64>,
    pub throttled: u64,
    /// The throttled calls, by action.
    #[serde(default)]
    pub throttled_by_action: BTreeMap<String, u64>,
    pub injected_errors: u64,
    /// Auto Scaling Query API calls, by action.
    #[serde(default)]
    pub autoscaling: BTreeMap<String, u64>,
}

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Address of every listener.
    pub bind: IpAddr,
    /// EC2 (and admin) port; 0 = ephemeral.
    pub ec2_port: u16,
    /// One line per call on stderr.
    pub log: bool,
}

impl Default for SimOptions {
    /// 127.0.0.1, ephemeral port, logging only when `EC2_SIM_LOG` is set.
    fn default() -> Self {
        SimOptions {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ec2_port: 0,
            log: std::env::var_os("EC2_SIM_LOG").is_some_and(|v| !v.is_empty() && v != "0"),
        }
    }
}

/// A running simulator; stops on [`Sim::shutdown`] or drop.
pub struct Sim {
    shared: Arc<Shared>,
    ec2_addr: SocketAddr,
    autoscaling_addr: SocketAddr,
    imds_addrs: Vec<(String, SocketAddr)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn url(a: SocketAddr) -> String {
    format!("http://{a}")
}

fn ready_json(ec2: SocketAddr, autoscaling: SocketAddr, imds: &[(String, SocketAddr)]) -> String {
    let imds: serde_json::Map<String, serde_json::Value> = imds
        .iter()
        .map(|(id, a)| (id.clone(), serde_json::Value::String(url(*a))))
        .collect();
    serde_json::json!({ "ec2": url(ec2), "autoscaling": url(autoscaling), "imds": imds })
        .to_string()
}

impl Sim {
    /// Starts all listeners on 127.0.0.1 ephemeral ports (fixed `imdsPort`s honoured); returns when listening.
    pub fn start(world: World) -> io::Result<Sim> {
        Sim::start_with(world, SimOptions::default())
    }

    pub fn start_with(world: World, opts: SimOptions) -> io::Result<Sim> {
        let engine = engine::Engine::new(world)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let bind = |port: u16| -> io::Result<std::net::TcpListener> {
            let l = std::net::TcpListener::bind(SocketAddr::new(opts.bind, port))
                .map_err(|e| io::Error::new(e.kind(), format!("bind {}:{port}: {e}", opts.bind)))?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let ec2_listener = bind(opts.ec2_port)?;
        let ec2_addr = ec2_listener.local_addr()?;
        let autoscaling_listener = bind(0)?;
        let autoscaling_addr = autoscaling_listener.local_addr()?;
        let mut imds_listeners = Vec::new();
        let mut imds_addrs = Vec::new();
        for inst in &engine.model.world.instances {
            let l = bind(inst.imds_port)?;
            imds_addrs.push((inst.id.clone(), l.local_addr()?));
            imds_listeners.push((inst.id.clone(), l));
        }
        let shared = Arc::new(Shared {
            engine,
            log: opts.log,
            endpoints: ready_json(ec2_addr, autoscaling_addr, &imds_addrs),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ec2-sim-main".into())
            .spawn(move || {
                // The runtime lives and dies on this thread, so callers may be async themselves.
                let started = (|| {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .thread_name("ec2-sim")
                        .enable_all()
                        .build()?;
                    {
                        let _guard = rt.enter();
                        let l = tokio::net::TcpListener::from_std(ec2_listener)?;
                        rt.spawn(server::serve(l, sh.clone(), Listener::Ec2));
                        let l = tokio::net::TcpListener::from_std(autoscaling_listener)?;
                        rt.spawn(server::serve(l, sh.clone(), Listener::AutoScaling));
                        for (id, l) in imds_listeners {
                            let l = tokio::net::TcpListener::from_std(l)?;
                            rt.spawn(server::serve(l, sh.clone(), Listener::Imds(id.into())));
                        }
                    }
                    Ok(rt)
                })();
                let rt = match started {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_timeout(std::time::Duration::from_millis(200));
            })?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("ec2-sim server thread died")));
        if let Err(e) = ready {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Sim {
            shared,
            ec2_addr,
            autoscaling_addr,
            imds_addrs,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` of the EC2 Query API; the admin API is under `/_sim/`.
    pub fn ec2_url(&self) -> String {
        url(self.ec2_addr)
    }

    /// `http://127.0.0.1:PORT` of the Auto Scaling Query API (CompleteLifecycleAction).
    pub fn autoscaling_url(&self) -> String {
        url(self.autoscaling_addr)
    }

    /// Opens a lifecycle action for an instance of the world, as Auto Scaling does when a hook
    /// fires; `token` None = a fresh UUID. Panics on an unknown instance or transition.
    pub fn open_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
        transition: &str,
        token: Option<&str>,
    ) -> LifecycleAction {
        let open = autoscaling::OpenAction {
            auto_scaling_group_name: group.into(),
            lifecycle_hook_name: hook.into(),
            instance_id: instance_id.into(),
            lifecycle_transition: transition.into(),
            lifecycle_action_token: token.map(str::to_string),
        };
        self.shared
            .engine
            .open_lifecycle_action(open)
            .unwrap_or_else(|e| panic!("ec2-sim: open lifecycle action: {e}"))
    }

    /// Every lifecycle action opened since start or reset, with how it was completed.
    pub fn lifecycle_actions(&self) -> Vec<LifecycleAction> {
        self.shared.engine.lifecycle_actions()
    }

    /// `http://127.0.0.1:PORT` of that instance's IMDS. Panics on an unknown instance id.
    pub fn imds_url(&self, instance_id: &str) -> String {
        match self.imds_addrs.iter().find(|(id, _)| id == instance_id) {
            Some((_, a)) => url(*a),
            None => panic!("ec2-sim: no instance {instance_id} in the world"),
        }
    }

    /// The line the binary prints when ready: `{"ec2":URL,"imds":{ID:URL,…}}`.
    pub fn endpoints_json(&self) -> String {
        self.shared.endpoints.clone()
    }

    /// Replaces the faults (buckets refill, RNG reseeds). Panics on invalid faults: a test bug.
    pub fn set_faults(&self, faults: Faults) {
        if let Err(e) = self.shared.engine.set_faults(faults) {
            panic!("ec2-sim: invalid faults: {e}");
        }
    }

    pub fn faults(&self) -> Faults {
        self.shared.engine.faults()
    }

    /// Current truth, without consistency lag.
    pub fn state(&self) -> State {
        self.shared.engine.state()
    }

    pub fn calls(&self) -> Calls {
        self.shared.engine.calls()
    }

    /// State back to the world file, calls to zero, faults to the world's.
    pub fn reset(&self) {
        self.shared.engine.reset()
    }

    /// Out-of-band assignment by "another actor": moves, ignores limits; panics on unknown ENI or foreign subnet.
    pub fn assign(&self, eni_id: &str, addrs: &[IpAddr]) {
        match self.shared.engine.oob_assign(eni_id, addrs) {
            Ok(()) => {}
            Err(engine::OobError::UnknownEni(id)) => panic!("ec2-sim: unknown ENI {id}"),
            Err(engine::OobError::Refused(m)) => panic!("ec2-sim: assign to {eni_id}: {m}"),
        }
    }

    /// Out-of-band removal ignoring addresses not held; panics on unknown ENI or its primary IP.
    pub fn unassign(&self, eni_id: &str, addrs: &[IpAddr]) {
        match self.shared.engine.oob_unassign(eni_id, addrs) {
            Ok(()) => {}
            Err(engine::OobError::UnknownEni(id)) => panic!("ec2-sim: unknown ENI {id}"),
            Err(engine::OobError::Refused(m)) => panic!("ec2-sim: unassign from {eni_id}: {m}"),
        }
    }

    /// Out-of-band deletion mid-flight: the ENI, its addresses and its IMDS MAC vanish until `reset`.
    /// Panics on an unknown (or already deleted) ENI or an instance's primary ENI.
    pub fn delete_eni(&self, eni_id: &str) {
        match self.shared.engine.oob_delete(eni_id) {
            Ok(()) => {}
            Err(engine::OobError::UnknownEni(id)) => panic!("ec2-sim: unknown ENI {id}"),
            Err(engine::OobError::Refused(m)) => panic!("ec2-sim: delete {eni_id}: {m}"),
        }
    }

    /// Stops every listener and waits for the server thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop_now();
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("ec2", &self.ec2_addr)
            .field("autoscaling", &self.autoscaling_addr)
            .field("imds", &self.imds_addrs)
            .finish()
    }
}
