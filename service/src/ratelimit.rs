//! Optional per-client rate limiting: one token bucket per client address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// Buckets beyond this count trigger a sweep of the idle (full) ones, so a scan from many
/// addresses cannot grow memory without bound.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allow,
    /// Over the limit; a token will be available after this long.
    Deny {
        retry_after: Duration,
    },
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, client: &str, now: Instant) -> Decision {
        let rate = f64::from(self.limit.per_second);
        let burst = f64::from(self.limit.burst.max(1));
        // A poisoned lock only means another request panicked mid-update; the map is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(client.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allow
        } else {
            Decision::Deny {
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / rate),
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

/// The client an ALB request came from. The ALB *appends* the address it accepted the
/// connection from to `X-Forwarded-For`, so the last entry is the one a client cannot forge;
/// earlier entries are whatever the client sent.
pub fn client_key(forwarded_for: Option<&str>, peer: Option<String>) -> String {
    forwarded_for
        .and_then(|v| v.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
        .map(str::to_owned)
        .or(peer)
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> Limiter {
        Limiter::new(RateLimit { per_second, burst })
    }

    #[test]
    fn allows_a_burst_then_denies_until_refilled() {
        let l = limiter(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("a", t0), Decision::Allow);
        }
        let Decision::Deny { retry_after } = l.check("a", t0) else {
            panic!("fourth request in the same instant must be denied");
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert_eq!(
            l.check("a", t0 + Duration::from_millis(500)),
            Decision::Allow
        );
    }

    #[test]
    fn clients_have_separate_buckets() {
        let l = limiter(1, 1);
        let t0 = Instant::now();
        assert_eq!(l.check("a", t0), Decision::Allow);
        assert!(matches!(l.check("a", t0), Decision::Deny { .. }));
        assert_eq!(l.check("b", t0), Decision::Allow);
    }

    #[test]
    fn idle_buckets_are_swept_when_many_clients_appear() {
        let l = limiter(1, 1);
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE {
            l.check(&i.to_string(), t0);
        }
        assert_eq!(l.tracked(), SWEEP_ABOVE + 1);
        // Ten seconds later every bucket is full again, so the sweep drops them all.
        l.check("late", t0 + Duration::from_secs(10));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn client_key_trusts_only_the_address_the_alb_appended() {
        assert_eq!(
            client_key(Some("6.6.6.6, 203.0.113.7"), None),
            "203.0.113.7"
        );
        assert_eq!(client_key(Some("203.0.113.7"), None), "203.0.113.7");
        assert_eq!(client_key(Some(" , "), Some("10.0.0.1".into())), "10.0.0.1");
        assert_eq!(client_key(None, Some("10.0.0.1".into())), "10.0.0.1");
        assert_eq!(client_key(None, None), "unknown");
    }
}
