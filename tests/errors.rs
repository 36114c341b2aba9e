//! Records that cannot be delivered as configured land under the error
//! prefix as Firehose's JSON error lines, never dropped: records that are not
//! JSON or lack a partition key, records over 10 MB, and records beyond the
//! active-partition limit.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use chrono::{TimeZone, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use streamlab::delivery::errors;
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::harness;

use common::{error_lines, wait_for, Pipeline, ERROR_FIELDS};

const SPEC: &str = "fixtures/streams/dynamic-partitioning-event-type.json";

async fn send_raw(bootstrap: &str, topic: &str, values: &[Vec<u8>], timestamp_ms: i64) -> Result<()> {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("message.max.bytes", "20000000").create()?;
    for value in values {
        let record = FutureRecord::<(), _>::to(topic).payload(value).timestamp(timestamp_ms);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_records_land_as_error_lines() -> Result<()> {
    let now = Utc.with_ymd_and_hms(2026, 3, 8, 6, 58, 0).unwrap();
    let pipeline = Pipeline::start_with(Path::new(SPEC), 1, now, |o| o.seed(3)).await?;
    let running = pipeline.deliver().await?;
    let events: Vec<_> = EventGenerator::new(&GeneratorConfig::new(3, now.timestamp_millis())).take(20).collect();
    pipeline.publish(events.clone()).await?;
    let huge = {
        let mut v = br#"{"event_type":"page_viewed","pad":""#.to_vec();
        v.resize(10 * 1024 * 1024 + 100, b'x');
        v.extend_from_slice(br#""}"#);
        v
    };
    let bad = vec![
        b"not json at all".to_vec(),
        br#"{"no_event_type":true}"#.to_vec(),
        huge.clone(),
        vec![0xff, 0xfe, 0x00, 0x9c],
        Vec::new(),
    ];
    send_raw(pipeline.bootstrap(), pipeline.spec.topic(), &bad, now.timestamp_millis()).await?;

    let stats = running.stats.clone();
    wait_for("all records read", Duration::from_secs(30), || stats.read() == 25).await?;
    pipeline.pass_interval().await?;
    wait_for("all records delivered", Duration::from_secs(10), || stats.delivered() == 25).await?;
    let stats = running.stop().await?;
    ensure!(stats.error_records.load(std::sync::atomic::Ordering::SeqCst) == 5);

    let objects = pipeline.objects().await?;
    let lines = error_lines(&objects, &ERROR_FIELDS)?;
    ensure!(lines.len() == 5, "{lines:?}");
    // `streamlab inspect` counts the same error records by code.
    let report = streamlab::inspect::report("s3://shop-events-raw", &objects, &[], &Default::default());
    let codes: Vec<(&str, u64)> =
        report.streams[0].tally.error_records_by_code.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    ensure!(
        codes == [(errors::METADATA_EXTRACTION_CODE, 4), (errors::RECORD_TOO_LARGE_CODE, 1)]
            || codes == [(errors::RECORD_TOO_LARGE_CODE, 1), (errors::METADATA_EXTRACTION_CODE, 4)],
        "{codes:?}"
    );
    let by_code: BTreeMap<&str, (&String, &serde_json::Value)> =
        lines.iter().map(|(k, v)| (v["errorCode"].as_str().unwrap_or_default(), (k, v))).collect();

    let (key, line) = by_code[errors::RECORD_TOO_LARGE_CODE];
    ensure!(key.starts_with("errors/processing-failed/2026/03/08/06/orders-by-type-1-2026-03-08-06-58-00-"), "{key}");
    ensure!(!key.ends_with(".gz") && !key.contains('.'), "error objects have no extension: {key}");
    let raw = base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().context("rawData")?)?;
    ensure!(raw == huge, "the oversized record must be kept whole");

    let extraction: Vec<_> = lines.iter().filter(|(_, v)| v["errorCode"] == errors::METADATA_EXTRACTION_CODE).collect();
    ensure!(extraction.len() == 4, "not JSON, no key, not UTF-8, empty");
    for (key, line) in &extraction {
        ensure!(key.starts_with("errors/metadata-extraction-failed/2026/03/08/06/"), "{key}");
        ensure!(line["arrivalTimestamp"] == now.timestamp_millis());
    }
    let messages: Vec<&str> = extraction.iter().map(|(_, l)| l["errorMessage"].as_str().unwrap_or_default()).collect();
    ensure!(messages.contains(&"Non JSON record provided"), "{messages:?}");
    ensure!(messages.contains(&"partition key \"event_type\" is null or missing"), "{messages:?}");
    // Every bad record is kept byte for byte in rawData.
    let mut raw: Vec<Vec<u8>> = extraction
        .iter()
        .map(|(_, l)| base64::engine::general_purpose::STANDARD.decode(l["rawData"].as_str().unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    raw.sort();
    let mut sent: Vec<Vec<u8>> = bad.iter().filter(|v| **v != huge).cloned().collect();
    sent.sort();
    ensure!(raw == sent, "rawData must hold the original bytes");

    // The valid events landed in their partitions, each exactly once.
    let mut landed = Vec::new();
    for object in objects.iter().filter(|o| o.key.starts_with("events/")) {
        for record in harness::json_records(&object.body)? {
            let event_type = record["event_type"].as_str().context("event_type")?;
            ensure!(
                object.key.starts_with(&format!("events/event_type={event_type}/2026/03/08/06/")),
                "{}",
                object.key
            );
            landed.push(record["event_id"].as_str().context("event_id")?.to_owned());
        }
    }
    landed.sort();
    let mut want: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    want.sort();
    ensure!(landed == want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_beyond_the_active_partition_limit_go_to_the_error_prefix() -> Result<()> {
    let now = Utc.with_ymd_and_hms(2026, 3, 8, 6, 58, 0).unwrap();
    let pipeline = Pipeline::start_with(Path::new(SPEC), 1, now, |mut o| {
        o.active_partition_limit = 3;
        o.seed(3)
    })
    .await?;
    let running = pipeline.deliver().await?;
    let events: Vec<_> = EventGenerator::new(&GeneratorConfig::new(5, now.timestamp_millis())).take(200).collect();
    pipeline.publish(events.clone()).await?;
    let stats = running.stats.clone();
    wait_for("all records read", Duration::from_secs(30), || stats.read() == 200).await?;
    pipeline.pass_interval().await?;
    wait_for("all records delivered", Duration::from_secs(10), || stats.delivered() == 200).await?;
    running.stop().await?;

    let objects = pipeline.objects().await?;
    let partitions: Vec<&str> =
        objects.iter().filter(|o| o.key.starts_with("events/")).map(|o| o.key.as_str()).collect();
    ensure!(partitions.len() == 3, "{partitions:?}");
    // Every event is somewhere: in a partition, or whole in an error line.
    let mut landed = Vec::new();
    for object in objects.iter().filter(|o| o.key.starts_with("events/")) {
        landed.extend(
            harness::json_records(&object.body)?.iter().map(|r| r["event_id"].as_str().unwrap_or_default().to_owned()),
        );
    }
    for (key, line) in error_lines(&objects, &ERROR_FIELDS)? {
        ensure!(key.starts_with("errors/activePartitionExceeded/"), "{key}");
        ensure!(line["errorCode"] == errors::ACTIVE_PARTITIONS_CODE);
        let raw = base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().context("rawData")?)?;
        let event: serde_json::Value = serde_json::from_slice(&raw)?;
        landed.push(event["event_id"].as_str().context("event_id")?.to_owned());
    }
    landed.sort();
    let mut want: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    want.sort();
    ensure!(landed == want, "{} landed, {} produced", landed.len(), want.len());
    Ok(())
}
