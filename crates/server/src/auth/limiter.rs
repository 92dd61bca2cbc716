//! Slowing down a source that keeps failing to log in: a token bucket per source address.
//!
//! Every failed login takes a token from its source's bucket; the bucket holds at most `burst`
//! tokens and gets `rate` back per second. A source whose bucket is empty is refused without
//! its password being checked, with the same answer as a wrong password, until a token is
//! back. Successful logins take nothing, so a client that logs in correctly is never slowed
//! down by this, unless its address is also the one guessing passwords.
//!
//! IPv6 sources are grouped by /64 (one host usually owns a whole /64 and can pick any address
//! in it). The buckets live in a fixed number of shards, each a short-held mutex around a map
//! of bounded size: a full shard first forgets the buckets that are full again (they carry no
//! information), then the least recently used one. So a flood of logins from many addresses
//! costs bounded memory, and no lock is held while a password is hashed.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Instant;

/// Number of shards (a power of two).
const SHARDS: usize = 16;
/// Sources remembered per shard.
const PER_SHARD: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Failed-login buckets by source.
pub struct LoginLimiter {
    rate: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpKey, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
}

/// A source: an IPv4 address, or the /64 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IpKey(u128);

fn key(ip: IpAddr) -> IpKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpKey(u128::from(u32::from(v4))),
        IpAddr::V6(v6) => IpKey((u128::from(v6) >> 64 << 64) | 1),
    }
}

impl LoginLimiter {
    /// At most `burst` failures in a row, then `rate` per second. A zero `burst` turns the
    /// limiter off.
    pub fn new(rate: f64, burst: u32) -> LoginLimiter {
        LoginLimiter {
            rate: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                0.0
            },
            burst: f64::from(burst),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, k: IpKey) -> &Mutex<HashMap<IpKey, Bucket>> {
        &self.shards[(self.hasher.hash_one(k) as usize) & (SHARDS - 1)]
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
    }

    /// Whether `ip` may try to log in now (it has a token left).
    pub fn allows(&self, ip: IpAddr, now: Instant) -> bool {
        if self.burst == 0.0 {
            return true;
        }
        let k = key(ip);
        let mut shard = self.shard(k).lock();
        match shard.get_mut(&k) {
            None => true,
            Some(b) => {
                self.refill(b, now);
                b.tokens >= 1.0
            }
        }
    }

    /// Records a failed login from `ip`; true if that emptied its bucket (the source is now
    /// refused for a while: worth one log line).
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        if self.burst == 0.0 {
            return false;
        }
        let k = key(ip);
        let mut shard = self.shard(k).lock();
        if !shard.contains_key(&k) && shard.len() >= PER_SHARD {
            self.evict(&mut shard, now);
        }
        let b = shard.entry(k).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        self.refill(b, now);
        let before = b.tokens;
        b.tokens = (b.tokens - 1.0).max(0.0);
        before >= 1.0 && b.tokens < 1.0
    }

    /// Makes room in a full shard: forgets the sources whose buckets have refilled, or else
    /// the one seen least recently.
    fn evict(&self, shard: &mut HashMap<IpKey, Bucket>, now: Instant) {
        let before = shard.len();
        shard.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * self.rate < self.burst
        });
        if shard.len() < before {
            return;
        }
        if let Some(oldest) = shard.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k) {
            shard.remove(&oldest);
        }
    }

    /// Sources remembered (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_is_refused_after_its_burst_and_comes_back_with_time() {
        let l = LoginLimiter::new(2.0, 3);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        assert!(l.allows(a, t0));
        assert!(!l.failed(a, t0));
        assert!(!l.failed(a, t0));
        assert!(l.failed(a, t0), "the third failure empties the bucket");
        assert!(!l.allows(a, t0));
        assert!(
            l.allows(ip("10.0.0.2"), t0),
            "other sources are not affected"
        );
        // Two tokens a second: one is back after half a second.
        assert!(!l.allows(a, t0 + Duration::from_millis(400)));
        assert!(l.allows(a, t0 + Duration::from_millis(600)));
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        let l = LoginLimiter::new(1.0, 1);
        let t0 = Instant::now();
        l.failed(ip("2001:db8::1"), t0);
        assert!(!l.allows(ip("2001:db8::ffff:1234"), t0));
        assert!(l.allows(ip("2001:db8:0:1::1"), t0));
        l.failed(ip("::ffff:192.0.2.7"), t0);
        assert!(!l.allows(ip("192.0.2.7"), t0));
    }

    #[test]
    fn the_map_stays_bounded_under_a_flood_of_sources() {
        let l = LoginLimiter::new(0.001, 5);
        let t0 = Instant::now();
        for n in 0..(SHARDS * PER_SHARD + 4096) as u32 {
            l.failed(
                IpAddr::from(n.to_be_bytes()),
                t0 + Duration::from_micros(u64::from(n)),
            );
        }
        assert!(l.len() <= SHARDS * PER_SHARD);
    }

    #[test]
    fn a_zero_burst_turns_it_off() {
        let l = LoginLimiter::new(1.0, 0);
        let t0 = Instant::now();
        for _ in 0..100 {
            l.failed(ip("10.0.0.1"), t0);
        }
        assert!(l.allows(ip("10.0.0.1"), t0));
    }
}
