//! Reading the topic as Firehose does: one consumer group named after the
//! stream, static membership, offsets committed only by delivery.

use std::collections::{BTreeMap, HashSet};
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
/// delivery loop which partitions it owns and which were taken away.
pub struct SourceContext {
    topic: String,
    /// Where each never-committed partition starts, resolved once when the
    /// stream became active (see [`resolve_start_offsets`]). A partition
    /// missing here was added later and starts at its earliest offset.
    start_offsets: BTreeMap<i32, i64>,
    revoked: Mutex<Vec<i32>>,
    /// Partitions currently assigned, for the assignment watchdog.
    assigned: Mutex<HashSet<i32>>,
    /// The offset each assigned partition started reading at, before any
    /// record arrives from it.
    started_at: Mutex<BTreeMap<i32, i64>>,
}

impl SourceContext {
    fn new(topic: &str, start_offsets: BTreeMap<i32, i64>) -> Self {
        Self {
            topic: topic.to_owned(),
            start_offsets,
            revoked: Mutex::default(),
            assigned: Mutex::default(),
            started_at: Mutex::default(),
        }
    }

    /// How many partitions this instance owns now.
    pub fn assigned_count(&self) -> usize {
        self.assigned.lock().expect("assigned lock").len()
    }

    /// The partitions this instance owns now.
    pub fn assigned_partitions(&self) -> HashSet<i32> {
        self.assigned.lock().expect("assigned lock").clone()
    }

    /// Where each owned partition started reading.
    pub fn start_positions(&self) -> BTreeMap<i32, i64> {
        let owned = self.assigned_partitions();
        self.started_at
            .lock()
            .expect("started lock")
            .iter()
            .filter(|(p, _)| owned.contains(p))
            .map(|(p, o)| (*p, *o))
            .collect()
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked lock"))
    }

    /// Rewrites the assignment's offsets: committed offsets win; partitions
    /// the group never committed start where the stream's start position put
    /// them.
    fn position<C: ConsumerContext, K: Consumer<C>>(
        &self,
        consumer: &K,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), KafkaError> {
        let committed = consumer.committed_offsets(tpl.clone(), BROKER_TIMEOUT)?;
        for element in committed.elements() {
            let partition = element.partition();
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => self.start_offsets.get(&partition).map_or(Offset::Beginning, |o| Offset::Offset(*o)),
            };
            if let Offset::Offset(o) = offset {
                self.started_at.lock().expect("started lock").insert(partition, o);
            }
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
                let mut assigned = self.assigned.lock().expect("assigned lock");
                partitions.iter().for_each(|p| {
                    assigned.remove(p);
                });
                drop(assigned);
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

/// How an instance gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Every partition, assigned directly, offsets still committed to the
    /// stream's group: for a stack that runs one instance per stream. No group
    /// join, so no rebalance delay (tansu makes a joining member wait ~6 s).
    Assigned,
    /// Consumer-group membership, so several instances share the partitions.
    Group,
}

/// Settings for the consumer beyond the spec.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub bootstrap: String,
    /// Stable id of this delivery instance: given, it makes the instance a
    /// static member of the group (`group.instance.id`), so a restarted
    /// instance with the same id gets its partitions back without a
    /// rebalance. Absent, the instance is a dynamic member: two instances
    /// started the same way never share an id, which would fence one of them.
    pub instance_id: Option<String>,
    pub membership: Membership,
}

fn metadata_consumer(bootstrap: &str) -> Result<BaseConsumer, SourceError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|source| SourceError::Client { bootstrap: bootstrap.to_owned(), source })
}

fn partitions_of(consumer: &BaseConsumer, bootstrap: &str, topic: &str) -> Result<Vec<i32>, SourceError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .map_err(|source| SourceError::Unreachable { bootstrap: bootstrap.to_owned(), source })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(SourceError::NoSuchTopic { topic: topic.to_owned(), bootstrap: bootstrap.to_owned() });
    }
    Ok(partitions)
}

/// Fails fast, with a message naming the broker, when it cannot be reached
/// or the topic is missing. Returns the topic's partitions.
pub fn check_topic(bootstrap: &str, topic: &str) -> Result<Vec<i32>, SourceError> {
    partitions_of(&metadata_consumer(bootstrap)?, bootstrap, topic)
}

/// Where each partition starts for a stream that became active now: the
/// earliest offset for `ReadFromTimestamp` 0, else Kafka's offsets-for-times
/// answer for the timestamp (or the activation time): the first record at or
/// after it, or the end of the partition when there is none yet. Resolved
/// once and recorded with the stream, so a restart before the first commit
/// starts at the same place.
pub fn resolve_start_offsets(
    bootstrap: &str,
    topic: &str,
    start: StartPosition,
    activated_at_ms: i64,
) -> Result<BTreeMap<i32, i64>, SourceError> {
    let consumer = metadata_consumer(bootstrap)?;
    let partitions = partitions_of(&consumer, bootstrap, topic)?;
    let fail = |source| SourceError::Unreachable { bootstrap: bootstrap.to_owned(), source };
    let timestamp = match start {
        StartPosition::Earliest => None,
        StartPosition::Timestamp(ms) => Some(ms),
        StartPosition::ActivationTime => Some(activated_at_ms),
    };
    let mut out = BTreeMap::new();
    let Some(timestamp) = timestamp else {
        for p in partitions {
            let (low, _) = consumer.fetch_watermarks(topic, p, BROKER_TIMEOUT).map_err(fail)?;
            out.insert(p, low);
        }
        return Ok(out);
    };
    let mut query = TopicPartitionList::new();
    for p in &partitions {
        query.add_partition_offset(topic, *p, Offset::Offset(timestamp)).map_err(fail)?;
    }
    let found = consumer.offsets_for_times(query, BROKER_TIMEOUT).map_err(fail)?;
    for element in found.elements() {
        let offset = match element.offset() {
            Offset::Offset(o) if o >= 0 => o,
            // No record at or after the timestamp yet: start at the end.
            _ => consumer.fetch_watermarks(topic, element.partition(), BROKER_TIMEOUT).map_err(fail)?.1,
        };
        out.insert(element.partition(), offset);
    }
    Ok(out)
}

fn consumer_config(settings: &SourceSettings, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    if let Ok(contexts) = std::env::var("STREAMLAB_RDKAFKA_DEBUG") {
        // librdkafka's own tracing (e.g. `cgrp,fetch`), shown with
        // STREAMLAB_LOG=rdkafka=debug.
        config.set("debug", contexts);
    }
    config
        .set("bootstrap.servers", &settings.bootstrap)
        .set("group.id", group)
        .set(
            "client.id",
            format!(
                "streamlab-deliver-{}",
                settings.instance_id.clone().unwrap_or_else(|| std::process::id().to_string())
            ),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Only reached when a committed offset fell out of retention:
        // re-reading beats skipping.
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        // A local emulator should react within a tick, not a 500 ms long poll.
        .set("fetch.wait.max.ms", "50")
        .set("allow.auto.create.topics", "false");
    config
}

/// Creates the consumer: subscribed to the group, or with every partition
/// assigned directly, per `settings.membership`.
pub fn connect(
    settings: &SourceSettings,
    group: &str,
    topic: &str,
    start_offsets: BTreeMap<i32, i64>,
    static_membership: bool,
) -> Result<Source, SourceError> {
    let fail = |source| SourceError::Client { bootstrap: settings.bootstrap.clone(), source };
    let context = SourceContext::new(topic, start_offsets);
    let mut config = consumer_config(settings, group);
    if let (true, Membership::Group, Some(id)) = (static_membership, settings.membership, &settings.instance_id) {
        config.set("group.instance.id", format!("{group}-{id}"));
    }
    let consumer: Source = config.create_with_context(context).map_err(fail)?;
    match settings.membership {
        Membership::Group => consumer.subscribe(&[topic]).map_err(fail)?,
        Membership::Assigned => {
            let partitions = partitions_of(&metadata_consumer(&settings.bootstrap)?, &settings.bootstrap, topic)?;
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(topic, *p);
            }
            consumer
                .context()
                .position(&consumer, &mut tpl)
                .map_err(|source| SourceError::Unreachable { bootstrap: settings.bootstrap.clone(), source })?;
            consumer.assign(&tpl).map_err(fail)?;
            consumer.context().assigned.lock().expect("assigned lock").extend(partitions);
        }
    }
    Ok(consumer)
}
