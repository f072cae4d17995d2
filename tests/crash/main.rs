//! Crash durability: runs the real binary in `sync` durability, writes with
//! many concurrent clients, SIGKILLs it at a random moment, and checks that
//! every acknowledged write survived intact, that the change log has no
//! holes, and that a write whose answer was lost is all or nothing and safe
//! to retry. Many rounds share one data dir, so later rounds also recover
//! databases that were themselves recovered.
//!
//! Each round:
//! 1. start the server on the data dir; from the second round on, check
//!    what it serves against the change log read offline after the previous
//!    kill (every id, listed through the `created` or the `n` index in turn;
//!    the full content of the records new since then), then retry each
//!    request whose answer was lost: it must get 201 if its records are
//!    absent and 409 if they are present;
//! 2. run `WRITERS` clients sending single creates and small batches with
//!    client-chosen ids, each record a pure function of its id. Some single
//!    creates go out twice at once, as a client retrying early would send
//!    them: one must get 201 and the other 409, and a 409 alone counts as an
//!    acknowledgement ("it is already there"), which is what makes retrying
//!    safe;
//! 3. after a random delay, send one more create on several connections at
//!    once and SIGKILL the server the moment one is answered 409: a 409 says
//!    the record exists, so it must be on disk by then;
//! 4. copy the database (so the server, not this test, is the first to
//!    recover the crash image), open the copy with the library and check:
//!    seqs consecutive from `first_seq` to `last_seq`; every entry decodes and
//!    its JSON parses; each `crash` create has its record, equal to the logged
//!    JSON; the count key equals the number of creates; every acknowledged id
//!    is there and equal to the answer; every lost-answer request is all or
//!    nothing; nothing appears that was never sent.
//!
//! The last restart checks every record's content over HTTP and both
//! indexes; then the server is stopped gracefully and the data dir checked
//! in full once more: by then every lost answer has been resolved by a
//! retry, so the records are exactly the acknowledged ones.
//!
//! `PULSEBASE_CRASH_SEED` replays a seed (printed at the start; the kill
//! points and request mix follow from it, thread timing does not);
//! `PULSEBASE_CRASH_ROUNDS` sets the number of kills. On failure the data dir
//! is kept and its path printed.
//!
//! The change log is not trimmed meanwhile: trimming keeps entries younger
//! than a day.
//!
//! What this can and cannot see: SIGKILL ends the process, not the kernel,
//! so whatever the server handed to the OS with write() survives even
//! without an fsync. The test catches answers sent before the write left the
//! process, torn batches, log holes, record/log/count disagreement and
//! recovery bugs, but not a missing fsync: that needs a power cut or a VM
//! kill.
//!
//! `series` checks series readings the same way: they are appended as
//! blocks and replayed to subscribers reading by reading.

#[path = "../common/mod.rs"]
mod common;

mod data;
mod offline;
mod online;
mod series;
mod writes;

use data::*;
use offline::*;
use online::*;
use writes::*;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pulsebase::store::change::ChangeKind;
use pulsebase::store::Store;
use serde_json::{json, Map, Value};

use common::{client, send, Options, TestServer};

const COLLECTION: &str = "crash";

const DEFAULT_ROUNDS: usize = 24;

/// Concurrent clients per round.
const WRITERS: usize = 24;

/// The race that ends in the kill starts this many milliseconds after the
/// writers.
const KILL_AFTER_MS: (u64, u64) = (40, 400);

/// One request in this many is a batch of `BATCH_SIZE` records.
const BATCH_ONE_IN: u64 = 5;

const BATCH_SIZE: (u64, u64) = (5, 20);

/// One single create in this many is sent twice at once (0: never).
const DUPLICATE_ONE_IN: u64 = 4;

/// When the kill delay has passed, the same create goes out on this many
/// connections and the kill comes at the first 409.
const RACERS: u64 = 6;

const PAGE: usize = 1000;

/// Problems quoted in a failure message; the rest are only counted.
const SHOWN_PROBLEMS: usize = 25;

const SYSTEM_FIELDS: [&str; 5] = ["id", "created", "updated", "owner", "rev"];

/// SplitMix64: small, seedable, good enough to pick delays and sizes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

fn start(data: &Path) -> TestServer {
    let options = Options {
        // Explicit, so a PULSEBASE_DURABILITY in the environment cannot
        // weaken the test.
        args: vec!["--durability".into(), "sync".into()],
        ..Options::default()
    };
    tokio::task::block_in_place(|| TestServer::start_in(data, options))
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {text:?}")),
    )
}

struct Run {
    seed: u64,
    dir: Option<tempfile::TempDir>,
}

impl Run {
    /// Fails the test if the round found problems, keeping the data dir.
    fn check(&mut self, round: usize, stage: &str, problems: &Problems, ledger: &Ledger) {
        if problems.count == 0 {
            return;
        }
        let kept = self
            .dir
            .take()
            .map(|dir| dir.keep().display().to_string())
            .unwrap_or_default();
        panic!(
            "crash test failed in round {round} ({stage}): {} problems, {} acknowledged records \
             lost (of {} acknowledged so far). Seed {} (PULSEBASE_CRASH_SEED), data dir kept at \
             {kept}\n  {}",
            problems.count,
            problems.lost,
            ledger.acked.len(),
            self.seed,
            problems.shown.join("\n  ")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let started = Instant::now();
    let seed = env_number("PULSEBASE_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let rounds = env_number("PULSEBASE_CRASH_ROUNDS").map_or(DEFAULT_ROUNDS, |n| n as usize);
    assert!(rounds >= 1, "PULSEBASE_CRASH_ROUNDS must be at least 1");
    println!("crash test: seed {seed} (PULSEBASE_CRASH_SEED), {rounds} kills, {WRITERS} writers");

    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let scratch = dir.path().join("scratch");
    let mut run = Run {
        seed,
        dir: Some(dir),
    };
    let mut rng = Rng::new(seed);
    let mut session = Session {
        http: client(),
        token: String::new(),
        owner: String::new(),
    };
    let mut ledger = Ledger::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut view = LogView::default();

    for round in 0..=rounds {
        let round_started = Instant::now();
        let mut problems = Problems::default();
        let mut server = start(&data);
        let url = server.url(&format!("/api/collections/{COLLECTION}/records"));
        let last = round == rounds;
        if round > 0 {
            verify_over_http(&session, &server, &view, round, last, &mut problems).await;
            run.check(round, "after restart", &problems, &ledger);
            let retry = std::mem::take(&mut pending);
            retry_in_doubt(&session, &url, retry, &view, &mut ledger, &mut problems).await;
            run.check(round, "retrying lost answers", &problems, &ledger);
        } else {
            session.token = server.admin_token().await;
            let me = session
                .http
                .get(server.url("/api/auth/me"))
                .bearer_auth(&session.token);
            let (status, me) = send(me).await;
            assert_eq!(status, 200, "me: {me}");
            session.owner = me["id"].as_str().expect("admin id").to_owned();
            server
                .create_collection(&session.token, collection_definition())
                .await;
        }

        if last {
            let clean = tokio::task::block_in_place(|| server.terminate());
            assert!(clean, "the server did not stop cleanly on SIGTERM");
            let previous = std::mem::take(&mut view);
            let final_view = tokio::task::block_in_place(|| {
                offline_check(
                    &data.join("db"),
                    previous,
                    true,
                    &ledger,
                    &[],
                    &session.owner,
                    &mut problems,
                )
            });
            if final_view.creates.len() != ledger.acked.len() {
                problems.add(format!(
                    "after the last retries {} records exist, {} were acknowledged",
                    final_view.creates.len(),
                    ledger.acked.len()
                ));
            }
            run.check(round, "final check", &problems, &ledger);
            ledger.largest_seq = final_view.last_seq;
            view = final_view;
            break;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(RoundLog::default()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|task| {
                tokio::spawn(
                    Writer {
                        url: url.clone(),
                        token: session.token.clone(),
                        owner: session.owner.clone(),
                        round,
                        task,
                        seed,
                        stop: stop.clone(),
                        log: log.clone(),
                    }
                    .run(),
                )
            })
            .collect();
        let delay = rng.between(KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let server = Arc::new(Mutex::new(server));
        let raced = format!("p{round}");
        let answers = race_for_conflict(&session, &url, &raced, &server, &stop).await;
        let killed_at = if server.lock().unwrap_or_else(|e| e.into_inner()).pid() == 0 {
            "a 409"
        } else {
            "the end of the race"
        };
        tokio::task::block_in_place(|| server.lock().unwrap_or_else(|e| e.into_inner()).kill());
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.await.expect("writer task");
        }
        let mut log = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
        let raced = Pending {
            ids: vec![raced],
            batch: false,
        };
        settle_copies(raced, answers, &session.owner, &mut log);
        for unexpected in log.unexpected {
            problems.add(unexpected);
        }
        let acked_now = log.acked.len();
        let claimed_now = log.claimed.len();
        let duplicates_now = log.duplicates;
        ledger.acked.extend(log.acked);
        ledger.duplicates += log.duplicates;
        for id in log.claimed {
            ledger.acked.insert(id.clone(), None);
            ledger.claimed.insert(id);
        }
        ledger.acked_requests += log.acked_requests;
        ledger.in_doubt_requests += log.pending.len();
        ledger.in_doubt_records += log.pending.iter().map(|p| p.ids.len()).sum::<usize>();
        pending = log.pending;

        // Copy first: the restarted server, not this check, must be the
        // first to recover this crash image.
        let copy = scratch.join(format!("db-{round}"));
        let previous = std::mem::take(&mut view);
        let round_view = tokio::task::block_in_place(|| {
            copy_dir(&data.join("db"), &copy).expect("copy the database");
            let view = offline_check(
                &copy,
                previous,
                false,
                &ledger,
                &pending,
                &session.owner,
                &mut problems,
            );
            std::fs::remove_dir_all(&copy).expect("remove the copy");
            view
        });
        let in_doubt_written = pending
            .iter()
            .filter(|p| round_view.creates.contains_key(&p.ids[0]))
            .count();
        println!(
            "round {round:2}: killed after {delay:3} ms at {killed_at}; {acked_now:4} records acknowledged in \
             {:4} requests (+{claimed_now} by a lone 409 of {duplicates_now} duplicated), {:2} \
             requests in doubt ({in_doubt_written} written); log seqs {}..={}, {} records; \
             round took {} ms",
            log.acked_requests,
            pending.len(),
            round_view.first_seq,
            round_view.last_seq,
            round_view.creates.len(),
            round_started.elapsed().as_millis()
        );
        run.check(round, "offline check after the kill", &problems, &ledger);
        ledger.largest_seq = round_view.last_seq;
        view = round_view;
    }

    let records = view.creates.len();
    println!(
        "crash test passed: {rounds} kills, {} records acknowledged ({} requests answered 201, \
         {} by a lone 409 of {} duplicated creates), {} requests ({} records) in doubt of which \
         {} had been written, 0 lost, {records} records at the end, change log up to seq {}, no \
         holes; {:.1} s (seed {seed})",
        ledger.acked.len(),
        ledger.acked_requests,
        ledger.claimed.len(),
        ledger.duplicates,
        ledger.in_doubt_requests,
        ledger.in_doubt_records,
        ledger.in_doubt_committed,
        ledger.largest_seq,
        started.elapsed().as_secs_f64()
    );
}
