//! A team's pipeline tests, written against streamlab's Rust API from a
//! crate of their own: the README's example, and a stream whose prefix is
//! the kind teams write (five Hive-style segments, keys over 200 bytes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chrono::{TimeZone, Utc};
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::stack::{Stack, StackOptions};

/// The fixtures of the streamlab checkout this crate depends on.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/streams").join(name)
}

/// The README's "From Rust" example.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_example() -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let stack = Stack::start(StackOptions::new([fixture("orders-to-s3.json")]).manual_clock(start).seed(7)).await?;
    let events = EventGenerator::new(&GeneratorConfig::new(7, start.timestamp_millis())).take(50);
    stack.produce("shop-events", events).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.advance(Duration::from_secs(300)).await?;
    let landing = stack.landing(None).await?;
    stack.shutdown().await?;
    ensure!(landing.data_records() == 50, "{} of 50 records landed", landing.data_records());
    Ok(())
}

/// A prefix of about 200 characters: every key is over 200 bytes. All 120
/// records land; if they could not, `advance` would say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_hive_style_prefix_lands_everything() -> Result<()> {
    let mut spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("orders-to-s3.json"))?)?;
    let prefix = "domain=ecommerce-platform-events/source=orders-service-production-eu/\
                  dataset=customer-order-lifecycle-events-v3/\
                  year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/";
    spec["ExtendedS3DestinationConfiguration"]["Prefix"] = prefix.into();
    spec["ExtendedS3DestinationConfiguration"]["ErrorOutputPrefix"] =
        "errors/!{firehose:error-output-type}/!{timestamp:yyyy}/".into();
    let dir = std::env::temp_dir().join(format!("team-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("long-prefix.json");
    std::fs::write(&path, spec.to_string())?;

    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let stack = Stack::start(StackOptions::new([&path]).manual_clock(start).seed(3)).await?;
    let events = EventGenerator::new(&GeneratorConfig::new(3, start.timestamp_millis())).take(120);
    stack.produce("shop-events", events).await?;
    stack.settle(Duration::from_secs(30)).await?;
    let advanced = stack.advance(Duration::from_secs(300)).await;
    let landing = stack.landing(None).await;
    stack.shutdown().await?;
    advanced.context("advancing past the buffer interval")?;
    let landing = landing?;
    let objects = &landing.stream("orders-to-s3").context("stream")?.objects;
    ensure!(objects.iter().all(|o| o.key.len() > 200), "keys: {:?}", objects.iter().map(|o| &o.key).collect::<Vec<_>>());
    ensure!(landing.data_records() == 120, "{} of 120 records landed", landing.data_records());
    Ok(())
}
