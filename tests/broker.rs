//! The broker built into streamlab (tansu 0.6.0 with the storage fixes in
//! `vendor/tansu-storage`): each fault the fixes remove, against the broker
//! the local backend runs. Stock 0.6.0 fails every test here but the last.
//! (InitProducerId v0-v2 is `tests/clients.rs`: kafkajs and aiokafka; the
//! durable `file://` storage and the idempotent retry after a kill are
//! `tests/durable.rs` and the soak.)

use crate::common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use streamlab::backend::{free_port, BrokerSettings, BrokerStorage, TansuBroker};
use streamlab::kafka::{KafkaConnection, KafkaContext};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn broker(dir: &std::path::Path, auto_create_partitions: Option<i32>) -> Result<(TansuBroker, KafkaConnection)> {
    std::fs::create_dir_all(dir)?;
    let settings =
        BrokerSettings { port: free_port()?, advertised: None, auto_create_partitions, storage: BrokerStorage::Memory };
    // The built-in broker, whatever $STREAMLAB_TANSU says: these are its tests.
    let broker = TansuBroker::start(None, dir, &settings).await.context("the built-in broker")?;
    let kafka = KafkaConnection::plaintext(broker.bootstrap());
    Ok((broker, kafka))
}

/// Sends `count` records in one produce request (one record batch): a long
/// linger holds them until the flush.
async fn produce_batch(kafka: &KafkaConnection, topic: &str, count: usize, timestamp_ms: i64) -> Result<()> {
    let mut config = kafka.config();
    config.set("linger.ms", "5000").set("batch.num.messages", "10000");
    let producer: FutureProducer<KafkaContext> = kafka.create(&config)?;
    let sends: Vec<_> = (0..count)
        .map(|i| {
            let payload = format!("record {i}");
            producer
                .send_result(FutureRecord::<(), _>::to(topic).payload(&payload).partition(0).timestamp(timestamp_ms))
                .map_err(|(e, _)| e)
        })
        .collect::<Result<_, _>>()?;
    producer.flush(TIMEOUT)?;
    for send in sends {
        send.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

fn read_from(kafka: &KafkaConnection, topic: &str, offset: i64, expected: usize) -> Result<Vec<i64>> {
    read_with(kafka, topic, offset, expected, "500")
}

/// [`read_from`] with the broker told to hold a fetch up to
/// `fetch_wait_max_ms` while it finds no records.
fn read_with(
    kafka: &KafkaConnection,
    topic: &str,
    offset: i64,
    expected: usize,
    fetch_wait_max_ms: &str,
) -> Result<Vec<i64>> {
    let mut config = kafka.config();
    config
        .set("group.id", "broker-test")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", fetch_wait_max_ms);
    let consumer: BaseConsumer<KafkaContext> = kafka.create(&config)?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let mut offsets = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while offsets.len() < expected && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            offsets.push(message?.offset());
        }
    }
    Ok(offsets)
}

/// A broker with one topic holding one batch of 10 records.
async fn one_batch_of_ten(dir: &std::path::Path) -> Result<(TansuBroker, KafkaConnection)> {
    let (broker, kafka) = broker(dir, None).await?;
    streamlab::kafka::admin::create_topic(&kafka, "batches", 1).await?;
    produce_batch(&kafka, "batches", 10, 1_700_000_000_000).await?;
    Ok((broker, kafka))
}

#[tokio::test]
async fn a_fetch_from_inside_a_batch_gets_the_rest_of_it() -> Result<()> {
    common::init_logging();
    let dir = tempfile::tempdir()?;
    let (_broker, kafka) = one_batch_of_ten(dir.path()).await?;
    // A consumer resuming from a committed offset inside the batch: stock
    // tansu skipped the rest of the batch.
    let offsets = tokio::task::spawn_blocking(move || read_from(&kafka, "batches", 4, 6)).await??;
    ensure!(offsets == (4..10).collect::<Vec<_>>(), "read from offset 4 of a 10-record batch: {offsets:?}");
    Ok(())
}

#[tokio::test]
async fn a_fetch_that_finds_records_answers_without_waiting() -> Result<()> {
    common::init_logging();
    let dir = tempfile::tempdir()?;
    let (_broker, kafka) = one_batch_of_ten(dir.path()).await?;
    // Stock tansu held every fetch for the whole `fetch.wait.max.ms`, records
    // or not: with 30 s nothing arrives within the 10 s this read waits.
    let offsets = tokio::task::spawn_blocking(move || read_with(&kafka, "batches", 0, 10, "30000")).await??;
    ensure!(offsets == (0..10).collect::<Vec<_>>(), "read 10 records with a 30 s fetch wait: {offsets:?}");
    Ok(())
}

#[tokio::test]
async fn the_latest_offset_is_one_past_the_last_record() -> Result<()> {
    common::init_logging();
    let dir = tempfile::tempdir()?;
    let (_broker, kafka) = one_batch_of_ten(dir.path()).await?;
    // Stock tansu answered ListOffsets(latest) with the last batch's base
    // offset plus one (1 here): a consumer at the end skipped 9 records.
    let (low, high) = tokio::task::spawn_blocking(move || -> Result<(i64, i64)> {
        let consumer: BaseConsumer<KafkaContext> = kafka.create(&kafka.config())?;
        Ok(consumer.fetch_watermarks("batches", 0, TIMEOUT)?)
    })
    .await??;
    ensure!((low, high) == (0, 10), "watermarks of one batch of 10: {low}..{high}, expected 0..10");
    Ok(())
}

#[tokio::test]
async fn list_offsets_by_timestamp_finds_the_first_record_at_or_after_it() -> Result<()> {
    common::init_logging();
    let dir = tempfile::tempdir()?;
    let (_broker, kafka) = broker(dir.path(), None).await?;
    streamlab::kafka::admin::create_topic(&kafka, "times", 1).await?;
    let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    // Three batches an hour, a minute and no time apart in event time, all
    // written now: stock tansu answered by when the batch was written.
    produce_batch(&kafka, "times", 3, hour_ago).await?;
    produce_batch(&kafka, "times", 3, hour_ago + 60_000).await?;
    produce_batch(&kafka, "times", 3, hour_ago + 120_000).await?;
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<Offset>> {
        let consumer: BaseConsumer<KafkaContext> = kafka.create(&kafka.config())?;
        [hour_ago, hour_ago + 1, hour_ago + 60_000, hour_ago + 120_001]
            .into_iter()
            .map(|time| {
                let mut query = TopicPartitionList::new();
                query.add_partition_offset("times", 0, Offset::Offset(time))?;
                let answer = consumer.offsets_for_times(query, TIMEOUT)?;
                Ok(answer.find_partition("times", 0).context("partition 0 answered")?.offset())
            })
            .collect()
    })
    .await??;
    ensure!(
        found == [Offset::Offset(0), Offset::Offset(3), Offset::Offset(3), Offset::End],
        "offsets for the batches' times, a millisecond after the first, and after the last: {found:?}"
    );
    Ok(())
}

#[tokio::test]
async fn topics_are_created_on_first_use_only_when_the_broker_is_told_to() -> Result<()> {
    common::init_logging();
    let dir = tempfile::tempdir()?;
    // Two brokers in one process, one with auto-create: the setting is the
    // broker's own, not the process's.
    let (_auto, auto) = broker(&dir.path().join("auto"), Some(4)).await?;
    let (_plain, plain) = broker(&dir.path().join("plain"), None).await?;
    let partitions = |kafka: KafkaConnection| {
        tokio::task::spawn_blocking(move || -> Result<usize> {
            let mut config = kafka.config();
            config.set("allow.auto.create.topics", "true");
            let consumer: BaseConsumer<KafkaContext> = kafka.create(&config)?;
            let metadata = consumer.fetch_metadata(Some("made-on-use"), TIMEOUT)?;
            let topic = metadata.topics().first().context("the topic in the answer")?;
            Ok(if topic.error().is_some() { 0 } else { topic.partitions().len() })
        })
    };
    ensure!(partitions(auto).await?? == 4, "the auto-create broker made the topic with 4 partitions");
    ensure!(partitions(plain).await?? == 0, "the other broker answered that the topic does not exist");
    Ok(())
}

#[tokio::test]
async fn a_dropped_broker_has_released_its_port() -> Result<()> {
    common::init_logging();
    let dir = tempfile::tempdir()?;
    let (broker, kafka) = broker(dir.path(), None).await?;
    streamlab::kafka::admin::create_topic(&kafka, "any", 1).await?;
    let port: u16 = broker.bootstrap().rsplit(':').next().context("a port")?.parse()?;
    drop(broker);
    std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding {port} after the drop"))?;
    Ok(())
}
