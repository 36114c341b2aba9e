//! A cluster and an S3 that already run: a team's MSK and AWS S3, or any
//! Kafka-protocol broker and S3 API. Nothing is started or stopped; the
//! stack only connects, so the same scenarios, producer and delivery that
//! run on a laptop run against the real thing.
//!
//! Configured from the environment, so `--backend external` needs no new
//! flags and CI secrets stay out of command lines:
//!
//! | variable                          | meaning                                     |
//! |-----------------------------------|---------------------------------------------|
//! | `STREAMLAB_EXTERNAL_BOOTSTRAP`    | the brokers, `HOST:PORT[,HOST:PORT…]`        |
//! | `STREAMLAB_KAFKA_SECURITY`, …     | how to reach them (see [`ConnectionOptions`])  |
//! | `STREAMLAB_EXTERNAL_S3_ENDPOINT`  | an S3-compatible endpoint; unset is AWS S3  |
//! | `AWS_REGION`, `AWS_PROFILE`, …    | the standard AWS chain, for S3 and MSK IAM  |
//! | `STREAMLAB_EXTERNAL_BUCKET`       | the bucket the conformance suite writes to  |

use super::BackendError;
use crate::delivery::sink::S3Settings;
use crate::kafka::{ConnectionOptions, KafkaConnection};

pub const BOOTSTRAP_VAR: &str = "STREAMLAB_EXTERNAL_BOOTSTRAP";
pub const BUCKET_VAR: &str = "STREAMLAB_EXTERNAL_BUCKET";
pub const S3_ENDPOINT_VAR: &str = "STREAMLAB_EXTERNAL_S3_ENDPOINT";

/// Where the external cluster and S3 are.
#[derive(Debug, Clone)]
pub struct ExternalSettings {
    pub kafka: KafkaConnection,
    pub s3: S3Settings,
}

impl ExternalSettings {
    /// Reads the settings from the environment (table above), validating
    /// them and loading MSK IAM credentials before anything connects.
    pub async fn from_env() -> Result<ExternalSettings, BackendError> {
        let bootstrap = std::env::var(BOOTSTRAP_VAR).ok().filter(|b| !b.trim().is_empty()).ok_or_else(|| {
            BackendError::External(format!(
                "--backend external needs {BOOTSTRAP_VAR} (the brokers, HOST:PORT[,HOST:PORT…]); \
                 set STREAMLAB_KAFKA_SECURITY too unless they take plaintext"
            ))
        })?;
        let options = ConnectionOptions::from_env()
            .map_err(|e| BackendError::External(format!("the STREAMLAB_KAFKA_* variables: {e}")))?;
        let kafka = options.connect(&bootstrap).await.map_err(|e| BackendError::External(e.to_string()))?;
        let endpoint = std::env::var(S3_ENDPOINT_VAR).ok().filter(|e| !e.is_empty());
        Ok(ExternalSettings { kafka, s3: S3Settings { endpoint, region: None, credentials: None } })
    }
}

/// The bucket the conformance suite may write to, if set.
pub fn external_bucket() -> Option<String> {
    std::env::var(BUCKET_VAR).ok().filter(|b| !b.is_empty())
}
