//! Request bodies, generated once per scenario so the load loop only clones
//! `Bytes` handles (the generator must stay cheap: it shares two cores with
//! the server).

use bytes::Bytes;

/// Distinct single-record bodies cycled through by the clients.
const SINGLE_POOL: usize = 4096;
/// 2024-11-22T08:00:00Z in milliseconds, a plausible sensor timestamp.
const BASE_TS: u64 = 1_732_262_400_123;

/// A tiny deterministic PRNG (xorshift64*), enough to vary the readings.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One reading, about 100 bytes:
/// `{"device":"gw-17","temp":21.4,"humidity":40.1,"ts":1732262400123}`.
pub fn reading(rng: &mut Rng, n: u64) -> String {
    let device = rng.below(1000);
    let temp = 150 + rng.below(200); // 15.0 .. 34.9
    let humidity = 200 + rng.below(600); // 20.0 .. 79.9
    format!(
        r#"{{"device":"gw-{device}","temp":{}.{},"humidity":{}.{},"ts":{}}}"#,
        temp / 10,
        temp % 10,
        humidity / 10,
        humidity % 10,
        BASE_TS + n * 7
    )
}

/// How a batch is wrapped for the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchShape {
    /// pulsebase: a plain JSON array of records.
    JsonArray,
    /// PocketBase `/api/batch`: `{"requests":[{"method","url","body"}]}`.
    PocketBase,
}

/// Bodies for a scenario: `pool` distinct bodies of `per_request` readings.
pub fn bodies(per_request: usize, pool: usize, shape: BatchShape, seed: u64) -> Vec<Bytes> {
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    let pool = if per_request == 1 { SINGLE_POOL } else { pool };
    (0..pool)
        .map(|_| {
            if per_request == 1 {
                n += 1;
                return Bytes::from(reading(&mut rng, n));
            }
            let mut out = String::with_capacity(per_request * 160 + 32);
            match shape {
                BatchShape::JsonArray => out.push('['),
                BatchShape::PocketBase => out.push_str(r#"{"requests":["#),
            }
            for i in 0..per_request {
                if i > 0 {
                    out.push(',');
                }
                n += 1;
                let r = reading(&mut rng, n);
                match shape {
                    BatchShape::JsonArray => out.push_str(&r),
                    BatchShape::PocketBase => {
                        out.push_str(
                            r#"{"method":"POST","url":"/api/collections/readings/records","body":"#,
                        );
                        out.push_str(&r);
                        out.push('}');
                    }
                }
            }
            match shape {
                BatchShape::JsonArray => out.push(']'),
                BatchShape::PocketBase => out.push_str("]}"),
            }
            Bytes::from(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_json_of_about_100_bytes() {
        let mut rng = Rng::new(7);
        for n in 0..1000 {
            let r = reading(&mut rng, n);
            assert!((60..=110).contains(&r.len()), "{r}");
            let v: serde_json::Value = serde_json::from_str(&r).expect("valid json");
            assert!(v["device"].as_str().is_some_and(|d| d.starts_with("gw-")));
            assert!(v["ts"].is_u64());
        }
    }

    #[test]
    fn batches_parse() {
        for shape in [BatchShape::JsonArray, BatchShape::PocketBase] {
            for body in bodies(100, 3, shape, 1) {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("valid json");
                let items = match shape {
                    BatchShape::JsonArray => v.as_array().cloned(),
                    BatchShape::PocketBase => v["requests"].as_array().cloned(),
                };
                assert_eq!(items.map(|a| a.len()), Some(100));
            }
        }
    }
}
