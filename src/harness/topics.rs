//! Reading back what a topic holds, for checks of what landed against what
//! was produced. Blocking: call from a blocking task.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::HarnessError;
use crate::kafka::admin::TIMEOUT;
use crate::kafka::{KafkaConnection, KafkaContext};

type KafkaConsumer = BaseConsumer<KafkaContext>;

/// The values of every record of `topic` from `from` (per partition; absent
/// partitions from their start) up to `to` (exclusive), in offset order per
/// partition. Blocking; call from a blocking task.
pub fn read_range(
    kafka: &KafkaConnection,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    to: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<Vec<Bytes>, HarnessError> {
    use rdkafka::Message;
    let fail = |detail: String| HarnessError::Topic {
        topic: topic.to_owned(),
        bootstrap: kafka.bootstrap().to_owned(),
        detail,
    };
    let consumer: KafkaConsumer = kafka
        .create(
            kafka
                .config()
                .set("group.id", "streamlab-checker")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10"),
        )
        .map_err(|e| fail(e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0usize;
    for (partition, end) in to {
        let start = from.get(partition).map_or(Offset::Beginning, |o| Offset::Offset(*o));
        if from.get(partition).is_some_and(|o| o >= end) || *end == 0 {
            continue;
        }
        tpl.add_partition_offset(topic, *partition, start).map_err(|e| fail(e.to_string()))?;
        remaining += 1;
    }
    if remaining == 0 {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl).map_err(|e| fail(e.to_string()))?;
    let mut done = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let started = Instant::now();
    while done.len() < remaining {
        if started.elapsed() > timeout {
            return Err(fail(format!("could not read the topic to its end within {timeout:?}")));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            // Transaction markers take offsets no message shows: the
            // consumer's position still moves past them.
            if let Ok(positions) = consumer.position() {
                for e in positions.elements() {
                    if let (Offset::Offset(o), Some(end)) = (e.offset(), to.get(&e.partition())) {
                        if o >= *end {
                            done.insert(e.partition());
                        }
                    }
                }
            }
            continue;
        };
        let message = message.map_err(|e| fail(e.to_string()))?;
        let end = to.get(&message.partition()).copied().unwrap_or(0);
        if message.offset() < end {
            out.push(Bytes::copy_from_slice(message.payload().unwrap_or_default()));
        }
        if message.offset() + 1 >= end {
            done.insert(message.partition());
        }
    }
    Ok(out)
}

/// Where each event is in the topic: event id -> (partition, offset, record
/// timestamp), read back from the earliest offset until `expected` events are
/// seen. Blocking; call from a blocking task.
pub fn read_topic(
    kafka: &KafkaConnection,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, (i32, i64, i64)>, HarnessError> {
    use rdkafka::Message;
    let fail = |detail: String| HarnessError::Topic {
        topic: topic.to_owned(),
        bootstrap: kafka.bootstrap().to_owned(),
        detail,
    };
    let consumer: KafkaConsumer = kafka
        .create(kafka.config().set("group.id", "streamlab-reader").set("fetch.wait.max.ms", "10"))
        .map_err(|e| fail(e.to_string()))?;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(|e| fail(e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).map_err(|e| fail(e.to_string()))?;
        }
    }
    consumer.assign(&tpl).map_err(|e| fail(e.to_string()))?;
    let mut out = std::collections::HashMap::with_capacity(expected);
    let started = Instant::now();
    while out.len() < expected {
        if started.elapsed() > timeout {
            return Err(fail(format!("read back {} of {expected} events within {timeout:?}", out.len())));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.map_err(|e| fail(e.to_string()))?;
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(message.payload().unwrap_or_default()) else {
            continue;
        };
        if let Some(id) = event["event_id"].as_str() {
            let ts = message.timestamp().to_millis().unwrap_or_default();
            out.insert(id.to_owned(), (message.partition(), message.offset(), ts));
        }
    }
    Ok(out)
}
