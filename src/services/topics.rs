//! What the REST topic endpoints and the realtime actions share: resolving a
//! topic name and checking who may subscribe, creating, deleting and
//! publishing, and replaying what a resuming subscriber missed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::{Map, Value};

use crate::access::{Action, Caller};
use crate::auth::Principal;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fanout::hub::{CONNECTIONS_TOPIC, USERS_TOPIC};
pub use crate::fanout::target::Target;
use crate::protocol::server::{
    self, CustomTopic, FilterBudgetDetails, HistoryExpiredDetails, TopicInfo,
};
use crate::rules::Expr;
use crate::series::BucketSpec;
use crate::state::AppState;
use crate::store::topics::{Message, StoredTopic, Topic};
use crate::store::writer::Mutation;
use crate::visibility::{self, Sighted, Viewer};

/// Resolves a topic for a subscriber and checks they may subscribe.
pub fn resolve_for_subscribe(
    state: &AppState,
    principal: &Principal,
    topic: &str,
) -> ApiResult<Target> {
    let caller = Caller::new(principal);
    if topic == USERS_TOPIC || topic == CONNECTIONS_TOPIC {
        return if caller.is_admin() {
            Ok(Target::System)
        } else {
            Err(ApiError::forbidden(format!("{topic} is for admins")))
        };
    }
    if let Some((name, id)) = topic.split_once('/') {
        let collection = state
            .store
            .catalog()
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("no topic {topic}")))?;
        // Worded like a missing record, so a record topic cannot tell a
        // hidden record from an absent one.
        let not_found = || ApiError::not_found(format!("record {id} not found"));
        let record = state
            .store
            .get_record(collection.id, id)?
            .ok_or_else(not_found)?;
        let sighted = Sighted::new(&collection, &record.fields);
        if !visibility::may_view(&caller.viewer, &collection, &sighted, &caller.now) {
            return Err(not_found());
        }
        return Ok(Target::Record(collection, record.id().to_owned()));
    }
    if let Some(collection) = state.store.catalog().get(topic) {
        if !caller.may_ever(&collection, Action::List) {
            return Err(ApiError::forbidden(format!(
                "the list rule of {topic} does not allow you to subscribe"
            )));
        }
        return Ok(Target::Collection(collection));
    }
    let custom = state
        .store
        .topics()
        .get(topic)
        .ok_or_else(|| ApiError::not_found(format!("no topic {topic}")))?;
    if !custom.admits(&caller.viewer, &caller.now) {
        return Err(ApiError::forbidden(format!(
            "the subscribe rule of {topic} does not allow you"
        )));
    }
    Ok(Target::Custom(custom))
}

/// What the filters of one connection's subscriptions may cost together
/// ([`Expr::cost`] each, once per topic): every event on a subscribed topic
/// pays for its filter, so one connection cannot make fan-out arbitrarily
/// slow for everyone. About 100 subscriptions with a 40-step filter each.
pub const FILTER_BUDGET: usize = 4096;

/// The bucket spec of a subscription that asks for `aggregate`: only a
/// series collection's own topic has buckets.
pub fn bucket_spec(
    target: &Target,
    aggregate: Option<&Value>,
    viewer: &Viewer,
) -> ApiResult<Option<Arc<BucketSpec>>> {
    let Some(aggregate) = aggregate else {
        return Ok(None);
    };
    let collection = match target {
        Target::Collection(c) if c.is_series() => c,
        _ => {
            return Err(ApiError::bad_request(
                "aggregate subscriptions are for series collections",
            ))
        }
    };
    let spec = BucketSpec::parse(aggregate).map_err(|errors| {
        let errors = errors
            .into_iter()
            .map(|(k, v)| (format!("aggregate.{k}"), v))
            .collect();
        ApiError::validation("invalid aggregate subscription", &errors)
    })?;
    let fields = spec.aggs.iter().filter_map(|a| a.field.as_deref());
    let fields = fields.chain(spec.group.iter().map(String::as_str));
    if let Some(field) = visibility::unreadable(viewer, collection, fields) {
        return Err(ApiError::forbidden(format!(
            "`{field}` is a protected field: only admins may aggregate it"
        )));
    }
    Ok(Some(Arc::new(spec)))
}

pub fn check_filter_budget(total: usize) -> ApiResult<()> {
    if total > FILTER_BUDGET {
        return Err(ApiError::bad_request(format!(
            "the filters of this connection would cost {total} steps per event; at most {FILTER_BUDGET}"
        ))
        .with_details(server::details(&FilterBudgetDetails {
            cost: total,
            budget: FILTER_BUDGET,
        })));
    }
    Ok(())
}

/// Splits `topic` (maybe a comma list) and `topics` into names.
pub fn topic_names(topic: Option<&str>, topics: Option<&[String]>) -> ApiResult<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for name in topic
        .into_iter()
        .flat_map(|t| t.split(','))
        .chain(topics.unwrap_or_default().iter().map(String::as_str))
    {
        let name = name.trim();
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err(ApiError::bad_request("name a topic (topic or topics)"));
    }
    Ok(names)
}

/// Where a resume starts: the seq and, when the client knows it, the
/// epoch of the log that seq belongs to.
#[derive(Debug, Clone)]
pub struct Since {
    pub seq: u64,
    pub epoch: Option<String>,
}

/// Fails with `history_expired` when a resume from `since` cannot be exact:
/// something it would need is no longer kept, the seq belongs to another
/// log (another epoch, or a seq this log never reached), or the topic
/// keeps no history at all. `current` is the newest seq released.
pub fn check_since(
    state: &AppState,
    target: &Target,
    topic: &str,
    since: &Since,
    current: u64,
) -> ApiResult<()> {
    let epoch = state.store.epoch();
    let expired = |oldest: u64, why: String| {
        Err(
            ApiError::history_expired(why).with_details(server::details(&HistoryExpiredDetails {
                oldest,
                epoch: &epoch,
            })),
        )
    };
    if since.epoch.as_deref().is_some_and(|e| e != epoch) {
        return expired(
            state.store.changelog_trimmed()? + 1,
            "that position belongs to another history (the data was restored or reset)".into(),
        );
    }
    if since.seq > current {
        return expired(
            state.store.changelog_trimmed()? + 1,
            format!(
                "no event {} was ever released here; the newest is {current}",
                since.seq
            ),
        );
    }
    let trimmed = match target {
        Target::Collection(_) | Target::Record(..) => state.store.changelog_trimmed()?,
        Target::Custom(topic) if topic.def.history == 0 && since.seq < current => {
            return expired(
                current + 1,
                format!(
                    "{topic} keeps no history to resume from",
                    topic = topic.def.name
                ),
            );
        }
        Target::Custom(_) => state.store.history_trimmed(topic)?,
        Target::System => 0,
    };
    if since.seq < trimmed {
        return expired(
            trimmed + 1,
            format!(
                "events after {} are no longer kept; the oldest kept is {}",
                since.seq,
                trimmed + 1
            ),
        );
    }
    Ok(())
}

/// The topics a caller may subscribe to.
pub fn list_topics(state: &AppState, principal: &Principal) -> Vec<TopicInfo> {
    let caller = Caller::new(principal);
    let mut topics = Vec::new();
    for collection in state.store.catalog().all() {
        if caller.may_ever(&collection, Action::List) {
            topics.push(TopicInfo::Collection {
                name: collection.def.name.clone(),
            });
        }
    }
    for topic in state.store.topics().all() {
        if topic.admits(&caller.viewer, &caller.now) {
            topics.push(TopicInfo::Custom(custom_topic(&topic)));
        }
    }
    if caller.is_admin() {
        for name in [USERS_TOPIC, CONNECTIONS_TOPIC] {
            topics.push(TopicInfo::System { name: name.into() });
        }
    }
    topics
}

/// A custom topic's definition as clients see it.
pub fn custom_topic(topic: &Topic) -> CustomTopic {
    let def = &topic.def;
    CustomTopic {
        name: def.name.clone(),
        owner: def.owner.clone(),
        publish: def.publish.clone(),
        subscribe: def.subscribe.clone(),
        history: def.history,
        created: def.created.clone(),
        presence: def.presence,
    }
}

/// What a new custom topic needs.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTopic {
    pub name: String,
    pub publish: Option<String>,
    pub subscribe: Option<String>,
    #[serde(default)]
    pub history: u32,
    /// Track who is subscribed (see `services::presence`).
    #[serde(default)]
    pub presence: bool,
}

/// Most messages a topic may keep.
pub const MAX_HISTORY: u32 = 100_000;
const DEFAULT_TOPIC_RULE: &str = "@user != null";

pub async fn create_topic(
    state: &AppState,
    principal: &Principal,
    new: NewTopic,
) -> ApiResult<Arc<Topic>> {
    let caller = Caller::new(principal);
    let create_rule = Expr::parse(&state.live.get().topic_create_rule)
        .map_err(|e| ApiError::internal(format!("topic_create_rule: {e}")))?;
    if !caller.passes(&create_rule, &Map::new()) {
        return Err(if principal.id().is_none() {
            ApiError::unauthorized("sign in to create topics")
        } else {
            ApiError::forbidden("topic_create_rule does not allow you to create topics")
        });
    }
    let mut errors = crate::model::collection::FieldErrors::new();
    if !crate::ids::is_valid_name(&new.name) {
        errors.insert(
            "name".into(),
            "must match ^[a-z][a-z0-9_-]{0,63}$ (names starting with _ are reserved)".into(),
        );
    }
    if new.history > MAX_HISTORY {
        errors.insert("history".into(), format!("at most {MAX_HISTORY}"));
    }
    let def = StoredTopic {
        name: new.name.clone(),
        owner: principal.id(),
        publish: new.publish.unwrap_or_else(|| DEFAULT_TOPIC_RULE.into()),
        subscribe: new.subscribe.unwrap_or_else(|| DEFAULT_TOPIC_RULE.into()),
        history: new.history,
        created: clock::now_rfc3339(),
        presence: new.presence,
    };
    for (part, text) in [("publish", &def.publish), ("subscribe", &def.subscribe)] {
        if let Err(e) = Expr::parse(text) {
            errors.insert(part.into(), e.to_string());
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation("invalid topic", &errors));
    }
    state.writer.submit(Mutation::CreateTopic(def)).await?;
    state
        .store
        .topics()
        .get(&new.name)
        .ok_or_else(|| ApiError::internal("topic vanished after creation"))
}

pub async fn delete_topic(state: &AppState, principal: &Principal, name: &str) -> ApiResult<()> {
    if state.store.catalog().get(name).is_some() {
        return Err(ApiError::bad_request(format!(
            "{name} is a collection; drop the collection instead"
        )));
    }
    let topic = state
        .store
        .topics()
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no topic {name}")))?;
    let owner = topic.def.owner.is_some() && topic.def.owner == principal.id();
    if !owner && !principal.is_admin() {
        return Err(match principal {
            Principal::Anonymous => ApiError::unauthorized("sign in to delete topics"),
            _ => ApiError::forbidden("only the topic's owner or an admin may delete it"),
        });
    }
    state
        .writer
        .submit(Mutation::DeleteTopic(name.to_owned()))
        .await?;
    state.realtime.topic_deleted(name);
    Ok(())
}

/// Publishes on a custom topic; answers the message's seq.
pub async fn publish(
    state: &AppState,
    principal: &Principal,
    name: &str,
    data: Value,
) -> ApiResult<u64> {
    publish_as(state, principal, name, data, false).await
}

/// Publishes on a custom topic and keeps the message as the topic's
/// retained one (MQTT's retain flag), durably, whatever its `history`.
pub async fn publish_retained(
    state: &AppState,
    principal: &Principal,
    name: &str,
    data: Value,
) -> ApiResult<u64> {
    publish_as(state, principal, name, data, true).await
}

/// Forgets a custom topic's retained message (MQTT: a retained PUBLISH
/// with an empty payload), under the topic's `publish` rule.
pub async fn clear_retained(state: &AppState, principal: &Principal, name: &str) -> ApiResult<()> {
    may_publish(state, principal, name, &Map::new())?;
    state
        .writer
        .submit(Mutation::ClearRetained(name.to_owned()))
        .await?;
    Ok(())
}

async fn publish_as(
    state: &AppState,
    principal: &Principal,
    name: &str,
    data: Value,
    retain: bool,
) -> ApiResult<u64> {
    enqueue_publish_as(state, principal, name, data, retain)
        .await?
        .await
}

/// [`publish`] in two steps: the message is checked and queued for the
/// writer now, in the order of the calls, and the returned future gives
/// its seq. A connection publishing a stream queues the next message
/// before the first is answered, so its messages share write groups.
pub async fn enqueue_publish(
    state: &AppState,
    principal: &Principal,
    name: &str,
    data: Value,
) -> ApiResult<impl Future<Output = ApiResult<u64>> + Send + 'static> {
    enqueue_publish_as(state, principal, name, data, false).await
}

async fn enqueue_publish_as(
    state: &AppState,
    principal: &Principal,
    name: &str,
    data: Value,
    retain: bool,
) -> ApiResult<Published> {
    let empty = Map::new();
    let topic = may_publish(state, principal, name, data.as_object().unwrap_or(&empty))?;
    let message = Message {
        seq: 0,
        topic: name.to_owned(),
        from: principal.id(),
        data: serde_json::to_vec(&data).map_err(ApiError::internal)?,
        ts_ms: clock::now_ms(),
    };
    // A message that is never stored does not queue behind the writes.
    if topic.def.history == 0 && !retain {
        let seq = state.writer.publish_unstored(message).await?;
        return Ok(Published::Now(seq));
    }
    let answer = state
        .writer
        .enqueue(Mutation::Publish {
            message,
            history: topic.def.history,
            retain,
        })
        .await?;
    Ok(Published::Later(Box::pin(async move {
        let committed = answer.await?;
        Ok(committed.seqs.map_or(0, |(seq, _)| seq))
    })))
}

/// A publish's seq: known already, or once the writer has stored it.
pub enum Published {
    Now(u64),
    Later(Pin<Box<dyn Future<Output = ApiResult<u64>> + Send>>),
}

impl Future for Published {
    type Output = ApiResult<u64>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ApiResult<u64>> {
        match &mut *self {
            Published::Now(seq) => Poll::Ready(Ok(*seq)),
            Published::Later(answer) => answer.as_mut().poll(cx),
        }
    }
}

/// The topic `name`, if its `publish` rule lets the caller publish `data`.
fn may_publish(
    state: &AppState,
    principal: &Principal,
    name: &str,
    data: &Map<String, Value>,
) -> ApiResult<Arc<Topic>> {
    if state.store.catalog().get(name).is_some() {
        return Err(ApiError::bad_request(format!(
            "{name} is a collection: write records to it instead"
        )));
    }
    let topic = state
        .store
        .topics()
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no topic {name}")))?;
    if !Caller::new(principal).passes(&topic.publish, data) {
        return Err(if principal.id().is_none() {
            ApiError::unauthorized("sign in to publish here")
        } else {
            ApiError::forbidden(format!("the publish rule of {name} does not allow you"))
        });
    }
    Ok(topic)
}

#[cfg(test)]
mod tests;
