//! `streamlab deploy`: the spec files a team tested locally, deployed
//! unchanged with aws-sdk-firehose, to the stack (its endpoint from
//! `AWS_ENDPOINT_URL_FIREHOSE`), to LocalStack, or to AWS itself with the
//! standard credential chain. A stream that does not exist is created; one
//! that exists gets the spec's destination through `UpdateDestination`.
//! Either way the call returns once the stream is ACTIVE.
//!
//! The request sent is the spec file itself: the SDK builds and signs the
//! call, and its body is replaced by the file's JSON just before signing, so
//! every field of the file reaches the service as written (no field is lost
//! in a translation to the SDK's types).

use std::time::{Duration, Instant};

use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::types::DeliveryStreamStatus;
use aws_sdk_firehose::Client;
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};

use crate::aws_error::SdkFailure;
use crate::spec::{SourceKind, StreamSpec};

/// What deploying one spec did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub stream: String,
    pub arn: String,
    pub version: String,
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    #[error("no AWS credentials for the Firehose API ({0}). To deploy to the stack, source its env file (`set -a; . ./.streamlab.env; set +a`); to AWS, configure the standard chain (`aws configure`, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")]
    NoCredentials(String),
    #[error("{operation} {stream}: the Firehose endpoint did not answer ({cause}); is the stack running and its env file sourced, or --endpoint-url right?")]
    Unreachable { stream: String, operation: &'static str, cause: String },
    #[error("{operation} {stream}: {code}: {message}")]
    Api { stream: String, operation: &'static str, code: String, message: String },
    #[error("{stream}: the deployed stream reads {deployed}, the spec {spec}; Firehose cannot change a stream's source in place: delete the stream, then deploy again")]
    SourceChanged { stream: String, deployed: String, spec: String },
    #[error("{stream} is {status} after {timeout:?}{}", failure.as_ref().map(|f| format!(": {f}")).unwrap_or_default())]
    NotActive { stream: String, status: String, timeout: Duration, failure: Option<String> },
}

fn api<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    stream: &str,
    operation: &'static str,
    e: SdkError<E, R>,
) -> DeployError {
    match SdkFailure::of(&e) {
        SdkFailure::Unreachable(cause) => DeployError::Unreachable { stream: stream.to_owned(), operation, cause },
        SdkFailure::Service { code, message } => {
            DeployError::Api { stream: stream.to_owned(), operation, code, message }
        }
    }
}

/// Replaces the body the SDK serialized with `body`.
fn with_body(body: Value) -> impl Fn(&mut aws_smithy_runtime_api::client::orchestrator::HttpRequest) + Send + Sync {
    let bytes = serde_json::to_vec(&body).expect("JSON serializes");
    move |request| {
        request.headers_mut().insert("content-length", bytes.len().to_string());
        *request.body_mut() = SdkBody::from(bytes.clone());
    }
}

/// Fails early, with the fix, when no credentials can be had: the SDK's own
/// error for that is a dump of every provider it tried.
pub async fn check_credentials(config: &aws_config::SdkConfig) -> Result<(), DeployError> {
    crate::aws_error::check_credentials(config).await.map_err(DeployError::NoCredentials)
}

/// Creates or updates the stream of `spec`, then waits up to `timeout` for
/// it to be ACTIVE.
pub async fn deploy(client: &Client, spec: &StreamSpec, timeout: Duration) -> Result<Deployed, DeployError> {
    let name = spec.name();
    let existing = match client.describe_delivery_stream().delivery_stream_name(name).send().await {
        Ok(answer) => answer.delivery_stream_description,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => None,
        Err(e) => return Err(api(name, "DescribeDeliveryStream", e)),
    };
    let created = existing.is_none();
    match existing {
        None => {
            client
                .create_delivery_stream()
                .delivery_stream_name(name)
                .customize()
                .mutate_request(with_body(spec.request().clone()))
                .send()
                .await
                .map_err(|e| api(name, "CreateDeliveryStream", e))?;
        }
        Some(description) => {
            let deployed = match description.delivery_stream_type().as_str() {
                "MSKAsSource" => description.source().and_then(|s| s.msk_source_description()).map(|s| {
                    format!("{} topic {}", s.msk_cluster_arn().unwrap_or_default(), s.topic_name().unwrap_or_default())
                }),
                other => Some(other.to_owned()),
            };
            let wanted = match spec.source_kind() {
                SourceKind::Msk => format!("{} topic {}", spec.msk_cluster_arn(), spec.topic()),
                SourceKind::DirectPut => "DirectPut".to_owned(),
            };
            if deployed.as_deref() != Some(wanted.as_str()) {
                return Err(DeployError::SourceChanged {
                    stream: name.to_owned(),
                    deployed: deployed.unwrap_or_else(|| "another kind of source".into()),
                    spec: wanted,
                });
            }
            let destination = description.destinations().first().map(|d| d.destination_id().to_owned());
            let update = json!({
                "DeliveryStreamName": name,
                "CurrentDeliveryStreamVersionId": description.version_id(),
                "DestinationId": destination.unwrap_or_else(|| "destinationId-000000000001".into()),
                "ExtendedS3DestinationUpdate": spec.destination(),
            });
            client
                .update_destination()
                .delivery_stream_name(name)
                .customize()
                .mutate_request(with_body(update))
                .send()
                .await
                .map_err(|e| api(name, "UpdateDestination", e))?;
        }
    }
    let started = Instant::now();
    loop {
        let answer = client
            .describe_delivery_stream()
            .delivery_stream_name(name)
            .send()
            .await
            .map_err(|e| api(name, "DescribeDeliveryStream", e))?;
        let d = answer.delivery_stream_description.ok_or_else(|| DeployError::Api {
            stream: name.to_owned(),
            operation: "DescribeDeliveryStream",
            code: "NoDescription".into(),
            message: "the answer has no DeliveryStreamDescription".into(),
        })?;
        let status = d.delivery_stream_status().clone();
        if status == DeliveryStreamStatus::Active {
            return Ok(Deployed {
                stream: name.to_owned(),
                arn: d.delivery_stream_arn().to_owned(),
                version: d.version_id().to_owned(),
                created,
            });
        }
        if status == DeliveryStreamStatus::CreatingFailed || started.elapsed() > timeout {
            let failure = d.failure_description().map(|f| format!("{}: {}", f.r#type().as_str(), f.details()));
            return Err(DeployError::NotActive {
                stream: name.to_owned(),
                status: status.as_str().to_owned(),
                timeout,
                failure,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
