//! The simulated region's state and the semantics of every mutating call.

use crate::autoscaling::LifecycleAction;
use crate::imds::imds_access_key;
use crate::reservations::Reservation;
use crate::util::random_token;
use crate::world::{
    check_in_subnet, instance_type_limits, is_hex_id, Faults, SubnetInfo, World,
    UNATTACHED_ENI_LIMIT,
};
use crate::{Calls, EniState, State};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An EC2 error as it goes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ec2Error {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Ec2Error {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Ec2Error {
            status: 400,
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", message)
    }
}

type R<T> = Result<T, Ec2Error>;

/// Immutable facts derived from the world at start-up.
pub(crate) struct Model {
    pub world: World,
    pub subnets: HashMap<String, SubnetInfo>,
    /// World ENIs by id: their index in the state vector until one before them is deleted.
    pub eni_index: HashMap<String, usize>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub(crate) struct Inner {
    pub enis: Arc<Vec<EniState>>,
    /// (time it became current, state); front is the oldest still needed for the lag view.
    history: VecDeque<(Instant, Arc<Vec<EniState>>)>,
    pub faults: Faults,
    buckets: HashMap<String, Bucket>,
    rng: StdRng,
    pub calls: Calls,
    /// token → (instance id, expiry)
    tokens: HashMap<String, (String, Instant)>,
    /// Subnet CIDR reservations, in creation order; read without lag.
    pub reservations: Vec<Reservation>,
    /// Lifecycle actions opened through the admin API and how they were completed.
    pub lifecycle: Vec<LifecycleAction>,
    /// Source of the ids of created resources.
    pub serial: u64,
    /// Addresses EC2 chooses; its own stream so picks never perturb injected faults.
    pub picker: StdRng,
    /// CreateNetworkInterface ClientToken → the ENI it created.
    pub client_tokens: HashMap<String, crate::interfaces::Idempotency>,
}

pub(crate) struct Engine {
    pub model: Model,
    inner: Mutex<Inner>,
}

fn initial_enis(world: &World) -> Vec<EniState> {
    world
        .enis
        .iter()
        .map(|e| EniState {
            id: e.id.clone(),
            mac: e.mac.clone(),
            instance_id: e.instance_id.clone(),
            device_index: e.device_index,
            subnet_id: e.subnet_id.clone(),
            primary_ip: e.primary_ip,
            private_ips: e.private_ips.clone(),
            ipv6s: e.ipv6s.clone(),
            tags: e.tags.clone(),
            attachment_id: e
                .instance_id
                .as_ref()
                .map(|_| format!("eni-attach-{}", e.id.trim_start_matches("eni-"))),
            // What EC2 sets for interfaces launched with the instance: only the primary's is true.
            delete_on_termination: e.device_index == Some(0),
            description: String::new(),
            security_groups: Vec::new(),
        })
        .collect()
}

/// Seed of the address picker; fixed so every run chooses the same addresses.
const PICKER_SEED: u64 = 0x05ee_dec2;

fn holds(e: &EniState, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => e.primary_ip == a || e.private_ips.contains(&a),
        IpAddr::V6(a) => e.ipv6s.contains(&a),
    }
}

fn holder(enis: &[EniState], ip: IpAddr) -> Option<usize> {
    enis.iter().position(|e| holds(e, ip))
}

/// The access key id of a SigV4 `Authorization` header.
fn access_key(authorization: &str) -> Option<&str> {
    let cred = authorization.split("Credential=").nth(1)?;
    cred.split(['/', ',', ' ']).next().filter(|k| !k.is_empty())
}

pub(crate) fn region_of(az: &str) -> &str {
    az.trim_end_matches(|c: char| c.is_ascii_lowercase())
}

fn not_assigned(eni_id: &str) -> Ec2Error {
    Ec2Error::invalid(format!(
        "Some of the specified addresses are not assigned to interface {eni_id}"
    ))
}

/// Why an out-of-band change was refused.
#[derive(Debug)]
pub(crate) enum OobError {
    UnknownEni(String),
    Refused(String),
}

impl Engine {
    pub fn new(world: World) -> Result<Engine, String> {
        let subnets = world.validated()?;
        let eni_index = world
            .enis
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        let enis = Arc::new(initial_enis(&world));
        let faults = world.faults.clone();
        let inner = Inner {
            history: VecDeque::from([(Instant::now(), enis.clone())]),
            enis,
            rng: StdRng::seed_from_u64(faults.seed.unwrap_or(0)),
            faults,
            buckets: HashMap::new(),
            calls: Calls::default(),
            tokens: HashMap::new(),
            reservations: Vec::new(),
            lifecycle: Vec::new(),
            serial: 0,
            picker: StdRng::seed_from_u64(PICKER_SEED),
            client_tokens: HashMap::new(),
        };
        Ok(Engine {
            model: Model {
                world,
                subnets,
                eni_index,
            },
            inner: Mutex::new(inner),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code panics while holding the lock, but never cascade if one did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn commit(inner: &mut Inner, enis: Vec<EniState>) {
        let now = Instant::now();
        inner.enis = Arc::new(enis);
        inner.history.push_back((now, inner.enis.clone()));
        let lag = Duration::from_millis(inner.faults.consistency_lag_ms);
        let cutoff = now.checked_sub(lag);
        while inner.history.len() > 1 && cutoff.is_some_and(|c| inner.history[1].0 <= c) {
            inner.history.pop_front();
        }
    }

    pub fn state(&self) -> State {
        let inner = self.lock();
        State {
            enis: inner.enis.as_ref().clone(),
            subnet_cidr_reservations: inner.reservations.clone(),
            lifecycle_actions: inner.lifecycle.clone(),
        }
    }

    /// The state as readers with eventual consistency see it: as it was `consistencyLagMs` ago.
    pub fn view(&self) -> Arc<Vec<EniState>> {
        let inner = self.lock();
        let lag = inner.faults.consistency_lag_ms;
        if lag == 0 {
            return inner.enis.clone();
        }
        let cutoff = Instant::now().checked_sub(Duration::from_millis(lag));
        let seen = cutoff.and_then(|c| inner.history.iter().rev().find(|(t, _)| *t <= c));
        match seen.or(inner.history.front()) {
            Some((_, s)) => s.clone(),
            None => inner.enis.clone(),
        }
    }

    /// Current truth without lag, for checks that EC2 makes against its own database.
    pub fn current(&self) -> Arc<Vec<EniState>> {
        self.lock().enis.clone()
    }

    pub fn calls(&self) -> Calls {
        self.lock().calls.clone()
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        let mut inner = self.lock();
        inner.rng = StdRng::seed_from_u64(faults.seed.unwrap_or(0));
        inner.buckets.clear();
        inner.faults = faults;
        Ok(())
    }

    pub fn reset(&self) {
        let enis = Arc::new(initial_enis(&self.model.world));
        let faults = self.model.world.faults.clone();
        let mut inner = self.lock();
        inner.history = VecDeque::from([(Instant::now(), enis.clone())]);
        inner.enis = enis;
        inner.rng = StdRng::seed_from_u64(faults.seed.unwrap_or(0));
        inner.faults = faults;
        inner.buckets.clear();
        inner.calls = Calls::default();
        inner.reservations.clear();
        inner.lifecycle.clear();
        inner.serial = 0;
        inner.picker = StdRng::seed_from_u64(PICKER_SEED);
        inner.client_tokens.clear();
    }

    /// Counts an EC2 call and returns its injected latency.
    pub fn begin_ec2(&self, action: &str) -> Duration {
        let mut inner = self.lock();
        *inner.calls.ec2.entry(action.to_string()).or_default() += 1;
        let ms = Faults::for_action(&inner.faults.latency_ms, action).copied();
        Duration::from_millis(ms.unwrap_or(0))
    }

    /// Counts an Auto Scaling call and returns its injected latency.
    pub fn begin_autoscaling(&self, action: &str) -> Duration {
        let mut inner = self.lock();
        *inner
            .calls
            .autoscaling
            .entry(action.to_string())
            .or_default() += 1;
        let ms = Faults::for_action(&inner.faults.latency_ms, action).copied();
        Duration::from_millis(ms.unwrap_or(0))
    }

    /// Whether the faults play an IAM policy without this action.
    pub fn denies(&self, action: &str) -> bool {
        self.lock().faults.denies(action)
    }

    /// Takes a token from the action's bucket; false = throttled (and counted).
    pub fn admit(&self, action: &str) -> bool {
        let mut inner = self.lock();
        let Some(spec) = Faults::for_action(&inner.faults.throttle, action).copied() else {
            return true;
        };
        let now = Instant::now();
        let cap = f64::from(spec.capacity);
        let b = inner.buckets.entry(action.to_string()).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * spec.refill_per_second).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            inner.calls.throttled += 1;
            *inner
                .calls
                .throttled_by_action
                .entry(action.to_string())
                .or_default() += 1;
            false
        }
    }

    /// Draws from the seeded RNG whether this call fails with an injected 5xx.
    pub fn injected_error(&self, action: &str) -> Option<Ec2Error> {
        let mut inner = self.lock();
        let er = Faults::for_action(&inner.faults.error_rate, action)
            .copied()
            .unwrap_or(0.0);
        let ur = Faults::for_action(&inner.faults.unavailable_rate, action)
            .copied()
            .unwrap_or(0.0);
        if er + ur <= 0.0 {
            return None;
        }
        let x: f64 = inner.rng.random();
        let err = if x < er {
            Ec2Error::new("InternalError", "An internal error has occurred").status(500)
        } else if x < er + ur {
            Ec2Error::new(
                "Unavailable",
                "The service is unavailable. Please try again shortly.",
            )
            .status(503)
        } else {
            return None;
        };
        inner.calls.injected_errors += 1;
        Some(err)
    }

    /// `UnauthorizedOperation` if the faults deny this action; `resource` = the ENI it targets, if any.
    pub fn denied(
        &self,
        action: &str,
        authorization: &str,
        resource: Option<&str>,
    ) -> Option<Ec2Error> {
        if !self.lock().faults.denies(action) {
            return None;
        }
        let world = &self.model.world;
        let current = self.current();
        let eni = resource.and_then(|id| current.iter().find(|e| e.id == id));
        let instance_of = |id: &str| world.instances.iter().find(|i| i.id == id);
        // The caller is unknown to the wire, so guess: IMDS credentials name it, else the ENI's owner.
        let key = access_key(authorization);
        let caller = world
            .instances
            .iter()
            .find(|i| key == Some(imds_access_key(i).as_str()))
            .or_else(|| eni.and_then(|e| instance_of(e.instance_id.as_deref()?)))
            .or(world.instances.first());
        let account = &world.account_id;
        let role = caller
            .and_then(|i| i.role.as_deref())
            .unwrap_or("ec2-sim-role");
        let session = caller.map_or("i-00000000", |i| i.id.as_str());
        let region = eni
            .map(|e| region_of(&self.model.subnets[&e.subnet_id].az))
            .or(caller.map(|i| i.region.as_str()))
            .unwrap_or("us-west-2");
        let on = resource.map_or_else(String::new, |id| {
            format!(" on resource: arn:aws:ec2:{region}:{account}:network-interface/{id}")
        });
        Some(
            Ec2Error::new(
                "UnauthorizedOperation",
                format!("You are not authorized to perform this operation. User: arn:aws:sts::{account}:assumed-role/{role}/{session} is not authorized to perform: ec2:{action}{on}"),
            )
            .status(403),
        )
    }

    /// Counts an IMDS request and returns (latency, down, token refused).
    pub fn begin_imds(&self, instance_id: &str) -> (Duration, bool, bool) {
        let mut inner = self.lock();
        *inner.calls.imds.entry(instance_id.to_string()).or_default() += 1;
        let f = &inner.faults;
        (
            Duration::from_millis(f.imds_latency_ms),
            f.imds_down,
            f.imds_token_refused,
        )
    }

    pub fn issue_token(&self, instance_id: &str, ttl: Duration) -> String {
        let token = format!("AQAEA{}==", random_token(51));
        let now = Instant::now();
        let mut inner = self.lock();
        inner.tokens.retain(|_, (_, exp)| *exp > now);
        inner
            .tokens
            .insert(token.clone(), (instance_id.to_string(), now + ttl));
        token
    }

    pub fn token_valid(&self, instance_id: &str, token: &str) -> bool {
        let inner = self.lock();
        inner
            .tokens
            .get(token)
            .is_some_and(|(iid, exp)| iid == instance_id && *exp > Instant::now())
    }

    /// Resolves an ENI id in `enis` as EC2 does: malformed first, then unknown or deleted.
    pub fn find_eni(&self, enis: &[EniState], id: &str) -> R<usize> {
        if !is_hex_id(id, "eni-") {
            return Err(Ec2Error::new(
                "InvalidNetworkInterfaceID.Malformed",
                format!("Invalid id: \"{id}\" (expecting \"eni-...\")"),
            ));
        }
        self.position(enis, id).ok_or_else(|| {
            Ec2Error::new(
                "InvalidNetworkInterfaceID.NotFound",
                format!("The networkInterface ID '{id}' does not exist"),
            )
        })
    }

    /// Index of the ENI in a state vector, None once deleted.
    pub(crate) fn position(&self, enis: &[EniState], id: &str) -> Option<usize> {
        // Deletion keeps order, so a world ENI sits at its world index or before it.
        if let Some(&w) = self.model.eni_index.get(id) {
            if enis.get(w).is_some_and(|e| e.id == id) {
                return Some(w);
            }
            return enis[..w.min(enis.len())].iter().position(|e| e.id == id);
        }
        enis.iter().position(|e| e.id == id)
    }

    /// Per-family address limit: the attached instance's type, else the unattached limit.
    pub(crate) fn limit_of(&self, eni: &EniState) -> usize {
        eni.instance_id
            .as_ref()
            .and_then(|iid| self.model.world.instances.iter().find(|i| &i.id == iid))
            .and_then(|i| instance_type_limits(&i.instance_type))
            .map_or(UNATTACHED_ENI_LIMIT, |(_, per)| per) as usize
    }

    pub(crate) fn subnet_of(&self, e: &EniState) -> &SubnetInfo {
        &self.model.subnets[&e.subnet_id]
    }

    pub fn assign_private(
        &self,
        eni_id: &str,
        addrs: &[String],
        count: Option<&str>,
        allow_reassignment: bool,
    ) -> R<Vec<Ipv4Addr>> {
        let mut inner = self.lock();
        let enis = inner.enis.clone();
        let same_eni_accepted = inner.faults.same_eni_assign_accepted;
        let idx = self.find_eni(&enis, eni_id)?;
        let eni = &enis[idx];
        let sub = self.subnet_of(eni);
        let mut requested = Vec::new();
        let mut added = Vec::new();
        let mut moves: Vec<(usize, Ipv4Addr)> = Vec::new();
        match (addrs.is_empty(), count) {
            (false, Some(_)) => {
                return Err(Ec2Error::new(
                    "InvalidParameterCombination",
                    "Specify either PrivateIpAddress or SecondaryPrivateIpAddressCount, not both",
                ))
            }
            (true, None) => {
                return Err(Ec2Error::new(
                    "MissingParameter",
                    "The request must contain the parameter PrivateIpAddress or SecondaryPrivateIpAddressCount",
                ))
            }
            (false, None) => {
                for s in addrs {
                    let a: Ipv4Addr = s.parse().map_err(|_| {
                        Ec2Error::invalid(format!(
                            "Value ({s}) for parameter privateIpAddress is invalid. Not a valid IPv4 address."
                        ))
                    })?;
                    if requested.contains(&a) {
                        return Err(Ec2Error::invalid(format!(
                            "Address {a} is specified more than once"
                        )));
                    }
                    requested.push(a);
                    check_in_subnet(sub, &eni.subnet_id, IpAddr::V4(a)).map_err(Ec2Error::invalid)?;
                    match holder(&enis, IpAddr::V4(a)) {
                        Some(j) if j == idx => {
                            if !allow_reassignment && !same_eni_accepted {
                                return Err(Ec2Error::new(
                                    "InvalidIPAddress.InUse",
                                    format!("Address {a} is already assigned to {eni_id}"),
                                ));
                            }
                        }
                        Some(j) => {
                            let other = &enis[j];
                            if other.primary_ip == a {
                                return Err(Ec2Error::new(
                                    "InvalidIPAddress.InUse",
                                    format!("Address {a} is the primary address of {} and cannot be reassigned", other.id),
                                ));
                            }
                            if !allow_reassignment {
                                return Err(Ec2Error::new(
                                    "InvalidIPAddress.InUse",
                                    format!("Address {a} is in use by {}", other.id),
                                ));
                            }
                            moves.push((j, a));
                            added.push(a);
                        }
                        None => added.push(a),
                    }
                }
            }
            (true, Some(c)) => {
                let n: u32 = c.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    Ec2Error::invalid(format!(
                        "Value ({c}) for parameter SecondaryPrivateIpAddressCount is invalid. Expected a positive integer."
                    ))
                })?;
                self.check_v4_limit(eni, n as usize)?;
                let picked = self.auto_pick(&mut inner, &enis, &eni.subnet_id, false, n as usize)?;
                added.extend(picked.into_iter().filter_map(|ip| match ip {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                }));
                requested = added.clone();
            }
        }
        self.check_v4_limit(eni, added.len())?;
        let mut next = enis.as_ref().clone();
        for (j, a) in moves {
            next[j].private_ips.retain(|x| *x != a);
        }
        next[idx].private_ips.extend(added);
        Self::commit(&mut inner, next);
        Ok(requested)
    }

    fn check_v4_limit(&self, eni: &EniState, adding: usize) -> R<()> {
        let limit = self.limit_of(eni);
        if 1 + eni.private_ips.len() + adding > limit {
            return Err(Ec2Error::new(
                "PrivateIpAddressLimitExceeded",
                format!(
                    "Number of private addresses will exceed limit. {} allows {limit} IPv4 addresses per interface (including the primary); {} has {}, the request adds {adding}.",
                    self.instance_type_of(eni),
                    eni.id,
                    1 + eni.private_ips.len()
                ),
            ));
        }
        Ok(())
    }

    fn instance_type_of(&self, eni: &EniState) -> String {
        eni.instance_id
            .as_ref()
            .and_then(|iid| self.model.world.instances.iter().find(|i| &i.id == iid))
            .map_or_else(
                || "An unattached interface".into(),
                |i| i.instance_type.clone(),
            )
    }

    pub fn unassign_private(&self, eni_id: &str, addrs: &[String]) -> R<()> {
        let mut inner = self.lock();
        let enis = inner.enis.clone();
        let idx = self.find_eni(&enis, eni_id)?;
        if addrs.is_empty() {
            return Err(Ec2Error::new(
                "MissingParameter",
                "The request must contain the parameter PrivateIpAddress",
            ));
        }
        let eni = &enis[idx];
        let mut drop = Vec::new();
        for s in addrs {
            let a: Ipv4Addr = s.parse().map_err(|_| {
                Ec2Error::invalid(format!(
                    "Value ({s}) for parameter privateIpAddress is invalid. Not a valid IPv4 address."
                ))
            })?;
            if a == eni.primary_ip {
                return Err(Ec2Error::invalid(format!(
                    "The primary private IP address {a} of {eni_id} cannot be unassigned"
                )));
            }
            if !eni.private_ips.contains(&a) {
                return Err(not_assigned(eni_id));
            }
            drop.push(a);
        }
        let mut next = enis.as_ref().clone();
        next[idx].private_ips.retain(|x| !drop.contains(x));
        Self::commit(&mut inner, next);
        Ok(())
    }

    pub fn assign_ipv6(
        &self,
        eni_id: &str,
        addrs: &[String],
        count: Option<&str>,
    ) -> R<Vec<Ipv6Addr>> {
        let mut inner = self.lock();
        let enis = inner.enis.clone();
        let idx = self.find_eni(&enis, eni_id)?;
        let eni = &enis[idx];
        let sub = self.subnet_of(eni);
        if sub.v6.is_none() {
            return Err(Ec2Error::invalid(format!(
                "Subnet {} of network interface {eni_id} has no IPv6 CIDR block",
                eni.subnet_id
            )));
        };
        let mut added = Vec::new();
        match (addrs.is_empty(), count) {
            (false, Some(_)) => {
                return Err(Ec2Error::new(
                    "InvalidParameterCombination",
                    "Specify either Ipv6Addresses or Ipv6AddressCount, not both",
                ))
            }
            (true, None) => {
                return Err(Ec2Error::new(
                    "MissingParameter",
                    "The request must contain the parameter Ipv6Addresses or Ipv6AddressCount",
                ))
            }
            (false, None) => {
                for s in addrs {
                    let a: Ipv6Addr = s.parse().map_err(|_| {
                        Ec2Error::invalid(format!(
                            "Value ({s}) for parameter ipv6Addresses is invalid. Not a valid IPv6 address."
                        ))
                    })?;
                    if added.contains(&a) {
                        return Err(Ec2Error::invalid(format!(
                            "Address {a} is specified more than once"
                        )));
                    }
                    check_in_subnet(sub, &eni.subnet_id, IpAddr::V6(a))
                        .map_err(Ec2Error::invalid)?;
                    match holder(&enis, IpAddr::V6(a)) {
                        Some(j) if j == idx => {
                            return Err(Ec2Error::new(
                                "InvalidIPAddress.InUse",
                                format!("Address {a} is already assigned to {eni_id}"),
                            ))
                        }
                        Some(j) => {
                            return Err(Ec2Error::new(
                                "InvalidIPAddress.InUse",
                                format!("Address {a} is in use by {}", enis[j].id),
                            ))
                        }
                        None => added.push(a),
                    }
                }
            }
            (true, Some(c)) => {
                let n: u32 = c.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    Ec2Error::invalid(format!(
                        "Value ({c}) for parameter Ipv6AddressCount is invalid. Expected a positive integer."
                    ))
                })?;
                self.check_v6_limit(eni, n as usize)?;
                let picked = self.auto_pick(&mut inner, &enis, &eni.subnet_id, true, n as usize)?;
                added.extend(picked.into_iter().filter_map(|ip| match ip {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                }));
            }
        }
        self.check_v6_limit(eni, added.len())?;
        let mut next = enis.as_ref().clone();
        next[idx].ipv6s.extend(added.iter().copied());
        Self::commit(&mut inner, next);
        Ok(added)
    }

    fn check_v6_limit(&self, eni: &EniState, adding: usize) -> R<()> {
        let limit = self.limit_of(eni);
        if eni.ipv6s.len() + adding > limit {
            return Err(Ec2Error::new(
                "PrivateIpAddressLimitExceeded",
                format!(
                    "Number of IPv6 addresses will exceed limit. {} allows {limit} IPv6 addresses per interface; {} has {}, the request adds {adding}.",
                    self.instance_type_of(eni),
                    eni.id,
                    eni.ipv6s.len()
                ),
            ));
        }
        Ok(())
    }

    pub fn unassign_ipv6(&self, eni_id: &str, addrs: &[String]) -> R<Vec<Ipv6Addr>> {
        let mut inner = self.lock();
        let enis = inner.enis.clone();
        let idx = self.find_eni(&enis, eni_id)?;
        if addrs.is_empty() {
            return Err(Ec2Error::new(
                "MissingParameter",
                "The request must contain the parameter Ipv6Addresses",
            ));
        }
        let eni = &enis[idx];
        let mut drop = Vec::new();
        for s in addrs {
            let a: Ipv6Addr = s.parse().map_err(|_| {
                Ec2Error::invalid(format!(
                    "Value ({s}) for parameter ipv6Addresses is invalid. Not a valid IPv6 address."
                ))
            })?;
            if !eni.ipv6s.contains(&a) {
                return Err(not_assigned(eni_id));
            }
            if !drop.contains(&a) {
                drop.push(a);
            }
        }
        let mut next = enis.as_ref().clone();
        next[idx].ipv6s.retain(|x| !drop.contains(x));
        Self::commit(&mut inner, next);
        Ok(drop)
    }

    /// Out-of-band assignment: moves addresses from other ENIs, ignores limits, checks the subnet.
    pub fn oob_assign(&self, eni_id: &str, addrs: &[IpAddr]) -> Result<(), OobError> {
        let mut inner = self.lock();
        let mut next = inner.enis.as_ref().clone();
        let idx = self
            .position(&next, eni_id)
            .ok_or_else(|| OobError::UnknownEni(eni_id.to_string()))?;
        let sub = self.subnet_of(&next[idx]).clone();
        for &ip in addrs {
            check_in_subnet(&sub, &next[idx].subnet_id, ip).map_err(OobError::Refused)?;
            match holder(&next, ip) {
                Some(j) if j == idx => {}
                Some(j) if IpAddr::V4(next[j].primary_ip) == ip => {
                    return Err(OobError::Refused(format!(
                        "{ip} is the primary address of {}",
                        next[j].id
                    )))
                }
                other => {
                    if let Some(j) = other {
                        match ip {
                            IpAddr::V4(a) => next[j].private_ips.retain(|x| *x != a),
                            IpAddr::V6(a) => next[j].ipv6s.retain(|x| *x != a),
                        }
                    }
                    match ip {
                        IpAddr::V4(a) => next[idx].private_ips.push(a),
                        IpAddr::V6(a) => next[idx].ipv6s.push(a),
                    }
                }
            }
        }
        Self::commit(&mut inner, next);
        Ok(())
    }

    /// Out-of-band removal; addresses the ENI does not hold are ignored.
    pub fn oob_unassign(&self, eni_id: &str, addrs: &[IpAddr]) -> Result<(), OobError> {
        let mut inner = self.lock();
        let mut next = inner.enis.as_ref().clone();
        let idx = self
            .position(&next, eni_id)
            .ok_or_else(|| OobError::UnknownEni(eni_id.to_string()))?;
        for &ip in addrs {
            match ip {
                IpAddr::V4(a) if a == next[idx].primary_ip => {
                    return Err(OobError::Refused(format!(
                        "{a} is the primary address of {eni_id}"
                    )))
                }
                IpAddr::V4(a) => next[idx].private_ips.retain(|x| *x != a),
                IpAddr::V6(a) => next[idx].ipv6s.retain(|x| *x != a),
            }
        }
        Self::commit(&mut inner, next);
        Ok(())
    }

    /// Out-of-band deletion by "another actor"; the primary ENI is refused as EC2 cannot detach it.
    pub fn oob_delete(&self, eni_id: &str) -> Result<(), OobError> {
        let mut inner = self.lock();
        let idx = self
            .position(&inner.enis, eni_id)
            .ok_or_else(|| OobError::UnknownEni(eni_id.to_string()))?;
        if inner.enis[idx].device_index == Some(0) {
            return Err(OobError::Refused(format!(
                "{eni_id} is the primary network interface of {} and cannot be deleted",
                inner.enis[idx]
                    .instance_id
                    .as_deref()
                    .unwrap_or("its instance")
            )));
        }
        let mut next = inner.enis.as_ref().clone();
        next.remove(idx);
        Self::commit(&mut inner, next);
        Ok(())
    }
}
