//! API keys: an admin creates them (the secret shown once), lists them and
//! revokes them; a revoked key's realtime connections close at once.

use serde::Deserialize;

use crate::access::AdminPermit;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::api_keys::ApiKey;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// RFC 3339; the key stops working then.
    pub expires: Option<String>,
}

fn invalid(field: &str, reason: &str) -> ApiError {
    ApiError::validation(
        "invalid API key",
        &[(field.to_owned(), reason.to_owned())].into(),
    )
}

/// A new key and its secret, which is never shown again.
pub async fn create(state: &AppState, _: &AdminPermit, new: NewKey) -> ApiResult<(ApiKey, String)> {
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.len() > 128 {
        return Err(invalid("name", "must be 1 to 128 characters"));
    }
    if new.roles.len() > 64 || new.roles.iter().any(|r| r.is_empty() || r.len() > 64) {
        return Err(invalid("roles", "at most 64 names of 1 to 64 characters"));
    }
    let expires_ms = match new.expires.as_deref() {
        None => None,
        Some(text) => match crate::clock::parse_ms(text) {
            Some(at) if at > crate::clock::now_ms() => Some(at),
            Some(_) => return Err(invalid("expires", "must be in the future")),
            None => return Err(invalid("expires", "must be an RFC 3339 timestamp")),
        },
    };
    // The store fsyncs the key before answering: a device given the secret
    // must be able to use it after a crash.
    let auth = state.auth.clone();
    let roles = new.roles;
    Ok(
        tokio::task::spawn_blocking(move || auth.create_api_key(name, roles, expires_ms))
            .await
            .map_err(ApiError::internal)??,
    )
}

pub fn list(state: &AppState, _: &AdminPermit) -> ApiResult<Vec<ApiKey>> {
    Ok(state.store.api_keys()?)
}

/// The key stops working at once, and realtime connections opened with it
/// close.
pub async fn revoke(state: &AppState, _: &AdminPermit, id: &str) -> ApiResult<()> {
    let store = state.store.clone();
    let key_id = id.to_owned();
    let existed = tokio::task::spawn_blocking(move || store.delete_api_key(&key_id))
        .await
        .map_err(ApiError::internal)??;
    if !existed {
        return Err(ApiError::not_found("no such API key"));
    }
    state.realtime.principal_revoked(id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::access;
    use crate::auth::Principal;
    use crate::services::testing::{refused, state_with_records, stop};

    fn new_key(name: &str, expires: Option<&str>) -> NewKey {
        NewKey {
            name: name.to_owned(),
            roles: vec!["device".to_owned()],
            expires: expires.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn a_bad_key_is_refused_by_field_and_a_revoked_one_stops_working() {
        let (_dir, state) = state_with_records(0).await;
        let admin = access::admin(Principal::ApiKey(Arc::new(ApiKey {
            id: "root".into(),
            name: "root".into(),
            roles: vec!["admin".into()],
            created: String::new(),
            expires_ms: None,
            secret_digest: vec![],
        })))
        .unwrap();
        for (new, field) in [
            (new_key("  ", None), "name"),
            (new_key("k", Some("2001-01-01T00:00:00Z")), "expires"),
            (new_key("k", Some("tomorrow")), "expires"),
        ] {
            let error = refused(create(&state, &admin, new).await);
            assert_eq!(error.code, "validation_failed");
            assert!(error.details.unwrap().get(field).is_some(), "{field}");
        }
        assert!(list(&state, &admin).unwrap().is_empty());

        let (key, secret) = create(&state, &admin, new_key(" device ", None))
            .await
            .unwrap();
        assert_eq!(key.name, "device");
        assert!(state.auth.authenticate(&secret).is_ok());
        revoke(&state, &admin, &key.id).await.unwrap();
        assert!(state.auth.authenticate(&secret).is_err());
        let again = revoke(&state, &admin, &key.id).await;
        assert_eq!(refused(again).code, "not_found");
        stop(state).await;
    }
}
