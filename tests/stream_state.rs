//! What a stream keeps on its cluster, as AWS keeps it with the stream: its
//! version (1 when new, +1 per destination change, tags not counted, a new
//! stream when the source changes), and where it became active, so a
//! delivery restarted before its first commit loses nothing. Also the
//! 512-character limit of a dynamic prefix at run time.

use crate::common;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use chrono::{TimeZone, Utc};
use common::{wait_for, Pipeline};
use streamlab::delivery::source::Membership;
use streamlab::delivery::{Delivery, DeliveryHandle, Plan, Settings};
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::spec::StreamSpec;

const SPEC: &str = "fixtures/streams/orders-to-s3.json";

/// A delivery of `spec` on the pipeline's broker, owning every partition.
async fn start(pipeline: &Pipeline, spec: &StreamSpec) -> Result<DeliveryHandle> {
    let settings = Settings { seed: Some(1), ..Settings::new(pipeline.stack.clock()) };
    let endpoints = common::endpoints(&pipeline.stack, spec, Membership::Assigned);
    Ok(Delivery::connect(Plan::prepare(spec.clone(), &settings)?, endpoints).await?.spawn())
}

fn variant(edit: impl FnOnce(&mut serde_json::Value)) -> Result<StreamSpec> {
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(SPEC)?)?;
    edit(&mut value);
    Ok(streamlab::spec::parse(Path::new("variant.json"), &value.to_string())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_grow_with_destination_changes_only() -> Result<()> {
    let now = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let pipeline = Pipeline::start(Path::new(SPEC), 1, now).await?;
    let original = pipeline.spec.clone();
    let run = |spec: StreamSpec| {
        let pipeline = &pipeline;
        async move {
            let delivery = start(pipeline, &spec).await?;
            let state = delivery.state.clone();
            delivery.stop().await?;
            anyhow::Ok(state)
        }
    };
    let first = run(original.clone()).await?;
    ensure!((first.version, first.incarnation, first.group.as_str()) == (1, 1, "orders-to-s3"), "{first:?}");

    // Tags are not part of the destination; reformatting is no change.
    let tagged = variant(|v| v["Tags"] = serde_json::json!([{ "Key": "team", "Value": "data" }]))?;
    let again = run(tagged).await?;
    ensure!(again == first, "a tag change must not bump the version: {again:?}");

    // A destination change (UpdateDestination): version 2, same stream.
    let resized = variant(|v| v["ExtendedS3DestinationConfiguration"]["BufferingHints"]["SizeInMBs"] = 6.into())?;
    let updated = run(resized.clone()).await?;
    ensure!(updated.version == 2 && updated.activated_at_ms == first.activated_at_ms, "{updated:?}");
    ensure!(updated.group == first.group && updated.start_offsets == first.start_offsets);

    // Its objects carry the version.
    let delivery = start(&pipeline, &resized).await?;
    let events: Vec<_> = EventGenerator::new(&GeneratorConfig::new(1, now.timestamp_millis())).take(10).collect();
    pipeline.publish(events).await?;
    let stats = delivery.stats();
    wait_for("10 read", Duration::from_secs(30), || stats.read() == 10).await?;
    delivery.flush().await;
    delivery.stop().await?;
    let keys: Vec<String> = pipeline.objects().await?.into_iter().map(|o| o.key).collect();
    ensure!(!keys.is_empty() && keys.iter().all(|k| k.contains("/orders-to-s3-2-")), "{keys:?}");

    // A source change cannot be applied in place: a new stream, version 1,
    // a new activation and consumer group.
    pipeline.stack.advance(Duration::from_secs(60)).await?;
    let resourced = variant(|v| {
        v["MSKSourceConfiguration"]["MSKClusterARN"] = "arn:aws:kafka:us-east-1:123456789012:cluster/other/1".into()
    })?;
    let recreated = run(resourced).await?;
    ensure!((recreated.version, recreated.incarnation) == (1, 2), "{recreated:?}");
    ensure!(recreated.group == "orders-to-s3.2" && recreated.activated_at_ms == first.activated_at_ms + 60_000);
    Ok(())
}

/// Without `ReadFromTimestamp` a stream reads from when it became active.
/// That moment is recorded once: a delivery that crashes before its first
/// commit and starts again an hour later still reads every record written
/// after activation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_before_the_first_commit_loses_nothing() -> Result<()> {
    let now = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let pipeline = Pipeline::start(Path::new(SPEC), 3, now).await?;
    let delivery = start(&pipeline, &pipeline.spec).await?;
    let events: Vec<_> = EventGenerator::new(&GeneratorConfig::new(2, now.timestamp_millis())).take(300).collect();
    pipeline.publish(events.clone()).await?;
    let stats = delivery.stats();
    wait_for("300 read", Duration::from_secs(30), || stats.read() == 300).await?;
    delivery.abort().await; // a crash: nothing landed, nothing committed

    pipeline.stack.advance(Duration::from_secs(3_600)).await?;
    let restarted = start(&pipeline, &pipeline.spec).await?;
    let stats = restarted.stats();
    wait_for("300 read again", Duration::from_secs(30), || stats.read() == 300).await?;
    restarted.stop().await?;
    let duplicates = common::assert_no_loss(&common::landed_ids(&pipeline.objects().await?)?, &events)?;
    ensure!(duplicates == 0);
    Ok(())
}

/// A dynamic prefix that evaluates to more than 512 characters sends its
/// record to the error prefix; delivery goes on with the records after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_over_512_characters_at_run_time_goes_to_the_error_prefix() -> Result<()> {
    let now = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let pipeline = Pipeline::start(Path::new("fixtures/streams/dynamic-partitioning-event-type.json"), 1, now).await?;
    let running = pipeline.deliver().await?;
    let long_type = "x".repeat(600);
    let values = [
        serde_json::json!({ "event_type": "order_placed", "n": 1 }),
        serde_json::json!({ "event_type": long_type, "n": 2 }),
        serde_json::json!({ "event_type": "order_placed", "n": 3 }),
    ];
    let producer: rdkafka::producer::FutureProducer =
        rdkafka::config::ClientConfig::new().set("bootstrap.servers", pipeline.bootstrap()).create()?;
    for value in &values {
        let payload = value.to_string();
        let record = rdkafka::producer::FutureRecord::<(), _>::to("shop-events")
            .payload(&payload)
            .timestamp(now.timestamp_millis());
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e)?;
    }
    let stats = running.stats.clone();
    wait_for("3 read", Duration::from_secs(30), || stats.read() == 3).await?;
    pipeline.pass_interval().await?;
    ensure!(stats.delivered() == 3, "delivery must go on past the long prefix");
    running.stop().await?;

    let objects = pipeline.objects().await?;
    let data: Vec<_> = objects.iter().filter(|o| o.key.starts_with("events/")).collect();
    ensure!(
        data.len() == 1 && data[0].key.starts_with("events/event_type=order_placed/"),
        "{:?}",
        objects.iter().map(|o| &o.key).collect::<Vec<_>>()
    );
    let error = objects.iter().find(|o| o.key.starts_with("errors/processing-failed/")).context("an error object")?;
    let line: serde_json::Value = serde_json::from_slice(error.body.split(|b| *b == b'\n').next().context("a line")?)?;
    ensure!(line["errorCode"] == streamlab::delivery::errors::PREFIX_CODE, "{line}");
    ensure!(line["errorMessage"].as_str().is_some_and(|m| m.contains("512")), "{line}");
    let raw = base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().context("rawData")?)?;
    ensure!(raw == values[1].to_string().into_bytes(), "the record is kept whole");
    Ok(())
}
