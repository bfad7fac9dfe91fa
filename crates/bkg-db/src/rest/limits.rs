//! Per-client request rate: a token bucket per IP address, in a bounded table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

/// Most client addresses tracked; beyond it, buckets that have refilled are dropped first.
pub const TRACKED_CLIENTS_MAX: usize = 100_000;

pub struct RateLimiter {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_s` = 0 disables the limit.
    pub fn new(per_s: u32, burst: u32) -> RateLimiter {
        RateLimiter { per_s: per_s as f64, burst: burst.max(per_s).max(1) as f64, buckets: Mutex::new(HashMap::new()) }
    }

    /// `per_min` requests a minute, all of them allowed in a burst (0 = unlimited).
    pub fn per_minute(per_min: u32) -> RateLimiter {
        RateLimiter { per_s: per_min as f64 / 60.0, burst: per_min.max(1) as f64, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `ip`; Err(seconds to wait) when none is left.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    pub fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_s <= 0.0 {
            return Ok(());
        }
        let mut b = self.buckets.lock();
        if b.len() >= TRACKED_CLIENTS_MAX && !b.contains_key(&ip) {
            let full_after = self.burst / self.per_s;
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs_f64() < full_after);
            if b.len() >= TRACKED_CLIENTS_MAX {
                b.clear();
            }
        }
        let (tokens, last) = b.entry(ip).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_s;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_s).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills() {
        let l = RateLimiter::new(2, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at(ip, t).is_ok());
        }
        assert_eq!(l.check_at(ip, t), Err(1));
        assert!(l.check_at("10.0.0.2".parse().unwrap(), t).is_ok(), "other clients are not affected");
        assert!(l.check_at(ip, t + Duration::from_millis(600)).is_ok());
        assert!(RateLimiter::new(0, 0).check_at(ip, t).is_ok());
    }
}
