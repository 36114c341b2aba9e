//! Every stream spec in `fixtures/streams/` runs end to end on its own local
//! backend: seeded events, the manual clock, seeded uuids and random strings,
//! so the whole landing (keys included) is reproducible and snapshotted
//! without redaction. Review changes with `cargo insta review`.
//!
//! Events are produced both before delivery starts (an hour earlier) and
//! after: streams that start at activation time must skip the first, streams
//! with `ReadFromTimestamp: 0` must deliver them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chrono::{TimeZone, Utc};
use rstest::rstest;
use serde::Serialize;
use sha2::{Digest, Sha256};
use streamlab::delivery::encode::decompress;
use streamlab::events::{Event, EventGenerator, GeneratorConfig};
use streamlab::harness;
use streamlab::spec::StartPosition;

use common::{kafka_records, wait_for, Pipeline};

use crate::common;

const SEED: u64 = 7;
const BEFORE: usize = 50;
const AFTER: usize = 250;

#[derive(Serialize)]
struct Landed {
    key: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_side_encryption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sse_kms_key_id: Option<String>,
    records: usize,
    decoded_bytes: usize,
    /// The exact decoded bytes.
    decoded_sha256: String,
    first_record: serde_json::Value,
    /// With format conversion: the file's Parquet schema and codec.
    #[serde(skip_serializing_if = "Option::is_none")]
    parquet: Option<(Vec<String>, String)>,
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_lands_as_firehose_would(#[files("fixtures/streams/*.json")] path: PathBuf) -> Result<()> {
    let name = path.file_stem().context("file name")?.to_string_lossy().into_owned();
    let start = Utc.with_ymd_and_hms(2026, 3, 8, 6, 58, 0).unwrap();
    let lambda = streamlab::spec::load(&path)?.lambda().is_some();
    if lambda && !common::available("awslambdaric (.venv)", common::python_has(&["awslambdaric"]))? {
        return Ok(());
    }
    let pipeline = Pipeline::start_with(&path, 3, start - chrono::Duration::hours(1), |o| {
        let o = o.seed(SEED);
        if lambda {
            o.functions(common::test_functions("enrich"))
        } else {
            o
        }
    })
    .await?;
    let spec = pipeline.spec.clone();
    let mut events: Vec<Event> =
        EventGenerator::new(&GeneratorConfig::new(SEED, start.timestamp_millis())).take(BEFORE + AFTER).collect();
    let after = events.split_off(BEFORE);
    pipeline.publish(events.clone()).await?;

    pipeline.stack.set_clock(start)?;
    let running = pipeline.deliver().await?;
    pipeline.publish(after.clone()).await?;

    let expected: Vec<&Event> = if spec.start() == StartPosition::Earliest {
        events.iter().chain(&after).collect()
    } else {
        after.iter().collect()
    };
    let n = expected.len() as u64;
    let stats = running.stats.clone();
    wait_for("all records read", Duration::from_secs(30), || stats.read() == n).await?;
    pipeline.pass_interval().await?;
    wait_for("all records delivered", Duration::from_secs(10), || stats.delivered() == n).await?;
    running.stop().await?;

    let objects = pipeline.objects().await?;
    let in_kafka = kafka_records(pipeline.bootstrap(), spec.topic(), BEFORE + AFTER)?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut landed = Vec::new();
    for object in &objects {
        ensure!(object.key.ends_with(spec.extension()), "{} lacks extension {:?}", object.key, spec.extension());
        ensure!(
            object.content_type.as_deref() == Some("application/octet-stream"),
            "{}: {:?}",
            object.key,
            object.content_type
        );
        ensure!(
            object.content_encoding.as_deref() == spec.compression().content_encoding(),
            "{}: {:?}",
            object.key,
            object.content_encoding
        );
        // SSE-KMS as the spec asks, as stored (the local S3 keeps the headers).
        match spec.sse_kms_key_id() {
            Some(key) => ensure!(
                object.server_side_encryption.as_deref() == Some("aws:kms")
                    && object.sse_kms_key_id.as_deref() == Some(key),
                "{}: {:?} {:?}",
                object.key,
                object.server_side_encryption,
                object.sse_kms_key_id
            ),
            None => ensure!(object.server_side_encryption.is_none(), "{}: unexpected SSE", object.key),
        }
        let decoded =
            decompress(&object.body, spec.compression()).with_context(|| format!("decoding {}", object.key))?;
        let parquet = match spec.conversion() {
            Some(_) => Some(streamlab::convert::read_parquet(&decoded).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let records = match &parquet {
            Some(content) => content.rows.clone(),
            None => harness::json_records(&decoded)?,
        };
        if parquet.is_some() {
            ensure!(decoded.starts_with(b"PAR1") && decoded.ends_with(b"PAR1"), "{}: not a Parquet file", object.key);
        } else if spec.append_newline() {
            ensure!(decoded.ends_with(b"\n") && decoded.iter().filter(|b| **b == b'\n').count() == records.len());
        } else {
            ensure!(!decoded.contains(&b'\n'), "{}: newline without AppendDelimiterToRecord", object.key);
        }
        for record in &records {
            *seen.entry(record["event_id"].as_str().context("event_id")?.to_owned()).or_default() += 1;
        }
        // Records keep their Kafka partition's order; an object of several
        // partitions (dynamic partitioning) holds them partition by partition.
        let mut last: Option<(i32, i64)> = None;
        for record in &records {
            let (partition, offset, _) = in_kafka[record["event_id"].as_str().context("event_id")?];
            ensure!(last.is_none_or(|prev| prev < (partition, offset)), "{}: records out of order", object.key);
            last = Some((partition, offset));
        }
        landed.push(Landed {
            key: object.key.clone(),
            content_type: object.content_type.clone(),
            content_encoding: object.content_encoding.clone(),
            server_side_encryption: object.server_side_encryption.clone(),
            sse_kms_key_id: object.sse_kms_key_id.clone(),
            records: records.len(),
            decoded_bytes: decoded.len(),
            decoded_sha256: format!("{:x}", Sha256::digest(&decoded)),
            first_record: records[0].clone(),
            parquet: parquet.map(|p| (p.schema.lines().map(str::to_owned).collect(), p.codec)),
        });
    }
    let mut want: Vec<String> = expected.iter().map(|e| e.event_id.clone()).collect();
    want.sort();
    ensure!(
        seen.values().all(|n| *n == 1),
        "duplicates: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    ensure!(
        seen.keys().cloned().collect::<Vec<_>>() == want,
        "{name}: landed ids differ from the expected {} events",
        want.len()
    );

    insta::assert_yaml_snapshot!(format!("landing_{name}"), landed);
    Ok(())
}
