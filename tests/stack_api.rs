//! The public Rust API, as a Rust user tests their pipeline with it: a stack
//! from specs on a manual clock, the buffer interval crossed exactly, the
//! landing as a serde value for `insta`, stacks side by side.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chrono::{TimeZone, Utc};
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::stack::{Stack, StackOptions, Timestamps};

const SPEC: &str = "fixtures/streams/orders-to-s3.json";

/// The example in the README, verbatim apart from the snapshot name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_example() -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let stack = Stack::start(StackOptions::new([SPEC]).manual_clock(start).seed(7)).await?;

    // Your producer writes to stack.bootstrap(); here, streamlab's own.
    let events = EventGenerator::new(&GeneratorConfig::new(7, start.timestamp_millis())).take(50);
    stack.produce("shop-events", events).await?;

    stack.settle(Duration::from_secs(30)).await?; // everything written so far is read
    stack.advance(Duration::from_secs(300)).await?; // the 300 s buffer interval passes
    let landing = stack.landing(None).await?;
    assert_eq!(landing.data_records(), 50);
    insta::assert_yaml_snapshot!("readme_landing", landing); // review with `cargo insta review`
    stack.shutdown().await?;
    Ok(())
}

/// Nothing lands at 299 s; everything at 300 s; each key's time is its
/// oldest record's timestamp, not the clock's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manual_clock_crosses_the_interval_exactly_and_keys_keep_record_times() -> Result<()> {
    let opened = Utc.with_ymd_and_hms(2026, 7, 13, 15, 30, 0).unwrap();
    let stack = Stack::start(StackOptions::new([SPEC]).manual_clock(opened).seed(3)).await?;
    // Records stamped 14:58:00 onwards (event time), read at 15:30.
    let first = Utc.with_ymd_and_hms(2026, 7, 13, 14, 58, 0).unwrap();
    let mut config = GeneratorConfig::new(3, first.timestamp_millis());
    config.mean_gap_ms = 200;
    let events: Vec<_> = EventGenerator::new(&config).take(900).collect();
    stack.produce_with("shop-events", events.clone(), Timestamps::Event).await?;
    stack.settle(Duration::from_secs(30)).await?;

    stack.advance(Duration::from_secs(299)).await?;
    ensure!(stack.landing(None).await?.data_records() == 0, "nothing may land before the interval");
    stack.advance(Duration::from_secs(1)).await?;
    let landing = stack.landing(None).await?;
    ensure!(landing.data_records() == 900, "everything lands at 300 s");

    let objects = &landing.stream("orders-to-s3").context("stream")?.objects;
    ensure!(objects.len() == 3, "one object per partition: {}", objects.len());
    for object in objects {
        let oldest = object
            .data
            .iter()
            .map(|r| chrono::DateTime::parse_from_rfc3339(r["occurred_at"].as_str().unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .min()
            .context("records")?
            .with_timezone(&Utc);
        let expected =
            format!("{}orders-to-s3-1-{}-", oldest.format("%Y/%m/%d/%H/"), oldest.format("%Y-%m-%d-%H-%M-%S"));
        ensure!(object.key.starts_with(&expected), "{} does not carry its oldest record's time {oldest}", object.key);
        ensure!(object.key.starts_with("2026/07/13/14/"), "the clock (15:30) must not name it: {}", object.key);
    }
    stack.shutdown().await?;
    Ok(())
}

/// Two stacks at once, each with its own spec of the same stream name: own
/// broker, S3, work directory and state; both streams are version 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_side_by_side_share_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let other = dir.path().join("orders-to-s3.json");
    let text = std::fs::read_to_string(SPEC)?.replace("\"SizeInMBs\": 5", "\"SizeInMBs\": 7");
    std::fs::write(&other, text)?;
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let (a, b) = tokio::try_join!(
        Stack::start(StackOptions::new([SPEC]).manual_clock(start).seed(1)),
        Stack::start(StackOptions::new([&other]).manual_clock(start).seed(1)),
    )?;
    ensure!(a.bootstrap() != b.bootstrap() && a.s3_endpoint() != b.s3_endpoint());
    ensure!(a.work_dir() != b.work_dir());
    let events = |seed| EventGenerator::new(&GeneratorConfig::new(seed, start.timestamp_millis())).take(100);
    tokio::try_join!(a.produce("shop-events", events(1)), b.produce("shop-events", events(2)))?;
    for stack in [&a, &b] {
        stack.settle(Duration::from_secs(30)).await?;
        stack.flush(None).await?;
        let landing = stack.landing(None).await?;
        ensure!(landing.data_records() == 100, "each stack lands only its own records");
        for object in &landing.stream("orders-to-s3").context("stream")?.objects {
            ensure!(object.key.contains("/orders-to-s3-1-"), "a new stream is version 1: {}", object.key);
        }
        ensure!(stack.status().await.streams[0].version == 1);
    }
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

/// Streams come and go on a running stack: one added while the first runs,
/// both fed, the first removed with records still in its buffers. Removal
/// delivers what it holds (nothing lost), the second stream keeps
/// delivering, and the names and states follow Firehose's rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_added_and_removed_while_the_stack_runs() -> Result<()> {
    use streamlab::stack::{StackError, StreamLifecycle};
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let stack = Stack::start(StackOptions::new([SPEC]).manual_clock(start).seed(11)).await?;
    let text = std::fs::read_to_string(SPEC)?
        .replace("\"orders-to-s3\"", "\"returns-to-s3\"")
        .replace("\"shop-events\"", "\"returns\"")
        .replace("arn:aws:s3:::shop-events-raw", "arn:aws:s3:::returns-raw");
    let returns = streamlab::spec::parse(std::path::Path::new("returns.json"), &text)?;
    stack.add_stream(returns.clone()).await?;
    ensure!(stack.stream_state("returns-to-s3")? == StreamLifecycle::Active);
    ensure!(stack.specs().iter().map(|s| s.name()).collect::<Vec<_>>() == ["orders-to-s3", "returns-to-s3"]);
    let again = stack.add_stream(returns).await;
    ensure!(matches!(again, Err(StackError::StreamExists { .. })), "a taken name is refused: {again:?}");

    let events = |seed, n| EventGenerator::new(&GeneratorConfig::new(seed, start.timestamp_millis())).take(n);
    stack.produce("shop-events", events(1, 100)).await?;
    stack.produce("returns", events(2, 80)).await?;
    stack.settle(Duration::from_secs(30)).await?;
    // Every record is buffered: the 300 s interval has not passed.
    let orders = stack.spec("orders-to-s3")?;
    let stats = stack.remove_stream("orders-to-s3").await?;
    ensure!(stats.delivered() == 100, "removal delivers the buffered records: {}", stats.delivered());
    let removed = streamlab::landing::read(stack.s3_client(), &[orders], "").await?;
    ensure!(removed.data_records() == 100, "the removed stream's records landed: {}", removed.data_records());
    ensure!(stack.stream_state("orders-to-s3").is_err() && stack.stats("orders-to-s3").await.is_err());
    ensure!(matches!(stack.remove_stream("orders-to-s3").await, Err(StackError::UnknownStream { .. })));

    stack.produce("returns", events(3, 50)).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.advance(Duration::from_secs(300)).await?;
    let landing = stack.landing(None).await?;
    ensure!(landing.streams.len() == 1, "only the remaining stream is in the landing");
    ensure!(landing.data_records() == 130, "the second stream delivered everything: {}", landing.data_records());
    stack.shutdown().await?;
    Ok(())
}

/// A test that fails returns early with `?` and drops its stack without
/// `shutdown`, on the current-thread runtime `#[tokio::test]` gives. The
/// deliveries' consumers close when that runtime shuts down, after the
/// stack's drop; the broker serves their goodbyes until then. When it
/// stopped first, each waited out its session timeout: 10 s per stream,
/// 30 s here (100 streams: 8 minutes). The bound is not a performance
/// target: a drop that takes it is a hang.
#[test]
fn a_stack_dropped_without_shutdown_lets_go_at_once() -> Result<()> {
    const STREAMS: usize = 3;
    const LETS_GO_WITHIN: Duration = Duration::from_secs(5);
    let dir = tempfile::tempdir()?;
    let seed = std::fs::read_to_string(SPEC)?;
    for n in 0..STREAMS {
        let text = seed
            .replace("\"orders-to-s3\"", &format!("\"orders-{n}\""))
            .replace("\"shop-events\"", &format!("\"events-{n}\""));
        std::fs::write(dir.path().join(format!("orders-{n}.json")), text)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    runtime.block_on(async {
        let stack = Stack::start(StackOptions::new([dir.path()]).manual_clock(start).seed(5)).await?;
        ensure!(stack.specs().len() == STREAMS, "{} streams", stack.specs().len());
        for n in 0..STREAMS {
            let events = EventGenerator::new(&GeneratorConfig::new(n as u64, start.timestamp_millis())).take(20);
            stack.produce(&format!("events-{n}"), events).await?;
        }
        stack.settle(Duration::from_secs(30)).await?;
        Ok(())
    })?;
    let dropped = std::time::Instant::now();
    drop(runtime);
    ensure!(dropped.elapsed() < LETS_GO_WITHIN, "the runtime took {:?} to shut down", dropped.elapsed());
    Ok(())
}
