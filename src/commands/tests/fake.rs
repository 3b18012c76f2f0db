//! In-memory EC2 + IMDS + host for command tests: records every call, enforces the EC2 rules the
//! commands rely on (in-use, not-assigned, reassignment moves), and fails on demand.

use crate::cloud::{Aws, CloudError, Ec2, EniFacts, EniView, Metadata, NO_MANAGE_TAG};
use crate::node::HostError;
use crate::node::{Host, MasterLink};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

#[derive(Default)]
pub struct FakeAws {
    pub enis: RefCell<BTreeMap<String, EniView>>,
    pub facts: BTreeMap<String, EniFacts>,
    pub calls: RefCell<Vec<String>>,
    /// Action name → the error the next call of it returns.
    pub fail_next: RefCell<BTreeMap<&'static str, CloudError>>,
}

pub const ENI: &str = "eni-0b000000000000001";
pub const OTHER: &str = "eni-0b000000000000002";
pub const MAC: &str = "02:00:c6:12:01:01";

impl FakeAws {
    pub fn new() -> FakeAws {
        let mut fake = FakeAws::default();
        for (eni, mac) in [(ENI, MAC), (OTHER, "02:00:c6:12:01:02")] {
            fake.enis.borrow_mut().insert(
                eni.into(),
                EniView {
                    eni_id: eni.into(),
                    primary_ipv4: Some("198.18.1.10".parse().unwrap()),
                    ipv4: vec!["198.18.1.10".parse().unwrap()],
                    ipv6: vec![],
                    tags: [(NO_MANAGE_TAG.to_string(), "true".to_string())].into(),
                },
            );
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
                    primary_ipv4: Some("198.18.1.10".parse().unwrap()),
                },
            );
        }
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

    /// Out of band: `addr` leaves `from` (taken over by `to`, or unassigned by hand).
    pub fn move_ipv4(&self, addr: &str, from: &str, to: Option<&str>) {
        let addr: Ipv4Addr = addr.parse().unwrap();
        let mut enis = self.enis.borrow_mut();
        enis.get_mut(from).unwrap().ipv4.retain(|a| *a != addr);
        if let Some(to) = to {
            enis.get_mut(to).unwrap().ipv4.push(addr);
        }
    }

    pub fn count(&self, action: &str) -> usize {
        self.calls.borrow().iter().filter(|c| *c == action).count()
    }

    fn enter(&self, action: &'static str) -> Result<(), CloudError> {
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
        }
    }

    fn holder(&self, addr: IpAddr) -> Option<String> {
        self.enis
            .borrow()
            .values()
            .find(|v| v.holds(addr))
            .map(|v| v.eni_id.clone())
    }
}

impl Metadata for FakeAws {
    async fn region(&self) -> Result<String, CloudError> {
        Ok("us-west-2".into())
    }

    async fn eni_facts(&self, mac: &str) -> Result<EniFacts, CloudError> {
        self.enter("imds:eni")?;
        self.facts.get(mac).cloned().ok_or(CloudError::Metadata {
            path: format!("network/interfaces/macs/{mac}/interface-id"),
            status: Some(404),
            reason: "Not Found".into(),
            transient: false,
        })
    }

    async fn ping(&self) -> Result<(), CloudError> {
        self.enter("imds:ping")
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
        for a in addrs {
            if !allow && self.holder(IpAddr::V4(*a)).is_some() {
                return Err(Self::api(
                    A,
                    "InvalidIPAddress.InUse",
                    format!("{a} in use"),
                ));
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
        view.ipv4.retain(|a| !addrs.contains(a));
        Ok(())
    }

    async fn assign_ipv6(&self, eni: &str, addrs: &[Ipv6Addr]) -> Result<(), CloudError> {
        const A: &str = "AssignIpv6Addresses";
        self.enter(A)?;
        if addrs.iter().any(|a| self.holder(IpAddr::V6(*a)).is_some()) {
            return Err(Self::api(A, "InvalidIPAddress.InUse", "in use".into()));
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
        Ok(())
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

    async fn ipv6_holder(&self, addr: Ipv6Addr) -> Result<Option<String>, CloudError> {
        self.enter("DescribeNetworkInterfaces")?;
        Ok(self.holder(IpAddr::V6(addr)))
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
            mac: if name == "eth2" {
                "02:00:c6:12:01:02"
            } else {
                MAC
            }
            .into(),
        })
    }

    fn parent_of(&self, _netns: &Path, _ifname: &str) -> Result<MasterLink, HostError> {
        self.link_by_name("eth1")
    }
}
