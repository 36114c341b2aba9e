//! CloudWatch's three protocols, as its model lists them in the order SDKs
//! prefer them: `smithy-rpc-v2-cbor` (`POST
//! /service/GraniteServiceVersion20100801/operation/<Op>`, current boto3
//! and AWS CLI), JSON 1.0 (`X-Amz-Target:
//! GraniteServiceVersion20100801.<Op>`) and query (form-encoded
//! `Action=<Op>`, XML answers). Requests become one JSON value whatever
//! the protocol; answers are JSON values with timestamps marked
//! ([`timestamp`]) and written back in the request's protocol.

use bytes::Bytes;
use ciborium::value::Value as Cbor;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Number, Value};

use super::error::ApiError;

/// The target prefix (JSON 1.0) and service name (CBOR).
pub const SERVICE: &str = "GraniteServiceVersion20100801";
const XML_NAMESPACE: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";
/// The key marking a timestamp in an answer: `{"$timestamp": ms}`.
const TIMESTAMP: &str = "$timestamp";

/// Which protocol a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Cbor,
    Json,
    Query,
}

/// A request, whatever its protocol.
#[derive(Debug, Clone)]
pub struct Request {
    pub protocol: Protocol,
    pub operation: String,
    pub body: Value,
}

/// A timestamp in an answer, written in each protocol's form.
pub fn timestamp(ms: i64) -> Value {
    serde_json::json!({ TIMESTAMP: ms })
}

/// A request's protocol, operation and members.
pub fn decode(path: &str, headers: &HeaderMap, body: &[u8]) -> Result<Request, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/service/") {
        let (service, operation) = rest.split_once("/operation/").unwrap_or((rest, ""));
        if service != SERVICE || operation.is_empty() {
            return Err(ApiError::new(
                "UnknownOperationException",
                format!("{path} is not a CloudWatch operation (/service/{SERVICE}/operation/<Operation>)"),
            ));
        }
        let value = if body.is_empty() {
            Value::Object(Map::new())
        } else {
            let cbor: Cbor = ciborium::de::from_reader(body)
                .map_err(|e| ApiError::new("SerializationException", format!("the request body is not CBOR: {e}")))?;
            from_cbor(cbor)
        };
        return Ok(Request { protocol: Protocol::Cbor, operation: operation.to_owned(), body: value });
    }
    let target = header("x-amz-target");
    if let Some(operation) = target.strip_prefix(SERVICE).and_then(|t| t.strip_prefix('.')) {
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::new("SerializationException", format!("the request body is not JSON: {e}")))?
        };
        return Ok(Request { protocol: Protocol::Json, operation: operation.to_owned(), body: value });
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let Some(action) = form.iter().find(|(k, _)| k == "Action").map(|(_, v)| v.clone()) else {
        return Err(ApiError::new(
            "UnknownOperationException",
            "not a CloudWatch request: use the rpc-v2-cbor path, X-Amz-Target GraniteServiceVersion20100801.<Operation>, or a query form with Action",
        ));
    };
    let mut value = Value::Object(Map::new());
    for (key, v) in form.iter().filter(|(k, _)| k != "Action" && k != "Version") {
        insert_path(&mut value, &key.split('.').collect::<Vec<_>>(), v.clone());
    }
    Ok(Request { protocol: Protocol::Query, operation: action, body: value })
}

/// `A.member.2.B=v` into `{"A": [_, {"B": "v"}]}`.
fn insert_path(target: &mut Value, path: &[&str], leaf: String) {
    let Some((first, rest)) = path.split_first() else {
        *target = Value::String(leaf);
        return;
    };
    if *first == "member" {
        if let Some((index, rest)) = rest.split_first() {
            let Ok(index) = index.parse::<usize>() else { return };
            if !target.is_array() {
                *target = Value::Array(Vec::new());
            }
            let list = target.as_array_mut().expect("an array");
            // Members are 1-based and a form can list them in any order.
            if index == 0 || index > 10_000 {
                return;
            }
            while list.len() < index {
                list.push(Value::Null);
            }
            insert_path(&mut list[index - 1], rest, leaf);
            return;
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let slot = target.as_object_mut().expect("an object").entry(first.to_string()).or_insert(Value::Null);
    insert_path(slot, rest, leaf);
}

fn from_cbor(value: Cbor) -> Value {
    match value {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Integer(i) => {
            let i: i128 = i.into();
            i64::try_from(i).map(Value::from).unwrap_or_else(|_| Value::from(i as f64))
        }
        Cbor::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(b) => {
            use base64::Engine as _;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // Tag 1: epoch seconds; kept as the number JSON 1.0 sends.
        Cbor::Tag(_, inner) => from_cbor(*inner),
        Cbor::Array(items) => Value::Array(items.into_iter().map(from_cbor).collect()),
        Cbor::Map(entries) => Value::Object(
            entries
                .into_iter()
                .filter_map(|(k, v)| match k {
                    Cbor::Text(k) => Some((k, from_cbor(v))),
                    _ => None,
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn timestamp_ms(value: &Value) -> Option<i64> {
    value.as_object().filter(|o| o.len() == 1).and_then(|o| o.get(TIMESTAMP)).and_then(Value::as_i64)
}

fn to_cbor(value: &Value) -> Cbor {
    if let Some(ms) = timestamp_ms(value) {
        return Cbor::Tag(1, Box::new(Cbor::Float(ms as f64 / 1000.0)));
    }
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cbor::Integer(i.into()),
            None => Cbor::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(items) => Cbor::Array(items.iter().map(to_cbor).collect()),
        Value::Object(map) => Cbor::Map(
            map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v))).collect(),
        ),
    }
}

fn to_json(value: &Value) -> Value {
    if let Some(ms) = timestamp_ms(value) {
        return Number::from_f64(ms as f64 / 1000.0).map_or(Value::Null, Value::Number);
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        other => other.clone(),
    }
}

fn write_xml(out: &mut String, value: &Value) {
    if let Some(ms) = timestamp_ms(value) {
        out.push_str(&super::iso8601(ms));
        return;
    }
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&quick_xml::escape::escape(s.as_str())),
        Value::Array(items) => {
            for item in items {
                out.push_str("<member>");
                write_xml(out, item);
                out.push_str("</member>");
            }
        }
        Value::Object(map) => {
            for (key, v) in map.iter().filter(|(_, v)| !v.is_null()) {
                out.push_str(&format!("<{key}>"));
                write_xml(out, v);
                out.push_str(&format!("</{key}>"));
            }
        }
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid is a header value"),
    );
    response
}

/// The answer to `operation` in `protocol`.
pub fn encode(protocol: Protocol, operation: &str, answer: &Value) -> Response<Full<Bytes>> {
    match protocol {
        Protocol::Cbor => {
            let mut body = Vec::new();
            ciborium::ser::into_writer(&to_cbor(answer), &mut body).expect("CBOR serializes into memory");
            let mut r = response(StatusCode::OK, "application/cbor", body);
            r.headers_mut().insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
            r
        }
        Protocol::Json => response(
            StatusCode::OK,
            "application/x-amz-json-1.0",
            serde_json::to_vec(&to_json(answer)).expect("JSON serializes"),
        ),
        Protocol::Query => {
            let mut out = format!("<{operation}Response xmlns=\"{XML_NAMESPACE}\"><{operation}Result>");
            write_xml(&mut out, answer);
            out.push_str(&format!(
                "</{operation}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{operation}Response>",
                uuid::Uuid::new_v4()
            ));
            response(StatusCode::OK, "text/xml", out.into_bytes())
        }
    }
}

/// An error in `protocol`, with the `x-amzn-query-error` header SDKs of the
/// other protocols map the code from (the model is awsQueryCompatible).
pub fn encode_error(protocol: Protocol, error: &ApiError) -> Response<Full<Bytes>> {
    let status = error.status();
    let mut r = match protocol {
        Protocol::Cbor => {
            let mut body = Vec::new();
            let value = serde_json::json!({ "__type": error.shape(), "message": error.message });
            ciborium::ser::into_writer(&to_cbor(&value), &mut body).expect("CBOR serializes into memory");
            let mut r = response(status, "application/cbor", body);
            r.headers_mut().insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
            r
        }
        Protocol::Json => response(
            status,
            "application/x-amz-json-1.0",
            serde_json::to_vec(&serde_json::json!({ "__type": error.shape(), "message": error.message }))
                .expect("JSON serializes"),
        ),
        Protocol::Query => {
            let body = format!(
                "<ErrorResponse xmlns=\"{XML_NAMESPACE}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                error.fault(),
                error.code,
                quick_xml::escape::escape(error.message.as_str()),
                uuid::Uuid::new_v4()
            );
            response(status, "text/xml", body.into_bytes())
        }
    };
    if let Ok(value) = HeaderValue::from_str(&format!("{};{}", error.code, error.fault())) {
        r.headers_mut().insert("x-amzn-query-error", value);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_forms_become_nested_values() {
        let body = b"Action=GetMetricStatistics&Version=2010-08-01&Namespace=AWS%2FFirehose&Dimensions.member.1.Name=DeliveryStreamName&Dimensions.member.1.Value=s&Statistics.member.1=Sum&Statistics.member.2=Maximum&Period=60";
        let request = decode("/", &HeaderMap::new(), body).unwrap();
        assert_eq!(request.protocol, Protocol::Query);
        assert_eq!(request.operation, "GetMetricStatistics");
        assert_eq!(
            request.body,
            serde_json::json!({
                "Namespace": "AWS/Firehose",
                "Dimensions": [{"Name": "DeliveryStreamName", "Value": "s"}],
                "Statistics": ["Sum", "Maximum"],
                "Period": "60"
            })
        );
    }

    #[test]
    fn cbor_round_trips_with_timestamps_as_tag_1() {
        let mut body = Vec::new();
        let request = Cbor::Map(vec![
            (Cbor::Text("StartTime".into()), Cbor::Tag(1, Box::new(Cbor::Float(1_700_000_000.5)))),
            (Cbor::Text("Period".into()), Cbor::Integer(60.into())),
        ]);
        ciborium::ser::into_writer(&request, &mut body).unwrap();
        let decoded =
            decode(&format!("/service/{SERVICE}/operation/GetMetricStatistics"), &HeaderMap::new(), &body).unwrap();
        assert_eq!(decoded.body, serde_json::json!({"StartTime": 1_700_000_000.5, "Period": 60}));
        let answer = encode(Protocol::Cbor, "X", &serde_json::json!({"Timestamp": timestamp(1_700_000_000_500)}));
        assert_eq!(answer.headers()["smithy-protocol"], "rpc-v2-cbor");
    }

    #[test]
    fn xml_lists_are_members_and_timestamps_iso() {
        let mut out = String::new();
        write_xml(
            &mut out,
            &serde_json::json!({"Datapoints": [{"Timestamp": timestamp(0), "Sum": 2.0, "Unit": "a<b"}]}),
        );
        assert_eq!(
            out,
            "<Datapoints><member><Sum>2.0</Sum><Timestamp>1970-01-01T00:00:00.000Z</Timestamp><Unit>a&lt;b</Unit></member></Datapoints>"
        );
    }
}
