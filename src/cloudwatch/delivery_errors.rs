//! Firehose's error-log events from a delivery's figures: every failed S3
//! PUT, and every record sent to the error prefix (Lambda, conversion,
//! dynamic partitioning), is one event in the format of
//! [`logs::error_event`]. One tracker serves the stack (which appends the
//! events to its own CloudWatch Logs) and `deliver --cloudwatch` (which
//! sends them with `PutLogEvents`), so both log the same events.

use std::collections::BTreeMap;

use crate::delivery::core::CodeTally;
use crate::delivery::stats::DeliveryStats;

use super::logs;

/// Events written per stream per error code per call at most: AWS samples
/// its error logs when failure rates are high.
pub const MAX_EVENTS_PER_CODE: u64 = 100;

/// What a delivery has failed so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    /// Failed PUT attempts.
    pub put_failures: u64,
    /// The last PUT error, as the sink formats it (`PUT s3://… failed:
    /// NoSuchBucket (HTTP 404): …`).
    pub last_put_error: Option<String>,
    /// Records sent to the error prefix, per error code.
    pub records: BTreeMap<&'static str, CodeTally>,
}

impl Failures {
    pub fn of(stats: &DeliveryStats) -> Self {
        Failures {
            put_failures: stats.put_failures.load(std::sync::atomic::Ordering::Relaxed),
            last_put_error: stats.last_put_error(),
            records: stats.errors_by_code(),
        }
    }
}

/// The stream an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source<'a> {
    pub stream: &'a str,
    pub arn: &'a str,
    pub bucket: &'a str,
    pub version: u32,
}

/// Per stream, the failures already logged.
#[derive(Debug, Default)]
pub struct ErrorEvents {
    logged: BTreeMap<String, Failures>,
}

impl ErrorEvents {
    /// The events for what `source`'s delivery failed since the last call
    /// (a count that went down belongs to a new delivery: all of it is new).
    pub fn since_last(&mut self, source: &Source<'_>, now: &Failures) -> Vec<String> {
        let logged = self.logged.entry(source.stream.to_owned()).or_default();
        let growth = |now: u64, then: u64| if now >= then { now - then } else { now };
        let mut events = Vec::new();
        let mut push = |count: u64, code: &str, message: &str| {
            let event = logs::error_event(source.arn, source.bucket, source.version, code, message);
            events.extend(std::iter::repeat_n(event, count.min(MAX_EVENTS_PER_CODE) as usize));
        };
        let failed_puts = growth(now.put_failures, logged.put_failures);
        if failed_puts > 0 {
            let error = now.last_put_error.as_deref().unwrap_or_default();
            let (code, message) = logs::s3_error(&s3_code(error));
            // AWS's InternalError text says nothing of the cause; a local
            // S3 that knows it (a full disk) says it after.
            match cause(error).filter(|_| code == "InternalError") {
                Some(cause) => push(failed_puts, code, &format!("{message} Cause: {cause}")),
                None => push(failed_puts, code, message),
            }
        }
        for (code, tally) in &now.records {
            let before = logged.records.get(code).map_or(0, |t| t.records);
            push(growth(tally.records, before), code, &tally.last_message);
        }
        *logged = now.clone();
        events
    }

    /// Forgets streams not in `present` (deleted streams).
    pub fn retain(&mut self, present: &[&str]) {
        self.logged.retain(|name, _| present.contains(&name.as_str()));
    }
}

/// What the failed PUT said beyond its code: S3's message, unless it is
/// S3's own text that says nothing (`We encountered an internal error.
/// Please try again.`), or the transport's error.
fn cause(error: &str) -> Option<&str> {
    let detail = error.split_once("failed: ")?.1;
    let said = detail.split_once("): ").map_or(detail, |(_, message)| message).trim();
    (!said.is_empty() && !said.starts_with("We encountered an internal error. Please try again")).then_some(said)
}

/// S3's error code in a PUT error as the sink formats it.
fn s3_code(error: &str) -> String {
    error.split("failed: ").nth(1).and_then(|rest| rest.split(" (HTTP").next()).unwrap_or("InternalError").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source<'static> {
        Source {
            stream: "s",
            arn: "arn:aws:firehose:us-east-1:000000000000:deliverystream/s",
            bucket: "bkt",
            version: 2,
        }
    }

    fn codes(events: &[String]) -> Vec<String> {
        events
            .iter()
            .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap()["errorCode"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn each_failed_put_and_error_record_is_one_event_once() {
        let mut tracker = ErrorEvents::default();
        let mut now = Failures {
            put_failures: 2,
            last_put_error: Some(
                "PUT s3://bkt/k failed: NoSuchBucket (HTTP 404): The specified bucket does not exist".into(),
            ),
            ..Failures::default()
        };
        now.records.insert(
            "Lambda.FunctionError",
            CodeTally {
                records: 1,
                last_message: "The Lambda function was successfully invoked but it returned an error result.".into(),
            },
        );
        let events = tracker.since_last(&source(), &now);
        assert_eq!(codes(&events), ["S3.NoSuchBucket", "S3.NoSuchBucket", "Lambda.FunctionError"]);
        let first: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(first["destination"], "arn:aws:s3:::bkt");
        assert_eq!(first["deliveryStreamVersionId"], 2);
        assert!(tracker.since_last(&source(), &now).is_empty(), "nothing new, nothing logged");
        now.put_failures = 3;
        now.last_put_error = Some("PUT s3://bkt/k failed: connection refused".into());
        let refused = tracker.since_last(&source(), &now);
        assert_eq!(codes(&refused), ["InternalError"]);
        let message = serde_json::from_str::<serde_json::Value>(&refused[0]).unwrap()["message"].clone();
        assert_eq!(message, "An internal error occurred while attempting to deliver data. Delivery will be retried; if the error persists, then it will be reported to AWS for resolution. Cause: connection refused");
        // A new delivery counts from zero.
        let restarted = Failures { put_failures: 1, ..now.clone() };
        assert_eq!(codes(&tracker.since_last(&source(), &restarted)), ["InternalError"]);
    }

    #[test]
    fn a_full_disk_is_named_and_s3s_own_internal_error_text_is_not_repeated() {
        let full = "PUT s3://bkt/k failed: InternalError (HTTP 500): We encountered an internal error: No space left on device (os error 28)";
        assert_eq!(cause(full), Some("We encountered an internal error: No space left on device (os error 28)"));
        let bare =
            "PUT s3://bkt/k failed: InternalError (HTTP 500): We encountered an internal error. Please try again.";
        assert_eq!(cause(bare), None);
    }

    #[test]
    fn a_flood_of_failures_is_sampled() {
        let mut tracker = ErrorEvents::default();
        let now = Failures { put_failures: 10_000, ..Failures::default() };
        assert_eq!(tracker.since_last(&source(), &now).len() as u64, MAX_EVENTS_PER_CODE);
    }
}
