//! Extractors that speak the contract's error shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::request_log::Actor;
use super::AppState;
use crate::access::AdminPermit;
use crate::auth::Principal;
pub use crate::services::credentials::{client_ip, header_credentials, one_credential};

/// `axum::Json` with our rejections (400, 413, 415 in the error shape).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(JsonBody(value))
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = header_credentials(&parts.headers)?;
        let principal = match one_credential(&state.auth, &presented)? {
            None => Principal::Anonymous,
            Some(token) => state.auth.authenticate(token)?,
        };
        if let (Some(actor), Some(id)) = (parts.extensions.get::<Actor>(), principal.id()) {
            actor.set(id);
        }
        Ok(principal)
    }
}

/// A principal that must be an admin: 401 when anonymous, 403 otherwise.
/// It carries the permit the admin-only services require.
pub struct Admin(pub AdminPermit);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        Ok(Admin(crate::access::admin(principal)?))
    }
}
