//! The writers: requests in flight when the server dies, and what their
//! answers (or silence) say about what must be on disk.

use super::*;

/// A create whose answer never arrived: all of its ids or none may exist.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) ids: Vec<String>,
    pub(crate) batch: bool,
}

impl Pending {
    pub(crate) fn body(&self) -> Value {
        if self.batch {
            Value::Array(self.ids.iter().map(|id| request_body(id)).collect())
        } else {
            request_body(&self.ids[0])
        }
    }
}

#[derive(Default)]
pub(crate) struct Problems {
    pub(crate) count: usize,
    pub(crate) lost: usize,
    pub(crate) shown: Vec<String>,
}

impl Problems {
    pub(crate) fn add(&mut self, problem: String) {
        self.count += 1;
        if self.shown.len() < SHOWN_PROBLEMS {
            self.shown.push(problem);
        }
    }

    pub(crate) fn lost(&mut self, problem: String) {
        self.lost += 1;
        self.add(problem);
    }
}

/// What the writers of one round saw.
#[derive(Default)]
pub(crate) struct RoundLog {
    /// Acknowledged ids with the record the server answered with (`None`
    /// when the 201 arrived but its body did not).
    pub(crate) acked: Vec<(String, Option<Value>)>,
    pub(crate) acked_requests: usize,
    /// Ids whose create went out more than once and was answered 409 only.
    pub(crate) claimed: Vec<String>,
    pub(crate) duplicates: usize,
    pub(crate) pending: Vec<Pending>,
    pub(crate) unexpected: Vec<String>,
}

/// Everything acknowledged so far.
#[derive(Default)]
pub(crate) struct Ledger {
    pub(crate) acked: HashMap<String, Option<Value>>,
    pub(crate) acked_requests: usize,
    /// Acknowledged only by a 409 to a duplicate create.
    pub(crate) claimed: HashSet<String>,
    pub(crate) duplicates: usize,
    pub(crate) in_doubt_requests: usize,
    pub(crate) in_doubt_records: usize,
    pub(crate) in_doubt_committed: usize,
    pub(crate) largest_seq: u64,
}

pub(crate) enum Answer {
    Created(Option<Value>),
    Other(u16, String),
    /// No answer: the server died with the request in flight (or before it
    /// was sent; the client cannot always tell).
    Lost(String),
}

pub(crate) async fn post(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> Answer {
    let response = match http.post(url).bearer_auth(token).json(body).send().await {
        Ok(response) => response,
        Err(e) => return Answer::Lost(e.to_string()),
    };
    let status = response.status().as_u16();
    match (status, response.text().await) {
        (201, Ok(text)) => match serde_json::from_str(&text) {
            Ok(body) => Answer::Created(Some(body)),
            Err(_) if text.is_empty() => Answer::Created(None),
            Err(e) => Answer::Other(201, format!("unparsable body ({e}): {}", short(&text))),
        },
        // The 201 is the acknowledgement; a body cut off by the kill after
        // it does not undo the write.
        (201, Err(_)) => Answer::Created(None),
        (status, Ok(text)) => Answer::Other(status, short(&text)),
        (status, Err(e)) => Answer::Other(status, format!("(body lost: {e})")),
    }
}

/// Splits a 201 answer into one record per id, checking that it matches.
pub(crate) fn created_records(
    ids: &[String],
    batch: bool,
    body: Option<Value>,
    owner: &str,
) -> Result<Vec<(String, Option<Value>)>, String> {
    let Some(body) = body else {
        return Ok(ids.iter().map(|id| (id.clone(), None)).collect());
    };
    let items = if batch {
        match body.get("items").and_then(Value::as_array) {
            Some(items) if items.len() == ids.len() => items.clone(),
            _ => {
                return Err(format!(
                    "batch answer without {} items: {}",
                    ids.len(),
                    short(&body)
                ))
            }
        }
    } else {
        vec![body]
    };
    let mut records = Vec::with_capacity(ids.len());
    for (id, item) in ids.iter().zip(items) {
        check_record(id, &item, owner).map_err(|e| format!("answer to the create of {e}"))?;
        records.push((id.clone(), Some(item)));
    }
    Ok(records)
}

/// Books the answers to several sends of one single create: at most one may
/// be 201, and a 409 without a 201 still says that the record exists.
pub(crate) fn settle_copies(
    request: Pending,
    answers: Vec<Answer>,
    owner: &str,
    log: &mut RoundLog,
) {
    let id = request.ids[0].clone();
    log.duplicates += 1;
    let (mut created, mut conflicts, mut lost) = (Vec::new(), 0, 0);
    for answer in answers {
        match answer {
            Answer::Created(body) => created.push(body),
            Answer::Other(409, _) => conflicts += 1,
            Answer::Other(status, text) => log
                .unexpected
                .push(format!("create of {id}: answered {status}: {text}")),
            Answer::Lost(_) => lost += 1,
        }
    }
    if created.len() > 1 {
        log.unexpected.push(format!(
            "{} copies of the create of {id} answered 201",
            created.len()
        ));
    }
    if let Some(body) = created.pop() {
        log.acked_requests += 1;
        match created_records(&request.ids, false, body, owner) {
            Ok(records) => log.acked.extend(records),
            Err(e) => {
                log.unexpected.push(e);
                log.acked.push((id, None));
            }
        }
    } else if conflicts > 0 {
        // "Already exists": a retrying client takes it as written.
        log.claimed.push(id);
    } else if lost > 0 {
        log.pending.push(request);
    }
}

pub(crate) struct Writer {
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) owner: String,
    pub(crate) round: usize,
    pub(crate) task: usize,
    pub(crate) seed: u64,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) log: Arc<Mutex<RoundLog>>,
}

impl Writer {
    pub(crate) async fn run(self) {
        let http = client();
        let mut rng = Rng::new(self.seed ^ ((self.round as u64) << 32) ^ self.task as u64);
        let mut next = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let batch = rng.below(BATCH_ONE_IN) == 0;
            let size = if batch { rng.between(BATCH_SIZE) } else { 1 };
            let ids: Vec<String> = (0..size)
                .map(|_| {
                    next += 1;
                    format!("r{}-{}-{next}", self.round, self.task)
                })
                .collect();
            let request = Pending { ids, batch };
            let body = request.body();
            // A client retrying early: the same create again on another
            // connection while the first may still wait for its fsync.
            if !batch && DUPLICATE_ONE_IN > 0 && rng.below(DUPLICATE_ONE_IN) == 0 {
                let pause = Duration::from_micros(rng.below(3_000));
                let (first, second) =
                    tokio::join!(post(&http, &self.url, &self.token, &body), async {
                        tokio::time::sleep(pause).await;
                        post(&http, &self.url, &self.token, &body).await
                    });
                let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
                settle_copies(request, vec![first, second], &self.owner, &mut log);
                continue;
            }
            let answer = post(&http, &self.url, &self.token, &body).await;
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            match answer {
                Answer::Created(body) => {
                    log.acked_requests += 1;
                    match created_records(&request.ids, batch, body, &self.owner) {
                        Ok(records) => log.acked.extend(records),
                        Err(e) => {
                            log.unexpected.push(e);
                            log.acked
                                .extend(request.ids.iter().map(|id| (id.clone(), None)));
                        }
                    }
                }
                Answer::Other(status, text) => log.unexpected.push(format!(
                    "create of {:?}: answered {status}: {text}",
                    request.ids
                )),
                Answer::Lost(_) => log.pending.push(request),
            }
        }
    }
}
