//! The account service's one API error type, rendered as SPEC.md's envelope
//! `{"error": "<Name>", "message": "...", "field": "..."}`.
//!
//! Policy: a client's mistake names the field and the rule it broke, and changes
//! nothing. A dependency that is down is a 503 the client may retry. Anything else is
//! a 500 whose cause is logged (with the request id) and never shown.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use admit_domain::FieldError;
use admit_store::{Conflict, StoreError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidArgument { field: String, message: String },
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// A batch over its size limit (413).
    #[error("{message}")]
    BatchTooLarge { field: String, message: String },
    /// An `Idempotency-Key` used before with another body (422).
    #[error(
        "this Idempotency-Key was used with another request body; use a new key for a new request"
    )]
    IdempotencyMismatch,
    /// An `Idempotency-Key` whose first request is still running (409).
    #[error("a request with this Idempotency-Key is still running; retry it shortly")]
    IdempotencyInProgress,
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    IllegalAccess(String),
    /// An `IllegalAccessException` (403) that names the field at fault (the social
    /// sign-up's `access_token`, `user_id`, `oauth_consumer_key`).
    #[error("{message}")]
    IllegalAccessAt { field: String, message: String },
    #[error("{message}")]
    ContactAlreadyUsed { field: String, message: String },
    #[error("this username is already used")]
    UsernameAlreadyUsed,
    /// A single-use code that no longer works: used, replaced or expired (410).
    #[error("{message}")]
    Gone { field: String, message: String },
    /// A code locked after too many wrong attempts, or too many requests (429).
    #[error("{message}")]
    TooManyAttempts { field: String, message: String },
    /// A partner over its request rate (429 with `Retry-After`).
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// A partner whose daily account-creation quota is used up, or that a request
    /// would exceed (429 with `Retry-After`: the seconds to the next UTC day).
    #[error("{message}")]
    QuotaExceeded { message: String, retry_after: u64 },
    #[error("the service is temporarily unavailable; retry")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument { .. }
            | ApiError::TooLarge { .. }
            | ApiError::BatchTooLarge { .. } => "InvalidArgumentException",
            ApiError::IdempotencyMismatch => "IdempotencyKeyReusedException",
            ApiError::IdempotencyInProgress => "IdempotencyKeyInProgressException",
            ApiError::Unauthorized(_) => "UnauthorizedException",
            ApiError::IllegalAccess(_) | ApiError::IllegalAccessAt { .. } => {
                "IllegalAccessException"
            }
            ApiError::ContactAlreadyUsed { .. } => "ContactAlreadyUsedException",
            ApiError::UsernameAlreadyUsed => "UsernameAlreadyUsedException",
            ApiError::Gone { .. } => "CodeExpiredException",
            ApiError::TooManyAttempts { .. } => "TooManyAttemptsException",
            ApiError::RateLimited { .. } => "RateLimitExceededException",
            ApiError::QuotaExceeded { .. } => "QuotaExceededException",
            ApiError::Unavailable(_) => "ServiceUnavailableException",
            ApiError::Internal(_) => "InternalErrorException",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidArgument { field, .. }
            | ApiError::IllegalAccessAt { field, .. }
            | ApiError::ContactAlreadyUsed { field, .. }
            | ApiError::BatchTooLarge { field, .. }
            | ApiError::Gone { field, .. }
            | ApiError::TooManyAttempts { field, .. } => Some(field),
            ApiError::IdempotencyMismatch | ApiError::IdempotencyInProgress => {
                Some("Idempotency-Key")
            }
            ApiError::TooLarge { .. } => Some("body"),
            ApiError::UsernameAlreadyUsed => Some("username"),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } | ApiError::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::IllegalAccess(_) | ApiError::IllegalAccessAt { .. } => StatusCode::FORBIDDEN,
            ApiError::ContactAlreadyUsed { .. } | ApiError::UsernameAlreadyUsed => {
                StatusCode::CONFLICT
            }
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::TooManyAttempts { .. }
            | ApiError::RateLimited { .. }
            | ApiError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!(cause = %cause, "request failed"),
            ApiError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "dependency unavailable")
            }
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable(_) => {
                res.insert_header(("Retry-After", "1"));
            }
            ApiError::RateLimited { retry_after, .. }
            | ApiError::QuotaExceeded { retry_after, .. } => {
                res.insert_header(("Retry-After", (*retry_after).max(1).to_string()));
            }
            _ => {}
        }
        res.json(Envelope {
            error: self.name(),
            message: self.to_string(),
            field: self.field(),
        })
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::InvalidArgument {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Conflict(Conflict::Username) => ApiError::UsernameAlreadyUsed,
            StoreError::Conflict(Conflict::Contact) => ApiError::ContactAlreadyUsed {
                field: "contacts".into(),
                message: "this contact is already registered with an account".into(),
            },
            StoreError::Conflict(Conflict::Identity) => ApiError::ContactAlreadyUsed {
                field: "user_id".into(),
                message: "this social identity is already registered with an account".into(),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<admit_runtime::limits::Limited> for ApiError {
    fn from(l: admit_runtime::limits::Limited) -> Self {
        ApiError::RateLimited {
            message: format!(
                "this partner is over its rate of {} requests per second (bursts of {}); retry after {} s",
                l.rate.per_second, l.rate.burst, l.retry_after_secs
            ),
            retry_after: l.retry_after_secs,
        }
    }
}

impl From<crate::hasher::HashError> for ApiError {
    fn from(e: crate::hasher::HashError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
