//! CloudWatch Logs for the stack: log groups and streams, events put by a
//! team's code (`PutLogEvents`) or written by Firehose for its delivery
//! errors (`CloudWatchLoggingOptions`), read back with `GetLogEvents` and
//! `FilterLogEvents` (terms, and JSON conditions such as
//! `{ $.errorCode = "S3.NoSuchBucket" }`). JSON 1.1, target prefix
//! `Logs_20140328`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::error::ApiError;

/// The environment variable SDKs and the AWS CLI read the endpoint from.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS";
/// The target prefix of every operation.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
/// Events kept per log stream; the oldest go first.
pub const MAX_EVENTS: usize = 100_000;
/// Events per `PutLogEvents` call.
pub const MAX_BATCH: usize = 10_000;

/// One log event.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub timestamp_ms: i64,
    pub message: String,
    pub ingestion_ms: i64,
}

#[derive(Debug, Default)]
struct LogStream {
    created_ms: i64,
    events: VecDeque<LogEvent>,
}

#[derive(Debug, Default)]
struct LogGroup {
    created_ms: i64,
    streams: BTreeMap<String, LogStream>,
}

/// Every log group of a stack.
#[derive(Debug, Default)]
pub struct Logs {
    groups: Mutex<BTreeMap<String, LogGroup>>,
}

fn not_found(what: &str) -> ApiError {
    ApiError::new("ResourceNotFoundException", format!("The specified {what} does not exist."))
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new("InvalidParameterException", format!("{name} is required: 1-512 characters")))
}

impl Logs {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LogGroup>> {
        self.groups.lock().expect("logs lock")
    }

    /// Appends `message` to `group`/`stream`, making both if missing
    /// (Firehose's own errors; AWS expects them to exist). Returns whether
    /// they had to be made.
    pub fn append(&self, group: &str, stream: &str, timestamp_ms: i64, message: String, now_ms: i64) -> bool {
        let mut groups = self.lock();
        let made_group = !groups.contains_key(group);
        let g =
            groups.entry(group.to_owned()).or_insert_with(|| LogGroup { created_ms: now_ms, ..LogGroup::default() });
        let made_stream = !g.streams.contains_key(stream);
        let s = g
            .streams
            .entry(stream.to_owned())
            .or_insert_with(|| LogStream { created_ms: now_ms, ..LogStream::default() });
        push(s, LogEvent { timestamp_ms, message, ingestion_ms: now_ms });
        made_group || made_stream
    }

    /// The events of `group` (every stream, or one), oldest first.
    pub fn events(&self, group: &str, stream: Option<&str>) -> Vec<(String, LogEvent)> {
        let groups = self.lock();
        let Some(g) = groups.get(group) else { return Vec::new() };
        let mut out: Vec<(String, LogEvent)> = g
            .streams
            .iter()
            .filter(|(name, _)| stream.is_none_or(|s| s == name.as_str()))
            .flat_map(|(name, s)| s.events.iter().map(move |e| (name.clone(), e.clone())))
            .collect();
        out.sort_by_key(|(_, e)| e.timestamp_ms);
        out
    }

    /// Runs one Logs operation at clock time `now_ms`.
    pub fn call(&self, operation: &str, body: &Value, now_ms: i64) -> Result<Value, ApiError> {
        match operation {
            "CreateLogGroup" => {
                let name = field(body, "logGroupName")?;
                let mut groups = self.lock();
                if groups.contains_key(name) {
                    return Err(ApiError::new("ResourceAlreadyExistsException", "The specified log group already exists"));
                }
                groups.insert(name.to_owned(), LogGroup { created_ms: now_ms, ..LogGroup::default() });
                Ok(json!({}))
            }
            "CreateLogStream" => {
                let (group, stream) = (field(body, "logGroupName")?, field(body, "logStreamName")?);
                let mut groups = self.lock();
                let g = groups.get_mut(group).ok_or_else(|| not_found("log group"))?;
                if g.streams.contains_key(stream) {
                    return Err(ApiError::new("ResourceAlreadyExistsException", "The specified log stream already exists"));
                }
                g.streams.insert(stream.to_owned(), LogStream { created_ms: now_ms, ..LogStream::default() });
                Ok(json!({}))
            }
            "DeleteLogGroup" => {
                let name = field(body, "logGroupName")?;
                self.lock().remove(name).map(|_| json!({})).ok_or_else(|| not_found("log group"))
            }
            "DescribeLogGroups" => {
                let prefix = body.get("logGroupNamePrefix").and_then(Value::as_str).unwrap_or("");
                let groups = self.lock();
                let list: Vec<Value> = groups
                    .iter()
                    .filter(|(name, _)| name.starts_with(prefix))
                    .map(|(name, g)| {
                        json!({
                            "logGroupName": name,
                            "creationTime": g.created_ms,
                            "arn": format!("arn:aws:logs:us-east-1:000000000000:log-group:{name}:*"),
                            "storedBytes": g.streams.values().flat_map(|s| &s.events).map(|e| e.message.len()).sum::<usize>(),
                        })
                    })
                    .collect();
                Ok(json!({ "logGroups": list }))
            }
            "DescribeLogStreams" => {
                let group = field(body, "logGroupName")?;
                let prefix = body.get("logStreamNamePrefix").and_then(Value::as_str).unwrap_or("");
                let groups = self.lock();
                let g = groups.get(group).ok_or_else(|| not_found("log group"))?;
                let list: Vec<Value> = g
                    .streams
                    .iter()
                    .filter(|(name, _)| name.starts_with(prefix))
                    .map(|(name, s)| {
                        let mut v = json!({ "logStreamName": name, "creationTime": s.created_ms,
                            "arn": format!("arn:aws:logs:us-east-1:000000000000:log-group:{group}:log-stream:{name}") });
                        if let (Some(first), Some(last)) = (s.events.front(), s.events.back()) {
                            v["firstEventTimestamp"] = json!(first.timestamp_ms);
                            v["lastEventTimestamp"] = json!(last.timestamp_ms);
                            v["lastIngestionTime"] = json!(last.ingestion_ms);
                        }
                        v
                    })
                    .collect();
                Ok(json!({ "logStreams": list }))
            }
            "PutLogEvents" => {
                let (group, stream) = (field(body, "logGroupName")?, field(body, "logStreamName")?);
                let events = body.get("logEvents").and_then(Value::as_array).ok_or_else(|| {
                    ApiError::new("InvalidParameterException", "logEvents is required: 1-10000 {timestamp, message}")
                })?;
                if events.is_empty() || events.len() > MAX_BATCH {
                    return Err(ApiError::new("InvalidParameterException", format!("logEvents must hold 1-{MAX_BATCH} events")));
                }
                let parsed: Vec<LogEvent> = events
                    .iter()
                    .map(|e| {
                        let timestamp_ms = e.get("timestamp").and_then(Value::as_i64).ok_or_else(|| {
                            ApiError::new("InvalidParameterException", "every log event needs a timestamp (epoch milliseconds)")
                        })?;
                        let message = e.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()).ok_or_else(|| {
                            ApiError::new("InvalidParameterException", "every log event needs a message of at least 1 character")
                        })?;
                        Ok(LogEvent { timestamp_ms, message: message.to_owned(), ingestion_ms: now_ms })
                    })
                    .collect::<Result<_, ApiError>>()?;
                let mut groups = self.lock();
                let g = groups.get_mut(group).ok_or_else(|| not_found("log group"))?;
                let s = g.streams.get_mut(stream).ok_or_else(|| not_found("log stream"))?;
                for event in parsed {
                    push(s, event);
                }
                Ok(json!({ "nextSequenceToken": format!("{:056}", s.events.len()) }))
            }
            "GetLogEvents" => {
                let (group, stream) = (field(body, "logGroupName")?, field(body, "logStreamName")?);
                let groups = self.lock();
                let g = groups.get(group).ok_or_else(|| not_found("log group"))?;
                let s = g.streams.get(stream).ok_or_else(|| not_found("log stream"))?;
                let (start, end) = window(body);
                let events: Vec<Value> = s
                    .events
                    .iter()
                    .filter(|e| e.timestamp_ms >= start && e.timestamp_ms < end)
                    .map(|e| json!({ "timestamp": e.timestamp_ms, "message": e.message, "ingestionTime": e.ingestion_ms }))
                    .collect();
                Ok(json!({ "events": events, "nextForwardToken": "f/0", "nextBackwardToken": "b/0" }))
            }
            "FilterLogEvents" => {
                let group = field(body, "logGroupName")?;
                if !self.lock().contains_key(group) {
                    return Err(not_found("log group"));
                }
                let pattern = Pattern::parse(body.get("filterPattern").and_then(Value::as_str).unwrap_or(""))?;
                let names: Option<Vec<&str>> =
                    body.get("logStreamNames").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect());
                let (start, end) = window(body);
                let events: Vec<Value> = self
                    .events(group, None)
                    .into_iter()
                    .filter(|(stream, _)| names.as_ref().is_none_or(|n| n.contains(&stream.as_str())))
                    .filter(|(_, e)| e.timestamp_ms >= start && e.timestamp_ms < end && pattern.matches(&e.message))
                    .map(|(stream, e)| {
                        json!({ "logStreamName": stream, "timestamp": e.timestamp_ms, "message": e.message,
                                "ingestionTime": e.ingestion_ms, "eventId": format!("{}{:020}", e.timestamp_ms, e.ingestion_ms) })
                    })
                    .collect();
                Ok(json!({ "events": events, "searchedLogStreams": [] }))
            }
            other => Err(ApiError::new(
                "UnknownOperationException",
                format!("{other} is not a CloudWatch Logs operation streamlab answers (CreateLogGroup, CreateLogStream, DescribeLogGroups, DescribeLogStreams, GetLogEvents, FilterLogEvents, PutLogEvents, DeleteLogGroup)"),
            )),
        }
    }
}

/// Where a stream's delivery errors go: `CloudWatchLoggingOptions` with
/// `Enabled: true`.
pub fn logging_target(destination: &Value) -> Option<(String, String)> {
    let options = destination.get("CloudWatchLoggingOptions")?;
    if options.get("Enabled").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let group = options.get("LogGroupName").and_then(Value::as_str)?.to_owned();
    let stream = options.get("LogStreamName").and_then(Value::as_str).unwrap_or("DestinationDelivery").to_owned();
    Some((group, stream))
}

/// Firehose's error code and message for a failed S3 PUT, from S3's error
/// code (`firehose-api.md` part 2).
pub fn s3_error(s3_code: &str) -> (&'static str, &'static str) {
    match s3_code {
        "NoSuchBucket" => (
            "S3.NoSuchBucket",
            "The specified bucket does not exist. Create the bucket or use a different bucket that does exist.",
        ),
        "AccessDenied" => (
            "S3.AccessDenied",
            "Access was denied. Ensure that the trust policy for the provided IAM role allows Firehose to assume the role, and the access policy allows access to the S3 bucket.",
        ),
        "AccountProblem" => ("S3.AccountProblem", "There is a problem with your AWS account that prevents the operation from completing successfully."),
        "AllAccessDisabled" => ("S3.AllAccessDisabled", "All access to this S3 resource has been disabled."),
        "InvalidPayer" => ("S3.InvalidPayer", "All access to this object has been disabled."),
        "NotSignedUp" => ("S3.NotSignedUp", "The account is not signed up for Amazon S3."),
        "MethodNotAllowed" => ("S3.MethodNotAllowed", "The specified method is not allowed against this resource."),
        _ => (
            "InternalError",
            "An internal error occurred while attempting to deliver data. Delivery will be retried; if the error persists, then it will be reported to AWS for resolution.",
        ),
    }
}

/// One error event as Firehose writes it.
pub fn error_event(stream_arn: &str, bucket: &str, version: u32, code: &str, message: &str) -> String {
    json!({
        "deliveryStreamARN": stream_arn,
        "destination": format!("arn:aws:s3:::{bucket}"),
        "deliveryStreamVersionId": version,
        "message": message,
        "errorCode": code,
    })
    .to_string()
}

fn push(stream: &mut LogStream, event: LogEvent) {
    if stream.events.len() >= MAX_EVENTS {
        stream.events.pop_front();
    }
    stream.events.push_back(event);
}

fn window(body: &Value) -> (i64, i64) {
    (
        body.get("startTime").and_then(Value::as_i64).unwrap_or(i64::MIN),
        body.get("endTime").and_then(Value::as_i64).unwrap_or(i64::MAX),
    )
}

/// A filter pattern: empty (everything), terms (every one in the message;
/// `"quoted phrases"` too), or one JSON condition `{ $.a.b = "v" }` (`=`
/// and `!=`, string or number, `*` as a wildcard at the end of a string).
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    All,
    Terms(Vec<String>),
    Json { path: Vec<String>, equal: bool, value: Value },
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, ApiError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Pattern::All);
        }
        let bad =
            |why: &str| ApiError::new("InvalidParameterException", format!("Invalid filter pattern {text:?}: {why}"));
        if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            let (lhs, equal, rhs) = match (inner.split_once("!="), inner.split_once('=')) {
                (Some((l, r)), _) => (l, false, r),
                (None, Some((l, r))) => (l, true, r),
                _ => return Err(bad("a JSON condition is { $.field = value }")),
            };
            let path = lhs.trim().strip_prefix("$.").ok_or_else(|| bad("the selector starts with $."))?;
            let rhs = rhs.trim();
            let value = match rhs.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                Some(s) => Value::String(s.to_owned()),
                None => match rhs.parse::<f64>() {
                    Ok(n) => json!(n),
                    Err(_) => Value::String(rhs.to_owned()),
                },
            };
            return Ok(Pattern::Json { path: path.split('.').map(str::to_owned).collect(), equal, value });
        }
        let mut terms = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            rest = rest.trim_start();
            if let Some(quoted) = rest.strip_prefix('"') {
                let (term, after) = quoted.split_once('"').ok_or_else(|| bad("an unclosed quote"))?;
                terms.push(term.to_owned());
                rest = after;
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                terms.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
        Ok(Pattern::Terms(terms.into_iter().filter(|t| !t.is_empty()).collect()))
    }

    pub fn matches(&self, message: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Terms(terms) => terms.iter().all(|t| message.contains(t.as_str())),
            Pattern::Json { path, equal, value } => {
                let Ok(parsed) = serde_json::from_str::<Value>(message) else { return false };
                let found = path.iter().try_fold(&parsed, |v, key| v.get(key));
                let same = match (found, value) {
                    (Some(Value::String(s)), Value::String(want)) => match want.strip_suffix('*') {
                        Some(prefix) => s.starts_with(prefix),
                        None => s == want,
                    },
                    (Some(Value::Number(n)), Value::Number(want)) => n.as_f64() == want.as_f64(),
                    (Some(other), want) => other == want,
                    (None, _) => false,
                };
                same == *equal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_patterns_match_terms_and_json_fields() {
        let event = r#"{"deliveryStreamARN":"arn","errorCode":"S3.NoSuchBucket","message":"The specified bucket does not exist."}"#;
        assert!(Pattern::parse("").unwrap().matches(event));
        assert!(Pattern::parse("NoSuchBucket").unwrap().matches(event));
        assert!(Pattern::parse(r#""bucket does not""#).unwrap().matches(event));
        assert!(!Pattern::parse("AccessDenied").unwrap().matches(event));
        assert!(Pattern::parse(r#"{ $.errorCode = "S3.NoSuchBucket" }"#).unwrap().matches(event));
        assert!(Pattern::parse(r#"{ $.errorCode = "S3.*" }"#).unwrap().matches(event));
        assert!(!Pattern::parse(r#"{ $.errorCode != "S3.NoSuchBucket" }"#).unwrap().matches(event));
        assert!(Pattern::parse("{ errorCode = 1 }").is_err());
    }

    #[test]
    fn put_needs_the_group_and_stream_and_firehose_makes_its_own() {
        let logs = Logs::default();
        let put = json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [{"timestamp": 5, "message": "hi"}]});
        assert_eq!(logs.call("PutLogEvents", &put, 0).unwrap_err().code, "ResourceNotFoundException");
        logs.call("CreateLogGroup", &json!({"logGroupName": "g"}), 0).unwrap();
        logs.call("CreateLogStream", &json!({"logGroupName": "g", "logStreamName": "s"}), 0).unwrap();
        logs.call("PutLogEvents", &put, 9).unwrap();
        let got = logs.call("GetLogEvents", &json!({"logGroupName": "g", "logStreamName": "s"}), 9).unwrap();
        assert_eq!(got["events"][0]["message"], "hi");
        assert!(logs.append("/aws/kinesisfirehose/x", "DestinationDelivery", 1, "{}".into(), 1), "made");
        assert!(!logs.append("/aws/kinesisfirehose/x", "DestinationDelivery", 2, "{}".into(), 2));
        assert_eq!(logs.events("/aws/kinesisfirehose/x", None).len(), 2);
    }
}
