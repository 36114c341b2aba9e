//! The CloudWatch endpoint of a stack: CloudWatch's three protocols
//! ([`crate::cloudwatch::protocol`]) on a loopback port, answering from the
//! stack's [`Monitor`](crate::cloudwatch::Monitor). `up` and `run` serve it
//! and write `AWS_ENDPOINT_URL_CLOUDWATCH`; beside it CloudWatch Logs
//! ([`LogsServer`], `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::stack::serve::{body_status, read_body};

use crate::clock::SharedClock;
use crate::cloudwatch::api::{ApiError, CloudWatch};
use crate::cloudwatch::logs::{Logs, TARGET_PREFIX};
use crate::cloudwatch::protocol::{self, Protocol};

/// Request bodies larger than this are refused before they are read: the
/// largest valid request, a `PutMetricData` of 1,000 items, is about 1 MB.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The CloudWatch endpoint; stops when dropped.
pub struct CloudWatchServer {
    url: String,
    stop: CancellationToken,
}

impl CloudWatchServer {
    /// Serves `api` on a free loopback port.
    pub async fn start(api: Arc<CloudWatch>) -> std::io::Result<CloudWatchServer> {
        let stop = CancellationToken::new();
        let addr = super::serve::serve("cloudwatch", stop.clone(), move |req| {
            let api = api.clone();
            async move { handle(&api, req).await }
        })
        .await?;
        Ok(CloudWatchServer { url: format!("http://{addr}"), stop })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for CloudWatchServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(api: &CloudWatch, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // Errors before the protocol is known answer in JSON 1.0's form.
    let guess = if parts.uri.path().starts_with("/service/") { Protocol::Cbor } else { Protocol::Json };
    if parts.method != Method::POST {
        let e =
            ApiError::new("InvalidAction", format!("{} is not a CloudWatch call: every protocol POSTs", parts.method));
        return protocol::encode_error(guess, &e);
    }
    let bytes = match read_body(Request::from_parts(parts.clone(), body), MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let mut response = protocol::encode_error(guess, &ApiError::new("InvalidParameterValue", e.to_string()));
            *response.status_mut() = body_status(&e);
            return response;
        }
    };
    let request = match protocol::decode(parts.uri.path(), &parts.headers, &bytes) {
        Ok(request) => request,
        Err(e) => return protocol::encode_error(guess, &e),
    };
    match api.call(&request.operation, &request.body) {
        Ok(answer) => protocol::encode(request.protocol, &request.operation, &answer),
        Err(e) => protocol::encode_error(request.protocol, &e),
    }
}

/// The CloudWatch Logs endpoint (JSON 1.1, `X-Amz-Target:
/// Logs_20140328.<Operation>`); stops when dropped.
pub struct LogsServer {
    url: String,
    stop: CancellationToken,
}

impl LogsServer {
    /// Serves `logs` on a free loopback port, timestamps on `clock`.
    pub async fn start(logs: Arc<Logs>, clock: SharedClock) -> std::io::Result<LogsServer> {
        let stop = CancellationToken::new();
        let addr = super::serve::serve("logs", stop.clone(), move |req| {
            let (logs, clock) = (logs.clone(), clock.clone());
            async move { handle_logs(&logs, clock.now_millis(), req).await }
        })
        .await?;
        Ok(LogsServer { url: format!("http://{addr}"), stop })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for LogsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn logs_answer(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-amz-json-1.1"));
    response
}

fn logs_error(e: &ApiError) -> Response<Full<Bytes>> {
    logs_answer(StatusCode::BAD_REQUEST, &serde_json::json!({ "__type": e.code, "message": e.message }))
}

async fn handle_logs(logs: &Logs, now_ms: i64, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let Some(operation) = target.strip_prefix(TARGET_PREFIX).map(str::to_owned) else {
        return logs_error(&ApiError::new(
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not a CloudWatch Logs operation ({TARGET_PREFIX}<Operation>)"),
        ));
    };
    let bytes = match read_body(req, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let mut response = logs_error(&ApiError::new("InvalidParameterException", e.to_string()));
            *response.status_mut() = body_status(&e);
            return response;
        }
    };
    let body: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        _ if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        _ => return logs_error(&ApiError::new("SerializationException", "the request body is not a JSON object")),
    };
    match logs.call(&operation, &body, now_ms) {
        Ok(answer) => logs_answer(StatusCode::OK, &answer),
        Err(e) => logs_error(&e),
    }
}
