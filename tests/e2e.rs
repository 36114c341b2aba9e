//! End to end on the local backend: the real producer publishes seeded
//! events to tansu, the real delivery writes them to the in-process S3, the
//! manual clock crosses the buffer interval, and the landing is checked
//! against what was produced and against a reviewed snapshot.
//!
//! Review snapshot changes with `cargo insta review`. Nothing is redacted:
//! event ids and contents are seeded, timestamps come from the manual clock,
//! and the stack's seed makes the uuids in keys reproducible.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::{TimeZone, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use streamlab::delivery::naming::default_key_regex;
use streamlab::events::{Event, EventGenerator, GeneratorConfig};
use streamlab::harness;

use crate::common;

use common::{kafka_records, wait_for, Pipeline};

const SEED: u64 = 20_260_713;
const SPEC: &str = "fixtures/streams/orders-to-s3.json";

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
    // Phase 1 at 14:58:30; the buffer interval is 300 s, so its objects are
    // cut at 15:03:30 but keep the 14 h prefix of their oldest record.
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 58, 30).unwrap();
    let partitions = 3;
    let pipeline = Pipeline::start_with(Path::new(SPEC), partitions, start, |o| o.seed(SEED)).await?;
    let spec = pipeline.spec.clone();
    let running = pipeline.deliver().await?;
    let stats = running.stats.clone();

    let total = 10_000u64;
    let half = total / 2;
    let mut generator = GeneratorConfig::new(SEED, start.timestamp_millis());
    generator.mean_gap_ms = 5;
    let mut events: Vec<Event> = EventGenerator::new(&generator).take(total as usize).collect();
    let expected: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let phase2 = events.split_off(half as usize);

    pipeline.publish(events).await?;
    wait_for("phase 1 consumed", Duration::from_secs(30), || stats.read() == half).await?;
    ensure!(stats.objects.load(std::sync::atomic::Ordering::SeqCst) == 0, "nothing may land before the interval");
    pipeline.pass_interval().await?;
    wait_for("phase 1 delivered", Duration::from_secs(10), || stats.delivered() == half).await?;

    // Phase 2: the rest of the same seeded stream, past the hour boundary.
    pipeline.publish(phase2).await?;
    wait_for("phase 2 consumed", Duration::from_secs(10), || stats.read() == total).await?;
    pipeline.pass_interval().await?;
    wait_for("phase 2 delivered", Duration::from_secs(10), || stats.delivered() == total).await?;
    running.stop().await?;
    let elapsed = wall.elapsed();

    // Exactly once: the multiset of landed event ids equals what was produced.
    let objects = pipeline.objects().await?;
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let mut summaries = Vec::new();
    let in_kafka = kafka_records(pipeline.bootstrap(), spec.topic(), total as usize)?;
    let key_shape = default_key_regex(spec.name(), "");
    for object in &objects {
        let records = harness::json_records(&object.body)?;
        ensure!(!records.is_empty(), "{} is empty", object.key);
        let mut oldest = i64::MAX;
        for record in &records {
            let id = record["event_id"].as_str().context("record without event_id")?;
            *landed.entry(id.to_owned()).or_default() += 1;
            oldest = oldest.min(in_kafka[id].2);
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
            key: object.key.clone(),
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
