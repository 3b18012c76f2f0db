//! Raw HTTP helpers: the semantics tests speak the wire format by hand, without the SDK.
#![allow(dead_code)]

use ec2_sim::Sim;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const ENI_A1: &str = "eni-0a000000000000001";
pub const ENI_B1: &str = "eni-0b000000000000001";
pub const ENI_A2: &str = "eni-0a000000000000002";
pub const ENI_B2: &str = "eni-0b000000000000002";
pub const ENI_C1: &str = "eni-0c000000000000001";
pub const I1: &str = "i-0a1b2c3d4e5f60001";
pub const I2: &str = "i-0a1b2c3d4e5f60002";
pub const MAC_B1: &str = "02:00:c6:12:01:01";

pub const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIDSIMTEST/20240101/us-west-2/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The text of the first `<tag>…</tag>` in the body.
    pub fn tag(&self, tag: &str) -> Option<String> {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let start = self.body.find(&open)? + open.len();
        let end = self.body[start..].find(&close)? + start;
        Some(self.body[start..end].to_string())
    }

    /// Every `<tag>…</tag>` text in the body, in order.
    pub fn tags(&self, tag: &str) -> Vec<String> {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let mut out = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(s) = rest.find(&open) {
            let after = &rest[s + open.len()..];
            let Some(e) = after.find(&close) else { break };
            out.push(after[..e].to_string());
            rest = &after[e + close.len()..];
        }
        out
    }

    pub fn code(&self) -> Option<String> {
        self.tag("Code")
    }

    pub fn message(&self) -> String {
        self.tag("Message").unwrap_or_default()
    }
}

/// One HTTP/1.1 exchange on a fresh connection.
pub fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Sends raw bytes, returns whatever comes back until the server closes.
pub fn raw(base: &str, request: &str) -> String {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A signed-looking EC2 Query POST.
pub fn ec2(sim: &Sim, params: &[(&str, &str)]) -> Resp {
    let mut all = vec![("Version", "2016-11-15")];
    all.extend_from_slice(params);
    http(
        &sim.ec2_url(),
        "POST",
        "/",
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Authorization", SIGV4),
        ],
        form(&all).as_bytes(),
    )
}

pub fn assign(sim: &Sim, eni: &str, addrs: &[&str], allow: Option<bool>) -> Resp {
    let keys: Vec<String> = (1..=addrs.len())
        .map(|i| format!("PrivateIpAddress.{i}"))
        .collect();
    let mut p: Vec<(&str, &str)> = vec![
        ("Action", "AssignPrivateIpAddresses"),
        ("NetworkInterfaceId", eni),
    ];
    for (k, a) in keys.iter().zip(addrs) {
        p.push((k, a));
    }
    let flag = allow.map(|b| b.to_string());
    if let Some(f) = &flag {
        p.push(("AllowReassignment", f));
    }
    ec2(sim, &p)
}

pub fn unassign(sim: &Sim, eni: &str, addrs: &[&str]) -> Resp {
    let keys: Vec<String> = (1..=addrs.len())
        .map(|i| format!("PrivateIpAddress.{i}"))
        .collect();
    let mut p: Vec<(&str, &str)> = vec![
        ("Action", "UnassignPrivateIpAddresses"),
        ("NetworkInterfaceId", eni),
    ];
    for (k, a) in keys.iter().zip(addrs) {
        p.push((k, a));
    }
    ec2(sim, &p)
}

pub fn assign6(sim: &Sim, eni: &str, addrs: &[&str]) -> Resp {
    let keys: Vec<String> = (1..=addrs.len())
        .map(|i| format!("Ipv6Addresses.{i}"))
        .collect();
    let mut p: Vec<(&str, &str)> = vec![
        ("Action", "AssignIpv6Addresses"),
        ("NetworkInterfaceId", eni),
    ];
    for (k, a) in keys.iter().zip(addrs) {
        p.push((k, a));
    }
    ec2(sim, &p)
}

pub fn unassign6(sim: &Sim, eni: &str, addrs: &[&str]) -> Resp {
    let keys: Vec<String> = (1..=addrs.len())
        .map(|i| format!("Ipv6Addresses.{i}"))
        .collect();
    let mut p: Vec<(&str, &str)> = vec![
        ("Action", "UnassignIpv6Addresses"),
        ("NetworkInterfaceId", eni),
    ];
    for (k, a) in keys.iter().zip(addrs) {
        p.push((k, a));
    }
    ec2(sim, &p)
}

/// DescribeNetworkInterfaces with `Filter.1` = name/values.
pub fn describe_filter(sim: &Sim, name: &str, values: &[&str]) -> Resp {
    let keys: Vec<String> = (1..=values.len())
        .map(|i| format!("Filter.1.Value.{i}"))
        .collect();
    let mut p: Vec<(&str, &str)> = vec![
        ("Action", "DescribeNetworkInterfaces"),
        ("Filter.1.Name", name),
    ];
    for (k, v) in keys.iter().zip(values) {
        p.push((k, v));
    }
    ec2(sim, &p)
}

/// The ENI ids in a DescribeNetworkInterfaces reply.
pub fn eni_ids(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.body);
    r.tags("networkInterfaceId")
}

pub fn token(sim: &Sim, instance: &str) -> String {
    let r = http(
        &sim.imds_url(instance),
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// GET an IMDS path with a fresh token.
pub fn imds(sim: &Sim, instance: &str, path: &str) -> Resp {
    let t = token(sim, instance);
    http(
        &sim.imds_url(instance),
        "GET",
        path,
        &[("X-aws-ec2-metadata-token", &t)],
        b"",
    )
}

pub fn local_ipv4s(sim: &Sim, instance: &str, mac: &str) -> Vec<String> {
    let r = imds(
        sim,
        instance,
        &format!("/latest/meta-data/network/interfaces/macs/{mac}/local-ipv4s"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.lines().map(str::to_string).collect()
}

pub fn demo() -> Sim {
    Sim::start(ec2_sim::World::demo()).expect("start sim")
}
