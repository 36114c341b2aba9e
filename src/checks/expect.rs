//! Expectations a run asserts about what landed, for producers in any
//! language: every record written to a stream's topic landed exactly once,
//! nothing went to the error prefix, every key has AWS's shape, enough
//! records landed.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;

use crate::extract;
use crate::landing::RawObject;
use crate::spec::{Deaggregation, StreamSpec};

/// One expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Every record written to a stream's topic (from where the stream
    /// started reading) landed exactly once, as data or as an error record.
    ExactlyOnce,
    /// Nothing landed under the error prefix.
    NoErrors,
    /// Every object in the streams' buckets has a key of AWS's shape for one
    /// of the streams.
    KeyShape,
    /// At least this many data records landed.
    Records(u64),
    /// A CloudWatch alarm is in this state at the end (`alarm:NAME=OK`).
    Alarm { name: String, state: String },
}

impl FromStr for Expectation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "exactly-once" => Ok(Expectation::ExactlyOnce),
            "no-errors" => Ok(Expectation::NoErrors),
            "key-shape" => Ok(Expectation::KeyShape),
            other if other.starts_with("alarm:") => {
                let (name, state) = other["alarm:".len()..].rsplit_once('=').ok_or_else(|| {
                    format!("{other:?}: an alarm expectation is alarm:NAME=STATE, e.g. alarm:orders-freshness=OK")
                })?;
                if name.is_empty() || !["OK", "ALARM", "INSUFFICIENT_DATA"].contains(&state) {
                    return Err(format!(
                        "{other:?}: an alarm expectation is alarm:NAME=STATE with STATE one of OK, ALARM, INSUFFICIENT_DATA"
                    ));
                }
                Ok(Expectation::Alarm { name: name.to_owned(), state: state.to_owned() })
            }
            other => Err(format!(
                "unknown expectation {other:?}; expectations are exactly-once, no-errors, key-shape and alarm:NAME=STATE (and --expect-records N)"
            )),
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::ExactlyOnce => write!(f, "exactly-once"),
            Expectation::NoErrors => write!(f, "no-errors"),
            Expectation::KeyShape => write!(f, "key-shape"),
            Expectation::Records(n) => write!(f, "records >= {n}"),
            Expectation::Alarm { name, state } => write!(f, "alarm:{name}={state}"),
        }
    }
}

/// Parses `exactly-once,no-errors`.
pub fn parse_list(list: &str) -> Result<Vec<Expectation>, String> {
    list.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect()
}

/// The outcome of one expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub expectation: Expectation,
    pub passed: bool,
    pub detail: String,
}

/// What the checks need to know about one stream.
pub struct StreamEvidence<'a> {
    pub spec: &'a StreamSpec,
    /// Record values in the topic from where the stream started reading.
    pub source: Vec<Bytes>,
    pub objects: &'a [RawObject],
    /// With a Lambda transform: the records it dropped. Its `Ok` records
    /// are new values, so the stream is checked by counts: every record
    /// written is landed, dropped or an error record, once.
    pub dropped: Option<u64>,
}

/// Evaluates every expectation.
pub fn evaluate(
    expectations: &[Expectation],
    streams: &[StreamEvidence<'_>],
    strangers: &[(String, String)],
    alarms: &[(String, &'static str)],
) -> Vec<Outcome> {
    expectations
        .iter()
        .map(|e| {
            let (passed, detail) = match e {
                Expectation::ExactlyOnce => exactly_once(streams),
                Expectation::NoErrors => no_errors(streams),
                Expectation::KeyShape => key_shape(streams, strangers),
                Expectation::Records(n) => {
                    let landed: usize = streams.iter().map(|s| data_records(s).map_or(0, |r| r.len())).sum();
                    (landed as u64 >= *n, format!("{landed} data records landed, at least {n} expected"))
                }
                Expectation::Alarm { name, state } => match alarms.iter().find(|(n, _)| n == name) {
                    Some((_, now)) => (now == state, format!("alarm {name} is {now}, {state} expected")),
                    None => (
                        false,
                        format!(
                            "no alarm named {name:?}; the alarms are {}. Create it with PutMetricAlarm (aws cloudwatch put-metric-alarm)",
                            if alarms.is_empty() { "none".to_owned() } else { alarms.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ") }
                        ),
                    ),
                },
            };
            Outcome { expectation: e.clone(), passed, detail }
        })
        .collect()
}

/// The records of a stream's data objects, split where they were
/// concatenated; `None` when boundaries cannot be recovered.
fn data_records(stream: &StreamEvidence<'_>) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    for object in stream.objects.iter().filter(|o| o.kind == "data") {
        let body = Bytes::from(object.decoded.clone());
        if stream.spec.append_newline() {
            let mut parts: Vec<Bytes> = body.split(|b| *b == b'\n').map(|p| body.slice_ref(p)).collect();
            parts.pop(); // after the last delimiter
            out.extend(parts);
        } else {
            let parts = extract::deaggregate(&body, Some(&Deaggregation::Json));
            if parts.len() == 1 && serde_json::from_slice::<serde::de::IgnoredAny>(&parts[0]).is_err() {
                return None;
            }
            out.extend(parts);
        }
    }
    Some(out)
}

/// `rawData` of every error record of a stream.
fn error_records(stream: &StreamEvidence<'_>) -> Vec<Bytes> {
    let mut out = Vec::new();
    for object in stream.objects.iter().filter(|o| o.kind != "data") {
        for line in object.decoded.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(raw) = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["rawData"].as_str().and_then(|r| BASE64.decode(r).ok()))
            {
                out.push(Bytes::from(raw));
            }
        }
    }
    out
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() > 80 {
        format!("{}...", text.chars().take(80).collect::<String>())
    } else {
        text.into_owned()
    }
}

fn exactly_once(streams: &[StreamEvidence<'_>]) -> (bool, String) {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    for stream in streams {
        if stream.spec.conversion().is_some() {
            // Parquet rows are new encodings of the records: counted.
            let rows = stream
                .objects
                .iter()
                .filter(|o| o.kind == "data")
                .map(|o| crate::convert::read_parquet(&o.decoded).map_or(0, |c| c.rows.len() as u64))
                .sum::<u64>();
            let errors = error_records(stream).len() as u64;
            let written = stream.source.len() as u64;
            checked += written as usize;
            if rows + errors + stream.dropped.unwrap_or(0) != written {
                problems.push(format!(
                    "{}: {written} records written, but {rows} Parquet rows and {errors} error records landed",
                    stream.spec.name()
                ));
            }
            continue;
        }
        let Some(mut landed) = data_records(stream) else {
            problems.push(format!(
                "{}: its records are not JSON and AppendDelimiterToRecord is off, so record boundaries are lost in S3 and cannot be checked",
                stream.spec.name()
            ));
            continue;
        };
        landed.extend(error_records(stream));
        if let Some(dropped) = stream.dropped {
            let (written, accounted) = (stream.source.len() as u64, landed.len() as u64 + dropped);
            checked += written as usize;
            if accounted != written {
                problems.push(format!(
                    "{}: {written} records written, but {} landed, {dropped} dropped by the Lambda function and {} error records add up to {accounted}",
                    stream.spec.name(),
                    landed.len() - error_records(stream).len(),
                    error_records(stream).len()
                ));
            }
            continue;
        }
        // Without a delimiter of Firehose's, records are told apart in S3 by
        // their JSON alone: a producer's own trailing newline (what a
        // DirectPut producer adds so readers see lines) is not part of the
        // record there, so it is not compared.
        let boundary = |part: Bytes| match stream.spec.append_newline() {
            true => part,
            false => {
                let end = part.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
                part.slice(..end)
            }
        };
        let landed: Vec<Bytes> = landed.into_iter().map(boundary).collect();
        let mut expected: BTreeMap<Bytes, i64> = BTreeMap::new();
        for value in &stream.source {
            for part in extract::deaggregate(value, stream.spec.deaggregation()) {
                *expected.entry(boundary(part)).or_default() += 1;
            }
        }
        let total: i64 = expected.values().sum();
        checked += total as usize;
        let mut balance = expected;
        for record in landed {
            *balance.entry(record).or_default() -= 1;
        }
        let missing: Vec<_> = balance.iter().filter(|(_, n)| **n > 0).collect();
        let extra: Vec<_> = balance.iter().filter(|(_, n)| **n < 0).collect();
        let missing_count: i64 = missing.iter().map(|(_, n)| **n).sum();
        let extra_count: i64 = extra.iter().map(|(_, n)| -**n).sum();
        if missing_count > 0 {
            problems.push(format!(
                "{}: {missing_count} of {total} records did not land, e.g. {}",
                stream.spec.name(),
                preview(missing[0].0)
            ));
        }
        if extra_count > 0 {
            problems.push(format!(
                "{}: {extra_count} records landed more often than they were written (duplicates, or records from elsewhere), e.g. {}",
                stream.spec.name(),
                preview(extra[0].0)
            ));
        }
    }
    if problems.is_empty() && checked == 0 {
        let topics: Vec<&str> = streams.iter().map(|s| s.spec.topic()).collect();
        (false, format!("no records were written to {}: nothing to check. Did the producer write to another topic (see `streamlab status`)?", topics.join(", ")))
    } else if problems.is_empty() && streams.iter().any(|s| s.spec.conversion().is_some()) {
        (true, format!("{checked} records written, each landed once as a Parquet row or an error record"))
    } else if problems.is_empty() && streams.iter().any(|s| s.dropped.is_some()) {
        (true, format!("{checked} records written, each landed once (transformed), dropped by the Lambda function, or an error record"))
    } else if problems.is_empty() {
        (true, format!("{checked} records written, each landed exactly once"))
    } else {
        (false, problems.join("; "))
    }
}

fn no_errors(streams: &[StreamEvidence<'_>]) -> (bool, String) {
    let errors: Vec<String> = streams
        .iter()
        .flat_map(|s| {
            s.objects.iter().filter(|o| o.kind != "data").map(move |o| format!("{}: {}", s.spec.name(), o.key))
        })
        .collect();
    match errors.first() {
        None => (true, "nothing under the error prefixes".into()),
        Some(first) => (false, format!("{} error objects, e.g. {first}", errors.len())),
    }
}

fn key_shape(streams: &[StreamEvidence<'_>], strangers: &[(String, String)]) -> (bool, String) {
    let keys: usize = streams.iter().map(|s| s.objects.len()).sum();
    match strangers.first() {
        None => (true, format!("{keys} keys, each of AWS's shape for its stream")),
        Some((bucket, key)) => (
            false,
            format!(
                "{} objects have keys no stream writes, e.g. s3://{bucket}/{key}; AWS's shape is <prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>",
                strangers.len()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::harness::StoredObject;

    fn spec() -> StreamSpec {
        crate::spec::load(Path::new("fixtures/streams/orders-to-s3.json")).unwrap()
    }

    fn object(kind: &str, body: &str) -> RawObject {
        RawObject {
            key: "k".into(),
            kind: kind.into(),
            stored: StoredObject {
                key: "k".into(),
                body: Bytes::new(),
                content_type: None,
                content_encoding: None,
                server_side_encryption: None,
                sse_kms_key_id: None,
                last_modified_ms: None,
            },
            decoded: body.as_bytes().to_vec(),
        }
    }

    fn outcome(source: &[&str], objects: &[RawObject]) -> Outcome {
        let spec = spec();
        let evidence = StreamEvidence {
            spec: &spec,
            source: source.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect(),
            objects,
            dropped: None,
        };
        evaluate(&[Expectation::ExactlyOnce], &[evidence], &[], &[]).remove(0)
    }

    #[test]
    fn exactly_once_counts_records_as_a_multiset() {
        let ok = outcome(&[r#"{"a":1}"#, r#"{"a":1}"#, r#"{"b":2}"#], &[object("data", r#"{"a":1}{"b":2}{"a":1}"#)]);
        assert!(ok.passed, "{}", ok.detail);
        let missing = outcome(&[r#"{"a":1}"#, r#"{"b":2}"#], &[object("data", r#"{"a":1}"#)]);
        assert!(!missing.passed && missing.detail.contains("1 of 2 records did not land"), "{}", missing.detail);
        let dup = outcome(&[r#"{"a":1}"#], &[object("data", r#"{"a":1}"#), object("data", r#"{"a":1}"#)]);
        assert!(!dup.passed && dup.detail.contains("duplicates"), "{}", dup.detail);
        let nothing = outcome(&[], &[]);
        assert!(
            !nothing.passed && nothing.detail.contains("no records were written to shop-events"),
            "{}",
            nothing.detail
        );
    }

    #[test]
    fn error_records_count_by_their_raw_data() {
        let line = format!(r#"{{"attemptsMade":1,"rawData":"{}"}}"#, BASE64.encode("not json"));
        let ok =
            outcome(&["not json", r#"{"a":1}"#], &[object("data", r#"{"a":1}"#), object("processing-failed", &line)]);
        assert!(ok.passed, "{}", ok.detail);
    }

    #[test]
    fn expectation_lists_parse_with_a_clear_error() {
        assert_eq!(parse_list("exactly-once, no-errors").unwrap(), [Expectation::ExactlyOnce, Expectation::NoErrors]);
        assert!(parse_list("exactly_once")
            .unwrap_err()
            .contains("exactly-once, no-errors, key-shape and alarm:NAME=STATE"));
        assert_eq!(
            parse_list("alarm:orders-freshness=OK").unwrap(),
            [Expectation::Alarm { name: "orders-freshness".into(), state: "OK".into() }]
        );
        assert!(parse_list("alarm:x=GREEN").unwrap_err().contains("OK, ALARM, INSUFFICIENT_DATA"));
    }

    #[test]
    fn alarm_expectations_name_the_state_and_the_alarms() {
        let expect = |name: &str| Expectation::Alarm { name: name.into(), state: "OK".into() };
        let alarms = [("fresh".to_owned(), "ALARM")];
        let outcomes = evaluate(&[expect("fresh"), expect("nope")], &[], &[], &alarms);
        assert!(!outcomes[0].passed && outcomes[0].detail == "alarm fresh is ALARM, OK expected");
        assert!(!outcomes[1].passed && outcomes[1].detail.contains("the alarms are fresh"), "{}", outcomes[1].detail);
    }
}
