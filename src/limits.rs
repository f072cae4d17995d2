//! Rates and caps that hold under abuse. Caps on open realtime connections (WebSocket and SSE together): in all
//! (`max_connections`) and per client address (`max_connections_per_ip`).
//! A connection holds a [`Slot`] from before its upgrade until it ends;
//! dropping the slot gives the place back, so no path can leak one.
//!
//! And the rate of HTTP publishes ([`PublishRates`]), which a WebSocket
//! connection's own rate limit does not cover.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// Seconds a refused client is told to wait before trying again.
const RETRY_AFTER: u64 = 5;

#[derive(Clone, Default)]
pub struct Connections {
    counts: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open connection's place, given back on drop.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Connections {
    /// A place for one more connection from `ip`, or the refusal to answer
    /// with: 503 when the server is full, 429 when that address is.
    pub fn acquire(&self, ip: IpAddr, max: usize, max_per_ip: usize) -> Result<Slot, ApiError> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= max {
            let mut refusal =
                ApiError::unavailable("too many realtime connections; try again later");
            refusal.retry_after = Some(RETRY_AFTER);
            return Err(refusal);
        }
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= max_per_ip {
            return Err(ApiError::rate_limited(
                format!("at most {max_per_ip} realtime connections from one address"),
                RETRY_AFTER,
            ));
        }
        counts.total += 1;
        counts.per_ip.insert(ip, from_ip + 1);
        Ok(Slot {
            counts: self.counts.clone(),
            ip,
        })
    }

    /// How many connections hold a place now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A token bucket: `rate` messages per second, bursts up to `rate`.
pub struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate: u32) -> RateLimit {
        RateLimit {
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    pub fn allow(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let rate = f64::from(rate);
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Callers remembered before idle ones are forgotten.
const RATES_KEPT: usize = 10_000;

/// `message_rate` messages per second, per caller, for
/// `POST /api/topics/{name}/messages`: the same token bucket each
/// WebSocket connection has, keyed by who publishes (the principal's id, or
/// the client address for anonymous callers), so opening no socket is not
/// a way around the limit.
#[derive(Clone, Default)]
pub struct PublishRates {
    callers: Arc<Mutex<HashMap<String, (RateLimit, Instant)>>>,
}

impl PublishRates {
    /// Takes one message from `caller`'s allowance, or answers 429.
    pub fn allow(&self, caller: &str, rate: u32) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if callers.len() >= RATES_KEPT && !callers.contains_key(caller) {
            // An allowance idle for a second is full again: forgetting it
            // changes nothing, and keeps the map from growing without bound.
            callers.retain(|_, (_, used)| now.duration_since(*used) < Duration::from_secs(1));
        }
        let (limit, used) = callers
            .entry(caller.to_owned())
            .or_insert_with(|| (RateLimit::new(rate), now));
        *used = now;
        if limit.allow(rate) {
            Ok(())
        } else {
            Err(ApiError::rate_limited(
                format!("at most {rate} messages per second"),
                1,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_in_all_and_per_address_and_given_back() {
        let connections = Connections::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = connections.acquire(a, 3, 2).expect("room");
        let _second = connections.acquire(a, 3, 2).expect("room");
        assert_eq!(
            connections.acquire(a, 3, 2).err().map(|e| e.code),
            Some("rate_limited")
        );
        let _third = connections.acquire(b, 3, 2).expect("another address");
        assert_eq!(
            connections.acquire(b, 3, 2).err().map(|e| e.code),
            Some("unavailable")
        );
        drop(first);
        assert!(connections.acquire(b, 3, 2).is_ok());
        let counts = connections.counts.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!((counts.total, counts.per_ip.len()), (2, 2));
    }

    #[test]
    fn publish_rates_are_per_caller() {
        let rates = PublishRates::default();
        assert!(rates.allow("a", 2).is_ok());
        assert!(rates.allow("a", 2).is_ok());
        assert_eq!(
            rates.allow("a", 2).err().map(|e| e.retry_after),
            Some(Some(1))
        );
        assert!(rates.allow("b", 2).is_ok());
    }
}
