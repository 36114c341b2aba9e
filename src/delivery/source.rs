//! Reading the topic as Firehose does: one consumer group named after the
//! stream, static membership, offsets committed only by delivery.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use crate::spec::StartPosition;

/// How long broker requests made before and during start-up may take.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot reach the Kafka broker at {bootstrap}: {source}. Is it running? Check --bootstrap")]
    Unreachable { bootstrap: String, source: KafkaError },
    #[error("topic {topic:?} does not exist on the broker at {bootstrap}; create it or fix MSKSourceConfiguration.TopicName")]
    NoSuchTopic { topic: String, bootstrap: String },
    #[error("cannot create a Kafka consumer for {bootstrap}: {source}")]
    Client { bootstrap: String, source: KafkaError },
}

/// Decides where partitions without a committed offset start, and tells the
/// delivery loop which partitions were taken away.
///
/// `ReadFromTimestamp` is resolved by reading such a partition from its
/// earliest offset and skipping records older than the timestamp, up to the
/// first one at or after it. That is exactly what Kafka's offsets-for-times
/// lookup would return, but it does not depend on the broker answering that
/// lookup correctly (tansu 0.6 does not).
pub struct SourceContext {
    topic: String,
    /// The timestamp a never-committed partition starts at; `None` is the
    /// earliest offset.
    start_ms: Option<i64>,
    revoked: Mutex<Vec<i32>>,
    /// Partitions still skipping records older than `start_ms`.
    skipping: Mutex<HashSet<i32>>,
    /// Partitions currently assigned, for the assignment watchdog.
    assigned: Mutex<HashSet<i32>>,
}

impl SourceContext {
    fn new(topic: &str, start: StartPosition, activated_at_ms: i64) -> Self {
        let start_ms = match start {
            StartPosition::Earliest => None,
            StartPosition::Timestamp(ms) => Some(ms),
            StartPosition::ActivationTime => Some(activated_at_ms),
        };
        Self {
            topic: topic.to_owned(),
            start_ms,
            revoked: Mutex::default(),
            skipping: Mutex::default(),
            assigned: Mutex::default(),
        }
    }

    /// How many partitions this instance owns now.
    pub fn assigned_count(&self) -> usize {
        self.assigned.lock().expect("assigned lock").len()
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked lock"))
    }

    /// Whether a record is before `ReadFromTimestamp` and must be skipped.
    /// The first record at or after it ends skipping for its partition.
    pub fn skip(&self, partition: i32, timestamp_ms: i64) -> bool {
        let Some(start) = self.start_ms else { return false };
        let mut skipping = self.skipping.lock().expect("skipping lock");
        if !skipping.contains(&partition) {
            return false;
        }
        if timestamp_ms < start {
            return true;
        }
        skipping.remove(&partition);
        false
    }

    /// Rewrites the assignment's offsets: committed offsets win; partitions
    /// the group never committed start at the earliest offset, skipping up to
    /// `ReadFromTimestamp`.
    fn position(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) -> Result<(), KafkaError> {
        let committed = consumer.committed_offsets(tpl.clone(), BROKER_TIMEOUT)?;
        let mut skipping = self.skipping.lock().expect("skipping lock");
        for element in committed.elements() {
            let partition = element.partition();
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => {
                    if self.start_ms.is_some() {
                        skipping.insert(partition);
                    }
                    Offset::Beginning
                }
            };
            info!(topic = %self.topic, partition, ?offset, "assigned");
            tpl.set_partition_offset(&self.topic, partition, offset)?;
        }
        Ok(())
    }
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.position(consumer, tpl) {
                    // Without a position librdkafka falls back to
                    // auto.offset.reset=earliest: duplicates, never loss.
                    error!(error = %e, "cannot resolve start offsets; starting from committed or earliest");
                }
                if let Err(e) = consumer.assign(tpl) {
                    error!(error = %e, "assign failed");
                }
                self.assigned.lock().expect("assigned lock").extend(tpl.elements().iter().map(|e| e.partition()));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(?partitions, "revoked");
                let mut skipping = self.skipping.lock().expect("skipping lock");
                let mut assigned = self.assigned.lock().expect("assigned lock");
                partitions.iter().for_each(|p| {
                    skipping.remove(p);
                    assigned.remove(p);
                });
                drop((skipping, assigned));
                self.revoked.lock().expect("revoked lock").extend(partitions);
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "unassign failed");
                }
            }
            other => {
                warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

pub type Source = StreamConsumer<SourceContext>;

/// Settings for the consumer beyond the spec.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub bootstrap: String,
    /// Stable per delivery instance: with static membership a restarted
    /// instance gets its partitions back without a rebalance.
    pub instance_id: String,
}

/// Fails fast, with a message naming the broker, when it cannot be reached
/// or the topic is missing.
pub fn check_topic(bootstrap: &str, topic: &str) -> Result<usize, SourceError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|source| SourceError::Client { bootstrap: bootstrap.to_owned(), source })?;
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .map_err(|source| SourceError::Unreachable { bootstrap: bootstrap.to_owned(), source })?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        return Err(SourceError::NoSuchTopic { topic: topic.to_owned(), bootstrap: bootstrap.to_owned() });
    }
    Ok(partitions)
}

/// Creates the group consumer and subscribes it.
pub fn subscribe(
    settings: &SourceSettings,
    group: &str,
    topic: &str,
    start: StartPosition,
    activated_at_ms: i64,
    static_membership: bool,
) -> Result<Source, SourceError> {
    let context = SourceContext::new(topic, start, activated_at_ms);
    let mut config = ClientConfig::new();
    if let Ok(contexts) = std::env::var("STREAMLAB_RDKAFKA_DEBUG") {
        // librdkafka's own tracing (e.g. `cgrp,fetch`), shown with
        // STREAMLAB_LOG=rdkafka=debug.
        config.set("debug", contexts);
    }
    if static_membership {
        config.set("group.instance.id", format!("{group}-{}", settings.instance_id));
    }
    let consumer: Source = config
        .set("bootstrap.servers", &settings.bootstrap)
        .set("group.id", group)
        .set("client.id", format!("streamlab-deliver-{}", settings.instance_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Only reached when a committed offset fell out of retention:
        // re-reading beats skipping.
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        // A local emulator should react within a tick, not a 500 ms long poll.
        .set("fetch.wait.max.ms", "50")
        .set("allow.auto.create.topics", "false")
        .create_with_context(context)
        .map_err(|source| SourceError::Client { bootstrap: settings.bootstrap.clone(), source })?;
    consumer
        .subscribe(&[topic])
        .map_err(|source| SourceError::Client { bootstrap: settings.bootstrap.clone(), source })?;
    Ok(consumer)
}
