//! The real producer: seeded events into a Kafka topic with rdkafka, the way
//! the application under test would publish them.
//!
//! Idempotent (`enable.idempotence`, `acks=all`) so broker retries never
//! duplicate; keyed by `customer_id` so one customer's funnel stays ordered in
//! one partition; the Kafka timestamp comes from the injected clock so object
//! prefixes follow virtual time. A full local queue makes the producer wait
//! for delivery reports instead of dropping events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::SharedClock;
use crate::events::{Event, EventGenerator, GeneratorConfig};
use crate::kafka::{KafkaConnection, KafkaContext};

/// Most delivery reports awaited at once; beyond it the producer waits for
/// the oldest, which bounds memory independently of librdkafka's queue.
const MAX_IN_FLIGHT: usize = 50_000;

#[derive(Debug, Clone)]
pub struct ProducerOptions {
    pub kafka: KafkaConnection,
    pub topic: String,
    /// Events per wall-clock second; `None` is as fast as the broker takes
    /// them.
    pub rate: Option<f64>,
    /// Stop after this many events; `None` runs until shutdown.
    pub count: Option<u64>,
    pub generator: GeneratorConfig,
    /// Stamp each record with its event's `occurred_at` instead of the
    /// clock's now.
    pub event_timestamps: bool,
}

/// Counters shared with whoever watches.
#[derive(Debug, Default)]
pub struct ProducerStats {
    /// Handed to the client.
    pub sent: AtomicU64,
    /// Acknowledged by the broker (delivery report OK).
    pub acked: AtomicU64,
    /// Delivery report with an error: the event did not reach the topic.
    pub failed: AtomicU64,
    /// Times the local queue was full and the producer waited.
    pub backpressure_waits: AtomicU64,
}

impl ProducerStats {
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    #[error("cannot create a Kafka producer for {bootstrap}: {source}")]
    Client { bootstrap: String, source: KafkaError },
    #[error("cannot publish to topic {topic:?} at {bootstrap}: {source}")]
    Send { topic: String, bootstrap: String, source: KafkaError },
    #[error("{failed} of {sent} events were not acknowledged by the broker at {bootstrap} (first error: {first}); they are not in the topic")]
    Undelivered { failed: u64, sent: u64, bootstrap: String, first: String },
    #[error("stopped with {unanswered} of {sent} events not acknowledged by the broker at {bootstrap} within {STOP_GRACE:?}; they may not be in the topic. Is the broker up?")]
    Stopped { unanswered: usize, sent: u64, bootstrap: String },
}

/// How long a stopped producer waits for the broker to acknowledge what it
/// sent: a command stops within about this much of Ctrl-C, whatever the
/// broker does (librdkafka alone would retry for `message.timeout.ms`).
pub const STOP_GRACE: Duration = Duration::from_millis(1500);

/// Publishes generated events until `count` is reached or `shutdown` fires,
/// then waits for every delivery report.
pub async fn produce(
    options: &ProducerOptions,
    clock: SharedClock,
    stats: Arc<ProducerStats>,
    shutdown: CancellationToken,
) -> Result<(), ProducerError> {
    let events = EventGenerator::new(&options.generator).take(options.count.map_or(usize::MAX, |n| n as usize));
    let timestamps = if options.event_timestamps { Timestamps::Event } else { Timestamps::Clock };
    publish_with(&options.kafka, &options.topic, options.rate, events, clock, timestamps, stats, shutdown).await
}

/// Where record timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// The clock's now, as an application stamping records on send.
    Clock,
    /// The event's `occurred_at` (falling back to the clock if it does not
    /// parse), as an application that stamps records with event time.
    Event,
}

/// Publishes the given events (e.g. a seeded stream resumed part-way), with
/// the same guarantees as [`produce`].
pub async fn publish(
    kafka: &KafkaConnection,
    topic: &str,
    rate: Option<f64>,
    events: impl Iterator<Item = Event>,
    clock: SharedClock,
    stats: Arc<ProducerStats>,
    shutdown: CancellationToken,
) -> Result<(), ProducerError> {
    publish_with(kafka, topic, rate, events, clock, Timestamps::Clock, stats, shutdown).await
}

/// [`publish`] with a choice of record timestamps.
#[allow(clippy::too_many_arguments)]
pub async fn publish_with(
    kafka: &KafkaConnection,
    topic: &str,
    rate: Option<f64>,
    events: impl Iterator<Item = Event>,
    clock: SharedClock,
    timestamps: Timestamps,
    stats: Arc<ProducerStats>,
    shutdown: CancellationToken,
) -> Result<(), ProducerError> {
    let bootstrap = kafka.bootstrap();
    let producer: FutureProducer<KafkaContext> = kafka
        .create(
            kafka
                .config()
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "5")
                .set("client.id", "streamlab-producer"),
        )
        .map_err(|source| ProducerError::Client { bootstrap: bootstrap.to_owned(), source })?;
    let _nudging = nudge_producer_id(&producer, topic, &stats);

    let mut pending: FuturesUnordered<DeliveryFuture> = FuturesUnordered::new();
    let mut first_error: Option<String> = None;
    let started = Instant::now();
    for (i, event) in events.enumerate() {
        if shutdown.is_cancelled() {
            break;
        }
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(due) => {}
            }
        }
        let payload = event.to_json();
        let timestamp = match timestamps {
            Timestamps::Event => chrono::DateTime::parse_from_rfc3339(&event.occurred_at)
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(|_| clock.now_millis()),
            Timestamps::Clock => clock.now_millis(),
        };
        loop {
            let record = FutureRecord::to(topic).key(&event.customer_id).payload(&payload).timestamp(timestamp);
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    stats.backpressure_waits.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        report = pending.next() => match report {
                            Some(report) => account(report, &stats, &mut first_error),
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        },
                    }
                }
                Err((source, _)) => {
                    return Err(ProducerError::Send {
                        topic: topic.to_owned(),
                        bootstrap: bootstrap.to_owned(),
                        source,
                    })
                }
            }
        }
        while let Some(Some(report)) = pending.next().now_or_never() {
            account(report, &stats, &mut first_error);
        }
        if pending.len() >= MAX_IN_FLIGHT {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(report) = pending.next() => account(report, &stats, &mut first_error),
            }
        }
    }
    // Every report, or once stopped, those that come within STOP_GRACE.
    let mut stop_at = shutdown.is_cancelled().then(|| Instant::now() + STOP_GRACE);
    loop {
        let report = match stop_at {
            None => tokio::select! {
                report = pending.next() => report,
                () = shutdown.cancelled() => {
                    stop_at = Some(Instant::now() + STOP_GRACE);
                    continue;
                }
            },
            Some(at) => tokio::select! {
                report = pending.next() => report,
                () = tokio::time::sleep_until(at) => {
                    return Err(ProducerError::Stopped {
                        unanswered: pending.len(),
                        sent: stats.sent.load(Ordering::Relaxed),
                        bootstrap: bootstrap.to_owned(),
                    });
                }
            },
        };
        match report {
            Some(report) => account(report, &stats, &mut first_error),
            None => break,
        }
    }
    let _ = producer.flush(Duration::from_secs(10));
    match first_error {
        None => Ok(()),
        Some(first) => Err(ProducerError::Undelivered {
            failed: stats.failed.load(Ordering::Relaxed),
            sent: stats.sent.load(Ordering::Relaxed),
            bootstrap: bootstrap.to_owned(),
            first,
        }),
    }
}

/// librdkafka's idempotent producer asks for its producer id as soon as it
/// is created, and asks again only on its 500 ms timer or when a metadata
/// answer comes in. Since librdkafka 2.10 the bootstrap connection is closed
/// once the broker it names is known, and the first ask falls in the gap
/// between the two: every new producer's first acknowledgement took half a
/// second (a third of the test loop). Asking for metadata every few
/// milliseconds until the first report makes it ask again at once. Stops
/// when the returned guard drops.
fn nudge_producer_id(
    producer: &FutureProducer<KafkaContext>,
    topic: &str,
    stats: &Arc<ProducerStats>,
) -> tokio_util::sync::DropGuard {
    let stop = CancellationToken::new();
    let (producer, topic, stats, stopped) = (producer.clone(), topic.to_owned(), stats.clone(), stop.clone());
    let reported = move || stats.acked.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed);
    let before = reported();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        while !stopped.is_cancelled() && reported() == before && started.elapsed() < Duration::from_secs(2) {
            let _ = producer.client().fetch_metadata(Some(&topic), Duration::from_millis(500));
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    stop.drop_guard()
}

fn account(
    report: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
    stats: &ProducerStats,
    first_error: &mut Option<String>,
) {
    let error = match report {
        Ok(Ok(_)) => {
            stats.acked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Err((e, _))) => e.to_string(),
        Err(_) => "producer dropped before the delivery report".to_owned(),
    };
    stats.failed.fetch_add(1, Ordering::Relaxed);
    warn!(%error, "event not delivered");
    first_error.get_or_insert(error);
}
