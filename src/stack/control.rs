//! The control endpoint: a small HTTP/JSON API on a running stack, so tests in
//! any language can move its clock, flush it, wait for it and read what
//! landed. `streamlab clock|flush|settle|status|landing` are thin clients of
//! it; they find it through `STREAMLAB_CONTROL` or `--control URL`.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/status` | | [`Status`](super::Status) |
//! | `GET /v1/env` | | the stack's environment, `{"KAFKA_BOOTSTRAP": ..., "AWS_ENDPOINT_URL_FIREHOSE": ..., ...}` |
//! | `POST /v1/clock/advance` | `{"by": "5m"}` | `{"now_ms": ..., "now": "..."}` once due buffers landed |
//! | `POST /v1/flush` | `{"stream": "name"}` or `{}` | `{"flushed": [names]}` once the objects landed |
//! | `POST /v1/settle` | `{"timeout": "30s"}` | `{"settled": true}`, or 504 with what is behind |
//! | `GET /v1/landing?stream=name&mask=uuid,random,time&redact=.field` | | [`Landing`](crate::landing::Landing), masked as asked |
//!
//! Errors answer 4xx/5xx with `{"error": "message"}`. Durations are written
//! as `300ms`, `30s`, `5m`, `1h`. The request and answer types below are the
//! protocol: the server, the CLI and the Rust API all use them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::serve::{body_status, read_body};
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
    pub async fn start(stack: Arc<Stack>, endpoints: Vec<(String, String)>) -> std::io::Result<ControlServer> {
        let endpoints = Arc::new(endpoints);
        let stop = CancellationToken::new();
        let addr = super::serve::serve("control", stop.clone(), move |req| {
            let (stack, endpoints) = (stack.clone(), endpoints.clone());
            async move { handle(&stack, &endpoints, req).await }
        })
        .await?;
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
        StackError::NotLanding { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

/// The routes, named once for the server and its clients.
pub mod routes {
    pub const STATUS: &str = "/v1/status";
    pub const ENV: &str = "/v1/env";
    pub const ADVANCE: &str = "/v1/clock/advance";
    pub const FLUSH: &str = "/v1/flush";
    pub const SETTLE: &str = "/v1/settle";
    pub const LANDING: &str = "/v1/landing";
    pub const LOGS: &str = "/v1/logs";
    pub const USAGE: &str = "/v1/usage";
    pub const OBJECTS: &str = "/v1/objects";
    /// Prometheus's conventional path.
    pub const METRICS: &str = "/metrics";
}

/// The longest duration a request may give: a clock advanced by more has
/// left every buffer interval and retention behind, and a longer settle is
/// a mistake.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A duration as JSON gives it: `"5m"`, or a number of milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JsonDuration {
    Text(String),
    Millis(u64),
}

impl JsonDuration {
    pub fn of(duration: Duration) -> JsonDuration {
        JsonDuration::Text(humantime::format_duration(duration).to_string())
    }

    fn get(&self, field: &str) -> Result<Duration, String> {
        let duration = match self {
            JsonDuration::Millis(ms) => Duration::from_millis(*ms),
            JsonDuration::Text(text) => humantime::parse_duration(text)
                .map_err(|e| format!("{field}: {text:?} is not a duration such as 300ms, 30s or 5m ({e})"))?,
        };
        if duration > MAX_DURATION {
            return Err(format!(
                "{field}: {} is longer than the 10 years a stack's clock moves or waits at once; give a shorter duration",
                humantime::format_duration(duration)
            ));
        }
        Ok(duration)
    }
}

/// `POST /v1/clock/advance`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceRequest {
    pub by: JsonDuration,
}

/// The clock after an advance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockAnswer {
    pub now_ms: i64,
    pub now: String,
}

/// `POST /v1/flush`: one stream, or every stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushRequest {
    #[serde(default)]
    pub stream: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlushAnswer {
    pub flushed: Vec<String>,
}

/// `POST /v1/settle`; 30 s without a timeout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    #[serde(default)]
    pub timeout: Option<JsonDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleAnswer {
    pub settled: bool,
}

/// `GET /v1/landing`'s query: a stream, and masks (`None`: unmasked).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LandingQuery {
    pub stream: Option<String>,
    pub masks: Option<Masks>,
}

/// What the query string escapes: everything but RFC 3986's unreserved
/// characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

impl LandingQuery {
    /// The path with its query string.
    pub fn path(&self) -> String {
        let mut query = Vec::new();
        if let Some(stream) = &self.stream {
            query.push(format!("stream={}", utf8_percent_encode(stream, QUERY_VALUE)));
        }
        if let Some(masks) = &self.masks {
            let list: Vec<&str> = [("uuid", masks.uuid), ("random", masks.random), ("time", masks.time)]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(name, _)| *name)
                .collect();
            query.push(format!("mask={}", if list.is_empty() { "none".to_owned() } else { list.join(",") }));
            query.extend(masks.redact.iter().map(|p| format!("redact={}", utf8_percent_encode(p, QUERY_VALUE))));
        }
        match query.is_empty() {
            true => routes::LANDING.to_owned(),
            false => format!("{}?{}", routes::LANDING, query.join("&")),
        }
    }

    /// Reads a query string; the masks are empty when none is asked for.
    pub fn parse(query: &str) -> Result<(Option<String>, Masks), String> {
        let params: Vec<(&str, String)> =
            query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k, decode(v))).collect();
        let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let mut masks = param("mask").map(|m| Masks::parse_list(&m)).transpose()?.unwrap_or_default();
        for (_, path) in params.iter().filter(|(k, _)| *k == "redact") {
            check_redact_path(path)?;
            masks.redact.push(path.clone());
        }
        Ok((param("stream"), masks))
    }
}

/// A query value: `+` is a space, then percent-decoding.
fn decode(value: &str) -> String {
    percent_decode_str(&value.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// The request's JSON body; `None` when it is empty.
/// A request the control API refuses: 400, or 413 for a body over the cap.
struct Refusal(StatusCode, String);

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Refusal(StatusCode::BAD_REQUEST, message)
    }
}

impl Refusal {
    fn response(self) -> Response<Full<Bytes>> {
        error(self.0, self.1)
    }
}

/// Control requests are small JSON documents.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<Option<T>, Refusal> {
    let bytes = read_body(req, MAX_BODY_BYTES).await.map_err(|e| Refusal(body_status(&e), e.to_string()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| Refusal::from(format!("invalid JSON body: {e}")))
}

fn ok<T: Serialize>(answer: &T) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, &json!(answer))
}

async fn handle(stack: &Stack, endpoints: &[(String, String)], req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, routes::STATUS) => ok(&stack.status().await),
        (Method::GET, routes::USAGE) => ok(&stack.usage()),
        (Method::GET, routes::OBJECTS) => ok(&stack.provenance()),
        (Method::GET, routes::ENV) => {
            let env: serde_json::Map<String, Value> =
                stack.env().into_iter().chain(endpoints.iter().cloned()).map(|(k, v)| (k, Value::String(v))).collect();
            respond(StatusCode::OK, &Value::Object(env))
        }
        (Method::POST, routes::ADVANCE) => {
            let parsed = body::<AdvanceRequest>(req)
                .await
                .and_then(|b| b.ok_or_else(|| Refusal::from("a body {\"by\": \"5m\"} is required".to_owned())));
            let by = match parsed.and_then(|b| b.by.get("by").map_err(Refusal::from)) {
                Ok(by) => by,
                Err(e) => return e.response(),
            };
            match stack.advance(by).await {
                Ok(now_ms) => ok(&ClockAnswer { now_ms, now: rfc3339_millis(now_ms) }),
                Err(e) => stack_error(&e),
            }
        }
        (Method::POST, routes::FLUSH) => {
            let stream = match body::<FlushRequest>(req).await {
                Ok(b) => b.and_then(|b| b.stream),
                Err(e) => return e.response(),
            };
            match stack.flush(stream.as_deref()).await {
                Ok(()) => {
                    let flushed = stack
                        .specs()
                        .into_iter()
                        .map(|s| s.name().to_owned())
                        .filter(|n| stream.as_deref().is_none_or(|s| s == n))
                        .collect();
                    ok(&FlushAnswer { flushed })
                }
                Err(e) => stack_error(&e),
            }
        }
        (Method::POST, routes::SETTLE) => {
            let timeout = match body::<SettleRequest>(req).await {
                Ok(Some(SettleRequest { timeout: Some(t) })) => match t.get("timeout") {
                    Ok(t) => t,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                },
                Ok(_) => Duration::from_secs(30),
                Err(e) => return e.response(),
            };
            match stack.settle(timeout).await {
                Ok(()) => ok(&SettleAnswer { settled: true }),
                Err(e) => stack_error(&e),
            }
        }
        (Method::GET, routes::LANDING) => {
            let (stream, masks) = match LandingQuery::parse(&query) {
                Ok(parsed) => parsed,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match stack.landing(stream.as_deref()).await {
                Ok(landing) if masks.is_empty() => ok(&landing),
                Ok(landing) => ok(&landing.masked(&stack.specs(), &masks)),
                Err(e) => stack_error(&e),
            }
        }
        (Method::GET, routes::METRICS) => {
            let mut response = Response::new(Full::new(Bytes::from(stack.prometheus().await)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        (Method::GET, routes::LOGS) => {
            let stream = match LandingQuery::parse(&query) {
                Ok((stream, _)) => stream,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match stack.error_logs(stream.as_deref()) {
                Ok(lines) => ok(&lines),
                Err(e) => stack_error(&e),
            }
        }
        (
            _,
            routes::STATUS
            | routes::ENV
            | routes::ADVANCE
            | routes::FLUSH
            | routes::SETTLE
            | routes::LANDING
            | routes::LOGS
            | routes::USAGE
            | routes::OBJECTS,
        ) => error(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed on {path}", req.method())),
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {path}; see GET {}, {}, {}, {}, {}, {}, {} and POST {}, {}, {}",
                routes::STATUS,
                routes::USAGE,
                routes::OBJECTS,
                routes::ENV,
                routes::LANDING,
                routes::LOGS,
                routes::METRICS,
                routes::ADVANCE,
                routes::FLUSH,
                routes::SETTLE
            ),
        ),
    }
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

    /// Moves the manual clock forward; answers once due buffers landed.
    pub async fn advance(&self, by: Duration) -> Result<ClockAnswer, ControlError> {
        self.call(Method::POST, routes::ADVANCE, Some(json!(AdvanceRequest { by: JsonDuration::of(by) }))).await
    }

    pub async fn flush(&self, stream: Option<String>) -> Result<FlushAnswer, ControlError> {
        self.call(Method::POST, routes::FLUSH, Some(json!(FlushRequest { stream }))).await
    }

    pub async fn settle(&self, timeout: Duration) -> Result<SettleAnswer, ControlError> {
        let request = SettleRequest { timeout: Some(JsonDuration::of(timeout)) };
        self.call(Method::POST, routes::SETTLE, Some(json!(request))).await
    }

    pub async fn status(&self) -> Result<super::Status, ControlError> {
        self.call(Method::GET, routes::STATUS, None).await
    }

    /// What the run measured so far, for `cost --control`.
    pub async fn usage(&self) -> Result<crate::cost::RunUsage, ControlError> {
        self.call(Method::GET, routes::USAGE, None).await
    }

    /// The objects the stack's deliveries landed, with their offsets.
    pub async fn provenance(&self) -> Result<Vec<crate::inspect::Provenance>, ControlError> {
        self.call(Method::GET, routes::OBJECTS, None).await
    }

    /// The status as the stack wrote it, for printing as JSON.
    pub async fn status_json(&self) -> Result<Value, ControlError> {
        self.get(routes::STATUS).await
    }

    pub async fn landing(&self, query: &LandingQuery) -> Result<crate::landing::Landing, ControlError> {
        self.call(Method::GET, &query.path(), None).await
    }

    /// Firehose's error-log events of `stream` (or every logging stream).
    pub async fn logs(&self, stream: Option<&str>) -> Result<Vec<super::LogLine>, ControlError> {
        let path = match stream {
            Some(s) => format!("{}?stream={}", routes::LOGS, utf8_percent_encode(s, QUERY_VALUE)),
            None => routes::LOGS.to_owned(),
        };
        self.call(Method::GET, &path, None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ControlError> {
        let value = self.request(method, path, body).await?;
        serde_json::from_value(value).map_err(|e| ControlError::NoStack {
            url: self.url.clone(),
            detail: format!("its answer to {path} is not what streamlab answers ({e}); is it the same version?"),
        })
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
        assert_eq!(decode("orders%2Dto-s3"), "orders-to-s3");
        assert_eq!(decode("a+b%"), "a b%");
    }

    #[test]
    fn a_landing_query_reads_back_as_written() {
        let masks = Masks { redact: vec![".items[].sku".into()], ..Masks::parse_list("uuid,time").unwrap() };
        let query = LandingQuery { stream: Some("orders to/s3".into()), masks: Some(masks.clone()) };
        let path = query.path();
        let (stream, parsed) = LandingQuery::parse(path.split_once('?').unwrap().1).unwrap();
        assert_eq!((stream.as_deref(), parsed), (Some("orders to/s3"), masks));
    }

    #[tokio::test]
    async fn a_missing_stack_is_named_with_the_fix() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = ControlClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client.get("/v1/status").await.unwrap_err().to_string();
        assert!(err.contains("no streamlab stack answers") && err.contains("streamlab up"), "{err}");
    }
}
