//! Addresses EC2 chooses by itself (DHCP primary of a new ENI, `…Count` assignment): never one of
//! the subnet's reserved addresses, never inside a subnet CIDR reservation, never one in use.
//!
//! EC2 documents no order. The AWS blog behind this project (shared/seed) describes the DHCP choice
//! as random, so the simulator draws uniformly from the free addresses with its own seeded RNG:
//! runs repeat, and a client that wants the lowest free address has to ask for it explicitly.

use ipnetwork::IpNetwork;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Inclusive ranges of candidate addresses as integers (IPv4 widened to u128).
#[derive(Debug, Clone)]
pub(crate) struct Candidates {
    v6: bool,
    ranges: Vec<(u128, u128)>,
}

fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn bounds(net: IpNetwork) -> (u128, u128) {
    match net {
        IpNetwork::V4(n) => (to_int(n.network().into()), to_int(n.broadcast().into())),
        IpNetwork::V6(n) => {
            let lo = u128::from(n.network());
            let host_bits = 128 - u32::from(n.prefix());
            let span = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            (lo, lo + span)
        }
    }
}

impl Candidates {
    /// The subnet block without its first four and its last address (reserved by EC2 in every
    /// IPv4 subnet; the simulator keeps the same rule for choices in IPv6 blocks).
    pub fn of_subnet(block: IpNetwork) -> Candidates {
        let (lo, hi) = bounds(block);
        let ranges = if hi >= lo.saturating_add(5) {
            vec![(lo + 4, hi - 1)]
        } else {
            Vec::new()
        };
        Candidates {
            v6: block.is_ipv6(),
            ranges,
        }
    }

    /// Removes a reserved block (a subnet CIDR reservation) from the candidates.
    pub fn without(mut self, block: IpNetwork) -> Candidates {
        if block.is_ipv6() != self.v6 {
            return self;
        }
        let (blo, bhi) = bounds(block);
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for (lo, hi) in self.ranges {
            if bhi < lo || blo > hi {
                out.push((lo, hi));
                continue;
            }
            if blo > lo {
                out.push((lo, blo - 1));
            }
            if bhi < hi {
                out.push((bhi + 1, hi));
            }
        }
        self.ranges = out;
        self
    }

    fn ip(&self, n: u128) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(n))
        } else {
            IpAddr::V4(Ipv4Addr::from(n as u32))
        }
    }

    /// Draws `count` distinct addresses not in `held`, uniformly; `None` when fewer are free.
    pub fn pick(
        &self,
        held: impl IntoIterator<Item = IpAddr>,
        count: usize,
        rng: &mut StdRng,
    ) -> Option<Vec<IpAddr>> {
        let mut taken: BTreeSet<u128> = held
            .into_iter()
            .filter(|ip| ip.is_ipv6() == self.v6)
            .map(to_int)
            .filter(|n| self.ranges.iter().any(|(lo, hi)| lo <= n && n <= hi))
            .collect();
        let mut picked = Vec::with_capacity(count);
        for _ in 0..count {
            // Free addresses per range: its size less the taken ones inside it (sizes saturate at /0).
            let free: Vec<u128> = self
                .ranges
                .iter()
                .map(|&(lo, hi)| {
                    let inside = taken.range(lo..=hi).count() as u128;
                    (hi - lo).saturating_add(1).saturating_sub(inside)
                })
                .collect();
            let total = free.iter().fold(0u128, |a, b| a.saturating_add(*b));
            if total == 0 {
                return None;
            }
            let mut r = rng.random_range(0..total);
            let (range, _) = self.ranges.iter().zip(&free).find(|(_, f)| {
                if r < **f {
                    true
                } else {
                    r -= **f;
                    false
                }
            })?;
            let n = nth_free(*range, &taken, r);
            taken.insert(n);
            picked.push(self.ip(n));
        }
        Some(picked)
    }
}

/// The `r`-th address of `lo..=hi` that is not taken (r counts from 0).
fn nth_free((lo, _hi): (u128, u128), taken: &BTreeSet<u128>, r: u128) -> u128 {
    let mut n = lo + r;
    // Every taken address at or below the candidate pushes it one further.
    let mut counted = 0u128;
    loop {
        let below = taken.range(lo..=n).count() as u128;
        if below == counted {
            return n;
        }
        n += below - counted;
        counted = below;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn reserved_ends_and_reservations_are_never_picked() {
        let c = Candidates::of_subnet(net("192.0.2.0/28")).without(net("192.0.2.8/30"));
        let mut rng = StdRng::seed_from_u64(3);
        let got = c.pick([], 7, &mut rng).unwrap();
        let mut last: Vec<u8> = got
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(a) => a.octets()[3],
                _ => unreachable!(),
            })
            .collect();
        last.sort_unstable();
        assert_eq!(last, [4, 5, 6, 7, 12, 13, 14]);
        assert!(c.pick([], 8, &mut rng).is_none());
    }

    #[test]
    fn held_addresses_are_skipped() {
        let c = Candidates::of_subnet(net("192.0.2.0/28"));
        let held: Vec<IpAddr> = (4..14)
            .map(|i| format!("192.0.2.{i}").parse().unwrap())
            .collect();
        let mut rng = StdRng::seed_from_u64(9);
        assert_eq!(
            c.pick(held.clone(), 1, &mut rng).unwrap(),
            ["192.0.2.14".parse::<IpAddr>().unwrap()]
        );
        assert!(c.pick(held, 2, &mut rng).is_none());
    }

    #[test]
    fn nth_free_steps_over_runs_of_taken_addresses() {
        let taken: BTreeSet<u128> = [10, 11, 12, 15].into_iter().collect();
        assert_eq!(nth_free((10, 20), &taken, 0), 13);
        assert_eq!(nth_free((10, 20), &taken, 1), 14);
        assert_eq!(nth_free((10, 20), &taken, 2), 16);
    }

    #[test]
    fn ipv6_blocks_are_drawn_from_without_enumerating() {
        let c = Candidates::of_subnet(net("2001:db8:1::/64")).without(net("2001:db8:1::/65"));
        let mut rng = StdRng::seed_from_u64(1);
        let got = c.pick([], 50, &mut rng).unwrap();
        let upper = net("2001:db8:1:0:8000::/65");
        assert!(got.iter().all(|ip| upper.contains(*ip)));
    }
}
