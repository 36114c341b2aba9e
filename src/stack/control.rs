//! The control endpoint: a small HTTP/JSON API on a running stack, so tests in
//! any language can move its clock, flush it, wait for it and read what
//! landed. `streamlab clock|flush|settle|status|landing` are thin clients of
//! it; they find it through `STREAMLAB_CONTROL` or `--control URL`.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/status` | | [`Status`](super::Status) |
//! | `GET /v1/env` | | the stack's environment, `{"KAFKA_BOOTSTRAP": ..., ...}` |
//! | `POST /v1/clock/advance` | `{"by": "5m"}` | `{"now_ms": ..., "now": "..."}` once due buffers landed |
//! | `POST /v1/flush` | `{"stream": "name"}` or `{}` | `{"flushed": [names]}` once the objects landed |
//! | `POST /v1/settle` | `{"timeout": "30s"}` | `{"settled": true}`, or 504 with what is behind |
//! | `GET /v1/landing?stream=name&mask=uuid,random,time&redact=.field` | | [`Landing`](crate::landing::Landing), masked as asked |
//!
//! Errors answer 4xx/5xx with `{"error": "message"}`. Durations are written
//! as `300ms`, `30s`, `5m`, `1h`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Stack, StackError};
use crate::clock::rfc3339_millis;
use crate::landing::{check_redact_path, Masks};

/// Environment variable naming the control endpoint of a running stack.
pub const CONTROL_ENV: &str = "STREAMLAB_CONTROL";

/// The control endpoint of a stack; stops when dropped.
pub struct ControlServer {
    url: String,
    stop: CancellationToken,
}

impl ControlServer {
    /// Serves `stack` on a free loopback port.
    pub async fn start(stack: Arc<Stack>) -> std::io::Result<ControlServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    () = stopped.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(e) => { debug!(error = %e, "control accept failed"); continue; }
                    },
                };
                let stack = stack.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let stack = stack.clone();
                    async move { Ok::<_, Infallible>(handle(&stack, req).await) }
                });
                let conn = http.serve_connection(TokioIo::new(socket), service).into_owned();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = stopped.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
        Ok(ControlServer { url: format!("http://{addr}"), stop })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).expect("JSON serializes"))));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    respond(status, &json!({ "error": message.to_string() }))
}

fn stack_error(e: &StackError) -> Response<Full<Bytes>> {
    let status = match e {
        StackError::UnknownStream { .. } => StatusCode::NOT_FOUND,
        StackError::ClockNotManual { .. } => StatusCode::CONFLICT,
        StackError::SettleTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

/// A duration as JSON gives it: `"5m"`, or a number of milliseconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonDuration {
    Text(String),
    Millis(u64),
}

impl JsonDuration {
    fn get(&self, field: &str) -> Result<Duration, String> {
        match self {
            JsonDuration::Millis(ms) => Ok(Duration::from_millis(*ms)),
            JsonDuration::Text(text) => humantime::parse_duration(text)
                .map_err(|e| format!("{field}: {text:?} is not a duration such as 300ms, 30s or 5m ({e})")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    by: JsonDuration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlushBody {
    #[serde(default)]
    stream: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettleBody {
    #[serde(default)]
    timeout: Option<JsonDuration>,
}

/// The request's JSON body; `None` when it is empty.
async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<Option<T>, String> {
    let bytes = req.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("invalid JSON body: {e}"))
}

async fn handle(stack: &Stack, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/status") => respond(StatusCode::OK, &json!(stack.status().await)),
        (Method::GET, "/v1/env") => {
            let env: serde_json::Map<String, Value> =
                stack.env().into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            respond(StatusCode::OK, &Value::Object(env))
        }
        (Method::POST, "/v1/clock/advance") => {
            let parsed = body::<AdvanceBody>(req).await.and_then(|b| b.ok_or_else(|| "a body {\"by\": \"5m\"} is required".to_owned()));
            let by = match parsed.and_then(|b| b.by.get("by")) {
                Ok(by) => by,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match stack.advance(by).await {
                Ok(now_ms) => respond(StatusCode::OK, &json!({ "now_ms": now_ms, "now": rfc3339_millis(now_ms) })),
                Err(e) => stack_error(&e),
            }
        }
        (Method::POST, "/v1/flush") => {
            let stream = match body::<FlushBody>(req).await {
                Ok(b) => b.and_then(|b| b.stream),
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match stack.flush(stream.as_deref()).await {
                Ok(()) => {
                    let flushed: Vec<&str> = stack
                        .specs()
                        .iter()
                        .map(|s| s.name.as_str())
                        .filter(|n| stream.as_deref().is_none_or(|s| s == *n))
                        .collect();
                    respond(StatusCode::OK, &json!({ "flushed": flushed }))
                }
                Err(e) => stack_error(&e),
            }
        }
        (Method::POST, "/v1/settle") => {
            let timeout = match body::<SettleBody>(req).await {
                Ok(Some(SettleBody { timeout: Some(t) })) => match t.get("timeout") {
                    Ok(t) => t,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                },
                Ok(_) => Duration::from_secs(30),
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match stack.settle(timeout).await {
                Ok(()) => respond(StatusCode::OK, &json!({ "settled": true })),
                Err(e) => stack_error(&e),
            }
        }
        (Method::GET, "/v1/landing") => {
            let params: Vec<(&str, String)> =
                query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k, percent_decode(v))).collect();
            let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
            let mut masks = match param("mask").map(|m| Masks::parse_list(&m)).transpose() {
                Ok(m) => m.unwrap_or_default(),
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            for (_, path) in params.iter().filter(|(k, _)| *k == "redact") {
                if let Err(e) = check_redact_path(path) {
                    return error(StatusCode::BAD_REQUEST, e);
                }
                masks.redact.push(path.clone());
            }
            match stack.landing(param("stream").as_deref()).await {
                Ok(landing) if masks.is_empty() => respond(StatusCode::OK, &json!(landing)),
                Ok(landing) => respond(StatusCode::OK, &json!(landing.masked(stack.specs(), &masks))),
                Err(e) => stack_error(&e),
            }
        }
        (_, "/v1/status" | "/v1/env" | "/v1/clock/advance" | "/v1/flush" | "/v1/settle" | "/v1/landing") => {
            error(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed on {path}", req.method()))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint {path}; see GET /v1/status, /v1/env, /v1/landing and POST /v1/clock/advance, /v1/flush, /v1/settle"),
        ),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no control endpoint given: set {CONTROL_ENV} (`streamlab up` writes it to its env file, e.g. `source .streamlab.env`) or pass --control URL")]
    NotConfigured,
    #[error("{url} is not a control URL such as http://127.0.0.1:45678")]
    BadUrl { url: String },
    #[error("no streamlab stack answers at {url} ({detail}); start one with `streamlab up --spec FILE`, or check {CONTROL_ENV} / --control")]
    NoStack { url: String, detail: String },
    #[error("the stack at {url} answered {status}: {message}")]
    Refused { url: String, status: u16, message: String },
}

/// A client of a stack's control endpoint.
#[derive(Debug, Clone)]
pub struct ControlClient {
    url: String,
    addr: String,
}

impl ControlClient {
    /// `url` from `--control`, else `STREAMLAB_CONTROL`.
    pub fn from_env(url: Option<String>) -> Result<ControlClient, ControlError> {
        let url = url.or_else(|| std::env::var(CONTROL_ENV).ok()).ok_or(ControlError::NotConfigured)?;
        ControlClient::new(&url)
    }

    pub fn new(url: &str) -> Result<ControlClient, ControlError> {
        let addr = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| ControlError::BadUrl { url: url.to_owned() })?;
        Ok(ControlClient { url: url.trim_end_matches('/').to_owned(), addr: addr.to_owned() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn get(&self, path: &str) -> Result<Value, ControlError> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, ControlError> {
        self.request(Method::POST, path, Some(body)).await
    }

    async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ControlError> {
        let no_stack = |detail: String| ControlError::NoStack { url: self.url.clone(), detail };
        let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(|e| no_stack(e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| no_stack(e.to_string()))?;
        tokio::spawn(conn);
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("JSON serializes")).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.addr)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .expect("a valid request");
        let response = sender.send_request(request).await.map_err(|e| no_stack(e.to_string()))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| no_stack(e.to_string()))?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| no_stack(format!("the answer is not JSON ({e}); is this a streamlab control endpoint?")))?;
        if !status.is_success() {
            return Err(ControlError::Refused {
                url: self.url.clone(),
                status: status.as_u16(),
                message: value["error"].as_str().map_or_else(|| value.to_string(), str::to_owned),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_urls_are_checked() {
        assert!(ControlClient::new("http://127.0.0.1:4000").is_ok());
        assert!(ControlClient::new("http://127.0.0.1:4000/").is_ok());
        assert!(ControlClient::new("127.0.0.1:4000").is_err());
        assert!(ControlClient::new("http://127.0.0.1:4000/v1").is_err());
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("orders%2Dto-s3"), "orders-to-s3");
        assert_eq!(percent_decode("a+b%"), "a b%");
    }

    #[tokio::test]
    async fn a_missing_stack_is_named_with_the_fix() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = ControlClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client.get("/v1/status").await.unwrap_err().to_string();
        assert!(err.contains("no streamlab stack answers") && err.contains("streamlab up"), "{err}");
    }
}
