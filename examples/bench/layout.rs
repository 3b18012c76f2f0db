//! The generated world (one VPC; a bench node, a burst node and N scale nodes) and the veth links
//! that stand in for each secondary ENI's host interface.

use ec2_sim::{Eni, Faults, Instance, Subnet, Vpc, World};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub const REGION: &str = "us-west-2";
const AZ: &str = "us-west-2a";
const VPC: &str = "vpc-0be00000000000001";
const SUBNET_PRIMARY: &str = "subnet-0be0000000000001";
pub const SUBNET_BENCH: &str = "subnet-0be0000000000002";
const SUBNET_SCALE: &str = "subnet-0be0000000000003";

/// One secondary ENI: what the plugin's `master` link must carry, and where its pods' addresses start.
#[derive(Debug, Clone)]
pub struct NodeEni {
    pub id: String,
    pub mac: String,
    pub first_pod: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub instance: String,
    pub enis: Vec<NodeEni>,
}

pub struct Layout {
    pub world: World,
    /// c5n.18xlarge with one secondary ENI: the one-pod measurements and the Python baseline.
    pub bench: Node,
    /// c5n.18xlarge with three secondary ENIs (49 pod addresses each).
    pub burst: Node,
    /// c5.4xlarge each with one secondary ENI (29 pod addresses).
    pub scale: Vec<Node>,
}

fn ip(base: Ipv4Addr, offset: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + offset)
}

fn instance_id(k: u32) -> String {
    format!("i-0be{k:014x}")
}

fn eni_id(k: u32, dev: u32) -> String {
    format!("eni-0be{k:010x}{dev:04x}")
}

fn mac(k: u32, dev: u32) -> String {
    format!(
        "02:be:{:02x}:{:02x}:{:02x}:{:02x}",
        (k >> 16) & 0xff,
        (k >> 8) & 0xff,
        k & 0xff,
        dev & 0xff
    )
}

struct Builder {
    world: World,
}

impl Builder {
    /// Adds an instance with its primary ENI and `secondaries` (subnet, primary IP, first pod IP).
    fn node(&mut self, k: u32, ty: &str, secondaries: &[(&str, Ipv4Addr, Ipv4Addr)]) -> Node {
        let instance = instance_id(k);
        let primary_ip = ip(
            Ipv4Addr::new(198, 18, 0, 16),
            self.world.instances.len() as u32,
        );
        self.world.instances.push(Instance {
            id: instance.clone(),
            instance_type: ty.into(),
            region: REGION.into(),
            availability_zone: AZ.into(),
            imds_port: 0,
            role: Some("eks-node-role".into()),
        });
        self.world.enis.push(Eni {
            id: eni_id(k, 0),
            mac: mac(k, 0),
            instance_id: Some(instance.clone()),
            device_index: Some(0),
            subnet_id: SUBNET_PRIMARY.into(),
            primary_ip,
            private_ips: Vec::new(),
            ipv6s: Vec::new(),
            tags: BTreeMap::new(),
        });
        let mut enis = Vec::new();
        for (i, (subnet, primary, first_pod)) in secondaries.iter().enumerate() {
            let dev = i as u32 + 1;
            let e = NodeEni {
                id: eni_id(k, dev),
                mac: mac(k, dev),
                first_pod: *first_pod,
            };
            self.world.enis.push(Eni {
                id: e.id.clone(),
                mac: e.mac.clone(),
                instance_id: Some(instance.clone()),
                device_index: Some(dev),
                subnet_id: (*subnet).into(),
                primary_ip: *primary,
                private_ips: Vec::new(),
                ipv6s: Vec::new(),
                tags: BTreeMap::from([(
                    "node.k8s.amazonaws.com/no_manage".to_string(),
                    "true".to_string(),
                )]),
            });
            enis.push(e);
        }
        Node { instance, enis }
    }
}

/// VPC 198.18.0.0/16: primaries in .0.0/20, bench and burst ENIs in .16.0/20, scale ENIs in .32.0/19
/// (a /27 per node: ENI primary at +4, pods from +5).
pub fn layout(scale_nodes: usize, pods_per_node: usize) -> Result<Layout, String> {
    if pods_per_node > 27 {
        return Err("at most 27 pods per scale node (a /27 each, c5.4xlarge: 30 per ENI)".into());
    }
    if scale_nodes > 250 {
        return Err("at most 250 scale nodes (the /19 of the scale subnet)".into());
    }
    let mut b = Builder {
        world: World {
            account_id: "111122223333".into(),
            vpcs: vec![Vpc {
                id: VPC.into(),
                cidr: "198.18.0.0/16".into(),
                ipv6_cidr: None,
            }],
            subnets: [
                (SUBNET_PRIMARY, "198.18.0.0/20"),
                (SUBNET_BENCH, "198.18.16.0/20"),
                (SUBNET_SCALE, "198.18.32.0/19"),
            ]
            .iter()
            .map(|(id, cidr)| Subnet {
                id: (*id).into(),
                vpc_id: VPC.into(),
                availability_zone: AZ.into(),
                ipv4_cidr: (*cidr).into(),
                ipv6_cidr: None,
            })
            .collect(),
            instances: Vec::new(),
            enis: Vec::new(),
            faults: Faults::default(),
        },
    };
    let bench = b.node(
        0xbe0001,
        "c5n.18xlarge",
        &[(
            SUBNET_BENCH,
            Ipv4Addr::new(198, 18, 16, 10),
            Ipv4Addr::new(198, 18, 17, 10),
        )],
    );
    let burst = b.node(
        0xbe0002,
        "c5n.18xlarge",
        &[0u8, 1, 2].map(|i| {
            (
                SUBNET_BENCH,
                Ipv4Addr::new(198, 18, 16, 20 + i),
                Ipv4Addr::new(198, 18, 18 + i, 10),
            )
        }),
    );
    let scale = (0..scale_nodes as u32)
        .map(|i| {
            let base = ip(Ipv4Addr::new(198, 18, 32, 0), 32 * i);
            b.node(i, "c5.4xlarge", &[(SUBNET_SCALE, ip(base, 4), ip(base, 5))])
        })
        .collect();
    b.world.validate()?;
    Ok(Layout {
        world: b.world,
        bench,
        burst,
        scale,
    })
}

/// veth pairs whose host end carries an ENI's MAC; deleted on drop.
pub struct Links {
    pub names: Vec<String>,
}

fn ip_batch(lines: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .map_err(|e| format!("ip -batch: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ip -batch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -batch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Links {
    /// `tag` keeps names unique per use (`aeb<pid><tag><i>`, at most 15 characters).
    pub fn create(tag: &str, macs: &[&str]) -> Result<Links, String> {
        let pid = std::process::id() % 10_000;
        let names: Vec<String> = (0..macs.len())
            .map(|i| format!("aeb{pid}{tag}{i}"))
            .collect();
        let mut script = String::new();
        for (name, mac) in names.iter().zip(macs) {
            // This kernel has no dummy module; a veth end plays the ENI's host link.
            script.push_str(&format!(
                "link add {name} type veth peer name {name}p\nlink set {name} address {mac}\nlink set {name} up\n"
            ));
        }
        let links = Links { names };
        ip_batch(&script)?;
        Ok(links)
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        let script: String = self
            .names
            .iter()
            .map(|n| format!("link del {n}\n"))
            .collect();
        // -force: keep deleting past a link that failed to be created.
        let _ = Command::new("ip")
            .args(["-force", "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait()
            });
    }
}
