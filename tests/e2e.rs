//! End to end on the local backend: the real producer publishes seeded
//! events to tansu, the real delivery writes them to the in-process S3, the
//! manual clock crosses the buffer interval, and the landing is checked
//! against what was produced and against a reviewed snapshot.
//!
//! Review snapshot changes with `cargo insta review`. Only uuids are
//! redacted: everything else (event ids, contents, timestamps) is seeded or
//! comes from the manual clock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::{TimeZone, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use sha2::{Digest, Sha256};
use streamlab::backend::{Backend, BackendKind};
use streamlab::clock::{ManualClock, SharedClock};
use streamlab::delivery::naming::default_key_regex;
use streamlab::delivery::sink::{self, S3Sink};
use streamlab::delivery::source::SourceSettings;
use streamlab::delivery::{Delivery, DeliveryOptions, DeliveryStats};
use streamlab::events::{Event, EventGenerator, GeneratorConfig};
use streamlab::harness;
use streamlab::producer::{self, ProducerStats};
use tokio_util::sync::CancellationToken;

const SEED: u64 = 20_260_713;
const SPEC: &str = "fixtures/streams/orders-to-s3.json";

/// Waits for a condition with a deadline, so a broken pipeline fails the test
/// with a message instead of hanging it.
async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !condition() {
        ensure!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Publishes events with the real producer and checks every one was acked.
async fn publish(backend: &Backend, topic: &str, clock: SharedClock, events: Vec<Event>) -> Result<()> {
    let count = events.len() as u64;
    let stats = Arc::new(ProducerStats::default());
    producer::publish(
        &backend.bootstrap,
        topic,
        None,
        events.into_iter(),
        clock,
        stats.clone(),
        CancellationToken::new(),
    )
    .await?;
    ensure!(stats.acked() == count, "broker acknowledged {} of {count}", stats.acked());
    Ok(())
}

/// Every record's Kafka timestamp, by event id, read straight from the topic:
/// the independent source of truth for "the oldest record in the object".
fn kafka_timestamps(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Result<HashMap<String, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-reader")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = HashMap::new();
    let started = Instant::now();
    while out.len() < expected {
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "read {} of {expected} records back from Kafka",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            let event: serde_json::Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
            let id = event["event_id"].as_str().context("event without event_id")?.to_owned();
            out.insert(id, message.timestamp().to_millis().context("record without timestamp")?);
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct ObjectSummary {
    key: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    records: usize,
    bytes: usize,
    sha256: String,
    first_record: serde_json::Value,
    last_record: serde_json::Value,
}

/// 10,000 seeded events in two phases an hour apart: every event lands exactly
/// once, keys have the AWS shape, each key's time prefix is the hour of the
/// oldest record in the object, and the landing matches the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_land_exactly_once() -> Result<()> {
    let wall = Instant::now();
    let work = tempfile::tempdir()?;
    let backend = Backend::start(BackendKind::Local, work.path()).await?;
    let spec = streamlab::spec::load(Path::new(SPEC))?;
    let partitions = 3;
    harness::create_topic(&backend.bootstrap, &spec.topic, partitions).await?;
    let client = sink::client(&backend.s3).await;
    harness::create_bucket(&client, &spec.bucket).await?;

    // Phase 1 at 14:58:30; the buffer interval is 300 s, so its objects are
    // cut at 15:03:30 but keep the 14 h prefix of their oldest record.
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 58, 30).unwrap();
    let manual = Arc::new(ManualClock::new(start));
    let clock: SharedClock = manual.clone();
    let sink = S3Sink::new(client.clone(), &spec.bucket, backend.s3.endpoint.as_deref());
    let options = DeliveryOptions {
        source: SourceSettings { bootstrap: backend.bootstrap.clone(), instance_id: "e2e".into() },
        version: 1,
        seed: Some(SEED),
    };
    // Joining the group (static membership) takes tansu ~6 s: join while
    // producing.
    let delivery = Delivery::connect(spec.clone(), options, sink, clock.clone()).await?;
    let stats: Arc<DeliveryStats> = delivery.stats();
    let stop = CancellationToken::new();
    let running = tokio::spawn(delivery.run(stop.clone()));

    let total = 10_000u64;
    let half = total / 2;
    let mut generator = GeneratorConfig::new(SEED, start.timestamp_millis());
    generator.mean_gap_ms = 5;
    let mut events: Vec<Event> = EventGenerator::new(&generator).take(total as usize).collect();
    let expected: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let phase2 = events.split_off(half as usize);

    publish(&backend, &spec.topic, clock.clone(), events).await?;
    wait_for("phase 1 consumed", Duration::from_secs(30), || stats.read() == half).await?;
    ensure!(stats.objects.load(std::sync::atomic::Ordering::SeqCst) == 0, "nothing may land before the interval");
    manual.advance(Duration::from_secs(301));
    wait_for("phase 1 delivered", Duration::from_secs(10), || stats.delivered() == half).await?;

    // Phase 2: the rest of the same seeded stream, past the hour boundary.
    publish(&backend, &spec.topic, clock.clone(), phase2).await?;
    wait_for("phase 2 consumed", Duration::from_secs(10), || stats.read() == total).await?;
    manual.advance(Duration::from_secs(301));
    wait_for("phase 2 delivered", Duration::from_secs(10), || stats.delivered() == total).await?;
    stop.cancel();
    running.await??;
    let elapsed = wall.elapsed();

    // Exactly once: the multiset of landed event ids equals what was produced.
    let objects = harness::read_bucket(&client, &spec.bucket).await?;
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let mut summaries = Vec::new();
    let timestamps = kafka_timestamps(&backend.bootstrap, &spec.topic, partitions, total as usize)?;
    let key_shape = default_key_regex(&spec.name, "");
    let uuid = regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")?;
    for object in &objects {
        let records = harness::json_records(&object.body)?;
        ensure!(!records.is_empty(), "{} is empty", object.key);
        let mut oldest = i64::MAX;
        for record in &records {
            let id = record["event_id"].as_str().context("record without event_id")?;
            *landed.entry(id.to_owned()).or_default() += 1;
            oldest = oldest.min(timestamps[id]);
        }
        let caps = key_shape
            .captures(&object.key)
            .with_context(|| format!("{} does not have the AWS key shape", object.key))?;
        let oldest = Utc.timestamp_millis_opt(oldest).unwrap();
        let prefix = format!("{}/{}/{}/{}", &caps[1], &caps[2], &caps[3], &caps[4]);
        ensure!(
            prefix == oldest.format("%Y/%m/%d/%H").to_string(),
            "{}: prefix is not the hour of its oldest record {oldest}",
            object.key
        );
        let suffix_time = format!("{}-{}-{}-{}-{}-{}", &caps[6], &caps[7], &caps[8], &caps[9], &caps[10], &caps[11]);
        ensure!(
            suffix_time == oldest.format("%Y-%m-%d-%H-%M-%S").to_string(),
            "{}: suffix time is not {oldest}",
            object.key
        );
        summaries.push(ObjectSummary {
            // The uuid is the one random part; its shape was checked above.
            key: uuid.replace(&object.key, "[uuid]").into_owned(),
            content_type: object.content_type.clone(),
            content_encoding: object.content_encoding.clone(),
            records: records.len(),
            bytes: object.body.len(),
            sha256: format!("{:x}", Sha256::digest(&object.body)),
            first_record: records[0].clone(),
            last_record: records[records.len() - 1].clone(),
        });
    }
    let duplicates: Vec<_> = landed.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(duplicates.is_empty(), "duplicated: {duplicates:?}");
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    ensure!(landed.keys().cloned().collect::<Vec<_>>() == expected_sorted, "landed ids differ from produced ids");
    ensure!(
        objects.len() == 2 * partitions as usize,
        "expected one object per partition per phase, got {}",
        objects.len()
    );

    eprintln!("e2e: {total} events landed exactly once in {} objects; wall time {elapsed:?}", objects.len());
    insta::assert_yaml_snapshot!("orders_to_s3_landing", summaries);
    Ok(())
}
