//! One readable line from an AWS SDK error: the SDK's own `Display` says
//! only "service error" or "dispatch failure", and its `Debug` is a dump.
//! `deploy` and `deliver --cloudwatch` name what failed with this.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Why an SDK call failed, in the terms a user acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkFailure {
    /// Nothing answered (wrong endpoint, nothing listening, TLS, DNS): the
    /// innermost cause.
    Unreachable(String),
    /// The service answered with an error.
    Service { code: String, message: String },
}

impl SdkFailure {
    pub fn of<E, R>(e: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        if let SdkError::DispatchFailure(failure) = e {
            let cause = failure.as_connector_error().map_or_else(|| "no answer".to_owned(), |c| innermost(c));
            return SdkFailure::Unreachable(cause);
        }
        let code = e.code().unwrap_or("unknown").to_owned();
        let message = e
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| aws_smithy_types::error::display::DisplayErrorContext(e).to_string());
        SdkFailure::Service { code, message }
    }
}

impl std::fmt::Display for SdkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdkFailure::Unreachable(cause) => write!(f, "no answer from the endpoint ({cause})"),
            SdkFailure::Service { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

/// The innermost cause of an error chain.
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut source = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// Whether the AWS chain of `config` yields credentials, before any call:
/// otherwise the SDK's error lists every provider it tried. `Err` is the
/// innermost cause.
pub async fn check_credentials(config: &aws_config::SdkConfig) -> Result<(), String> {
    use aws_credential_types::provider::ProvideCredentials as _;
    let provider = config.credentials_provider().ok_or_else(|| "none configured".to_owned())?;
    provider.provide_credentials().await.map(|_| ()).map_err(|e| innermost(&e))
}
