//! Firehose's delivery-error log: for streams with
//! `CloudWatchLoggingOptions` enabled, every failed S3 PUT becomes one event
//! in the spec's log group and stream, in Firehose's format and with its
//! error codes (`S3.NoSuchBucket`, ...), timestamped on the stack's clock.
//! The group and stream are made if missing (AWS expects them to exist;
//! the stack says so once).

use std::sync::{Arc, Mutex};

use tracing::warn;

use super::Streams;
use crate::cloudwatch::delivery_errors::{ErrorEvents, Failures, Source};
use crate::cloudwatch::logs::{self, Logs};

#[derive(Default)]
pub(super) struct ErrorLog {
    pub(super) logs: Arc<Logs>,
    /// What each stream's delivery failed, as already logged.
    events: Mutex<ErrorEvents>,
}

impl ErrorLog {
    /// Logs the failures of every logging stream since the last call.
    pub(super) fn record(&self, streams: &Streams, now_ms: i64) {
        let running: Vec<_> = streams
            .lock()
            .iter()
            .filter_map(|s| {
                let target = logs::logging_target(s.plan.spec().destination())?;
                Some((s.plan.spec().clone(), s.delivery.clone()?, target))
            })
            .collect();
        let mut events = self.events.lock().expect("error log lock");
        for (spec, delivery, (group, stream)) in &running {
            let arn = spec.delivery_stream_arn();
            let source =
                Source { stream: spec.name(), arn: &arn, bucket: spec.bucket(), version: delivery.state.version };
            for event in events.since_last(&source, &Failures::of(&delivery.stats())) {
                if self.logs.append(group, stream, now_ms, event, now_ms) {
                    warn!(
                        stream = spec.name(),
                        "log group {group:?} / stream {stream:?} of CloudWatchLoggingOptions did not exist: streamlab made them for Firehose's error events (on AWS they must exist before the stream writes)"
                    );
                }
            }
        }
        events.retain(&running.iter().map(|(spec, ..)| spec.name()).collect::<Vec<_>>());
    }
}
