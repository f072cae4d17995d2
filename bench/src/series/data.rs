//! The series suite's readings and the shapes they travel in: a JSON array,
//! NDJSON and line protocol for pulsebase, PocketBase's batch, and CSV for
//! DuckDB. Every shape of one batch carries the same readings, so the
//! shapes compare the parsers and not the data.

use bytes::Bytes;

use crate::payload::Rng;

/// 2024-11-22T08:00:00Z in milliseconds: the day every data set starts.
pub const BASE_TS: i64 = 1_732_262_400_000;
pub const DAY_MS: i64 = 86_400_000;

/// One reading; about 78 bytes as JSON:
/// `{"device":"gw-017","site":"s7","temp":21.4,"humidity":40.1,"ts":1732262400123}`.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub device: u32,
    /// Tenths of a degree and of a percent: printed exactly, no float noise.
    pub temp10: u32,
    pub humidity10: u32,
    pub ts: i64,
}

impl Reading {
    fn device(&self) -> String {
        format!("gw-{:03}", self.device)
    }

    fn site(&self) -> u32 {
        self.device % 10
    }

    fn json(&self, out: &mut String) {
        out.push_str(&format!(
            r#"{{"device":"{}","site":"s{}","temp":{}.{},"humidity":{}.{},"ts":{}}}"#,
            self.device(),
            self.site(),
            self.temp10 / 10,
            self.temp10 % 10,
            self.humidity10 / 10,
            self.humidity10 % 10,
            self.ts
        ));
    }

    fn line(&self, out: &mut String) {
        out.push_str(&format!(
            "readings,device={},site=s{} temp={}.{},humidity={}.{} {}\n",
            self.device(),
            self.site(),
            self.temp10 / 10,
            self.temp10 % 10,
            self.humidity10 / 10,
            self.humidity10 % 10,
            self.ts
        ));
    }

    fn csv(&self, out: &mut String) {
        out.push_str(&format!(
            "{},s{},{}.{},{}.{},{}\n",
            self.device(),
            self.site(),
            self.temp10 / 10,
            self.temp10 % 10,
            self.humidity10 / 10,
            self.humidity10 % 10,
            self.ts
        ));
    }
}

/// Readings of `devices` sources taken in rounds: round `r` holds one
/// reading per device at `r × step_ms` plus a jitter below half a step, so
/// each device's time increases while devices interleave as they would.
pub struct Readings {
    rng: Rng,
    devices: u32,
    step_ms: i64,
    next: u64,
}

impl Readings {
    pub fn new(devices: u32, step_ms: i64, seed: u64) -> Readings {
        Readings {
            rng: Rng::new(seed),
            devices,
            step_ms: step_ms.max(2),
            next: 0,
        }
    }

    /// `count` readings spread evenly over one day.
    pub fn over_a_day(devices: u32, count: u64, seed: u64) -> Readings {
        let rounds = count.div_ceil(u64::from(devices)).max(1) as i64;
        Readings::new(devices, DAY_MS / rounds, seed)
    }

    pub fn take(&mut self, count: usize) -> Vec<Reading> {
        (0..count)
            .map(|_| {
                let n = self.next;
                self.next += 1;
                let round = (n / u64::from(self.devices)) as i64;
                let jitter = (self.rng.next() % (self.step_ms as u64 / 2)) as i64;
                Reading {
                    device: (n % u64::from(self.devices)) as u32,
                    temp10: 150 + (self.rng.next() % 200) as u32,
                    humidity10: 200 + (self.rng.next() % 600) as u32,
                    ts: BASE_TS + round * self.step_ms + jitter,
                }
            })
            .collect()
    }
}

/// How a batch is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `POST /api/collections/readings/records`, a JSON array.
    Json,
    /// The same route with `Content-Type: application/x-ndjson`.
    Ndjson,
    /// `POST /api/v2/write?bucket=readings&precision=ms`.
    Line,
    /// PocketBase's `/api/batch` of record creates.
    PocketBase,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::Json => "json",
            Shape::Ndjson => "ndjson",
            Shape::Line => "line",
            Shape::PocketBase => "batch",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Shape::Ndjson => "application/x-ndjson",
            Shape::Line => "text/plain; charset=utf-8",
            Shape::Json | Shape::PocketBase => "application/json",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Shape::Line => "/api/v2/write?bucket=readings&precision=ms",
            Shape::PocketBase => "/api/batch",
            Shape::Json | Shape::Ndjson => "/api/collections/readings/records",
        }
    }

    pub fn body(self, readings: &[Reading]) -> Bytes {
        let mut out = String::with_capacity(readings.len() * 140 + 32);
        match self {
            Shape::Json => out.push('['),
            Shape::PocketBase => out.push_str(r#"{"requests":["#),
            Shape::Ndjson | Shape::Line => {}
        }
        for (i, r) in readings.iter().enumerate() {
            match self {
                Shape::Json => {
                    if i > 0 {
                        out.push(',');
                    }
                    r.json(&mut out);
                }
                Shape::Ndjson => {
                    r.json(&mut out);
                    out.push('\n');
                }
                Shape::Line => r.line(&mut out),
                Shape::PocketBase => {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(
                        r#"{"method":"POST","url":"/api/collections/readings/records","body":"#,
                    );
                    r.json(&mut out);
                    out.push('}');
                }
            }
        }
        match self {
            Shape::Json => out.push(']'),
            Shape::PocketBase => out.push_str("]}"),
            Shape::Ndjson | Shape::Line => {}
        }
        Bytes::from(out)
    }
}

/// The readings as CSV rows (device, site, temp, humidity, ts in ms).
pub fn csv(readings: &[Reading]) -> String {
    let mut out = String::with_capacity(readings.len() * 40);
    for r in readings {
        r.csv(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_carries_the_same_readings() {
        let readings = Readings::new(100, 1000, 3).take(250);
        let array: serde_json::Value =
            serde_json::from_slice(&Shape::Json.body(&readings)).expect("a JSON array");
        let ndjson = Shape::Ndjson.body(&readings);
        let lines = Shape::Line.body(&readings);
        let text = String::from_utf8_lossy(&lines);
        let pb: serde_json::Value =
            serde_json::from_slice(&Shape::PocketBase.body(&readings)).expect("a JSON batch");
        assert_eq!(array.as_array().map(Vec::len), Some(250));
        assert_eq!(pb["requests"].as_array().map(Vec::len), Some(250));
        for (i, row) in String::from_utf8_lossy(&ndjson).lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(row).expect("one JSON object a line");
            assert_eq!(v, array[i]);
            assert_eq!(v, pb["requests"][i]["body"]);
        }
        let first = text.lines().next().expect("a line");
        assert_eq!(
            first,
            format!(
                "readings,device=gw-000,site=s0 temp={},humidity={} {}",
                array[0]["temp"], array[0]["humidity"], array[0]["ts"]
            )
        );
        assert_eq!(csv(&readings).lines().count(), 250);
    }

    #[test]
    fn each_device_moves_forward_in_time_and_a_reading_is_about_70_bytes() {
        let readings = Readings::over_a_day(100, 100_000, 9).take(100_000);
        let mut last = vec![i64::MIN; 100];
        for r in &readings {
            assert!(r.ts > last[r.device as usize]);
            assert!(r.ts < BASE_TS + DAY_MS);
            last[r.device as usize] = r.ts;
        }
        let bytes = Shape::Json.body(&readings[..1000]).len() / 1000;
        assert!((70..=85).contains(&bytes), "{bytes} bytes a reading");
    }
}
