//! Users: what an admin does to them (list, create, read, edit, delete),
//! and making a user at all, which sign-up and first-admin setup share.
//! Disabling a user, or changing their password or roles, bumps their token
//! generation, so their existing tokens fail from the next request on.
//! Every change is a `_users` entry in the change log, which is what
//! realtime watches to close their sockets. The writer refuses to remove,
//! disable or demote the last enabled admin.

use serde::Deserialize;
use serde_json::Value;

use crate::access::AdminPermit;
use crate::auth::password::check_policy;
use crate::error::{ApiError, ApiResult};
use crate::model::collection::FieldErrors;
use crate::model::user::{is_plausible_email, normalize_email};
use crate::model::{User, UserChanges};
use crate::rules::EvalContext;
use crate::services::records::parse_filter;
use crate::state::AppState;
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

/// Who a new user is, apart from the email and password.
#[derive(Default)]
pub struct Profile {
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
}

/// Checks, hashes the password and stores a new user; the caller decides
/// the roles. Only services call it, each after its own check (an admin's
/// permit, `allow_signup`, the setup code).
pub(super) async fn insert(
    state: &AppState,
    email: &str,
    password: String,
    profile: Profile,
) -> ApiResult<User> {
    let email = normalize_email(email);
    // Every problem at once, so a form can mark them all.
    let mut problems = FieldErrors::new();
    if !is_plausible_email(&email) {
        problems.insert("email".to_owned(), "must be an email address".to_owned());
    }
    if let Err(e) = check_policy(&password) {
        problems.insert("password".to_owned(), e.to_string());
    }
    for (field, names) in [("roles", &profile.roles), ("groups", &profile.groups)] {
        if let Some(problem) = names_problem(names) {
            problems.insert(field.to_owned(), problem.to_owned());
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation("invalid user", &problems));
    }
    let password_hash = state
        .auth
        .passwords
        .hash(password)
        .await
        .map_err(ApiError::internal)?;
    let user = User {
        id: crate::ids::generate(),
        email,
        name: profile.name.unwrap_or_default(),
        roles: profile.roles,
        groups: profile.groups,
        tenant: profile.tenant,
        disabled: false,
        created: crate::clock::now_rfc3339(),
        password_hash,
        generation: 0,
        verified: false,
    };
    state
        .writer
        .submit(Mutation::CreateUser(user.clone()))
        .await?;
    Ok(user)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub filter: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// A page of users, as their public fields.
pub struct Page {
    pub items: Vec<Value>,
    /// The last id of this page, when there are more.
    pub next_cursor: Option<String>,
}

/// Users in id (creation) order; `filter` sees the public fields;
/// `cursor` is the last id of the previous page.
pub fn list(state: &AppState, _: &AdminPermit, params: ListParams) -> ApiResult<Page> {
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
    Ok(Page { items, next_cursor })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tenant: Option<String>,
}

/// An empty tenant is no tenant: a form's empty field must not put the user
/// in a tenant named "" that rules would then match.
fn no_empty_tenant(tenant: Option<String>) -> Option<String> {
    tenant.filter(|t| !t.is_empty())
}

/// An admin creates a user with any roles.
pub async fn create(state: &AppState, _: &AdminPermit, new: NewUser) -> ApiResult<User> {
    // `insert` checks the names with the email and password, so one answer
    // lists every problem.
    let profile = Profile {
        name: new.name,
        roles: new.roles,
        groups: new.groups,
        tenant: no_empty_tenant(new.tenant),
    };
    insert(state, &new.email, new.password, profile).await
}

pub fn get(state: &AppState, _: &AdminPermit, id: &str) -> ApiResult<User> {
    existing(state, id)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub email: Option<String>,
    pub name: Option<String>,
    pub roles: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    /// `null` clears the tenant; absent leaves it.
    #[serde(default, with = "double_option")]
    pub tenant: Option<Option<String>>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
    /// An admin may vouch for (or withdraw) an address.
    pub verified: Option<bool>,
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
pub async fn update(
    state: &AppState,
    _: &AdminPermit,
    id: &str,
    patch: UserPatch,
) -> ApiResult<User> {
    // A clean 404 before any password is hashed; the writer checks again.
    existing(state, id)?;
    let mut changes = UserChanges {
        name: patch.name,
        disabled: patch.disabled,
        verified: patch.verified,
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
        changes.password_hash = Some(password_hash(state, "password", password).await?);
    }
    apply(state, id, changes).await
}

/// The hash of a new password that meets the policy (else a validation
/// error naming `field`).
pub(super) async fn password_hash(
    state: &AppState,
    field: &str,
    password: String,
) -> ApiResult<String> {
    check_policy(&password).map_err(|e| invalid(field, e.to_string()))?;
    state
        .auth
        .passwords
        .hash(password)
        .await
        .map_err(ApiError::internal)
}

/// Has the writer apply checked changes to the user as stored; the answer
/// is the user as they left it.
pub(super) async fn apply(state: &AppState, id: &str, changes: UserChanges) -> ApiResult<User> {
    let (applied, edited) = tokio::sync::oneshot::channel();
    state
        .writer
        .submit(Mutation::EditUser {
            id: id.to_owned(),
            changes,
            applied,
        })
        .await?;
    edited.await.map_err(ApiError::internal)
}

pub async fn delete(state: &AppState, _: &AdminPermit, id: &str) -> ApiResult<()> {
    state
        .writer
        .submit(Mutation::DeleteUser(id.to_owned()))
        .await?;
    Ok(())
}

fn check_names(field: &str, names: &[String]) -> ApiResult<()> {
    match names_problem(names) {
        Some(problem) => Err(invalid(field, problem)),
        None => Ok(()),
    }
}

/// What is wrong with a list of role or group names, if anything.
fn names_problem(names: &[String]) -> Option<&'static str> {
    let bad = names
        .iter()
        .any(|n| n.is_empty() || n.len() > 64 || n.chars().any(char::is_whitespace));
    (bad || names.len() > 64).then_some("at most 64 names of 1 to 64 characters without spaces")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::access;
    use crate::auth::Principal;
    use crate::services::testing::{refused, state_with_records, stop};

    async fn admin_named(state: &AppState, email: &str) -> (User, AdminPermit) {
        let profile = Profile {
            roles: vec!["admin".to_owned()],
            ..Profile::default()
        };
        let user = insert(state, email, "password-123".to_owned(), profile)
            .await
            .unwrap();
        let permit = access::admin(Principal::User(Arc::new(user.clone()))).unwrap();
        (user, permit)
    }

    /// The stable code and the message of a refusal.
    fn refusal(result: ApiResult<impl Sized>) -> (&'static str, String) {
        let error = refused(result);
        (error.code, error.message)
    }

    #[tokio::test]
    async fn the_last_enabled_admin_cannot_be_deleted_disabled_or_demoted() {
        let (_dir, state) = state_with_records(0).await;
        let (first, permit) = admin_named(&state, "first@example.com").await;
        let last_admin = (
            "conflict",
            "the last admin cannot be removed, disabled or demoted".to_owned(),
        );
        assert_eq!(
            refusal(delete(&state, &permit, &first.id).await),
            last_admin
        );
        let disable = UserPatch {
            disabled: Some(true),
            ..UserPatch::default()
        };
        assert_eq!(
            refusal(update(&state, &permit, &first.id, disable).await),
            last_admin
        );
        let demote = UserPatch {
            roles: Some(vec![]),
            ..UserPatch::default()
        };
        assert_eq!(
            refusal(update(&state, &permit, &first.id, demote).await),
            last_admin
        );
        let stored = get(&state, &permit, &first.id).unwrap();
        assert!(stored.is_admin() && !stored.disabled);

        // With a second admin the first may go; then the second is the last.
        let (second, _) = admin_named(&state, "second@example.com").await;
        delete(&state, &permit, &first.id).await.unwrap();
        assert_eq!(refusal(get(&state, &permit, &first.id)).0, "not_found");
        assert_eq!(
            refusal(delete(&state, &permit, &second.id).await),
            last_admin
        );
        stop(state).await;
    }

    #[tokio::test]
    async fn a_bad_new_user_is_refused_with_every_problem_and_not_stored() {
        let (_dir, state) = state_with_records(0).await;
        let (_, permit) = admin_named(&state, "admin@example.com").await;
        let new = NewUser {
            email: "not an email".to_owned(),
            password: "short".to_owned(),
            name: None,
            roles: vec!["has space".to_owned()],
            groups: vec![String::new()],
            tenant: None,
        };
        let error = refused(create(&state, &permit, new).await);
        assert_eq!(error.code, "validation_failed");
        let details = error.details.expect("the fields at fault");
        let mut fields: Vec<&String> = details.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["email", "groups", "password", "roles"]);
        assert_eq!(state.store.users().unwrap().len(), 1);
        stop(state).await;
    }

    #[tokio::test]
    async fn an_empty_tenant_is_no_tenant_and_null_clears_one() {
        let (_dir, state) = state_with_records(0).await;
        let (_, permit) = admin_named(&state, "admin@example.com").await;
        let new = NewUser {
            email: "u@example.com".to_owned(),
            password: "password-123".to_owned(),
            name: None,
            roles: vec![],
            groups: vec![],
            tenant: Some(String::new()),
        };
        let user = create(&state, &permit, new).await.unwrap();
        assert_eq!(user.tenant, None);
        let patch: UserPatch = serde_json::from_value(serde_json::json!({"tenant": "t1"})).unwrap();
        let user = update(&state, &permit, &user.id, patch).await.unwrap();
        assert_eq!(user.tenant.as_deref(), Some("t1"));
        let patch: UserPatch = serde_json::from_value(serde_json::json!({"tenant": null})).unwrap();
        let user = update(&state, &permit, &user.id, patch).await.unwrap();
        assert_eq!(user.tenant, None);
        stop(state).await;
    }
}
