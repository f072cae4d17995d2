//! Extractors that speak the contract's error shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::auth::Principal;

/// `axum::Json` with our rejections (400, 413, 415 in the error shape).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(JsonBody(value))
    }
}

/// The bearer credential of a request, if any: `Authorization: Bearer`, or
/// `X-Api-Key`.
pub fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    bearer_from_headers(&parts.headers)
}

pub fn bearer_from_headers(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
        return Ok(Some(token.trim()));
    }
    if let Some(value) = headers.get("x-api-key") {
        let key = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed X-Api-Key header"))?;
        return Ok(Some(key.trim()));
    }
    Ok(None)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(parts)? {
            None => Ok(Principal::Anonymous),
            Some(token) => Ok(state.auth.authenticate(token)?),
        }
    }
}

/// A principal that must be an admin: 401 when anonymous, 403 otherwise.
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        match &principal {
            Principal::Anonymous => Err(ApiError::unauthorized("sign in as an admin")),
            p if !p.is_admin() => Err(ApiError::forbidden("admins only")),
            _ => Ok(Admin(principal)),
        }
    }
}
