//! The restarted server over HTTP: every acknowledged write is there, in
//! doubt writes retried once, conflicts raced.

use super::*;

/// The admin the clients act as.
pub(crate) struct Session {
    pub(crate) http: reqwest::Client,
    pub(crate) token: String,
    /// The admin's user id: the `owner` of every record.
    pub(crate) owner: String,
}

/// The records of the collection in `sort` order, page by page, until
/// `enough` says so or the end. `fields` projects (`id` always stays).
pub(crate) async fn list(
    session: &Session,
    server: &TestServer,
    sort: &str,
    fields: Option<&str>,
    mut enough: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", PAGE.to_string()), ("sort", sort.to_owned())];
        if let Some(fields) = fields {
            query.push(("fields", fields.to_owned()));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let (status, body) = send(
            session
                .http
                .get(server.url(&format!("/api/collections/{COLLECTION}/records")))
                .bearer_auth(&session.token)
                .query(&query),
        )
        .await;
        assert_eq!(status, 200, "list sorted by {sort}: {}", short(&body));
        let page = body["items"].as_array().expect("items");
        assert!(page.len() <= PAGE, "a page larger than the limit");
        items.extend(page.iter().cloned());
        if enough(page) {
            return items;
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// Compares what the restarted server serves with the change log read
/// offline before the restart: the id set through the `created` or the `n`
/// index (index entries commit with their records; both when `full`), and
/// the content of the records new since the previous kill (of all of them
/// when `full`).
pub(crate) async fn verify_over_http(
    session: &Session,
    server: &TestServer,
    view: &LogView,
    round: usize,
    full: bool,
    problems: &mut Problems,
) {
    let logged: HashSet<&String> = view.creates.keys().collect();
    let indexes: &[&str] = match (full, round % 2) {
        (true, _) => &["created", "n"],
        (false, 0) => &["created"],
        (false, _) => &["n"],
    };
    for &sort in indexes {
        let listed = list(session, server, sort, Some("id"), |_| false).await;
        let mut served = HashSet::new();
        for record in &listed {
            let id = record["id"].as_str().unwrap_or_default();
            if !served.insert(id.to_owned()) {
                problems.add(format!("listing by {sort} returned {id} twice"));
            }
        }
        let served: HashSet<&String> = served.iter().collect();
        for id in served.difference(&logged) {
            problems.add(format!(
                "listing by {sort} serves {id}, never created in the log"
            ));
        }
        for id in logged.difference(&served) {
            problems.add(format!(
                "{id} is in the change log but listing by {sort} misses it"
            ));
        }
    }
    // Newest first; unless `full`, stop once every fresh record was seen.
    let mut unseen: HashSet<&str> = view.fresh.iter().map(String::as_str).collect();
    let newest = list(session, server, "-created", None, |page| {
        for record in page {
            unseen.remove(record["id"].as_str().unwrap_or_default());
        }
        !full && unseen.is_empty()
    })
    .await;
    for record in &newest {
        let id = record["id"].as_str().unwrap_or_default();
        match view.creates.get(id) {
            Some(logged) if logged == record => {}
            Some(logged) => problems.add(format!(
                "served {} but the change log holds {}",
                short(record),
                short(logged)
            )),
            None => {} // reported above
        }
    }
    for id in unseen {
        problems.add(format!("{id} was not served in full"));
    }
}

/// Retries each request whose answer was lost: 201 if it had not been
/// written, 409 if it had (the whole of it).
pub(crate) async fn retry_in_doubt(
    session: &Session,
    url: &str,
    pending: Vec<Pending>,
    view: &LogView,
    ledger: &mut Ledger,
    problems: &mut Problems,
) {
    for request in pending {
        let written = request.ids.iter().all(|id| view.creates.contains_key(id));
        let answer = post(&session.http, url, &session.token, &request.body()).await;
        match (written, answer) {
            (false, Answer::Created(body)) => {
                match created_records(&request.ids, request.batch, body, &session.owner) {
                    Ok(records) => ledger.acked.extend(records),
                    Err(e) => problems.add(format!("retry: {e}")),
                }
            }
            (true, Answer::Other(409, _)) => {
                ledger.in_doubt_committed += 1;
                for id in &request.ids {
                    ledger
                        .acked
                        .insert(id.clone(), Some(view.creates[id].clone()));
                }
            }
            (written, Answer::Created(_)) => problems.add(format!(
                "retry of {:?} (written: {written}) answered 201",
                request.ids
            )),
            (written, Answer::Other(status, text)) => problems.add(format!(
                "retry of {:?} (written: {written}) answered {status}: {text}",
                request.ids
            )),
            (_, Answer::Lost(e)) => problems.add(format!("retry of {:?} failed: {e}", request.ids)),
        }
    }
}

/// Sends the create of `id` on `RACERS` connections, two at a time 1 ms
/// apart; the first to be answered 409 kills the server at once. A 409 says
/// `id` exists, so it must not come before the fsync that makes it so.
pub(crate) async fn race_for_conflict(
    session: &Session,
    url: &str,
    id: &str,
    server: &Arc<Mutex<TestServer>>,
    stop: &Arc<AtomicBool>,
) -> Vec<Answer> {
    let body = Arc::new(request_body(id));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let (http, url, token) = (session.http.clone(), url.to_owned(), session.token.clone());
            let (body, server, stop) = (body.clone(), server.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i / 2)).await;
                let answer = post(&http, &url, &token, &body).await;
                if matches!(answer, Answer::Other(409, _)) {
                    tokio::task::block_in_place(|| {
                        server.lock().unwrap_or_else(|e| e.into_inner()).kill();
                    });
                    stop.store(true, Ordering::SeqCst);
                }
                answer
            })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        answers.push(racer.await.expect("racer task"));
    }
    answers
}
