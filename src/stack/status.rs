//! What `streamlab status` shows: per-stream figures under Firehose's metric
//! names, the clock, and topics no stream reads.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::StreamLifecycle;
use crate::clock::rfc3339_millis;
use crate::delivery::{DeliveryHandle, DeliveryStats};
use crate::spec::StreamSpec;

/// Per-stream figures, as `streamlab status` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamStatus {
    pub stream: String,
    /// `DeliveryStreamStatus`: CREATING until its delivery owns its
    /// partitions, then ACTIVE; DELETING while it delivers what it holds.
    #[serde(default)]
    pub state: StreamLifecycle,
    pub topic: String,
    pub bucket: String,
    pub version: u32,
    pub group: String,
    /// `DataReadFromSource.Records`.
    pub read: u64,
    pub bytes_read: u64,
    pub buffered_records: u64,
    pub buffered_bytes: u64,
    /// `DeliveryToS3.Records`.
    pub delivered: u64,
    /// `DeliveryToS3.ObjectCount`.
    pub objects: u64,
    pub error_records: u64,
    pub put_failures: u64,
    /// The last failed PUT, with S3's reason (`No space left on device`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_put_error: Option<String>,
    /// Records in the topic not yet read (`KafkaOffsetLag`); `None` when the
    /// broker did not answer.
    pub lag: Option<i64>,
    /// With a Lambda transform: its figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaStatus>,
    /// With format conversion: `SucceedConversion.Records` and
    /// `FailedConversion.Records`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<ConversionStatus>,
}

/// Format conversion's figures, Firehose's metric names in comments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConversionStatus {
    /// `SucceedConversion.Records` / `.Bytes`.
    pub converted: u64,
    pub converted_bytes: u64,
    /// `FailedConversion.Records` / `.Bytes`.
    pub failed: u64,
    pub failed_bytes: u64,
}

/// A Lambda transform's figures, Firehose's metric names in comments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LambdaStatus {
    pub function: String,
    /// `SucceedProcessing.Records`.
    pub ok: u64,
    /// `SucceedProcessing.Bytes`: what the function returned for them.
    pub ok_bytes: u64,
    pub dropped: u64,
    /// Records sent to `processing-failed`.
    pub failed: u64,
    /// Records waiting for an invocation.
    pub waiting: u64,
    pub invocations: u64,
    /// `ExecuteProcessing.Success`.
    pub success_ratio: f64,
    /// `ExecuteProcessing.Duration` of the last invocation.
    pub last_duration_ms: u64,
    pub last_error: Option<String>,
}

/// A topic on the broker that no stream reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnreadTopic {
    pub topic: String,
    pub records: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClockStatus {
    pub mode: String,
    pub now_ms: i64,
    pub now: String,
}

/// The stack's state at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub clock: ClockStatus,
    /// Whether uuids and random strings in keys are seeded (reproducible).
    pub seeded: bool,
    pub streams: Vec<StreamStatus>,
    pub unread_topics: Vec<UnreadTopic>,
    /// CloudWatch alarms and their states.
    #[serde(default)]
    pub alarms: Vec<AlarmStatus>,
}

/// One CloudWatch alarm in `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlarmStatus {
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub reason: String,
}

impl Status {
    /// The table `streamlab status` prints.
    pub fn render(&self) -> String {
        let mut out = format!("clock {} at {}\n", self.clock.mode, self.clock.now);
        let width = self.streams.iter().map(|s| s.stream.len()).max().unwrap_or(6).max(6);
        out += &format!(
            "{:<width$}  {:>7}  {:>9}  {:>9}  {:>7}  {:>6}  {:>5}  topic -> bucket\n",
            "stream", "read", "buffered", "delivered", "objects", "errors", "lag"
        );
        for s in &self.streams {
            out += &format!(
                "{:<width$}  {:>7}  {:>9}  {:>9}  {:>7}  {:>6}  {:>5}  {} -> s3://{}/ (version {})\n",
                s.stream,
                s.read,
                s.buffered_records,
                s.delivered,
                s.objects,
                s.error_records,
                s.lag.map_or_else(|| "?".into(), |l| l.to_string()),
                s.topic,
                s.bucket,
                s.version
            );
            if let Some(e) = s.last_put_error.as_ref().filter(|_| s.put_failures > 0) {
                out += &format!(
                    "{:<width$}  {} failed PUTs so far (each retried until it lands); the last: {e}\n",
                    "", s.put_failures
                );
            }
            if let Some(c) = &s.conversion {
                out += &format!(
                    "{:<width$}  Parquet: {} records converted ({} bytes), {} failed conversion (under format-conversion-failed)\n",
                    "", c.converted, c.converted_bytes, c.failed
                );
            }
            if let Some(l) = &s.lambda {
                let invocations = match l.invocations {
                    0 => "no invocation yet".to_owned(),
                    n => format!(
                        "{n} invocations, {:.0}% succeeded, the last took {} ms",
                        l.success_ratio * 100.0,
                        l.last_duration_ms
                    ),
                };
                out += &format!(
                    "{:<width$}  Lambda {}: {} Ok, {} dropped, {} failed, {} waiting; {invocations}\n",
                    "", l.function, l.ok, l.dropped, l.failed, l.waiting,
                );
                if let Some(e) = &l.last_error {
                    out += &format!("{:<width$}  last failed invocation: {e}\n", "");
                }
            }
        }
        for a in &self.alarms {
            out += &format!("alarm {} {}: {}\n", a.name, a.state, a.reason);
        }
        for t in &self.unread_topics {
            out += &format!(
                "warning: topic {:?} holds {} records and no stream reads it; check the producer's topic name\n",
                t.topic, t.records
            );
        }
        out
    }
}

impl StreamStatus {
    /// A stream's figures from its delivery's statistics.
    pub fn of(
        spec: &StreamSpec,
        state: StreamLifecycle,
        delivery: Option<&DeliveryHandle>,
        stats: &DeliveryStats,
        lag: Option<i64>,
    ) -> StreamStatus {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StreamStatus {
            stream: spec.name().to_owned(),
            state,
            topic: spec.topic().to_owned(),
            bucket: spec.bucket().to_owned(),
            version: delivery.map_or(0, |d| d.state.version),
            group: delivery.map_or_else(String::new, |d| d.state.group.clone()),
            read: stats.read(),
            bytes_read: load(&stats.bytes_read),
            buffered_records: load(&stats.buffered_records),
            buffered_bytes: stats.buffered_bytes().values().sum(),
            delivered: stats.delivered(),
            objects: load(&stats.objects),
            error_records: load(&stats.error_records),
            put_failures: load(&stats.put_failures),
            last_put_error: stats.last_put_error(),
            lag,
            conversion: spec.conversion().map(|_| ConversionStatus {
                converted: load(&stats.converted_records),
                converted_bytes: load(&stats.converted_bytes),
                failed: load(&stats.conversion_failed_records),
                failed_bytes: load(&stats.conversion_failed_bytes),
            }),
            lambda: spec.lambda().map(|l| LambdaStatus {
                function: l.arn.clone(),
                ok: load(&stats.lambda.ok),
                ok_bytes: load(&stats.lambda.ok_bytes),
                dropped: load(&stats.lambda.dropped),
                failed: load(&stats.lambda.failed),
                waiting: load(&stats.lambda.buffered),
                invocations: load(&stats.lambda.invocations),
                success_ratio: stats.lambda.success_ratio(),
                last_duration_ms: load(&stats.lambda.last_duration_ms),
                last_error: stats.lambda.last_error(),
            }),
        }
    }
}

impl ClockStatus {
    pub fn of(mode: &str, now_ms: i64) -> ClockStatus {
        ClockStatus { mode: mode.to_owned(), now_ms, now: rfc3339_millis(now_ms) }
    }
}
