//! Series readings under kill -9: concurrent clients append batches (some
//! with an `Idempotency-Key`) while a WebSocket subscriber follows the
//! collection; the server is killed at a random moment and restarted.
//! After each restart every acknowledged batch is there exactly once under
//! the seqs it was answered with, a batch whose answer was lost is all or
//! nothing (a keyed one, retried, answers with the seqs it already has),
//! and the subscriber, resuming from the last seq it saw, has received
//! every stored reading exactly once in seq order. The seed is printed;
//! `PULSEBASE_CRASH_SEED` replays it.

use std::collections::{BTreeMap, BTreeSet};

use common::live::Ws;

use super::*;

const SERIES: &str = "gauges";
const SERIES_ROUNDS: usize = 6;
const SERIES_WRITERS: usize = 6;
const SERIES_KILL_AFTER_MS: (u64, u64) = (100, 700);
const SERIES_BATCH: (u64, u64) = (1, 40);
/// One batch in this many carries an `Idempotency-Key`.
const KEYED_ONE_IN: u64 = 2;

/// One batch sent: its readings are `{"device", "b": name, "n": 0..size}`.
#[derive(Clone, Debug)]
struct Batch {
    name: String,
    size: u64,
    keyed: bool,
}

impl Batch {
    fn body(&self) -> Value {
        (0..self.size)
            .map(|n| json!({"device": format!("d{}", n % 3), "b": self.name, "n": n}))
            .collect()
    }
}

#[derive(Default)]
struct Outcomes {
    /// Answered 201, with the seqs the answer gave.
    acked: Vec<(Batch, Option<(u64, u64)>)>,
    lost: Vec<Batch>,
    unexpected: Vec<String>,
}

/// The seq in a reading's id (13 base32 digits).
fn seq_of(id: &str) -> u64 {
    id.chars().fold(0, |seq, c| {
        let digit = c.to_digit(32).unwrap_or_else(|| panic!("reading id {id}"));
        seq * 32 + u64::from(digit)
    })
}

async fn post_batch(http: &reqwest::Client, url: &str, token: &str, batch: &Batch) -> Answer {
    let mut request = http.post(url).bearer_auth(token).json(&batch.body());
    if batch.keyed {
        request = request.header("Idempotency-Key", &batch.name);
    }
    match request.send().await {
        Err(e) => Answer::Lost(e.to_string()),
        Ok(response) => {
            let status = response.status().as_u16();
            match (status, response.json::<Value>().await) {
                (201, body) => Answer::Created(body.ok()),
                (status, body) => Answer::Other(status, format!("{body:?}")),
            }
        }
    }
}

fn answered_seqs(body: &Option<Value>) -> Option<(u64, u64)> {
    let body = body.as_ref()?;
    Some((body["first_seq"].as_u64()?, body["last_seq"].as_u64()?))
}

async fn write_until(
    url: String,
    token: String,
    name: String,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Outcomes>>,
) {
    let http = client();
    let mut next = 0;
    while !stop.load(Ordering::SeqCst) {
        next += 1;
        let batch = Batch {
            name: format!("{name}-{next}"),
            size: rng.between(SERIES_BATCH),
            keyed: rng.below(KEYED_ONE_IN) == 0,
        };
        let answer = post_batch(&http, &url, &token, &batch).await;
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        match answer {
            Answer::Created(body) => out.acked.push((batch, answered_seqs(&body))),
            Answer::Lost(_) => out.lost.push(batch),
            Answer::Other(status, text) => out
                .unexpected
                .push(format!("batch {}: {status} {text}", batch.name)),
        }
    }
}

/// Every stored reading through cursor pages: batch name → (n, seq).
async fn stored(server: &TestServer, token: &str) -> BTreeMap<String, Vec<(u64, u64)>> {
    let url = server.url(&format!("/api/collections/{SERIES}/records"));
    let mut by_batch: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client()
            .get(&url)
            .bearer_auth(token)
            .query(&[("limit", "1000")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let (status, page) = send(request).await;
        assert_eq!(status, 200, "list: {}", short(&page));
        for reading in page["items"].as_array().expect("items") {
            let id = reading["id"].as_str().expect("id");
            assert!(ids.insert(id.to_owned()), "reading {id} listed twice");
            let batch = reading["b"].as_str().expect("b").to_owned();
            let n = reading["n"].as_u64().expect("n");
            by_batch.entry(batch).or_default().push((n, seq_of(id)));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    for readings in by_batch.values_mut() {
        readings.sort();
    }
    by_batch
}

/// Checks one batch as stored: whole, its readings under consecutive seqs
/// (one block), and under `seqs` when the answer gave them.
fn check_batch(
    batch: &Batch,
    seqs: Option<(u64, u64)>,
    stored: Option<&Vec<(u64, u64)>>,
) -> Result<(), String> {
    let Some(stored) = stored else {
        return Err(format!("batch {} is missing", batch.name));
    };
    let first = stored[0].1;
    let expected: Vec<(u64, u64)> = (0..batch.size).map(|n| (n, first + n)).collect();
    if *stored != expected {
        return Err(format!("batch {} stored as {stored:?}", batch.name));
    }
    match seqs {
        Some(seqs) if seqs != (first, first + batch.size - 1) => Err(format!(
            "batch {} answered {seqs:?}, stored from {first}",
            batch.name
        )),
        _ => Ok(()),
    }
}

/// Reads reading events until the one at `last`; the subscriber follows
/// the whole collection as admin, so it gets every reading.
async fn follow_until(ws: &mut Ws, last: u64, seen: &mut Vec<u64>) {
    while seen.last().is_none_or(|s| *s < last) {
        let event = ws.next().await;
        assert_eq!(event["type"], "event", "{event}");
        seen.push(event["seq"].as_u64().expect("seq"));
    }
}

async fn subscribe(ws: &mut Ws, since: Option<u64>) -> u64 {
    let mut request = json!({"action": "subscribe", "topic": SERIES});
    if let Some(since) = since {
        request["since"] = json!(since);
    }
    let reply = ws.request(request).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    reply["seq"].as_u64().expect("position")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_readings_survive_kill_9_and_replay_once() {
    let started = Instant::now();
    let seed = env_number("PULSEBASE_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("series crash test: seed {seed} (PULSEBASE_CRASH_SEED)");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut token = String::new();
    // Every batch whose readings must be there, with its answered seqs.
    let mut required: Vec<(Batch, Option<(u64, u64)>)> = Vec::new();
    // Lost, unkeyed and found absent: must never appear.
    let mut absent: BTreeSet<String> = BTreeSet::new();
    let mut in_doubt: Vec<Batch> = Vec::new();
    // What the subscriber has received, across every connection.
    let mut seen: Vec<u64> = Vec::new();
    let mut start_seq = 0;

    for round in 0..=SERIES_ROUNDS {
        let mut server = start(&data);
        let url = server.url(&format!("/api/collections/{SERIES}/records"));
        if round == 0 {
            token = server.admin_token().await;
            server
                .create_collection(
                    &token,
                    json!({"name": SERIES, "kind": "series", "series": "device",
                           "fields": {"device": {"type": "string", "required": true},
                                      "b": {"type": "string"}, "n": {"type": "integer"}}}),
                )
                .await;
        } else {
            let found = stored(&server, &token).await;
            let mut problems = Vec::new();
            for (batch, seqs) in &required {
                if let Err(e) = check_batch(batch, *seqs, found.get(&batch.name)) {
                    problems.push(e);
                }
            }
            for name in &absent {
                if found.contains_key(name) {
                    problems.push(format!("batch {name} appeared after it was found absent"));
                }
            }
            let known: BTreeSet<&str> = required
                .iter()
                .map(|(b, _)| b.name.as_str())
                .chain(in_doubt.iter().map(|b| b.name.as_str()))
                .collect();
            for name in found.keys() {
                if !known.contains(name.as_str()) {
                    problems.push(format!("batch {name} was never sent or was retried"));
                }
            }
            // A lost answer: all or nothing; retried under its key, the
            // answer is the one it would have had.
            for batch in std::mem::take(&mut in_doubt) {
                let present = found.get(&batch.name);
                if present.is_some() {
                    if let Err(e) = check_batch(&batch, None, present) {
                        problems.push(format!("in doubt: {e}"));
                    }
                }
                if batch.keyed {
                    let seqs = match post_batch(&client(), &url, &token, &batch).await {
                        Answer::Created(body) => answered_seqs(&body),
                        other => panic!("retry of {}: {}", batch.name, describe(&other)),
                    };
                    if let (Some(present), Some((first, _))) = (present, seqs) {
                        if present[0].1 != first {
                            problems.push(format!(
                                "retry of {} answered {seqs:?}, stored at {present:?}",
                                batch.name
                            ));
                        }
                    }
                    required.push((batch, seqs));
                } else if present.is_some() {
                    required.push((batch, None));
                } else {
                    absent.insert(batch.name);
                }
            }
            assert!(
                problems.is_empty(),
                "round {round} (seed {seed}): {problems:#?}"
            );
            // The subscriber resumes from the last reading it saw, and gets
            // everything stored after it (retries included) once, in order.
            let found = stored(&server, &token).await;
            let all: Vec<u64> = found
                .values()
                .flat_map(|r| r.iter().map(|(_, seq)| *seq))
                .filter(|seq| *seq > start_seq)
                .collect::<BTreeSet<u64>>()
                .into_iter()
                .collect();
            let mut ws = Ws::connect(&server, Some(&token)).await;
            subscribe(&mut ws, Some(seen.last().copied().unwrap_or(start_seq))).await;
            if let Some(last) = all.last() {
                follow_until(&mut ws, *last, &mut seen).await;
            }
            if let Some(e) = difference(&seen, &all) {
                panic!("round {round} (seed {seed}): received before the kill and replayed: {e}");
            }
            if round == SERIES_ROUNDS {
                // A subscriber from the start gets the same.
                let mut fresh = Ws::connect(&server, Some(&token)).await;
                subscribe(&mut fresh, Some(start_seq)).await;
                let mut replayed = Vec::new();
                if let Some(last) = all.last() {
                    follow_until(&mut fresh, *last, &mut replayed).await;
                }
                if let Some(e) = difference(&replayed, &all) {
                    panic!("a replay from the start (seed {seed}): {e}");
                }
                let clean = tokio::task::block_in_place(|| server.terminate());
                assert!(clean, "the server did not stop cleanly");
                println!(
                    "series crash test passed: {SERIES_ROUNDS} kills, {} batches required, \
                     {} readings, {:.1} s",
                    required.len(),
                    all.len(),
                    started.elapsed().as_secs_f64()
                );
                return;
            }
        }

        // The subscriber follows the writes until the kill ends its stream.
        let mut ws = Ws::connect(&server, Some(&token)).await;
        let position = subscribe(&mut ws, seen.last().copied().or(Some(start_seq))).await;
        if round == 0 {
            start_seq = position;
        }
        let follower = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(frame) = ws.read(Duration::from_secs(60)).await {
                if let Some(event) = frame.filter(|f| f["type"] == "event") {
                    got.push(event["seq"].as_u64().expect("seq"));
                }
            }
            got
        });
        let stop = Arc::new(AtomicBool::new(false));
        let out = Arc::new(Mutex::new(Outcomes::default()));
        let writers: Vec<_> = (0..SERIES_WRITERS)
            .map(|w| {
                let rng = Rng::new(rng.next());
                let name = format!("r{round}w{w}");
                tokio::spawn(write_until(
                    url.clone(),
                    token.clone(),
                    name,
                    rng,
                    stop.clone(),
                    out.clone(),
                ))
            })
            .collect();
        let delay = rng.between(SERIES_KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        tokio::task::block_in_place(|| server.kill());
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.await.expect("writer task");
        }
        let got = follower.await.expect("follower task");
        seen.extend(got);
        let out = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
        assert!(
            out.unexpected.is_empty(),
            "seed {seed}: {:?}",
            out.unexpected
        );
        println!(
            "round {round}: killed after {delay} ms; {} batches acknowledged, {} in doubt, \
             subscriber at {:?}",
            out.acked.len(),
            out.lost.len(),
            seen.last()
        );
        required.extend(out.acked);
        in_doubt = out.lost;
    }
}

fn describe(answer: &Answer) -> String {
    match answer {
        Answer::Created(body) => format!("201 {body:?}"),
        Answer::Other(status, text) => format!("{status} {text}"),
        Answer::Lost(e) => format!("no answer: {e}"),
    }
}

/// Where the seqs received part from the seqs stored, briefly: these
/// lists run to thousands.
fn difference(received: &[u64], stored: &[u64]) -> Option<String> {
    if received == stored {
        return None;
    }
    let at = received
        .iter()
        .zip(stored)
        .position(|(r, s)| r != s)
        .unwrap_or(received.len().min(stored.len()));
    let around = |seqs: &[u64]| seqs[at.saturating_sub(3)..(at + 5).min(seqs.len())].to_vec();
    Some(format!(
        "{} received, {} stored; they part at index {at}: received {:?}, stored {:?}",
        received.len(),
        stored.len(),
        around(received),
        around(stored)
    ))
}
