use super::*;
use serde_json::json;

use crate::services::testing::{state_with_records, stop};

/// Creates a topic anyone may use, keeping `history` messages, and
/// publishes `messages` on it; answers their seqs.
async fn topic_with_messages(
    state: &AppState,
    name: &str,
    history: u32,
    messages: usize,
) -> (Target, Vec<u64>) {
    let def = StoredTopic {
        name: name.to_owned(),
        owner: None,
        publish: "true".to_owned(),
        subscribe: "true".to_owned(),
        history,
        created: clock::now_rfc3339(),
        presence: false,
    };
    state
        .writer
        .submit(Mutation::CreateTopic(def))
        .await
        .unwrap();
    let mut seqs = Vec::new();
    for n in 0..messages {
        let seq = publish(state, &Principal::Anonymous, name, json!({"n": n}))
            .await
            .unwrap();
        seqs.push(seq);
    }
    let topic = state.store.topics().get(name).unwrap();
    (Target::Custom(topic), seqs)
}

/// The `details` of a `history_expired` refusal.
fn expired(result: ApiResult<()>) -> Value {
    let error = result.expect_err("expected history_expired");
    assert_eq!(
        (error.status.as_u16(), error.code),
        (410, "history_expired")
    );
    let mut details = error.details.expect("history_expired names the oldest seq");
    assert!(details["epoch"].is_string(), "{details}");
    details.as_object_mut().unwrap().remove("epoch");
    details
}

/// The newest seq handed out: the test's writer has no hub attached, so
/// this stands for the hub's released position.
fn seq_of_last_message(state: &AppState, topic: &str) -> u64 {
    let history = state
        .store
        .history_after(topic, 0, u64::MAX, usize::MAX)
        .unwrap();
    history.last().map_or(0, |m| m.seq)
}

fn at(seq: u64) -> Since {
    Since { seq, epoch: None }
}

#[tokio::test]
async fn a_resume_from_before_the_trimmed_change_log_is_history_expired() {
    let (_dir, state) = state_with_records(10).await;
    assert_eq!(state.store.trim_changelog(4, -1000).unwrap(), 6);
    let trimmed = state.store.changelog_trimmed().unwrap();
    assert_eq!(trimmed, 6);
    let collection = state.store.catalog().get("c").unwrap();
    let targets = [
        ("c", Target::Collection(collection.clone())),
        ("c/r0009", Target::Record(collection, "r0009".to_owned())),
    ];
    let current = state.store.last_seq().unwrap();
    assert_eq!(current, 10);
    for (topic, target) in &targets {
        for since in [0, 1, trimmed - 1] {
            let details = expired(check_since(&state, target, topic, &at(since), current));
            assert_eq!(
                details,
                json!({"oldest": trimmed + 1}),
                "{topic} since {since}"
            );
        }
        // Everything after `trimmed` is still kept.
        for since in [trimmed, trimmed + 1, 10] {
            check_since(&state, target, topic, &at(since), current)
                .unwrap_or_else(|e| panic!("{topic} since {since}: {}", e.message));
        }
        // A seq this log never reached belongs to another history (a
        // relaxed-mode crash, a restore): resuming from it is not exact.
        expired(check_since(&state, target, topic, &at(11), current));
        // So does any seq of another epoch.
        let elsewhere = Since {
            seq: 10,
            epoch: Some("another".into()),
        };
        expired(check_since(&state, target, topic, &elsewhere, current));
        let here = Since {
            seq: 10,
            epoch: Some(state.store.epoch()),
        };
        check_since(&state, target, topic, &here, current).unwrap();
    }
    // A custom topic's history is not the change log.
    let (chat, _) = topic_with_messages(&state, "chat", 5, 1).await;
    let current = seq_of_last_message(&state, "chat");
    check_since(&state, &chat, "chat", &at(0), current).unwrap();
    stop(state).await;
}

#[tokio::test]
async fn a_resume_from_before_a_topics_trimmed_history_is_history_expired() {
    let (_dir, state) = state_with_records(3).await;
    // Keeps the last two of five: the first three are gone.
    let (chat, seqs) = topic_with_messages(&state, "chat", 2, 5).await;
    let trimmed = state.store.history_trimmed("chat").unwrap();
    assert_eq!(trimmed, seqs[2]);
    let current = *seqs.last().unwrap();
    for since in [0, seqs[0], seqs[2] - 1] {
        let details = expired(check_since(&state, &chat, "chat", &at(since), current));
        assert_eq!(details, json!({"oldest": seqs[3]}), "since {since}");
    }
    for since in [seqs[2], seqs[3], seqs[4]] {
        check_since(&state, &chat, "chat", &at(since), current)
            .unwrap_or_else(|e| panic!("since {since}: {}", e.message));
    }
    // Each topic, and the change log, has its own trimmed point.
    let (quiet, _) = topic_with_messages(&state, "quiet", 2, 1).await;
    let current = seq_of_last_message(&state, "quiet");
    check_since(&state, &quiet, "quiet", &at(0), current).unwrap();
    let collection = state.store.catalog().get("c").unwrap();
    check_since(
        &state,
        &Target::Collection(collection),
        "c",
        &at(0),
        current,
    )
    .unwrap();
    stop(state).await;
}
