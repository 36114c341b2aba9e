//! How a function is invoked: the [`Invoker`] trait, and its implementation
//! for any Lambda Invoke API endpoint through `aws-sdk-lambda` (SAM CLI's
//! `sam local start-lambda`, LocalStack, AWS itself). The other
//! implementation, a local runtime process, is [`super::runtime`].

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError as SdkInvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use bytes::Bytes;
use serde_json::Value;

use super::event::codes;

/// Why an invocation produced no response to read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    #[error("the function failed: {error_type}: {message}")]
    Function { error_type: String, message: String },
    #[error("the function did not return within {0:?}")]
    TimedOut(Duration),
    #[error("the endpoint says the function does not exist: {0}")]
    NotFound(String),
    #[error("the endpoint refused access to the function: {0}")]
    AccessDenied(String),
    #[error("the endpoint throttled the invocation: {0}")]
    Throttled(String),
    #[error("{0}")]
    Unreachable(String),
}

impl InvokeError {
    /// The code and message of the error records it ends in.
    pub fn code(&self) -> (&'static str, &'static str) {
        match self {
            InvokeError::Function { .. } => codes::FUNCTION_ERROR,
            InvokeError::TimedOut(_) => codes::FUNCTION_TIMED_OUT,
            InvokeError::NotFound(_) => codes::RESOURCE_NOT_FOUND,
            InvokeError::AccessDenied(_) => codes::INVOKE_ACCESS_DENIED,
            InvokeError::Throttled(_) => codes::INVOKE_LIMIT_EXCEEDED,
            InvokeError::Unreachable(_) => codes::INVOKE_FAILED,
        }
    }
}

/// A function's start-up failed: what the function said, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("Lambda function {arn} did not start: `{command}` {reason}{output}\n  fix the handler and start again; the command runs in the current directory, so the handler's module must be importable from there (for awslambdaric: `python -m awslambdaric module.function`)")]
pub struct StartError {
    pub arn: String,
    pub command: String,
    pub reason: String,
    /// The process's last lines of output, indented, if any.
    pub output: String,
}

/// One function, wherever it runs. Invocations are synchronous
/// (`RequestResponse`), as Firehose makes them.
#[async_trait]
pub trait Invoker: Send + Sync + std::fmt::Debug + 'static {
    /// The response payload, or why there is none.
    async fn invoke(&self, payload: Bytes, timeout: Duration) -> Result<Bytes, InvokeError>;

    /// Readies the function (starts a local runtime and waits for its init),
    /// so a handler that cannot load fails before delivery starts.
    async fn start(&self) -> Result<(), StartError> {
        Ok(())
    }

    /// Stops what `start` started.
    async fn stop(&self) {}
}

/// A function behind a Lambda Invoke API endpoint.
#[derive(Debug)]
pub struct EndpointInvoker {
    client: aws_sdk_lambda::Client,
    function: String,
    endpoint: String,
}

impl EndpointInvoker {
    /// A client for `endpoint`; credentials and region from the standard
    /// chain, with test credentials when it has none (local endpoints take
    /// any).
    pub async fn new(endpoint: &str, function: &str, region: &str) -> Self {
        let shared = crate::aws_http::loader().region(aws_config::Region::new(region.to_owned())).load().await;
        let mut builder = aws_sdk_lambda::config::Builder::from(&shared)
            .endpoint_url(endpoint)
            .retry_config(aws_config::retry::RetryConfig::disabled());
        let has_credentials = match shared.credentials_provider() {
            Some(provider) => {
                aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider).await.is_ok()
            }
            None => false,
        };
        if !has_credentials {
            builder = builder.credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "streamlab",
            ));
        }
        EndpointInvoker {
            client: aws_sdk_lambda::Client::from_conf(builder.build()),
            function: function.to_owned(),
            endpoint: endpoint.to_owned(),
        }
    }
}

#[async_trait]
impl Invoker for EndpointInvoker {
    async fn invoke(&self, payload: Bytes, timeout: Duration) -> Result<Bytes, InvokeError> {
        let call = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload.to_vec()))
            .send();
        let output = match tokio::time::timeout(timeout, call).await {
            Err(_) => return Err(InvokeError::TimedOut(timeout)),
            Ok(Err(e)) => return Err(self.sdk_error(e)),
            Ok(Ok(output)) => output,
        };
        let body = output.payload.map(Blob::into_inner).unwrap_or_default();
        // The runtime interface emulator answers function errors with 200 and
        // no X-Amz-Function-Error header: the body is all there is.
        match output.function_error {
            Some(kind) => Err(function_error(&body).unwrap_or(InvokeError::Function {
                error_type: kind,
                message: String::from_utf8_lossy(&body).into_owned(),
            })),
            None => function_error(&body).map_or(Ok(Bytes::from(body)), Err),
        }
    }
}

impl EndpointInvoker {
    fn sdk_error(&self, e: SdkError<SdkInvokeError>) -> InvokeError {
        let detail = aws_sdk_lambda::error::DisplayErrorContext(&e).to_string();
        match e.as_service_error() {
            Some(SdkInvokeError::ResourceNotFoundException(_)) => InvokeError::NotFound(detail),
            Some(SdkInvokeError::TooManyRequestsException(_)) => InvokeError::Throttled(detail),
            Some(service)
                if aws_sdk_lambda::error::ProvideErrorMetadata::code(service)
                    .is_some_and(|c| c.contains("AccessDenied")) =>
            {
                InvokeError::AccessDenied(detail)
            }
            _ => InvokeError::Unreachable(format!(
                "cannot invoke {} at {}: {detail}. Is the endpoint running? Check --lambda-endpoint",
                self.function, self.endpoint
            )),
        }
    }
}

/// A runtime's error document (`{errorType, errorMessage, ...}`), if `body`
/// is one rather than a response.
pub fn function_error(body: &[u8]) -> Option<InvokeError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    if object.contains_key("records") {
        return None;
    }
    let error_type = object.get("errorType").and_then(Value::as_str);
    let message = object.get("errorMessage").and_then(Value::as_str);
    (error_type.is_some() || message.is_some()).then(|| InvokeError::Function {
        error_type: error_type.unwrap_or("Unhandled").to_owned(),
        message: message.unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_of_both_runtime_clients_are_recognised() {
        let python = br#"{"errorMessage": "boom", "errorType": "ValueError", "requestId": "r", "stackTrace": []}"#;
        let node = br#"{"errorType": "Error", "errorMessage": "boom", "trace": ["Error: boom"]}"#;
        for (body, kind) in [(&python[..], "ValueError"), (&node[..], "Error")] {
            match function_error(body) {
                Some(InvokeError::Function { error_type, message }) => {
                    assert_eq!((error_type.as_str(), message.as_str()), (kind, "boom"))
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(function_error(br#"{"records": []}"#).is_none());
        assert!(function_error(b"not json").is_none());
    }
}
