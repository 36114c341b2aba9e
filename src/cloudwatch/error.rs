//! The error of every CloudWatch and CloudWatch Logs operation, with the
//! code, shape, fault and HTTP status each protocol writes it with.

use http::StatusCode;

/// An error as CloudWatch answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
#[non_exhaustive]
pub struct ApiError {
    /// The query error code: `InvalidParameterValue`, `MissingParameter`,
    /// `ResourceNotFound`, ...
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", message)
    }

    pub(super) fn missing(member: &str) -> Self {
        Self::new("MissingParameter", format!("The parameter {member} is required."))
    }

    /// The error shape of the JSON and CBOR protocols.
    pub fn shape(&self) -> String {
        match self.code {
            "InvalidParameterValue" => "InvalidParameterValueException".into(),
            "MissingParameter" => "MissingRequiredParameterException".into(),
            "InvalidParameterCombination" => "InvalidParameterCombinationException".into(),
            "ResourceNotFound" => "ResourceNotFound".into(),
            "LimitExceeded" => "LimitExceededFault".into(),
            "InternalServiceError" => "InternalServiceFault".into(),
            other => other.into(),
        }
    }

    /// `Sender` or `Receiver`.
    pub fn fault(&self) -> &'static str {
        if self.code == "InternalServiceError" {
            "Receiver"
        } else {
            "Sender"
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            "InternalServiceError" => StatusCode::INTERNAL_SERVER_ERROR,
            "ResourceNotFound" => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
