//! Who is subscribed to a custom topic created with `presence: true`.
//! The list itself is kept by the fan-out hub (`fanout::presence`); this
//! decides who may ask, with the very check that decides who may
//! subscribe.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::fanout::presence::Snapshot;
use crate::services::topics::{self, Target};
use crate::state::AppState;

/// The topic's members as last announced to its subscribers, or past
/// `presence_max` only their count. Refused as a subscribe to the topic
/// would be (`not_found`, `forbidden`), and `bad_request` for a topic
/// that does not track presence.
pub async fn presence(state: &AppState, principal: &Principal, topic: &str) -> ApiResult<Snapshot> {
    let target = topics::resolve_for_subscribe(state, principal, topic)?;
    match target {
        Target::Custom(custom) if custom.def.presence => {}
        _ => {
            return Err(ApiError::bad_request(format!(
                "{topic} does not track presence (create a topic with \"presence\": true)"
            )))
        }
    }
    Ok(state.realtime.presence(topic.to_owned()).await)
}
