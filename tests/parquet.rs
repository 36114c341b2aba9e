//! Record format conversion end to end: seeded shop events and a mixed batch
//! of records that do not fit land as Parquet rows and
//! `format-conversion-failed` lines (rows plus error records equal what was
//! produced), and independent readers (pyarrow through the S3 API, pyarrow
//! per object, DuckDB) read every object back.

use crate::common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use streamlab::events::{EventGenerator, EventKind, GeneratorConfig};
use streamlab::harness;
use streamlab::stack::{Stack, StackOptions};

use common::{available, python_has, repo};

const SPEC: &str = "fixtures/streams/parquet-openx.json";

/// Records that cannot become rows of `ecommerce.events`, with the code
/// each gets; and one that can, with most fields missing (nulls).
const BAD: [(&str, &str); 4] = [
    ("not json at all", "DataFormatConversion.ParseError"),
    (r#"{"event_id":"bad-total","event_type":"order_placed","total":"lots"}"#, "DataFormatConversion.MalformedData"),
    (
        r#"{"event_id":"bad-items","event_type":"order_placed","items":[{"quantity":"two"}]}"#,
        "DataFormatConversion.MalformedData",
    ),
    ("   ", "DataFormatConversion.MalformedData"),
];
const PARTIAL: &str = r#"{"event_id":"partial-1","event_type":"page_viewed"}"#;

async fn send(bootstrap: &str, topic: &str, values: &[Vec<u8>], timestamp_ms: i64) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    for value in values {
        let record = FutureRecord::<(), _>::to(topic).payload(value).timestamp(timestamp_ms);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lands_as_parquet_that_independent_readers_query() -> Result<()> {
    let start = chrono::DateTime::parse_from_rfc3339("2026-07-13T14:00:00Z")?.to_utc();
    let stack = Stack::start(StackOptions::new([repo().join(SPEC)]).seed(3).manual_clock(start)).await?;
    let spec = stack.specs()[0].clone();
    let events: Vec<_> = EventGenerator::new(&GeneratorConfig::new(11, start.timestamp_millis())).take(300).collect();
    let mut values: Vec<Vec<u8>> = events.iter().map(|e| e.to_json()).collect();
    values.extend(BAD.iter().map(|(v, _)| v.as_bytes().to_vec()));
    values.push(PARTIAL.as_bytes().to_vec());
    send(stack.bootstrap(), spec.topic(), &values, start.timestamp_millis()).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.flush(None).await?;

    let objects = harness::read_bucket(stack.s3_client(), spec.bucket()).await?;
    let mut rows = 0;
    for object in objects.iter().filter(|o| o.key.starts_with("events/")) {
        ensure!(object.key.ends_with(".parquet"), "{}", object.key);
        rows += streamlab::convert::read_parquet(&object.body).map_err(anyhow::Error::msg)?.rows.len();
    }
    let field = regex::Regex::new(
        r#"^\{"attemptsMade":1,"arrivalTimestamp":\d+,"lastErrorCode":"[^"]+","lastErrorMessage":".*","attemptEndingTimestamp":\d+,"rawData":"[^"]*","sequenceNumber":"\d+","subSequenceNumber":0,"dataCatalogTable":\{"catalogId":"123456789012","databaseName":"ecommerce","tableName":"events","region":"us-east-1","versionId":"LATEST","catalogArn":"arn:aws:glue:us-east-1:123456789012:catalog"\}\}$"#,
    )?;
    let mut failed = Vec::new();
    for object in objects.iter().filter(|o| o.key.starts_with("errors/")) {
        ensure!(object.key.starts_with("errors/format-conversion-failed/"), "{}", object.key);
        for line in object.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let text = std::str::from_utf8(line)?;
            ensure!(field.is_match(text), "Firehose's fields, in order: {text}");
            let line: Value = serde_json::from_str(text)?;
            let raw = base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().context("rawData")?)?;
            failed.push((String::from_utf8(raw)?, line["lastErrorCode"].as_str().unwrap_or_default().to_owned()));
        }
    }
    failed.sort();
    let mut expected: Vec<(String, String)> = BAD.iter().map(|(v, c)| ((*v).to_owned(), (*c).to_owned())).collect();
    expected.sort();
    assert_eq!(failed, expected, "each record that does not fit is an error record with its bytes");
    assert_eq!(rows + failed.len(), values.len(), "rows plus error records equal what was produced");

    let status = stack.status().await;
    let conversion = status.streams[0].conversion.as_ref().context("conversion status")?;
    assert_eq!((conversion.converted, conversion.failed), (301, 4));

    if !available("pyarrow, duckdb and boto3 (.venv)", python_has(&["pyarrow", "duckdb", "boto3"]))? {
        return Ok(());
    }
    let output = std::process::Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/readers/read_parquet.py"))
        .args([spec.bucket(), "events/"])
        .envs(stack.env())
        .output()?;
    ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read: Value = serde_json::from_slice(&output.stdout)?;

    assert_eq!(read["dataset_rows"], 301, "through the S3 API, as a query engine scans");
    assert_eq!(read["partitions"], serde_json::json!(["2026-07-13"]));
    assert_eq!(read["duckdb"]["rows"], 301);
    let orders: Vec<_> = events.iter().filter(|e| matches!(e.kind, EventKind::OrderPlaced { .. })).collect();
    let total: i64 = orders
        .iter()
        .map(|e| match &e.kind {
            EventKind::OrderPlaced { total, .. } => *total,
            _ => 0,
        })
        .sum();
    assert_eq!(read["duckdb"]["orders"], orders.len());
    assert_eq!(read["duckdb"]["order_total"], total);
    assert_eq!(read["duckdb_types"]["occurred_at"], "TIMESTAMP");
    assert_eq!(read["duckdb_types"]["amount"], "DECIMAL(12,0)");
    assert_eq!(read["duckdb_types"]["items"], "STRUCT(sku VARCHAR, quantity INTEGER, unit_price BIGINT)[]");

    let mut ids: Vec<String> = Vec::new();
    for object in read["objects"].as_array().context("objects")? {
        assert_eq!(object["codec"], "SNAPPY", "ParquetSerDe's default codec");
        assert_eq!(object["schema"]["occurred_at"], "timestamp[us]");
        assert_eq!(object["schema"]["items"], "list<element: struct<sku: string, quantity: int32, unit_price: int64>>");
        ids.extend(
            object["event_ids"].as_array().context("ids")?.iter().map(|v| v.as_str().unwrap_or_default().to_owned()),
        );
    }
    let mut want: Vec<String> = events.iter().map(|e| e.event_id.clone()).chain(["partial-1".to_owned()]).collect();
    want.sort();
    ids.sort();
    assert_eq!(ids, want, "every seeded event is one row");
    let first_event = &events[0];
    let first = read["objects"]
        .as_array()
        .and_then(|o| {
            o.iter().find_map(|o| (o["first"]["event_id"] == first_event.event_id.as_str()).then(|| o["first"].clone()))
        })
        .context("the first event opens an object")?;
    let micros = format!("{}000", first_event.occurred_at.trim_end_matches('Z'));
    assert_eq!(first["occurred_at"], micros.as_str(), "timestamps keep their milliseconds");
    stack.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_glue_table_is_refused_before_anything_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let options = StackOptions { glue_dir: dir.path().to_owned(), ..StackOptions::new([repo().join(SPEC)]) };
    let error = match Stack::start(options).await {
        Ok(_) => anyhow::bail!("a conversion without its Glue table must be refused"),
        Err(e) => e.to_string(),
    };
    for part in ["ecommerce.events", "ecommerce.events.json", "aws glue get-table", "--glue-dir"] {
        ensure!(error.contains(part), "{part:?} missing from: {error}");
    }
    Ok(())
}
