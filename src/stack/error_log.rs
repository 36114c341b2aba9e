//! Firehose's delivery-error log: for streams with
//! `CloudWatchLoggingOptions` enabled, every failed S3 PUT becomes one event
//! in the spec's log group and stream, in Firehose's format and with its
//! error codes (`S3.NoSuchBucket`, ...), timestamped on the stack's clock.
//! The group and stream are made if missing (AWS expects them to exist;
//! the stack says so once).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::Streams;
use crate::cloudwatch::logs::{self, Logs};

/// Failed attempts written per stream per sample at most: AWS samples its
/// error logs when failure rates are high.
const MAX_EVENTS_PER_SAMPLE: u64 = 100;

#[derive(Default)]
pub(super) struct ErrorLog {
    pub(super) logs: Arc<Logs>,
    /// Failed PUT attempts already logged, per stream.
    seen: Mutex<BTreeMap<String, u64>>,
}

impl ErrorLog {
    /// Logs the PUT failures of every logging stream since the last call.
    pub(super) fn record(&self, streams: &Streams, now_ms: i64) {
        let running: Vec<_> = streams
            .lock()
            .iter()
            .filter_map(|s| {
                let target = logs::logging_target(s.plan.spec().destination())?;
                Some((s.plan.spec().clone(), s.delivery.clone()?, target))
            })
            .collect();
        let mut seen = self.seen.lock().expect("error log lock");
        for (spec, delivery, (group, stream)) in running {
            let stats = delivery.stats();
            let failures = stats.put_failures.load(std::sync::atomic::Ordering::Relaxed);
            let last = seen.entry(spec.name().to_owned()).or_insert(0);
            // A new delivery counts from zero again.
            let new = if failures >= *last { failures - *last } else { failures };
            *last = failures;
            if new == 0 {
                continue;
            }
            let error = stats.last_put_error().unwrap_or_default();
            let s3_code =
                error.split("failed: ").nth(1).and_then(|rest| rest.split(" (HTTP").next()).unwrap_or("InternalError");
            let (code, message) = logs::s3_error(s3_code);
            let event =
                logs::error_event(&spec.delivery_stream_arn(), spec.bucket(), delivery.state.version, code, message);
            for _ in 0..new.min(MAX_EVENTS_PER_SAMPLE) {
                if self.logs.append(&group, &stream, now_ms, event.clone(), now_ms) {
                    warn!(
                        stream = spec.name(),
                        "log group {group:?} / stream {stream:?} of CloudWatchLoggingOptions did not exist: streamlab made them for Firehose's error events (on AWS they must exist before the stream writes)"
                    );
                }
            }
        }
    }
}
