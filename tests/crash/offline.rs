//! The crash image read offline with the store itself: records, change
//! log and counts agree.

use super::*;

/// What the change log holds after a kill.
#[derive(Default)]
pub(crate) struct LogView {
    /// `crash` creates: id → the record JSON logged with it.
    pub(crate) creates: HashMap<String, Value>,
    /// seq → digest of the entry, to notice old entries changing without
    /// parsing them all again every round.
    pub(crate) digests: HashMap<u64, u64>,
    /// Creates this check saw for the first time.
    pub(crate) fresh: HashSet<String>,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
}

pub(crate) fn change_digest(change: &pulsebase::store::change::Change) -> u64 {
    let mut bytes = format!(
        "{:?}|{}|{}|",
        change.kind, change.collection, change.record_id
    )
    .into_bytes();
    for part in [&change.after, &change.before] {
        match part {
            Some(json) => {
                bytes.push(1);
                bytes.extend_from_slice(json);
            }
            None => bytes.push(0),
        }
    }
    fnv1a(&bytes)
}

pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Reads the database at `db` with the library and checks it against what
/// the clients saw. Entries unchanged since `previous` are not parsed again
/// and their records not read again, unless `full`. The store is closed
/// before returning.
pub(crate) fn offline_check(
    db: &Path,
    mut previous: LogView,
    full: bool,
    ledger: &Ledger,
    pending: &[Pending],
    owner: &str,
    problems: &mut Problems,
) -> LogView {
    let store = Store::open(db).expect("open the database with the library");
    let first_seq = store.first_seq().expect("first_seq");
    let last_seq = store.last_seq().expect("last_seq");
    let mut creates: HashMap<String, Value> = HashMap::new();
    let mut digests = HashMap::new();
    let mut fresh = HashSet::new();
    let mut expected_seq = first_seq;
    for change in store.changes_after(0) {
        let change = match change {
            Ok(change) => change,
            Err(e) => {
                problems.add(format!(
                    "change-log entry after seq {} does not decode: {e}",
                    expected_seq.saturating_sub(1)
                ));
                continue;
            }
        };
        if change.seq != expected_seq {
            problems.add(format!(
                "change log: expected seq {expected_seq}, found {} (hole or disorder)",
                change.seq
            ));
        }
        expected_seq = change.seq + 1;
        let digest = change_digest(&change);
        digests.insert(change.seq, digest);
        let known = previous.digests.get(&change.seq).copied();
        if known.is_some_and(|known| known != digest) {
            problems.add(format!(
                "change-log entry {} ({:?} of {}) changed since the previous kill",
                change.seq, change.kind, change.record_id
            ));
        }
        if !full && known == Some(digest) && change.collection == COLLECTION {
            if let Some(after) = previous.creates.remove(&change.record_id) {
                creates.insert(change.record_id, after);
                continue;
            }
        }
        let parse = |what: &str, bytes: &Option<Vec<u8>>, problems: &mut Problems| {
            let bytes = bytes.as_ref()?;
            match serde_json::from_slice::<Value>(bytes) {
                Ok(value) => Some(value),
                Err(e) => {
                    problems.add(format!("change {}: `{what}` is not JSON: {e}", change.seq));
                    None
                }
            }
        };
        let after = parse("after", &change.after, problems);
        parse("before", &change.before, problems);
        if change.collection != COLLECTION {
            continue;
        }
        match (change.kind, after) {
            (ChangeKind::Create, Some(after)) => {
                if creates.insert(change.record_id.clone(), after).is_some() {
                    problems.add(format!("change log creates {} twice", change.record_id));
                }
                fresh.insert(change.record_id);
            }
            (kind, _) => problems.add(format!(
                "change {}: unexpected {kind:?} of {} (or no `after`)",
                change.seq, change.record_id
            )),
        }
    }
    if expected_seq != last_seq + 1 && last_seq != 0 {
        problems.add(format!(
            "change log ends at {}, last_seq says {last_seq}",
            expected_seq - 1
        ));
    }

    let collection = store
        .catalog()
        .get(COLLECTION)
        .expect("the collection survives the kill");
    let count = store.record_count(collection.id).expect("record count");
    if count != creates.len() as u64 {
        problems.add(format!(
            "the count key says {count} records, the change log has {} creates",
            creates.len()
        ));
    }
    for (id, after) in &creates {
        if !full && !fresh.contains(id) {
            continue;
        }
        match store.get_record(collection.id, id) {
            Ok(Some(record)) if Value::Object(record.fields.clone()) == *after => {}
            Ok(Some(record)) => problems.add(format!(
                "record {id} differs from its change-log entry: {} vs {}",
                short(&Value::Object(record.fields)),
                short(after)
            )),
            Ok(None) => problems.add(format!(
                "the change log creates {id} but the record is missing"
            )),
            Err(e) => problems.add(format!("record {id} does not read back: {e}")),
        }
    }

    for (id, answer) in &ledger.acked {
        let Some(stored) = creates.get(id) else {
            problems.lost(if ledger.claimed.contains(id) {
                format!(
                    "LOST: {id} was answered 409 (already exists) to a duplicate create, but is \
                     not in the change log"
                )
            } else {
                format!("LOST: acknowledged record {id} is not in the change log")
            });
            continue;
        };
        // An answer was itself checked against what was sent.
        let verdict = match answer {
            Some(answer) if answer == stored => Ok(()),
            Some(answer) => Err(format!(
                "{id}: stored {} but the server answered {}",
                short(stored),
                short(answer)
            )),
            None => check_record(id, stored, owner),
        };
        if let Err(e) = verdict {
            problems.add(format!("acknowledged record corrupt: {e}"));
        }
    }
    let mut sent_in_doubt = HashSet::new();
    for request in pending {
        let present: Vec<&String> = request
            .ids
            .iter()
            .filter(|id| creates.contains_key(*id))
            .collect();
        if !present.is_empty() && present.len() != request.ids.len() {
            problems.add(format!(
                "torn batch: {} of {} records present: {:?}",
                present.len(),
                request.ids.len(),
                request.ids
            ));
        }
        for id in present {
            if let Err(e) = check_record(id, &creates[id], owner) {
                problems.add(format!("unacknowledged record corrupt: {e}"));
            }
        }
        sent_in_doubt.extend(request.ids.iter().cloned());
    }
    for id in creates.keys() {
        if !ledger.acked.contains_key(id) && !sent_in_doubt.contains(id) {
            problems.add(format!(
                "record {id} exists but was never sent or was refused"
            ));
        }
    }
    drop(store);
    LogView {
        creates,
        digests,
        fresh,
        first_seq,
        last_seq,
    }
}
