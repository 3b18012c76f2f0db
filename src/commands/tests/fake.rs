//! In-memory EC2 + IMDS + host for command tests: records every call, enforces the EC2 rules the
//! commands rely on (in-use, not-assigned, reassignment moves), and fails on demand.

use crate::cloud::{AttachedEni, Aws, CloudError, Ec2, EniFacts, EniView, Metadata, NO_MANAGE_TAG};
use crate::node::{Host, HostError, MasterLink};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

pub struct FakeAws {
    pub enis: RefCell<BTreeMap<String, EniView>>,
    pub facts: BTreeMap<String, EniFacts>,
    pub calls: RefCell<Vec<String>>,
    /// Action name → the error the next call of it returns.
    pub fail_next: RefCell<BTreeMap<&'static str, CloudError>>,
    /// The code EC2 answers an assign of an address another ENI holds with (not documented).
    pub in_use_code: RefCell<&'static str>,
    /// MAC → how many more times IMDS answers 404 for it (a fresh attachment IMDS has not seen).
    pub imds_lag: RefCell<BTreeMap<String, u32>>,
    /// MACs detached from this instance since ADD.
    pub detached: RefCell<Vec<String>>,
    /// How many assigns of an IPv6 address just unassigned elsewhere EC2 still refuses as in use
    /// (it remaps asynchronously).
    pub remap_lag: RefCell<u32>,
    recently_unassigned: RefCell<Vec<Ipv6Addr>>,
    /// The next in-use refusal says an earlier attempt of the request may have been carried out
    /// (as after a timeout, or from a sender that crashed before answering).
    pub refuse_as_maybe_applied: RefCell<bool>,
    /// The next IPv4 assign was carried out by an earlier attempt whose answer was lost: its
    /// addresses land on the ENI, and the request is refused as in use, maybe applied.
    pub applied_by_an_earlier_attempt: RefCell<bool>,
    /// What happens while the next mutating call waits for the node's budget, before it is sent.
    pub while_waiting: RefCell<Option<Box<dyn FnOnce()>>>,
    /// What happens while the next batch leader waits for the node's token, before it claims.
    pub while_pacing: RefCell<Option<Box<dyn FnOnce()>>>,
    /// Until when each leader's wait for a token was allowed to last.
    pub paced_until: RefCell<Vec<std::time::Instant>>,
    /// By when each mutating attempt had to go out for the requesters it carried (the gate's).
    pub send_by: RefCell<Vec<Option<std::time::Instant>>>,
}

pub const INSTANCE: &str = "i-0a1b2c3d4e5f60001";
pub const ENI: &str = "eni-0b000000000000001";
pub const OTHER: &str = "eni-0b000000000000002";
/// Another node's ENI that the VPC CNI manages: no no_manage tag.
pub const MANAGED: &str = "eni-0c000000000000001";
pub const MAC: &str = "02:00:c6:12:01:01";

fn view(eni: &str, instance: &str, tagged: bool, primary: &str) -> EniView {
    EniView {
        eni_id: eni.into(),
        primary_ipv4: Some(primary.parse().unwrap()),
        ipv4: vec![primary.parse().unwrap()],
        ipv6: vec![],
        tags: if tagged {
            [(NO_MANAGE_TAG.to_string(), "true".to_string())].into()
        } else {
            BTreeMap::new()
        },
        instance_id: Some(instance.into()),
        description: format!("{eni} of {instance}"),
    }
}

/// Runs `f` to completion on a current-thread runtime, as the plugin's main does.
pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

impl FakeAws {
    pub fn new() -> FakeAws {
        let mut fake = FakeAws {
            enis: RefCell::default(),
            facts: BTreeMap::new(),
            calls: RefCell::default(),
            fail_next: RefCell::default(),
            in_use_code: RefCell::new("InvalidIPAddress.InUse"),
            imds_lag: RefCell::default(),
            detached: RefCell::default(),
            remap_lag: RefCell::new(0),
            recently_unassigned: RefCell::default(),
            refuse_as_maybe_applied: RefCell::new(false),
            applied_by_an_earlier_attempt: RefCell::new(false),
            while_waiting: RefCell::new(None),
            while_pacing: RefCell::new(None),
            paced_until: RefCell::default(),
            send_by: RefCell::default(),
        };
        for (eni, mac, primary) in [
            (ENI, MAC, "198.18.1.10"),
            (OTHER, "02:00:c6:12:01:02", "198.18.1.11"),
        ] {
            fake.enis
                .borrow_mut()
                .insert(eni.into(), view(eni, INSTANCE, true, primary));
            fake.facts.insert(
                mac.into(),
                EniFacts {
                    eni_id: eni.into(),
                    mac: mac.into(),
                    device_number: 1,
                    subnet_id: "subnet-0sim000000000002".into(),
                    vpc_id: "vpc-0sim0000000000001".into(),
                    subnet_ipv4_cidrs: vec!["198.18.1.0/24".parse().unwrap()],
                    subnet_ipv6_cidrs: vec!["2001:db8:100:1::/64".parse().unwrap()],
                    primary_ipv4: Some(primary.parse().unwrap()),
                    instance_id: Some(INSTANCE.into()),
                },
            );
        }
        fake.enis.borrow_mut().insert(
            MANAGED.into(),
            view(MANAGED, "i-0a1b2c3d4e5f60009", false, "198.18.1.12"),
        );
        fake
    }

    pub fn holds(&self, eni: &str) -> Vec<IpAddr> {
        let enis = self.enis.borrow();
        let view = &enis[eni];
        view.ipv4
            .iter()
            .filter(|a| Some(**a) != view.primary_ipv4)
            .map(|a| IpAddr::V4(*a))
            .chain(view.ipv6.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }

    /// Out of band: `addr` leaves `from` (if any) for `to` (if any): another node's takeover, a
    /// VIP assigned by another tool, or an unassign by hand.
    pub fn move_addr(&self, addr: &str, from: Option<&str>, to: Option<&str>) {
        let addr: IpAddr = addr.parse().unwrap();
        let mut enis = self.enis.borrow_mut();
        if let Some(from) = from {
            let v = enis.get_mut(from).unwrap();
            v.ipv4.retain(|a| IpAddr::V4(*a) != addr);
            v.ipv6.retain(|a| IpAddr::V6(*a) != addr);
        }
        if let Some(to) = to {
            let v = enis.get_mut(to).unwrap();
            match addr {
                IpAddr::V4(a) => v.ipv4.push(a),
                IpAddr::V6(a) => v.ipv6.push(a),
            }
        }
    }

    pub fn count(&self, action: &str) -> usize {
        self.calls.borrow().iter().filter(|c| *c == action).count()
    }

    /// Mutating EC2 calls so far.
    pub fn mutating(&self) -> usize {
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("Assign") || c.starts_with("Unassign"))
            .count()
    }

    fn enter(&self, action: &'static str) -> Result<(), CloudError> {
        if action.starts_with("Assign") || action.starts_with("Unassign") {
            self.send_by
                .borrow_mut()
                .push(crate::cloud::gate::send_by());
            let waited = self.while_waiting.borrow_mut().take();
            if let Some(meanwhile) = waited {
                meanwhile();
            }
        }
        // As the AWS client does after the budget's wait: a closed gate sends nothing.
        if !crate::cloud::gate::is_open() {
            return Err(CloudError::Transient {
                action,
                reason: "not sent".into(),
            });
        }
        self.calls.borrow_mut().push(action.to_string());
        match self.fail_next.borrow_mut().remove(action) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn api(action: &'static str, code: &str, message: String) -> CloudError {
        CloudError::Api {
            action,
            code: code.into(),
            message,
            maybe_applied: false,
        }
    }

    fn holder(&self, addr: IpAddr) -> Option<String> {
        self.enis
            .borrow()
            .values()
            .find(|v| v.holds(addr))
            .map(|v| v.eni_id.clone())
    }

    /// The free addresses EC2 would choose next.
    fn chosen_v4(&self, count: u32) -> Vec<Ipv4Addr> {
        (4..255u8)
            .map(|i| Ipv4Addr::new(198, 18, 1, i))
            .filter(|a| self.holder(IpAddr::V4(*a)).is_none())
            .take(count as usize)
            .collect()
    }

    fn in_use(&self, action: &'static str, addr: impl std::fmt::Display) -> CloudError {
        CloudError::Api {
            action,
            code: self.in_use_code.borrow().to_string(),
            message: format!("Address {addr} is in use"),
            maybe_applied: self.refuse_as_maybe_applied.replace(false),
        }
    }
}

impl Metadata for FakeAws {
    async fn region(&self) -> Result<String, CloudError> {
        Ok("us-west-2".into())
    }

    async fn eni_facts(&self, mac: &str) -> Result<EniFacts, CloudError> {
        self.enter("imds:eni")?;
        let not_found = || CloudError::Metadata {
            path: format!("network/interfaces/macs/{mac}/interface-id"),
            status: Some(404),
            reason: "Not Found".into(),
            transient: false,
        };
        if let Some(n) = self.imds_lag.borrow_mut().get_mut(mac).filter(|n| **n > 0) {
            *n -= 1;
            return Err(not_found());
        }
        self.facts.get(mac).cloned().ok_or_else(not_found)
    }

    async fn attached_eni(&self, mac: &str) -> Result<Option<AttachedEni>, CloudError> {
        self.enter("imds:attached")?;
        if self.detached.borrow().iter().any(|m| m == mac) {
            return Ok(None);
        }
        Ok(self.facts.get(mac).map(|f| AttachedEni {
            eni_id: f.eni_id.clone(),
            primary_ipv4: f.primary_ipv4,
        }))
    }

    async fn attached_macs(&self) -> Result<Vec<String>, CloudError> {
        self.enter("imds:macs")?;
        let detached = self.detached.borrow();
        Ok(self
            .facts
            .keys()
            .filter(|m| !detached.contains(m))
            .cloned()
            .collect())
    }

    async fn instance_id(&self) -> Result<String, CloudError> {
        self.enter("imds:instance-id")?;
        Ok(INSTANCE.into())
    }

    async fn eni_addresses(&self, mac: &str) -> Result<Vec<IpAddr>, CloudError> {
        self.enter("imds:addresses")?;
        Ok(match self.facts.get(mac) {
            Some(f) => self.holds(&f.eni_id),
            None => Vec::new(),
        })
    }
}

impl Ec2 for FakeAws {
    async fn assign_ipv4(
        &self,
        eni: &str,
        addrs: &[Ipv4Addr],
        allow: bool,
    ) -> Result<(), CloudError> {
        const A: &str = "AssignPrivateIpAddresses";
        self.enter(A)?;
        if self.applied_by_an_earlier_attempt.replace(false) {
            for a in addrs {
                self.move_addr(&a.to_string(), None, Some(eni));
            }
            *self.refuse_as_maybe_applied.borrow_mut() = true;
        }
        for a in addrs {
            if !allow && self.holder(IpAddr::V4(*a)).is_some() {
                return Err(self.in_use(A, a));
            }
        }
        let mut enis = self.enis.borrow_mut();
        for a in addrs {
            for v in enis.values_mut() {
                v.ipv4.retain(|x| x != a);
            }
            enis.get_mut(eni).unwrap().ipv4.push(*a);
        }
        Ok(())
    }

    async fn unassign_ipv4(&self, eni: &str, addrs: &[Ipv4Addr]) -> Result<(), CloudError> {
        const A: &str = "UnassignPrivateIpAddresses";
        self.enter(A)?;
        let mut enis = self.enis.borrow_mut();
        let view = enis.get_mut(eni).unwrap();
        if addrs.iter().any(|a| !view.ipv4.contains(a)) {
            return Err(Self::api(
                A,
                "InvalidParameterValue",
                format!("Some of the specified addresses are not assigned to interface {eni}"),
            ));
        }
        if addrs.iter().any(|a| Some(*a) == view.primary_ipv4) {
            return Err(Self::api(
                A,
                "InvalidParameterValue",
                "The primary IP address of an interface cannot be unassigned".into(),
            ));
        }
        view.ipv4.retain(|a| !addrs.contains(a));
        Ok(())
    }

    async fn assign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError> {
        const A: &str = "AssignIpv6Addresses";
        self.enter(A)?;
        if let Some(a) = addrs
            .iter()
            .find(|a| self.holder(IpAddr::V6(**a)).is_some())
        {
            return Err(self.in_use(A, a));
        }
        let mut lag = self.remap_lag.borrow_mut();
        if let Some(a) = addrs
            .iter()
            .find(|a| self.recently_unassigned.borrow().contains(a))
        {
            if *lag > 0 {
                *lag -= 1;
                return Err(self.in_use(A, a));
            }
        }
        self.enis
            .borrow_mut()
            .get_mut(eni)
            .unwrap()
            .ipv6
            .extend(addrs);
        Ok(())
    }

    async fn unassign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError> {
        const A: &str = "UnassignIpv6Addresses";
        self.enter(A)?;
        let mut enis = self.enis.borrow_mut();
        let view = enis.get_mut(eni).unwrap();
        if addrs.iter().any(|a| !view.ipv6.contains(a)) {
            return Err(Self::api(
                A,
                "InvalidParameterValue",
                format!("Some of the specified addresses are not assigned to interface {eni}"),
            ));
        }
        view.ipv6.retain(|a| !addrs.contains(a));
        self.recently_unassigned.borrow_mut().extend(addrs);
        Ok(())
    }

    async fn assign_ipv4_count(&self, eni: &str, count: u32) -> Result<Vec<Ipv4Addr>, CloudError> {
        self.enter("AssignPrivateIpAddresses")?;
        if self.applied_by_an_earlier_attempt.replace(false) {
            // Carried out, but the answer never came back (a timeout).
            let lost = self.chosen_v4(count);
            self.enis
                .borrow_mut()
                .get_mut(eni)
                .unwrap()
                .ipv4
                .extend(&lost);
            return Err(CloudError::Transient {
                action: "AssignPrivateIpAddresses",
                reason: "no answer before the deadline (timeoutMs)".into(),
            });
        }
        let chosen = self.chosen_v4(count);
        self.enis
            .borrow_mut()
            .get_mut(eni)
            .unwrap()
            .ipv4
            .extend(&chosen);
        Ok(chosen)
    }

    async fn assign_ipv6_count(&self, eni: &str, count: u32) -> Result<Vec<Ipv6Addr>, CloudError> {
        self.enter("AssignIpv6Addresses")?;
        let chosen: Vec<Ipv6Addr> = (0x10..0xffffu16)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, i))
            .filter(|a| self.holder(IpAddr::V6(*a)).is_none())
            .take(count as usize)
            .collect();
        self.enis
            .borrow_mut()
            .get_mut(eni)
            .unwrap()
            .ipv6
            .extend(&chosen);
        Ok(chosen)
    }

    async fn describe_eni(&self, eni: &str) -> Result<EniView, CloudError> {
        self.enter("DescribeNetworkInterfaces")?;
        self.enis.borrow().get(eni).cloned().ok_or_else(|| {
            Self::api(
                "DescribeNetworkInterfaces",
                "InvalidNetworkInterfaceID.NotFound",
                eni.into(),
            )
        })
    }

    async fn holders(&self, addrs: &[IpAddr]) -> Result<Vec<EniView>, CloudError> {
        self.enter("DescribeNetworkInterfaces")?;
        Ok(self
            .enis
            .borrow()
            .values()
            .filter(|v| addrs.iter().any(|a| v.holds(*a)))
            .cloned()
            .collect())
    }

    async fn eni_by_mac(&self, mac: &str) -> Result<Option<EniView>, CloudError> {
        self.enter("DescribeNetworkInterfaces")?;
        let Some(f) = self.facts.get(mac) else {
            return Ok(None);
        };
        Ok(self.enis.borrow().get(&f.eni_id).cloned())
    }

    async fn pace(&self, _action: &'static str, until: std::time::Instant) {
        self.paced_until.borrow_mut().push(until);
        let meanwhile = self.while_pacing.borrow_mut().take();
        if let Some(meanwhile) = meanwhile {
            meanwhile();
        }
    }
}

impl Aws for FakeAws {
    type Metadata = FakeAws;
    type Ec2 = FakeAws;

    fn metadata(&self) -> &FakeAws {
        self
    }

    async fn ec2(&self) -> Result<&FakeAws, CloudError> {
        Ok(self)
    }
}

pub struct FakeHost;

impl Host for FakeHost {
    fn link_by_name(&self, name: &str) -> Result<MasterLink, HostError> {
        Ok(MasterLink {
            name: name.into(),
            mac: match name {
                "eth2" => "02:00:c6:12:01:02",
                "eth9" => "02:00:c6:12:01:09",
                _ => MAC,
            }
            .into(),
            up: name != "down0",
        })
    }

    fn parent_of(&self, _netns: &Path, _ifname: &str) -> Result<MasterLink, HostError> {
        self.link_by_name("eth1")
    }
}
