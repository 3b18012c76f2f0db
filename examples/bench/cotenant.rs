//! The co-tenant of the fleet runs: another caller of the same account (the VPC CNI's warm-pool
//! refills) that sends one AssignPrivateIpAddresses a second to ec2-sim, whatever answer it gets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct CoTenant {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    throttled: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CoTenant {
    pub(crate) fn start(ec2_url: &str, per_second: f64) -> CoTenant {
        let addr = ec2_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let (stop, calls, throttled) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, c, t) = (stop.clone(), calls.clone(), throttled.clone());
        let gap = Duration::from_secs_f64(1.0 / per_second.max(0.01));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(status) = assign_once(&addr) {
                    c.fetch_add(1, Ordering::Relaxed);
                    if status == 503 {
                        t.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(gap);
            }
        });
        CoTenant {
            stop,
            calls,
            throttled,
            thread: Some(thread),
        }
    }

    /// Stops it: its calls, and how many of them were throttled.
    pub(crate) fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.calls.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
        )
    }
}

/// One signed-looking count-based assign on an ENI the simulator does not know: the bucket is
/// asked first, so the call takes a token (or is throttled) like any other. The HTTP status.
fn assign_once(addr: &str) -> Option<u16> {
    let body = "Action=AssignPrivateIpAddresses&Version=2016-11-15&NetworkInterfaceId=eni-0c0000000000c0ten&SecondaryPrivateIpAddressCount=1";
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDCOTENANT/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
