//! The contract's one error shape:
//! `{"error": {"code": "...", "message": "...", "details": {...}}}`.
//! Clients get a stable code and a safe message; details of internal
//! failures go to the log only.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::access::NotAdmin;
use crate::auth::AuthError;
use crate::model::collection::FieldErrors;
use crate::store::writer::WriteError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn validation(message: impl Into<String>, errors: &FieldErrors) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", message)
            .with_details(json!(errors))
    }

    /// `validation_failed` with details of another shape than field errors
    /// (a batch names its bad items).
    pub fn validation_details(message: impl Into<String>, details: Value) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", message).with_details(details)
    }

    /// A resume from a position the server no longer has (or never had).
    pub fn history_expired(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GONE, "history_expired", message)
    }

    pub fn is_forbidden(&self) -> bool {
        self.status == StatusCode::FORBIDDEN
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn invalid_credentials() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong email or password",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn precondition_failed(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            message,
        )
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> ApiError {
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        error.retry_after = Some(retry_after);
        error
    }

    /// Realtime: a connection asked for more than `max_subscriptions`.
    pub fn too_many_subscriptions(max: usize) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_subscriptions",
            format!("at most {max} subscriptions per connection"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The contract's JSON for this error, as every transport sends it
    /// (an HTTP body, an MQTT `_errors/<client id>` message).
    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        json!({ "error": error })
    }

    /// Logs the cause and answers without it.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(cause = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The disk, not a bug: after a failed flush (a full disk) sled
            // refuses reads as well as writes until the process restarts.
            StoreError::Sled(sled::Error::Io(io)) => {
                tracing::error!(error = %io, "storage failed");
                ApiError::unavailable(
                    "storage failed (full or broken disk?); it recovers when the server restarts",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<NotAdmin> for ApiError {
    fn from(e: NotAdmin) -> Self {
        match e {
            NotAdmin::Anonymous => ApiError::unauthorized("sign in as an admin"),
            NotAdmin::NotAdmin => ApiError::forbidden("admins only"),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Expired => {
                ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", "token expired")
            }
            AuthError::InvalidToken => ApiError::unauthorized("invalid or revoked token"),
            AuthError::RefreshReused => ApiError::unauthorized(
                "this refresh token was already used; the session is revoked, sign in again",
            ),
            AuthError::Store(e) => e.into(),
            AuthError::Write(e) => e.into(),
            AuthError::Task(cause) => ApiError::internal(cause),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Conflict(_)
            | WriteError::CollectionExists(_)
            | WriteError::TopicExists(_)
            | WriteError::EmailTaken => ApiError::conflict(e.to_string()),
            WriteError::NotFound(_)
            | WriteError::CollectionNotFound(_)
            | WriteError::TopicNotFound(_)
            | WriteError::UserNotFound => ApiError::not_found(e.to_string()),
            WriteError::RevMismatch { current, .. } => {
                ApiError::precondition_failed(format!("the record is at rev {current}"))
                    .with_details(json!({ "rev": current }))
            }
            WriteError::CollectionChanged | WriteError::CollectionBusy(_) => {
                ApiError::conflict(e.to_string())
            }
            WriteError::LastAdmin => ApiError::conflict(e.to_string()),
            WriteError::Invalid(errors) => {
                ApiError::validation("existing records do not fit the new schema", &errors)
            }
            WriteError::DoesNotFitNewSchema(errors) => ApiError::validation(
                "the collection is changing to a schema this record does not fit",
                &errors,
            ),
            WriteError::Storage(cause) => {
                tracing::error!(%cause, "write failed");
                ApiError::unavailable("storage is unavailable; the write was not made")
            }
            WriteError::NotDurable => ApiError::unavailable(
                "storage failed: the write may or may not have been made; retry it (with the same id for creates)",
            ),
            WriteError::Unavailable => ApiError::unavailable("the server is shutting down"),
        }
    }
}
