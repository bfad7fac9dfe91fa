//! Request rates: a token bucket per key (a client address, an address and principal, a role),
//! in a bounded table.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

/// Most keys tracked. When the table is full, buckets that have refilled are dropped first
/// (they hold nothing a fresh bucket would not), then the tenth used longest ago: a client
/// that is being throttled now keeps its bucket, however many new keys arrive.
pub const TRACKED_CLIENTS_MAX: usize = 100_000;

pub struct RateLimiter<K = IpAddr> {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_s` = 0 disables the limit.
    pub fn new(per_s: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter {
            per_s: per_s as f64,
            burst: burst.max(per_s).max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
            capacity: TRACKED_CLIENTS_MAX,
        }
    }

    /// `per_min` requests a minute, all of them allowed in a burst (0 = unlimited).
    pub fn per_minute(per_min: u32) -> RateLimiter<K> {
        RateLimiter {
            per_s: per_min as f64 / 60.0,
            burst: per_min.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
            capacity: TRACKED_CLIENTS_MAX,
        }
    }

    /// Takes one token for `key`; Err(seconds to wait) when none is left.
    pub fn check(&self, key: K) -> Result<(), u64> {
        self.take_at(key, Instant::now(), 1.0)
    }

    pub fn check_at(&self, key: K, now: Instant) -> Result<(), u64> {
        self.take_at(key, now, 1.0)
    }

    /// Whether `key` has a token left, without taking it; Err(seconds to wait) when not.
    pub fn peek(&self, key: K) -> Result<(), u64> {
        self.take_at(key, Instant::now(), 0.0)
    }

    fn take_at(&self, key: K, now: Instant, cost: f64) -> Result<(), u64> {
        if self.per_s <= 0.0 {
            return Ok(());
        }
        let mut b = self.buckets.lock();
        if b.len() >= self.capacity && !b.contains_key(&key) {
            let full_after = self.burst / self.per_s;
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs_f64() < full_after);
            if b.len() >= self.capacity {
                let mut lasts: Vec<Instant> = b.values().map(|(_, t)| *t).collect();
                let cut = (self.capacity / 10).max(1).min(lasts.len() - 1);
                let (_, oldest_kept, _) = lasts.select_nth_unstable(cut);
                let oldest_kept = *oldest_kept;
                b.retain(|_, (_, t)| *t >= oldest_kept);
            }
        }
        let (tokens, last) = b.entry(key).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_s;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= cost;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_s).ceil().max(1.0) as u64)
        }
    }
}

/// Longest token accepted, in bytes (headers of a few KiB are already unusual).
pub const TOKEN_BYTES_MAX: usize = 8 << 10;

/// Most clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_S_MAX: u64 = 60;

/// Longest member name quoted in an error, in characters.
pub const NAME_CHARS_MAX: usize = 64;

const _: () = {
    assert!(NAME_CHARS_MAX < TOKEN_BYTES_MAX);
    // Clock skew, not token lifetime: well under the shortest expiry anyone configures.
    assert!(LEEWAY_S_MAX <= 300);
};

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

    /// A full table drops refilled and long-unused buckets, never the one of a client being
    /// throttled now (it used to be cleared with every other).
    #[test]
    fn a_full_table_keeps_the_buckets_in_use() {
        let mut l: RateLimiter<u32> = RateLimiter::new(1, 2);
        l.capacity = 100;
        let t = Instant::now();
        // Client 0 is throttled.
        assert!(l.check_at(0, t).is_ok() && l.check_at(0, t).is_ok());
        assert!(l.check_at(0, t).is_err());
        // A thousand new keys arrive within the refill time, each taking a token.
        for k in 1..1000u32 {
            let at = t + Duration::from_micros(k as u64);
            let _ = l.check_at(k, at);
            let _ = l.check_at(0, at);
            assert!(l.buckets.lock().len() <= 100);
        }
        assert!(l.check_at(0, t + Duration::from_millis(2)).is_err(), "the throttled client is still throttled");
        // peek takes nothing.
        assert!(l.peek(5000).is_ok());
        assert!(l.peek(5000).is_ok());
    }
}
