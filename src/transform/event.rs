//! The wire shapes of Firehose's Lambda transformation for MSK and DirectPut
//! sources (`firehose-lambda-conversion.md` 1.1, 1.2): the
//! event a batch becomes (split so no request passes Lambda's 6 MB), and the
//! status-model response checked record by record. Pure functions, so every
//! malformed response a function can return is a unit test.

use std::collections::{BTreeMap, HashMap};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::Pending;

/// Lambda's limit on a synchronous request (and response).
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// Bytes a record takes in the event besides its base64 value: its id,
/// metadata and punctuation, generously.
const RECORD_OVERHEAD: usize = 320;

/// Bytes of the event envelope besides its records.
const ENVELOPE: usize = 1024;

/// The error codes and messages Firehose writes under `processing-failed`
/// (`firehose-lambda-conversion.md` 1.3 and 1.4; the messages are AWS's own
/// where one is published).
pub mod codes {
    pub const PROCESSING_FAILED: (&str, &str) =
        ("Lambda.ProcessingFailedStatus", "ProcessingFailed status set for record");
    pub const MISSING_RECORD_ID: (&str, &str) = (
        "Lambda.MissingRecordId",
        "One or more record Ids were not returned. Ensure that the Lambda function returns all received record Ids.",
    );
    pub const DUPLICATED_RECORD_ID: (&str, &str) = (
        "Lambda.DuplicatedRecordId",
        "Multiple records were returned with the same record Id. Ensure that the Lambda function returns a unique record Id for each record.",
    );
    pub const JSON_PROCESSING: (&str, &str) = (
        "Lambda.JsonProcessingException",
        "There was an error parsing returned records from the Lambda function. Ensure that the returned records follow the status model required by Kinesis Data Firehose.",
    );
    pub const FUNCTION_ERROR: (&str, &str) =
        ("Lambda.FunctionError", "The Lambda function was successfully invoked but it returned an error result.");
    pub const FUNCTION_TIMED_OUT: (&str, &str) = (
        "Lambda.FunctionTimedOut",
        "The Lambda function invocation timed out. Increase the Timeout setting in the Lambda function.",
    );
    pub const RESOURCE_NOT_FOUND: (&str, &str) = (
        "Lambda.ResourceNotFound",
        "The specified Lambda function does not exist. Use a different function that does exist.",
    );
    pub const INVOKE_ACCESS_DENIED: (&str, &str) = (
        "Lambda.InvokeAccessDenied",
        "Access was denied. Ensure that the access policy allows access to the Lambda function.",
    );
    pub const INVOKE_LIMIT_EXCEEDED: (&str, &str) = (
        "Lambda.InvokeLimitExceeded",
        "The Lambda concurrent execution limit is exceeded. Increase the concurrent execution limit.",
    );
    /// streamlab's own: the local endpoint or runtime process could not be
    /// reached at all (on AWS the service always answers).
    pub const INVOKE_FAILED: (&str, &str) = (
        "Lambda.InvokeFailed",
        "The Lambda function could not be invoked: its endpoint or runtime process did not answer.",
    );
}

/// What the stream tells the function about itself.
#[derive(Debug, Clone)]
pub struct EventContext {
    pub delivery_stream_arn: String,
    /// The MSK cluster of an MSK stream; `None` for a DirectPut stream,
    /// whose events carry no source and name the payload `data`.
    pub source_msk_arn: Option<String>,
    pub region: String,
}

impl EventContext {
    /// The field that holds a record's payload, in the event and in the
    /// response: `kafkaRecordValue` for MSK, `data` for DirectPut.
    pub fn payload_field(&self) -> &'static str {
        if self.source_msk_arn.is_some() {
            "kafkaRecordValue"
        } else {
            "data"
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    invocation_id: &'a str,
    delivery_stream_arn: &'a str,
    #[serde(rename = "sourceMSKArn", skip_serializing_if = "Option::is_none")]
    source_msk_arn: Option<&'a str>,
    region: &'a str,
    records: EventRecords<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EventRecords<'a> {
    Msk(Vec<EventRecord<'a>>),
    DirectPut(Vec<DirectPutRecord<'a>>),
}

/// A DirectPut record: no source metadata, the payload in `data`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DirectPutRecord<'a> {
    record_id: &'a str,
    approximate_arrival_timestamp: i64,
    data: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventRecord<'a> {
    record_id: &'a str,
    approximate_arrival_timestamp: i64,
    msk_record_metadata: MskMetadata,
    kafka_record_value: String,
}

/// Typed as in AWS's sample event: offset and partition as strings, the
/// timestamp as a number.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MskMetadata {
    offset: String,
    partition_id: String,
    approximate_arrival_timestamp: i64,
}

/// Splits a batch into runs whose events stay within [`MAX_REQUEST_BYTES`]
/// (a record too large for any request goes alone, and its invocation
/// fails as Lambda's would).
pub fn split(batch: &[Pending]) -> Vec<std::ops::Range<usize>> {
    let (mut runs, mut start, mut size) = (Vec::new(), 0, ENVELOPE);
    for (i, pending) in batch.iter().enumerate() {
        let bytes = pending.record.value.len().div_ceil(3) * 4 + RECORD_OVERHEAD;
        if i > start && size + bytes > MAX_REQUEST_BYTES {
            runs.push(start..i);
            (start, size) = (i, ENVELOPE);
        }
        size += bytes;
    }
    if start < batch.len() {
        runs.push(start..batch.len());
    }
    runs
}

/// The event for `records`, as Firehose sends it for the stream's source.
pub fn event(context: &EventContext, invocation_id: &str, records: &[Pending]) -> Bytes {
    let records = if context.source_msk_arn.is_none() {
        EventRecords::DirectPut(
            records
                .iter()
                .map(|p| DirectPutRecord {
                    record_id: &p.id,
                    approximate_arrival_timestamp: p.record.timestamp_ms,
                    data: BASE64.encode(&p.record.value),
                })
                .collect(),
        )
    } else {
        EventRecords::Msk(msk_records(records))
    };
    let event = Event {
        invocation_id,
        delivery_stream_arn: &context.delivery_stream_arn,
        source_msk_arn: context.source_msk_arn.as_deref(),
        region: &context.region,
        records,
    };
    Bytes::from(serde_json::to_vec(&event).expect("events serialize"))
}

fn msk_records(records: &[Pending]) -> Vec<EventRecord<'_>> {
    records
        .iter()
        .map(|p| EventRecord {
            record_id: &p.id,
            approximate_arrival_timestamp: p.record.timestamp_ms,
            msk_record_metadata: MskMetadata {
                offset: p.record.offset.to_string(),
                partition_id: p.record.partition.to_string(),
                approximate_arrival_timestamp: p.record.timestamp_ms,
            },
            kafka_record_value: BASE64.encode(&p.record.value),
        })
        .collect()
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Goes on to routing with its new value (and partition keys for
    /// `!{partitionKeyFromLambda:...}`).
    Ok { value: Bytes, partition_keys: Option<BTreeMap<String, String>> },
    /// Counted and written nowhere.
    Dropped,
    /// Written under `processing-failed`.
    Failed { code: &'static str, message: &'static str, attempts: u32 },
}

impl Outcome {
    fn failed((code, message): (&'static str, &'static str)) -> Self {
        Outcome::Failed { code, message, attempts: 1 }
    }
}

/// Reads a function's response to the event for `ids`: one outcome per id,
/// in order, and the reasons the response broke the status model (for the
/// log; the error records carry AWS's fixed messages). Entries with ids
/// that were not sent are ignored, as Firehose does.
pub fn read_response(ids: &[&str], body: &[u8], payload: &str) -> (Vec<Outcome>, Vec<String>) {
    let mut problems = Vec::new();
    let entries = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut map)) => match map.remove("records") {
            Some(Value::Array(entries)) => entries,
            _ => {
                problems.push("the response has no `records` array".to_owned());
                return (vec![Outcome::failed(codes::JSON_PROCESSING); ids.len()], problems);
            }
        },
        Ok(_) => {
            problems.push("the response is not a JSON object".to_owned());
            return (vec![Outcome::failed(codes::JSON_PROCESSING); ids.len()], problems);
        }
        Err(e) => {
            problems.push(format!("the response is not JSON: {e}"));
            return (vec![Outcome::failed(codes::JSON_PROCESSING); ids.len()], problems);
        }
    };
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; ids.len()];
    for entry in &entries {
        let Some(id) = entry.get("recordId").and_then(Value::as_str) else {
            problems.push("an entry has no string `recordId`".to_owned());
            continue;
        };
        let Some(&i) = index.get(id) else {
            problems.push(format!("recordId {id:?} was not in the event"));
            continue;
        };
        outcomes[i] = Some(match outcomes[i] {
            Some(_) => {
                problems.push(format!("recordId {id:?} appears more than once"));
                Outcome::failed(codes::DUPLICATED_RECORD_ID)
            }
            None => read_entry(id, entry, payload, &mut problems),
        });
    }
    let outcomes = outcomes
        .into_iter()
        .zip(ids)
        .map(|(outcome, id)| {
            outcome.unwrap_or_else(|| {
                problems.push(format!("recordId {id:?} is missing from the response"));
                Outcome::failed(codes::MISSING_RECORD_ID)
            })
        })
        .collect();
    (outcomes, problems)
}

fn read_entry(id: &str, entry: &Value, payload: &str, problems: &mut Vec<String>) -> Outcome {
    let mut bad = |problem: String| {
        problems.push(problem);
        Outcome::failed(codes::JSON_PROCESSING)
    };
    match entry.get("result").and_then(Value::as_str) {
        Some("Dropped") => Outcome::Dropped,
        Some("ProcessingFailed") => Outcome::failed(codes::PROCESSING_FAILED),
        Some("Ok") => {
            let value = match entry.get(payload) {
                Some(Value::String(text)) => match BASE64.decode(text) {
                    Ok(value) => value,
                    Err(e) => return bad(format!("recordId {id:?}: {payload} is not base64 ({e})")),
                },
                _ => {
                    let source = if payload == "data" { "DirectPut" } else { "MSK" };
                    return bad(format!(
                        "recordId {id:?}: result Ok needs a base64 string in {payload} (the payload field for {source} sources)"
                    ));
                }
            };
            match partition_keys(entry) {
                Ok(partition_keys) => Outcome::Ok { value: Bytes::from(value), partition_keys },
                Err(problem) => bad(format!("recordId {id:?}: {problem}")),
            }
        }
        other => bad(format!("recordId {id:?}: result {other:?} is not one of Ok, Dropped, ProcessingFailed")),
    }
}

/// `metadata.partitionKeys`: an object of scalars (numbers and booleans as
/// their JSON text, as Firehose's prefix evaluation prints them).
fn partition_keys(entry: &Value) -> Result<Option<BTreeMap<String, String>>, String> {
    let Some(keys) = entry.get("metadata").and_then(|m| m.get("partitionKeys")) else { return Ok(None) };
    let Value::Object(keys) = keys else { return Err("metadata.partitionKeys is not an object".to_owned()) };
    keys.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
            _ => Err(format!("metadata.partitionKeys.{k} is not a string, number or boolean")),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn pending(id: &str, partition: i32, offset: i64, value: &[u8]) -> Pending {
        Pending {
            id: id.into(),
            record: Record { partition, offset, timestamp_ms: 1_700_000_000_000, value: Bytes::copy_from_slice(value) },
            epoch: 0,
        }
    }

    #[test]
    fn direct_put_events_and_responses_use_data() {
        let context = EventContext {
            delivery_stream_arn: "arn:aws:firehose:us-east-1:000000000000:deliverystream/d".into(),
            source_msk_arn: None,
            region: "us-east-1".into(),
        };
        let body = event(&context, "inv-2", &[pending("r1", 0, 3, b"hi")]);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "invocationId": "inv-2",
                "deliveryStreamArn": "arn:aws:firehose:us-east-1:000000000000:deliverystream/d",
                "region": "us-east-1",
                "records": [{"recordId": "r1", "approximateArrivalTimestamp": 1_700_000_000_000i64, "data": "aGk="}]
            })
        );
        let response = br#"{"records": [{"recordId": "a", "result": "Ok", "data": "aGk="}, {"recordId": "b", "result": "Ok", "kafkaRecordValue": "aGk="}]}"#;
        let (outcomes, problems) = read_response(&["a", "b"], response, context.payload_field());
        assert_eq!(outcomes[0], Outcome::Ok { value: Bytes::from_static(b"hi"), partition_keys: None });
        assert_eq!(outcomes[1], Outcome::failed(codes::JSON_PROCESSING));
        assert!(problems[0].contains("data (the payload field for DirectPut sources)"), "{problems:?}");
    }

    #[test]
    fn event_has_the_msk_shape() {
        let context = EventContext {
            delivery_stream_arn: "arn:aws:firehose:us-east-1:000000000000:deliverystream/s".into(),
            source_msk_arn: Some("arn:aws:kafka:us-east-1:000000000000:cluster/c/1".into()),
            region: "us-east-1".into(),
        };
        let body = event(&context, "inv-1", &[pending("r1", 2, 7, b"{\"a\":1}")]);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "invocationId": "inv-1",
                "deliveryStreamArn": "arn:aws:firehose:us-east-1:000000000000:deliverystream/s",
                "sourceMSKArn": "arn:aws:kafka:us-east-1:000000000000:cluster/c/1",
                "region": "us-east-1",
                "records": [{
                    "recordId": "r1",
                    "approximateArrivalTimestamp": 1_700_000_000_000i64,
                    "mskRecordMetadata": {"offset": "7", "partitionId": "2", "approximateArrivalTimestamp": 1_700_000_000_000i64},
                    "kafkaRecordValue": "eyJhIjoxfQ=="
                }]
            })
        );
    }

    #[test]
    fn batches_split_to_stay_within_six_megabytes() {
        let big = vec![b'x'; 2 * 1024 * 1024];
        let batch: Vec<Pending> = (0..4).map(|i| pending(&i.to_string(), 0, i, &big)).collect();
        let runs = split(&batch);
        assert_eq!(runs, vec![0..2, 2..4]);
        for run in runs {
            let context =
                EventContext { delivery_stream_arn: "a".into(), source_msk_arn: Some("b".into()), region: "c".into() };
            assert!(event(&context, "i", &batch[run]).len() <= MAX_REQUEST_BYTES);
        }
        let huge = vec![pending("h", 0, 0, &vec![b'x'; 5 * 1024 * 1024]), pending("s", 0, 1, b"x")];
        assert_eq!(split(&huge), vec![0..1, 1..2]);
    }

    #[test]
    fn every_result_and_every_breach_of_the_status_model() {
        let ids = ["ok", "keys", "drop", "fail", "dup", "missing", "bad64", "null", "weird"];
        let body = serde_json::json!({"records": [
            {"recordId": "ok", "result": "Ok", "kafkaRecordValue": "aGk="},
            {"recordId": "keys", "result": "Ok", "kafkaRecordValue": "", "metadata": {"partitionKeys": {"t": "x", "n": 3}}},
            {"recordId": "drop", "result": "Dropped"},
            {"recordId": "fail", "result": "ProcessingFailed", "kafkaRecordValue": "aGk="},
            {"recordId": "dup", "result": "Ok", "kafkaRecordValue": "aGk="},
            {"recordId": "dup", "result": "Ok", "kafkaRecordValue": "aGk="},
            {"recordId": "bad64", "result": "Ok", "kafkaRecordValue": "not base64!"},
            {"recordId": "null", "result": "Ok", "kafkaRecordValue": null},
            {"recordId": "weird", "result": "TRANSFORMED_STATE_OK", "kafkaRecordValue": "aGk="},
            {"recordId": "stranger", "result": "Ok", "kafkaRecordValue": "aGk="}
        ]});
        let (outcomes, problems) = read_response(&ids, body.to_string().as_bytes(), "kafkaRecordValue");
        let failed = |c: (&'static str, &'static str)| Outcome::Failed { code: c.0, message: c.1, attempts: 1 };
        let keys = BTreeMap::from([("n".to_owned(), "3".to_owned()), ("t".to_owned(), "x".to_owned())]);
        assert_eq!(
            outcomes,
            vec![
                Outcome::Ok { value: Bytes::from_static(b"hi"), partition_keys: None },
                Outcome::Ok { value: Bytes::new(), partition_keys: Some(keys) },
                Outcome::Dropped,
                failed(codes::PROCESSING_FAILED),
                failed(codes::DUPLICATED_RECORD_ID),
                failed(codes::MISSING_RECORD_ID),
                failed(codes::JSON_PROCESSING),
                failed(codes::JSON_PROCESSING),
                failed(codes::JSON_PROCESSING),
            ]
        );
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn a_response_that_is_not_the_status_model_fails_every_record() {
        for body in [&b"not json"[..], b"[]", b"{\"result\": \"Ok\"}", b"{\"records\": {}}"] {
            let (outcomes, problems) = read_response(&["a", "b"], body, "kafkaRecordValue");
            assert_eq!(outcomes, vec![Outcome::failed(codes::JSON_PROCESSING); 2]);
            assert_eq!(problems.len(), 1);
        }
    }
}
