//! The paced HTTP writers of a fan-out run: record creates, readings or
//! custom-topic messages on one shared schedule, on a thread of their own
//! (why: see `flow::flow`).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use tokio::task::JoinSet;

use super::flow::{new_hist, Tally};
use super::payload64;
use crate::load;

/// What the HTTP writers saw, gathered on their own thread and added to
/// the tally when they are done.
#[derive(Default)]
pub(super) struct Writes {
    /// First write index and count of each acknowledged request.
    acked: Vec<(u64, u64)>,
    done: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Option<Histogram<u64>>,
}

impl Writes {
    pub(super) fn add_to(self, t: &mut Tally) {
        for (first, count) in self.acked {
            for n in first..first + count {
                t.acknowledged(n);
            }
        }
        t.writes_done += self.done;
        t.write_errors += self.errors;
        if t.first_error.is_none() {
            t.first_error = self.first_error;
        }
        if let Some(hist) = self.hist {
            // Both histograms have the same bounds.
            let _ = t.write_hist.add(hist);
        }
    }
}

pub(super) struct HttpWriters {
    pub(super) writers: usize,
    pub(super) addr: SocketAddr,
    pub(super) path: &'static str,
    pub(super) auth: String,
    pub(super) publish: bool,
    /// Readings per write, and devices they cycle through.
    pub(super) shape: (u64, u64),
    pub(super) rate: u32,
    pub(super) epoch: Instant,
    /// The measured window, in µs since `epoch`.
    pub(super) window_us: (u64, u64),
    pub(super) end: Instant,
}

/// Runs `writers` keep-alive connections sharing one paced schedule, on a
/// thread of their own: event `n` is due at `n / rate` s; a request
/// carries `shape.0` consecutive events (a JSON array when more than one),
/// each with its own `n`.
pub(super) fn spawn_http_writers(
    w: HttpWriters,
) -> std::thread::JoinHandle<anyhow::Result<Writes>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        let w = Rc::new(w);
        local.block_on(&rt, async move {
            let writes = Rc::new(RefCell::new(Writes {
                hist: Some(new_hist()),
                ..Writes::default()
            }));
            let next = Rc::new(Cell::new(0u64));
            let mut tasks = JoinSet::new();
            for _ in 0..w.writers {
                let sender = load::connect(w.addr).await?;
                tasks.spawn_local(write_paced(
                    sender,
                    Rc::clone(&w),
                    Rc::clone(&next),
                    Rc::clone(&writes),
                ));
            }
            while tasks.join_next().await.is_some() {}
            drop(next);
            Ok(Rc::try_unwrap(writes)
                .map_err(|_| anyhow::anyhow!("a writer outlived its task"))?
                .into_inner())
        })
    })
}

async fn write_paced(
    mut sender: SendRequest<Full<Bytes>>,
    w: Rc<HttpWriters>,
    next: Rc<Cell<u64>>,
    writes: Rc<RefCell<Writes>>,
) {
    let HttpWriters {
        addr,
        path,
        publish,
        shape: (per_write, devices),
        rate,
        epoch,
        window_us: (measure_from_us, end_us),
        end,
        ..
    } = *w;
    let host = HeaderValue::from_str(&addr.to_string()).expect("address is a valid header");
    let auth = HeaderValue::from_str(&w.auth).expect("token is a valid header");
    let json = HeaderValue::from_static("application/json");
    loop {
        let n = next.get();
        next.set(n + per_write);
        let due = epoch + Duration::from_secs_f64(n as f64 / f64::from(rate));
        // A server that fell behind does not get the rest of the schedule
        // after the window: the run ends on time either way.
        if due >= end || Instant::now() >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let sent_us = epoch.elapsed().as_micros() as u64;
        let record = |n: u64| {
            format!(
                r#"{{"device":"gw-{}","temp":21.5,"n":{n},"sent":{sent_us}}}"#,
                n % devices
            )
        };
        let body = if publish {
            let data = payload64(n, sent_us);
            format!(r#"{{"data":{}}}"#, String::from_utf8_lossy(&data))
        } else if per_write == 1 {
            record(n)
        } else {
            let items: Vec<String> = (n..n + per_write).map(record).collect();
            format!("[{}]", items.join(","))
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, host.clone())
            .header(AUTHORIZATION, auth.clone())
            .header(CONTENT_TYPE, json.clone())
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        let outcome = load::send_ok(&mut sender, request).await;
        let done_us = epoch.elapsed().as_micros() as u64;
        let mut writes = writes.borrow_mut();
        match outcome {
            Ok(_) => {
                writes.acked.push((n, per_write));
                if done_us >= measure_from_us && done_us < end_us {
                    writes.done += per_write;
                    if let Some(hist) = &mut writes.hist {
                        hist.saturating_record(done_us.saturating_sub(sent_us).max(1));
                    }
                }
            }
            Err(e) => {
                writes.errors += 1;
                if writes.first_error.is_none() {
                    writes.first_error = Some(format!("{e:#}"));
                }
                if sender.is_closed() {
                    break;
                }
            }
        }
    }
}
