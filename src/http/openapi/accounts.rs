//! Where the paths of setup, sign-in, accounts, users and API keys are
//! described. The functions only carry their `#[utoipa::path]`; the
//! handlers are in `http::auth`, `http::users` and `http::keys`.

use super::schemas::{ErrorBody, KeyList, NewApiKey, Session, SetupState, User, UserPage};
use crate::services::account_mail::{Reset, ResetRequest, Verification};
use crate::services::accounts::{Credentials, PasswordChange, Setup, SignUp};
use crate::services::keys::NewKey;
use crate::services::users::{ListParams, NewUser, UserPatch};

/// Whether the first admin is still to be created
#[utoipa::path(get, path = "/api/setup", tag = "auth", security(()),
    responses((status = 200, body = SetupState)))]
pub fn setup_state() {}

/// Create the first admin with the one-time code printed at start-up
///
/// 403 once an admin exists, or for a wrong code.
#[utoipa::path(post, path = "/api/setup", tag = "auth", security(()), request_body = Setup,
    responses((status = 201, body = Session), (status = 403, body = ErrorBody)))]
pub fn setup() {}

/// Sign in with email and password
///
/// After 5 failures for one email, or 20 from one address, in 15 minutes:
/// 429 with `Retry-After`.
#[utoipa::path(post, path = "/api/auth/signin", tag = "auth", security(()),
    request_body = Credentials,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64)))))]
pub fn signin() {}

/// Create an account (when the `allow_signup` setting is on)
#[utoipa::path(post, path = "/api/auth/signup", tag = "auth", security(()), request_body = SignUp,
    responses((status = 201, body = Session), (status = 403, body = ErrorBody)))]
pub fn signup() {}

/// Exchange a refresh token for a new session; the old one stops working
///
/// A refresh token presented twice revokes its whole session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", security(()),
    request_body = RefreshToken,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody)))]
pub fn refresh() {}

/// End the session of a refresh token (204 for unknown tokens too)
#[utoipa::path(post, path = "/api/auth/signout", tag = "auth", security(()),
    request_body = RefreshToken, responses((status = 204)))]
pub fn signout() {}

/// The signed-in user (401 for an API key or anonymous caller)
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub fn me() {}

/// Change the caller's own password; every other sign-in ends
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 200, description = "a new session", body = Session),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub fn change_password() {}

/// Mail a password-reset link (202 whatever the address)
///
/// 503 without the `smtp_url` setting.
#[utoipa::path(post, path = "/api/auth/request-reset", tag = "auth", security(()),
    request_body = ResetRequest,
    responses((status = 202), (status = 503, body = ErrorBody)))]
pub fn request_reset() {}

/// Set a new password with a mailed reset token
#[utoipa::path(post, path = "/api/auth/reset", tag = "auth", security(()), request_body = Reset,
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub fn reset() {}

/// Mail a verification link to the caller's own address
#[utoipa::path(post, path = "/api/auth/request-verification", tag = "auth",
    security(("bearer" = [])),
    responses((status = 202), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub fn request_verification() {}

/// Verify an address with a mailed token
#[utoipa::path(post, path = "/api/auth/verify", tag = "auth", security(()),
    request_body = Verification,
    responses((status = 200, body = User), (status = 400, body = ErrorBody)))]
pub fn verify() {}

/// `{refresh_token}`.
#[derive(utoipa::ToSchema)]
pub struct RefreshToken {
    pub refresh_token: String,
}

/// List users in creation order (admins)
///
/// `filter` sees the public fields (`tenant = 'acme'`, `'admin' in roles`).
#[utoipa::path(get, path = "/api/users", tag = "users", params(ListParams),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = UserPage), (status = 403, body = ErrorBody)))]
pub fn list_users() {}

/// Create a user (admins)
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = User), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub fn create_user() {}

/// One user (admins)
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = String, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub fn get_user() {}

/// Change the named fields of a user (admins)
///
/// `tenant: null` or `""` clears the tenant. The last enabled admin cannot
/// be disabled or demoted (409).
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", params(("id" = String, Path)),
    request_body = UserPatch, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = User), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub fn update_user() {}

/// Delete a user (admins)
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = String, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub fn delete_user() {}

/// List API keys (admins)
#[utoipa::path(get, path = "/api/keys", tag = "keys", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = KeyList)))]
pub fn list_keys() {}

/// Create an API key (admins); its secret is in this answer only
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = NewKey,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = NewApiKey), (status = 400, body = ErrorBody)))]
pub fn create_key() {}

/// Revoke an API key (admins); it stops working at once
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", params(("id" = String, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub fn revoke_key() {}
