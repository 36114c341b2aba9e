//! The Firehose API in front of a stack: Firehose's JSON 1.1 protocol
//! (`POST /` with `X-Amz-Target: Firehose_20150804.<Operation>`, any SigV4
//! credentials accepted) on a loopback port, so a team's AWS CLI calls, SDK
//! code and Terraform create, describe, update and delete real streams of
//! the stack. `up` and `run` serve it and write `AWS_ENDPOINT_URL_FIREHOSE`.
//!
//! - [`api`]: the operations, with AWS's request limits and error types;
//! - [`describe`]: `DeliveryStreamDescription` with AWS's defaults filled in;
//! - [`store`]: what a kept `--work-dir` keeps of the API's streams;
//! - this module: the HTTP server and the error document.

pub mod api;
pub mod describe;
pub mod store;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::stack::serve::{body_status, read_body};

pub use api::Firehose;

/// The environment variable SDKs and the AWS CLI read the endpoint from.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_FIREHOSE";

/// The target prefix of every operation.
pub const TARGET_PREFIX: &str = "Firehose_20150804.";

/// Request bodies larger than this are refused (413) before they are read:
/// the largest valid request, a `PutRecordBatch` of 4 MiB, is about 5.4 MiB
/// once its records are base64.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// An error as Firehose answers it: `{"__type": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
#[non_exhaustive]
pub struct ApiError {
    /// `InvalidArgumentException`, `ResourceNotFoundException`, ...
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { kind, message: message.into() }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("InvalidArgumentException", message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            "ServiceUnavailableException" => StatusCode::SERVICE_UNAVAILABLE,
            "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
            "UnknownOperationException" => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        respond(self.status(), &json!({ "__type": self.kind, "message": self.message }))
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).expect("JSON serializes"))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-amz-json-1.1"));
    response.headers_mut().insert(
        "x-amzn-requestid",
        http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid is a header value"),
    );
    response
}

/// The Firehose endpoint of a stack; stops when dropped.
pub struct FirehoseServer {
    url: String,
    firehose: Arc<Firehose>,
    stop: CancellationToken,
}

impl FirehoseServer {
    /// Serves `firehose` on a free loopback port.
    pub async fn start(firehose: Arc<Firehose>) -> std::io::Result<FirehoseServer> {
        let stop = CancellationToken::new();
        let serving = firehose.clone();
        let addr = super::serve::serve("firehose", stop.clone(), move |req| {
            let firehose = serving.clone();
            async move { handle(&firehose, req).await }
        })
        .await?;
        Ok(FirehoseServer { url: format!("http://{addr}"), firehose, stop })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn firehose(&self) -> &Arc<Firehose> {
        &self.firehose
    }
}

impl Drop for FirehoseServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(firehose: &Firehose, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return ApiError::new(
            "UnknownOperationException",
            format!("{} is not a Firehose call: POST / with X-Amz-Target", req.method()),
        )
        .response();
    }
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let Some(operation) = target.strip_prefix(TARGET_PREFIX).map(str::to_owned) else {
        return ApiError::new(
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not a Firehose operation (Firehose_20150804.<Operation>)"),
        )
        .response();
    };
    let bytes = match read_body(req, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return respond(body_status(&e), &json!({ "__type": "SerializationException", "message": e.to_string() }))
        }
    };
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => {
                return ApiError::new("SerializationException", "the request body must be a JSON object").response()
            }
            Err(e) => {
                return ApiError::new("SerializationException", format!("the request body is not JSON: {e}")).response()
            }
        }
    };
    match firehose.call(&operation, &body).await {
        Ok(answer) => respond(StatusCode::OK, &answer),
        Err(e) => e.response(),
    }
}
