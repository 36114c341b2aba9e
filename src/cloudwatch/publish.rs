//! `deliver --cloudwatch`: the stream's Firehose metrics sent to CloudWatch
//! with `PutMetricData` (real CloudWatch, or any endpoint such as a stack's
//! or LocalStack's), under a namespace of the user's choice since `AWS/` is
//! reserved, and its delivery-error events with `PutLogEvents`. The same
//! [`Sampler`] and [`ErrorEvents`] as a stack's own CloudWatch make the
//! datapoints and events, so what `deliver` publishes is what a stack shows.
//!
//! Delivery never waits for CloudWatch: a failed call is kept (bounded) and
//! retried with the next minute's, and logged once per failure streak.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_smithy_types::DateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::delivery_errors::{ErrorEvents, Failures, Source};
use super::firehose::{Datum, DatumValue, Sampler, StreamFigures, DIMENSION, METRICS};
use super::logs;
use crate::aws_error::SdkFailure;
use crate::clock::SharedClock;
use crate::delivery::DeliveryStats;
use crate::spec::StreamSpec;

/// The namespace `deliver --cloudwatch` publishes under unless told.
pub const DEFAULT_NAMESPACE: &str = "Streamlab/Firehose";
/// `PutMetricData` takes at most 1,000 datapoints per call...
pub const MAX_DATA_PER_CALL: usize = 1_000;
/// ...and a request body of at most 1 MB.
pub const MAX_CALL_BYTES: usize = 1_000_000;
/// Datapoints kept while CloudWatch does not answer (about a week of one
/// stream's minutes); the oldest go first.
pub const MAX_PENDING: usize = 200_000;
/// `PutLogEvents`: at most 10,000 events and 1,048,576 bytes per call,
/// each event counting its message's bytes plus 26.
const MAX_LOG_EVENTS_PER_CALL: usize = 10_000;
const MAX_LOG_CALL_BYTES: usize = 1_048_576;
const LOG_EVENT_OVERHEAD: usize = 26;

/// us-east-1 prices of custom metrics (`firehose-api.md` part 2, read
/// 2026-06): per metric-month for the first 10,000, and per 1,000 API
/// requests.
pub const PRICE_PER_METRIC_MONTH: f64 = 0.30;
pub const PRICE_PER_1000_REQUESTS: f64 = 0.01;
pub const PRICES_READ: &str = "2026-06";
/// Minutes in the 730-hour month AWS bills by.
const MINUTES_PER_MONTH: f64 = 730.0 * 60.0;

/// Why publishing cannot start or a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("--cloudwatch-namespace {0:?}: namespaces starting with \"AWS/\" are reserved for AWS's own services and PutMetricData refuses them; choose your own, such as the default {DEFAULT_NAMESPACE}")]
    ReservedNamespace(String),
    #[error("--cloudwatch-namespace {namespace:?}: {problem}; use 1 to 255 letters, digits and . - _ / # : (and spaces), such as {DEFAULT_NAMESPACE}")]
    InvalidNamespace { namespace: String, problem: String },
    #[error("PutMetricData of {datapoints} datapoints to namespace {namespace:?} failed: {failure}")]
    Metrics { namespace: String, datapoints: usize, failure: SdkFailure },
    #[error("PutLogEvents to log group {group:?} / stream {stream:?} failed: {failure}{hint}")]
    Logs { group: String, stream: String, failure: SdkFailure, hint: &'static str },
}

/// Checks a namespace as CloudWatch does, before anything is sent.
pub fn validate_namespace(namespace: &str) -> Result<(), PublishError> {
    let invalid =
        |problem: &str| PublishError::InvalidNamespace { namespace: namespace.to_owned(), problem: problem.to_owned() };
    if namespace.starts_with("AWS/") {
        return Err(PublishError::ReservedNamespace(namespace.to_owned()));
    }
    if namespace.is_empty() || namespace.len() > 255 {
        return Err(invalid("a namespace has 1 to 255 characters"));
    }
    if namespace.chars().any(|c| !(c.is_ascii_alphanumeric() || " .-_/#:".contains(c))) {
        return Err(invalid("it has a character CloudWatch does not allow"));
    }
    if namespace.trim() != namespace || namespace.starts_with(':') {
        return Err(invalid("it starts or ends with a space, or starts with a colon"));
    }
    Ok(())
}

/// The size of a query-protocol `PutMetricData` body carrying `data` (the
/// most verbose of CloudWatch's protocols, so every SDK's body fits where
/// this one does).
pub fn query_body_size(namespace: &str, data: &[Datum]) -> usize {
    let mut form = query_head(namespace);
    for (i, datum) in data.iter().enumerate() {
        append_datum(&mut form, i + 1, datum);
    }
    form.finish().len()
}

fn query_head(namespace: &str) -> form_urlencoded::Serializer<'static, String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "PutMetricData")
        .append_pair("Version", "2010-08-01")
        .append_pair("Namespace", namespace);
    form
}

fn append_datum(form: &mut form_urlencoded::Serializer<'static, String>, index: usize, datum: &Datum) {
    let field = |name: &str| format!("MetricData.member.{index}.{name}");
    form.append_pair(&field("MetricName"), datum.name)
        .append_pair(&field("Dimensions.member.1.Name"), DIMENSION)
        .append_pair(&field("Dimensions.member.1.Value"), &datum.stream)
        .append_pair(&field("Timestamp"), &super::iso8601(datum.minute_ms))
        .append_pair(&field("Unit"), datum.unit);
    match datum.value {
        DatumValue::Single(v) => {
            form.append_pair(&field("Value"), &v.to_string());
        }
        DatumValue::Set { count, sum, min, max } => {
            form.append_pair(&field("StatisticValues.SampleCount"), &count.to_string())
                .append_pair(&field("StatisticValues.Sum"), &sum.to_string())
                .append_pair(&field("StatisticValues.Minimum"), &min.to_string())
                .append_pair(&field("StatisticValues.Maximum"), &max.to_string());
        }
    }
}

/// Splits `data` into calls of at most [`MAX_DATA_PER_CALL`] datapoints and
/// [`MAX_CALL_BYTES`] each, in order.
pub fn batches<'a>(namespace: &str, data: &'a [Datum]) -> Vec<&'a [Datum]> {
    let base = query_head(namespace).finish().len();
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, base);
    for (i, datum) in data.iter().enumerate() {
        // A datum's share of the body, numbered as the last member of a
        // full call (the widest index), with its `&`.
        let mut form = form_urlencoded::Serializer::new(String::new());
        append_datum(&mut form, MAX_DATA_PER_CALL, datum);
        let size = form.finish().len() + 1;
        if i > start && (i - start == MAX_DATA_PER_CALL || bytes + size > MAX_CALL_BYTES) {
            calls.push(&data[start..i]);
            (start, bytes) = (i, base);
        }
        bytes += size;
    }
    if start < data.len() {
        calls.push(&data[start..]);
    }
    calls
}

/// What the custom metrics of `deliver --cloudwatch` cost a month.
#[derive(Debug, Clone, PartialEq)]
pub struct MonthlyCost {
    pub metrics: usize,
    pub calls: f64,
    pub metrics_usd: f64,
    pub calls_usd: f64,
}

impl MonthlyCost {
    /// `metrics` series published every minute of a 730-hour month.
    pub fn of(metrics: usize) -> Self {
        let calls = metrics.div_ceil(MAX_DATA_PER_CALL).max(1) as f64 * MINUTES_PER_MONTH;
        MonthlyCost {
            metrics,
            calls,
            metrics_usd: metrics as f64 * PRICE_PER_METRIC_MONTH,
            calls_usd: calls / 1000.0 * PRICE_PER_1000_REQUESTS,
        }
    }
}

impl std::fmt::Display for MonthlyCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} custom metrics x ${PRICE_PER_METRIC_MONTH:.2} = ${:.2} a month, plus {:.0} PutMetricData calls x ${PRICE_PER_1000_REQUESTS:.2}/1,000 = ${:.2}; ${:.2} a month in all (us-east-1 prices read {PRICES_READ}; Firehose's own AWS/Firehose metrics are free)",
            self.metrics,
            self.metrics_usd,
            self.calls,
            self.calls_usd,
            self.metrics_usd + self.calls_usd
        )
    }
}

/// The metrics a stream publishes (those that apply to its spec).
pub fn metric_count(figures: &StreamFigures) -> usize {
    METRICS.iter().filter(|m| m.applies.to(figures)).count()
}

/// Sends datapoints and error events; keeps what failed for the next try.
pub struct Publisher {
    metrics: aws_sdk_cloudwatch::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    namespace: String,
    pending: VecDeque<Datum>,
    /// Datapoints dropped because CloudWatch stayed away too long.
    pub dropped: u64,
    /// Datapoints and calls sent so far.
    pub sent: u64,
    pub calls: u64,
}

impl Publisher {
    pub fn new(config: &aws_config::SdkConfig, namespace: &str) -> Result<Self, PublishError> {
        validate_namespace(namespace)?;
        Ok(Publisher {
            metrics: aws_sdk_cloudwatch::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            namespace: namespace.to_owned(),
            pending: VecDeque::new(),
            dropped: 0,
            sent: 0,
            calls: 0,
        })
    }

    /// Sends `data` after whatever an earlier call could not send, in
    /// calls within CloudWatch's limits. On failure what is unsent stays
    /// pending.
    pub async fn put_metrics(&mut self, data: Vec<Datum>) -> Result<(), PublishError> {
        self.pending.extend(data);
        let over = self.pending.len().saturating_sub(MAX_PENDING);
        self.pending.drain(..over);
        self.dropped += over as u64;
        while !self.pending.is_empty() {
            let pending = self.pending.make_contiguous();
            let call = batches(&self.namespace, pending)[0].len();
            let datums = pending[..call].iter().map(to_sdk).collect();
            self.metrics
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(datums))
                .send()
                .await
                .map_err(|e| PublishError::Metrics {
                    namespace: self.namespace.clone(),
                    datapoints: call,
                    failure: SdkFailure::of(&e),
                })?;
            self.pending.drain(..call);
            self.sent += call as u64;
            self.calls += 1;
        }
        Ok(())
    }

    /// Sends error events (timestamp, message) to the spec's group and
    /// stream, which must exist, as on AWS.
    pub async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[(i64, String)],
    ) -> Result<(), PublishError> {
        let mut start = 0;
        while start < events.len() {
            let (mut end, mut bytes) = (start, 0);
            while end < events.len()
                && end - start < MAX_LOG_EVENTS_PER_CALL
                && bytes + events[end].1.len() + LOG_EVENT_OVERHEAD <= MAX_LOG_CALL_BYTES
            {
                bytes += events[end].1.len() + LOG_EVENT_OVERHEAD;
                end += 1;
            }
            let batch = events[start..end.max(start + 1)]
                .iter()
                .map(|(timestamp, message)| {
                    InputLogEvent::builder().timestamp(*timestamp).message(message).build().expect("both fields set")
                })
                .collect();
            self.logs
                .put_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .set_log_events(Some(batch))
                .send()
                .await
                .map_err(|e| {
                    let missing = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
                    PublishError::Logs {
                        group: group.to_owned(),
                        stream: stream.to_owned(),
                        failure: SdkFailure::of(&e),
                        hint: if missing {
                            " (Firehose writes only into an existing group and stream: create them with `aws logs create-log-group` and `aws logs create-log-stream`)"
                        } else {
                            ""
                        },
                    }
                })?;
            start = end.max(start + 1);
        }
        Ok(())
    }
}

fn to_sdk(datum: &Datum) -> MetricDatum {
    let builder = MetricDatum::builder()
        .metric_name(datum.name)
        .dimensions(Dimension::builder().name(DIMENSION).value(&datum.stream).build())
        .timestamp(DateTime::from_millis(datum.minute_ms))
        .unit(StandardUnit::from(datum.unit));
    match datum.value {
        DatumValue::Single(v) => builder.value(v),
        DatumValue::Set { count, sum, min, max } => builder
            .statistic_values(StatisticSet::builder().sample_count(count).sum(sum).minimum(min).maximum(max).build()),
    }
    .build()
}

/// One delivery's stream, as `deliver --cloudwatch` publishes it.
pub struct Published {
    pub spec: StreamSpec,
    pub version: u32,
    pub stats: Arc<DeliveryStats>,
    pub active_partition_limit: usize,
    pub clock: SharedClock,
}

impl Published {
    fn figures(&self) -> StreamFigures {
        StreamFigures::of(&self.spec, &self.stats, self.active_partition_limit)
    }
}

/// Samples every second until `stop`, sends each closed minute's
/// datapoints and the new error events; at `stop`, closes the open minute
/// and sends what is left (so the sums equal the delivery's counters).
/// Returns the publisher for its figures.
pub async fn publish_until(mut publisher: Publisher, stream: Published, stop: CancellationToken) -> Publisher {
    let mut sampler = Sampler::default();
    let mut errors = ErrorEvents::default();
    let target = logs::logging_target(stream.spec.destination());
    let arn = stream.spec.delivery_stream_arn();
    let mut failing = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = stop.cancelled() => true,
        };
        let now = stream.clock.now_millis();
        let data = if stopping {
            sampler.flush(now, vec![stream.figures()])
        } else {
            sampler.sample_data(now, vec![stream.figures()]).1
        };
        let mut outcome =
            if data.is_empty() && publisher.pending.is_empty() { Ok(()) } else { publisher.put_metrics(data).await };
        if let Some((group, log_stream)) = &target {
            let source =
                Source { stream: stream.spec.name(), arn: &arn, bucket: stream.spec.bucket(), version: stream.version };
            let events: Vec<(i64, String)> =
                errors.since_last(&source, &Failures::of(&stream.stats)).into_iter().map(|e| (now, e)).collect();
            if !events.is_empty() {
                outcome = outcome.and(publisher.put_log_events(group, log_stream, &events).await);
            }
        }
        match outcome {
            Err(e) if !failing => {
                warn!("{e}; streamlab retries with the next minute's datapoints (delivery goes on)");
                failing = true;
            }
            Ok(()) if failing => {
                info!(
                    "CloudWatch answers again: {} datapoints sent in {} calls so far",
                    publisher.sent, publisher.calls
                );
                failing = false;
            }
            _ => {}
        }
        if stopping {
            if !publisher.pending.is_empty() {
                warn!(
                    "{} datapoints could not be sent to CloudWatch before stopping ({})",
                    publisher.pending.len(),
                    publisher.namespace
                );
            }
            return publisher;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, stream: &str) -> Vec<Datum> {
        (0..n)
            .map(|i| Datum {
                name: METRICS[i % METRICS.len()].name,
                unit: METRICS[i % METRICS.len()].unit,
                stream: stream.to_owned(),
                minute_ms: 1_796_000_000_000 + (i as i64 / 20) * 60_000,
                value: if i % 7 == 0 {
                    DatumValue::Set { count: 3.0, sum: 2.0, min: 0.0, max: 1.0 }
                } else {
                    DatumValue::Single(i as f64 * 1234.5)
                },
            })
            .collect()
    }

    #[test]
    fn datapoints_go_in_calls_of_at_most_1000_and_1_mb() {
        let data = data(2_500, "orders-to-s3");
        let calls = batches(DEFAULT_NAMESPACE, &data);
        assert_eq!(calls.iter().map(|c| c.len()).collect::<Vec<_>>(), [1000, 1000, 500]);
        for call in &calls {
            assert!(query_body_size(DEFAULT_NAMESPACE, call) <= MAX_CALL_BYTES);
        }
        // In order, nothing lost or repeated.
        assert_eq!(calls.concat(), data);
    }

    #[test]
    fn long_stream_names_split_by_size_before_the_count() {
        // A 64-character stream name (Firehose's longest) with long metric
        // names: 1,000 datapoints would pass 1 MB in the query protocol.
        let data = data(2_500, &"s".repeat(64));
        let per_datum = query_body_size(DEFAULT_NAMESPACE, &data[..1000]) / 1000;
        let calls = batches(DEFAULT_NAMESPACE, &data);
        for call in &calls {
            let size = query_body_size(DEFAULT_NAMESPACE, call);
            assert!(size <= MAX_CALL_BYTES, "{size} bytes in a call of {}", call.len());
            assert!(call.len() <= MAX_DATA_PER_CALL);
        }
        assert_eq!(calls.concat(), data);
        if per_datum * 1000 > MAX_CALL_BYTES {
            assert!(calls.len() > 3, "size splits first");
        }
    }

    #[test]
    fn reserved_and_malformed_namespaces_are_refused_with_the_fix() {
        assert!(validate_namespace(DEFAULT_NAMESPACE).is_ok());
        let reserved = validate_namespace("AWS/Firehose").unwrap_err().to_string();
        assert!(reserved.contains("reserved") && reserved.contains(DEFAULT_NAMESPACE), "{reserved}");
        for bad in ["", "a\u{e9}b", " lead", &"x".repeat(256)] {
            assert!(matches!(validate_namespace(bad), Err(PublishError::InvalidNamespace { .. })), "{bad:?}");
        }
    }

    #[test]
    fn the_monthly_cost_counts_metrics_and_one_call_a_minute() {
        let cost = MonthlyCost::of(12);
        assert_eq!(cost.calls, 43_800.0);
        assert!((cost.metrics_usd - 3.60).abs() < 1e-9);
        assert!((cost.calls_usd - 0.438).abs() < 1e-9);
        let text = cost.to_string();
        assert!(text.contains("12 custom metrics x $0.30 = $3.60") && text.contains("$4.04 a month in all"), "{text}");
        assert_eq!(MonthlyCost::of(2_500).calls, 3.0 * 43_800.0);
    }
}
