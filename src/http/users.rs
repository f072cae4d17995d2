//! `/api/users`: admins manage users. Disabling a user, or changing their
//! password or roles, bumps their token generation, so their existing
//! tokens fail from the next request on. Every change is a `_users` entry in
//! the change log, which is what realtime watches to close their sockets.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{create_user, Profile};
use super::error::{ApiError, ApiResult};
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::auth::password::check_policy;
use crate::model::user::{is_plausible_email, normalize_email};
use crate::model::{User, UserChanges};
use crate::rules::EvalContext;
use crate::services::records::parse_filter;
use crate::store::writer::Mutation;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

fn invalid(field: &str, reason: impl Into<String>) -> ApiError {
    ApiError::validation("invalid user", &[(field.to_owned(), reason.into())].into())
}

fn existing(state: &AppState, id: &str) -> ApiResult<User> {
    state
        .store
        .get_user(id)?
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    filter: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Users in id (creation) order; `filter` sees the public fields;
/// `cursor` is the last id of the previous page.
pub async fn list_users(
    State(state): State<AppState>,
    Admin(_): Admin,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(params) = params?;
    let filter = parse_filter(params.filter.as_deref())?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let now = crate::clock::now_rfc3339();
    let mut items = Vec::new();
    let mut next_cursor = None;
    for user in state.store.users()? {
        if params
            .cursor
            .as_deref()
            .is_some_and(|after| user.id.as_str() <= after)
        {
            continue;
        }
        let public = user.public_json();
        let matches = match (&filter, &public) {
            (Some(filter), Value::Object(fields)) => filter.matches(&EvalContext {
                record: fields,
                user: None,
                now: &now,
            }),
            _ => true,
        };
        if !matches {
            continue;
        }
        if items.len() == limit {
            next_cursor = items
                .last()
                .and_then(|last: &Value| last["id"].as_str().map(str::to_owned));
            break;
        }
        items.push(public);
    }
    Ok(Json(json!({"items": items, "next_cursor": next_cursor})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
}

/// An empty tenant is no tenant: a form's empty field must not put the user
/// in a tenant named "" that rules would then match.
fn no_empty_tenant(tenant: Option<String>) -> Option<String> {
    tenant.filter(|t| !t.is_empty())
}

pub async fn create_user_admin(
    State(state): State<AppState>,
    Admin(_): Admin,
    JsonBody(body): JsonBody<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // create_user checks the names with the email and password, so one
    // answer lists every problem.
    let profile = Profile {
        name: body.name,
        roles: body.roles,
        groups: body.groups,
        tenant: no_empty_tenant(body.tenant),
    };
    let user = create_user(&state, &body.email, body.password, profile).await?;
    Ok((StatusCode::CREATED, Json(user.public_json())))
}

pub async fn get_user(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(existing(&state, &id)?.public_json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    email: Option<String>,
    name: Option<String>,
    roles: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    /// `null` clears the tenant; absent leaves it.
    #[serde(default, with = "double_option")]
    tenant: Option<Option<String>>,
    disabled: Option<bool>,
    password: Option<String>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(deserializer).map(Some)
    }
}

/// The changes are checked (and a new password hashed) here, then applied
/// by the writer to the user as it is stored at that moment, so concurrent
/// edits all apply; the answer is the user as this edit left it.
pub async fn update_user(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<UserPatch>,
) -> ApiResult<Json<Value>> {
    // A clean 404 before any password is hashed; the writer checks again.
    existing(&state, &id)?;
    let mut changes = UserChanges {
        name: patch.name,
        disabled: patch.disabled,
        tenant: patch.tenant.map(no_empty_tenant),
        ..UserChanges::default()
    };
    if let Some(email) = patch.email {
        let email = normalize_email(&email);
        if !is_plausible_email(&email) {
            return Err(invalid("email", "must be an email address"));
        }
        changes.email = Some(email);
    }
    if let Some(roles) = patch.roles {
        check_names("roles", &roles)?;
        changes.roles = Some(roles);
    }
    if let Some(groups) = patch.groups {
        check_names("groups", &groups)?;
        changes.groups = Some(groups);
    }
    if let Some(password) = patch.password {
        check_policy(&password).map_err(|e| invalid("password", e.to_string()))?;
        let hash = state
            .auth
            .passwords
            .hash(password)
            .await
            .map_err(ApiError::internal)?;
        changes.password_hash = Some(hash);
    }
    let (applied, edited) = tokio::sync::oneshot::channel();
    state
        .writer
        .submit(Mutation::EditUser {
            id,
            changes,
            applied,
        })
        .await?;
    let user = edited.await.map_err(ApiError::internal)?;
    Ok(Json(user.public_json()))
}

pub async fn delete_user(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.writer.submit(Mutation::DeleteUser(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn check_names(field: &str, names: &[String]) -> ApiResult<()> {
    match names_problem(names) {
        Some(problem) => Err(invalid(field, problem)),
        None => Ok(()),
    }
}

/// What is wrong with a list of role or group names, if anything.
pub(crate) fn names_problem(names: &[String]) -> Option<&'static str> {
    let bad = names
        .iter()
        .any(|n| n.is_empty() || n.len() > 64 || n.chars().any(char::is_whitespace));
    (bad || names.len() > 64).then_some("at most 64 names of 1 to 64 characters without spaces")
}
