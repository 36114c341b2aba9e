//! Questions and orders for the cluster itself, shared by delivery (does the
//! topic exist, where does a new stream start) and the stack and harness
//! (create and delete topics, end offsets, a group's commits and lag). Every
//! call is blocking unless it is `async`: call those from a blocking task.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaConnection, KafkaContext};
use crate::spec::StartPosition;

/// How long one broker request may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Partitions a topic streamlab creates may have.
pub const PARTITIONS: RangeInclusive<i32> = 1..=10_000;

type MetadataConsumer = BaseConsumer<KafkaContext>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// `detail`: librdkafka's error, and the reason it logged (a TLS or SASL
    /// failure, a refused connection) when there is one.
    #[error("cannot reach the Kafka broker at {bootstrap}: {detail}. Is it running? Check --bootstrap and --kafka-security (MSK listens for plaintext on 9092, tls on 9094, scram on 9096, iam on 9098)")]
    Unreachable { bootstrap: String, detail: String },
    #[error("topic {topic:?} does not exist on the broker at {bootstrap}; create it or fix MSKSourceConfiguration.TopicName")]
    NoSuchTopic { topic: String, bootstrap: String },
    #[error("cannot create a Kafka consumer for {bootstrap}: {source}")]
    Client { bootstrap: String, source: KafkaError },
    #[error("cannot create topic {topic:?} on {bootstrap}: {detail}")]
    Topic { topic: String, bootstrap: String, detail: String },
    #[error("cannot query consumer group {group:?} on {bootstrap}: {detail}")]
    Group { group: String, bootstrap: String, detail: String },
    #[error("{what}: partitions must be between 1 and 10000; got {partitions}")]
    Partitions { what: String, partitions: i32 },
}

/// Refuses a partition count Kafka (and streamlab) would not create.
pub fn check_partitions(what: &str, partitions: i32) -> Result<i32, AdminError> {
    match PARTITIONS.contains(&partitions) {
        true => Ok(partitions),
        false => Err(AdminError::Partitions { what: what.to_owned(), partitions }),
    }
}

/// A consumer for metadata and watermarks; it never creates a topic by
/// asking about it.
fn metadata_consumer(kafka: &KafkaConnection) -> Result<MetadataConsumer, AdminError> {
    kafka
        .create(kafka.config().set("allow.auto.create.topics", "false"))
        .map_err(|source| AdminError::Client { bootstrap: kafka.bootstrap().to_owned(), source })
}

/// A broker failure, with the reason librdkafka gave for it (TLS, SASL), if
/// it gave one.
fn unreachable(consumer: &MetadataConsumer, bootstrap: &str, source: KafkaError) -> AdminError {
    // The reason arrives as an error event, which only a poll delivers.
    let _ = consumer.poll(Duration::ZERO);
    let reason = consumer.context().last_error().map(|r| format!(" ({r})")).unwrap_or_default();
    AdminError::Unreachable { bootstrap: bootstrap.to_owned(), detail: format!("{source}{reason}") }
}

fn partitions_of(consumer: &MetadataConsumer, bootstrap: &str, topic: &str) -> Result<Vec<i32>, AdminError> {
    let metadata =
        consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(|source| unreachable(consumer, bootstrap, source))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(AdminError::NoSuchTopic { topic: topic.to_owned(), bootstrap: bootstrap.to_owned() });
    }
    Ok(partitions)
}

/// Fails fast, with a message naming the broker, when it cannot be reached
/// or the topic is missing. Returns the topic's partitions.
pub fn check_topic(kafka: &KafkaConnection, topic: &str) -> Result<Vec<i32>, AdminError> {
    partitions_of(&metadata_consumer(kafka)?, kafka.bootstrap(), topic)
}

/// Where each partition starts for a stream that became active now: the
/// earliest offset for `ReadFromTimestamp` 0, else Kafka's offsets-for-times
/// answer for the timestamp (or the activation time): the first record at or
/// after it, or the end of the partition when there is none yet. Resolved
/// once and recorded with the stream, so a restart before the first commit
/// starts at the same place.
pub fn resolve_start_offsets(
    kafka: &KafkaConnection,
    topic: &str,
    start: StartPosition,
    activated_at_ms: i64,
) -> Result<BTreeMap<i32, i64>, AdminError> {
    let consumer = metadata_consumer(kafka)?;
    let partitions = partitions_of(&consumer, kafka.bootstrap(), topic)?;
    let fail = |source| unreachable(&consumer, kafka.bootstrap(), source);
    let timestamp = match start {
        StartPosition::Earliest => None,
        StartPosition::Timestamp(ms) => Some(ms),
        StartPosition::ActivationTime => Some(activated_at_ms),
    };
    let mut out = BTreeMap::new();
    let Some(timestamp) = timestamp else {
        for p in partitions {
            let (low, _) = consumer.fetch_watermarks(topic, p, TIMEOUT).map_err(fail)?;
            out.insert(p, low);
        }
        return Ok(out);
    };
    let mut query = TopicPartitionList::new();
    for p in &partitions {
        query.add_partition_offset(topic, *p, Offset::Offset(timestamp)).map_err(fail)?;
    }
    let found = consumer.offsets_for_times(query, TIMEOUT).map_err(fail)?;
    for element in found.elements() {
        let offset = match element.offset() {
            Offset::Offset(o) if o >= 0 => o,
            // No record at or after the timestamp yet: start at the end.
            _ => consumer.fetch_watermarks(topic, element.partition(), TIMEOUT).map_err(fail)?.1,
        };
        out.insert(element.partition(), offset);
    }
    Ok(out)
}

/// The low and high watermark of every partition of `topic`.
pub fn watermarks(kafka: &KafkaConnection, topic: &str) -> Result<BTreeMap<i32, (i64, i64)>, AdminError> {
    MetadataClient::new(kafka)?.watermarks(topic)
}

/// Each partition's end offset.
pub type EndOffsets = BTreeMap<i32, i64>;

/// One client for a process's periodic questions (which topics exist, where
/// each ends): a client per question costs a connection, its handshake (SASL
/// on MSK) and its threads, which a stack asking four times a second, and
/// for each of a hundred streams, paid over and over. It reconnects by itself
/// after a broker outage.
pub struct MetadataClient {
    consumer: MetadataConsumer,
    bootstrap: String,
}

impl MetadataClient {
    pub fn new(kafka: &KafkaConnection) -> Result<Self, AdminError> {
        Ok(MetadataClient { consumer: metadata_consumer(kafka)?, bootstrap: kafka.bootstrap().to_owned() })
    }

    fn unreachable(&self, source: KafkaError) -> AdminError {
        unreachable(&self.consumer, &self.bootstrap, source)
    }

    /// Every topic on the broker, waiting at most `timeout` (see
    /// [`list_topics_within`]).
    pub fn list_topics(&self, timeout: Duration) -> Result<Vec<String>, AdminError> {
        let metadata = self.consumer.fetch_metadata(None, timeout).map_err(|e| self.unreachable(e))?;
        Ok(metadata.topics().iter().map(|t| t.name().to_owned()).collect())
    }

    /// The low and high watermark of every partition of `topic`.
    pub fn watermarks(&self, topic: &str) -> Result<BTreeMap<i32, (i64, i64)>, AdminError> {
        partitions_of(&self.consumer, &self.bootstrap, topic)?
            .into_iter()
            .map(|p| Ok((p, self.consumer.fetch_watermarks(topic, p, TIMEOUT).map_err(|e| self.unreachable(e))?)))
            .collect()
    }

    /// Records held in `topic` across its partitions.
    pub fn topic_records(&self, topic: &str) -> Result<i64, AdminError> {
        Ok(self.watermarks(topic)?.values().map(|(low, high)| (high - low).max(0)).sum())
    }

    /// [`end_offsets`] of many topics, one answer per topic in order (a
    /// topic deleted meanwhile fails alone). One metadata request serves
    /// every topic, and the first timeout fails the topics not yet asked (a
    /// broker that went away is not waited for once per topic). Fails as a
    /// whole when the broker does not answer the metadata request.
    pub fn end_offsets_each(&self, topics: &[String]) -> Result<Vec<Result<EndOffsets, AdminError>>, AdminError> {
        let bootstrap = &self.bootstrap;
        let metadata = self.consumer.fetch_metadata(None, TIMEOUT).map_err(|e| self.unreachable(e))?;
        let partitions: BTreeMap<&str, Vec<i32>> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name(), t.partitions().iter().map(|p| p.id()).collect()))
            .collect();
        let mut gone: Option<String> = None;
        let mut answers = Vec::with_capacity(topics.len());
        for topic in topics {
            if let Some(detail) = &gone {
                answers.push(Err(AdminError::Unreachable { bootstrap: bootstrap.clone(), detail: detail.clone() }));
                continue;
            }
            let Some(ids) = partitions.get(topic.as_str()).filter(|ids| !ids.is_empty()) else {
                answers.push(Err(AdminError::NoSuchTopic { topic: topic.clone(), bootstrap: bootstrap.clone() }));
                continue;
            };
            let ends: Result<EndOffsets, AdminError> = ids
                .iter()
                .map(|&p| {
                    let (_, high) =
                        self.consumer.fetch_watermarks(topic, p, TIMEOUT).map_err(|e| self.unreachable(e))?;
                    Ok((p, high))
                })
                .collect();
            if let Err(AdminError::Unreachable { detail, .. }) = &ends {
                gone = Some(detail.clone());
            }
            answers.push(ends);
        }
        Ok(answers)
    }
}

/// The end offset (high watermark) of every partition of `topic`: where the
/// next record written will go.
pub fn end_offsets(kafka: &KafkaConnection, topic: &str) -> Result<BTreeMap<i32, i64>, AdminError> {
    Ok(watermarks(kafka, topic)?.into_iter().map(|(p, (_, high))| (p, high)).collect())
}

/// Records held in `topic` across its partitions.
pub fn topic_records(kafka: &KafkaConnection, topic: &str) -> Result<i64, AdminError> {
    MetadataClient::new(kafka)?.topic_records(topic)
}

/// Every topic on the broker.
pub fn list_topics(kafka: &KafkaConnection) -> Result<Vec<String>, AdminError> {
    list_topics_within(kafka, TIMEOUT)
}

/// [`list_topics`], waiting at most `timeout` for the broker: for periodic
/// checks, whose call in flight would otherwise hold up the process's exit
/// (a runtime waits for its blocking tasks) for the full timeout once the
/// broker is gone.
pub fn list_topics_within(kafka: &KafkaConnection, timeout: Duration) -> Result<Vec<String>, AdminError> {
    MetadataClient::new(kafka)?.list_topics(timeout)
}

fn cluster_metadata(kafka: &KafkaConnection, timeout: Duration) -> Result<rdkafka::metadata::Metadata, AdminError> {
    let consumer = metadata_consumer(kafka)?;
    consumer.fetch_metadata(None, timeout).map_err(|source| unreachable(&consumer, kafka.bootstrap(), source))
}

/// The `host:port` of every broker the cluster advertises.
pub fn broker_addresses(kafka: &KafkaConnection) -> Result<Vec<String>, AdminError> {
    Ok(cluster_metadata(kafka, TIMEOUT)?.brokers().iter().map(|b| format!("{}:{}", b.host(), b.port())).collect())
}

/// Deletes topics (missing ones are fine).
pub async fn delete_topics(kafka: &KafkaConnection, topics: &[&str]) -> Result<(), AdminError> {
    let fail = |detail: String| AdminError::Topic {
        topic: topics.join(","),
        bootstrap: kafka.bootstrap().to_owned(),
        detail: format!("cannot delete: {detail}"),
    };
    let admin: AdminClient<KafkaContext> = kafka.create(&kafka.config()).map_err(|e| fail(e.to_string()))?;
    let results = admin
        .delete_topics(topics, &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .map_err(|e| fail(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(fail(format!("{topic}: {code}"))),
        }
    }
    Ok(())
}

/// Creates a topic (an existing one is fine) and waits until its metadata
/// shows every partition.
pub async fn create_topic(kafka: &KafkaConnection, topic: &str, partitions: i32) -> Result<(), AdminError> {
    let fail =
        |detail: String| AdminError::Topic { topic: topic.to_owned(), bootstrap: kafka.bootstrap().to_owned(), detail };
    let admin: AdminClient<KafkaContext> = kafka.create(&kafka.config()).map_err(|e| fail(e.to_string()))?;
    // -1: the cluster's default replication (KIP-464): 1 on a local broker, 3 on
    // MSK, where 1 would fail acks=all producers under min.insync.replicas=2.
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let results = admin
        .create_topics(&[new_topic], &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .map_err(|e| fail(e.to_string()))?;
    // A topic that exists is used as it is: whatever its partition count, and
    // also where this identity may not create topics (a team's MSK).
    let mut existing = false;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existing = true,
            Err((
                _,
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::ClusterAuthorizationFailed),
            )) => {
                let metadata = admin.inner().fetch_metadata(Some(topic), TIMEOUT).map_err(|e| fail(e.to_string()))?;
                if !metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none()) {
                    return Err(fail(format!("{code}: the topic does not exist and this identity may not create it")));
                }
                existing = true;
            }
            Err((_, code)) => return Err(fail(code.to_string())),
        }
    }
    let wanted = if existing { 1 } else { partitions };
    let started = Instant::now();
    loop {
        let metadata = admin.inner().fetch_metadata(Some(topic), TIMEOUT).map_err(|e| fail(e.to_string()))?;
        let ready = metadata.topics().iter().any(|t| t.name() == topic && t.partitions().len() as i32 >= wanted);
        if ready {
            return Ok(());
        }
        if started.elapsed() > TIMEOUT {
            return Err(fail(format!("metadata does not show {partitions} partitions after {TIMEOUT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A consumer for group queries; it never joins the group.
fn group_client(
    kafka: &KafkaConnection,
    group: &str,
) -> Result<(MetadataConsumer, impl Fn(KafkaError) -> AdminError), AdminError> {
    let (b, g) = (kafka.bootstrap().to_owned(), group.to_owned());
    let fail = move |e: KafkaError| AdminError::Group { group: g.clone(), bootstrap: b.clone(), detail: e.to_string() };
    let consumer =
        kafka.create(kafka.config().set("group.id", group).set("enable.auto.commit", "false")).map_err(&fail)?;
    Ok((consumer, fail))
}

/// The group's committed offset per partition (`None`: never committed).
pub fn committed_offsets(
    kafka: &KafkaConnection,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, Option<i64>>, AdminError> {
    let (consumer, fail) = group_client(kafka, group)?;
    committed_with(&consumer, topic).map_err(fail)
}

fn committed_with(consumer: &MetadataConsumer, topic: &str) -> Result<BTreeMap<i32, Option<i64>>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| (e.partition(), if let Offset::Offset(o) = e.offset() { Some(o) } else { None }))
        .collect())
}

/// `KafkaOffsetLag`: records in the topic the group has not committed past.
pub fn consumer_lag(kafka: &KafkaConnection, group: &str, topic: &str) -> Result<i64, AdminError> {
    let (consumer, fail) = group_client(kafka, group)?;
    let mut lag = 0;
    for (partition, committed) in committed_with(&consumer, topic).map_err(&fail)? {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT).map_err(&fail)?;
        lag += (high - committed.unwrap_or(low)).max(0);
    }
    Ok(lag)
}
