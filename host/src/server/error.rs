//! API errors: an HTTP status and a stable `code` with a message that says what
//! was wrong and what to do, rendered as JSON.

use hyper::StatusCode;
use serde::Serialize;

use crate::handler::HandlerError;
use crate::registry::Unavailable;
use crate::runtime::CallError;

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable, machine-readable; see docs/architecture.md for the list.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn body_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds this host's limit of {limit} bytes"),
        )
    }
}

impl From<Unavailable> for ApiError {
    fn from(error: Unavailable) -> Self {
        match error {
            Unavailable::Unknown { .. } => ApiError::new(StatusCode::NOT_FOUND, "unknown_format", error.to_string()),
            Unavailable::NotServing { .. } => {
                ApiError::new(StatusCode::CONFLICT, "format_unavailable", error.to_string())
            }
        }
    }
}

impl From<HandlerError> for ApiError {
    fn from(error: HandlerError) -> Self {
        let message = error.to_string();
        match error {
            HandlerError::Rejected(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", message),
            HandlerError::Failed(call) => {
                let status = match call {
                    CallError::Crashed { .. } => StatusCode::BAD_GATEWAY,
                    CallError::MemoryLimit { .. }
                    | CallError::FuelExhausted { .. }
                    | CallError::HostResourceLimit { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    CallError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                    CallError::InputTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    CallError::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
                };
                ApiError::new(status, call.kind(), message)
            }
        }
    }
}
