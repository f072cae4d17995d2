//! Sign-in throttling: after too many failures for one email or from one
//! client address within a window, further attempts are refused (429 with
//! `Retry-After`) until the window ends. Checked before the password hash,
//! so a guessing client costs the server almost nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per email within `WINDOW`.
pub const EMAIL_FAILURES: u32 = 5;
/// Failures allowed per client address within `WINDOW` (several users may
/// share an address behind NAT).
pub const ADDRESS_FAILURES: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
pub struct Throttle {
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    failures: u32,
}

impl Throttle {
    /// `Err(seconds)` while `email` or `address` is blocked.
    pub fn check(&self, email: &str, address: &str) -> Result<(), u64> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let wait = [
            (email_key(email), EMAIL_FAILURES),
            (address_key(address), ADDRESS_FAILURES),
        ]
        .into_iter()
        .filter_map(|(key, limit)| {
            let window = windows.get(&key)?;
            let left = WINDOW.checked_sub(now.duration_since(window.started))?;
            (window.failures >= limit).then_some(left)
        })
        .max();
        match wait {
            Some(left) => Err(left.as_secs().max(1)),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, email: &str, address: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
        }
        for key in [email_key(email), address_key(address)] {
            let window = windows.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(window.started) >= WINDOW {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures += 1;
        }
    }

    /// A successful sign-in clears the email's failures (not the address's).
    pub fn record_success(&self, email: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.remove(&email_key(email));
    }
}

fn email_key(email: &str) -> String {
    format!("e:{email}")
}

fn address_key(address: &str) -> String {
    format!("a:{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_an_email_after_its_failures_and_success_resets() {
        let throttle = Throttle::default();
        for _ in 0..EMAIL_FAILURES {
            assert!(throttle.check("a@x", "1.1.1.1").is_ok());
            throttle.record_failure("a@x", "1.1.1.1");
        }
        let wait = throttle.check("a@x", "2.2.2.2").unwrap_err();
        assert!(wait > 0 && wait <= WINDOW.as_secs());
        assert!(
            throttle.check("b@x", "1.1.1.1").is_ok(),
            "other emails still pass"
        );
        throttle.record_success("a@x");
        assert!(throttle.check("a@x", "1.1.1.1").is_ok());
    }

    #[test]
    fn blocks_an_address_across_emails() {
        let throttle = Throttle::default();
        for n in 0..ADDRESS_FAILURES {
            throttle.record_failure(&format!("user{n}@x"), "9.9.9.9");
        }
        assert!(throttle.check("fresh@x", "9.9.9.9").is_err());
        assert!(throttle.check("fresh@x", "8.8.8.8").is_ok());
    }
}
