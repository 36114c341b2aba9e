//! Nothing is lost under faults: S3 errors and lost responses, S3 down with
//! delivery at its memory bound, a broker outage, and the delivery process
//! killed with SIGKILL and restarted. Each runs in seconds; `just soak` runs
//! them all together at volume.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use streamlab::clock::SystemClock;
use streamlab::faults::S3Fault;

use common::{assert_no_loss, committed, events, kafka_records, landed_ids, now, wait_for, wait_landed, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_and_lost_responses_lose_and_duplicate_nothing() -> Result<()> {
    let pipeline = Pipeline::start_with(Path::new("fixtures/streams/small-buffer-newline.json"), 3, now(), |o| {
        o.faults(11).seed(11)
    })
    .await?;
    let faults = pipeline.faults()?;
    faults.s3.set_error_rate(0.3);
    faults.s3.set_lost_response_rate(0.1);
    // Every kind at least once, whatever the dice say.
    faults.s3.fail_next([S3Fault::InternalError, S3Fault::SlowDown, S3Fault::Reset, S3Fault::LostResponse]);
    let running = pipeline.deliver().await?;
    let stats = running.stats.clone();
    let all = events(11, 1_500);
    for (round, chunk) in all.chunks(300).enumerate() {
        pipeline.publish(chunk.to_vec()).await?;
        let n = ((round + 1) * 300) as u64;
        wait_for("round read", Duration::from_secs(30), || stats.read() == n).await?;
        pipeline.pass_interval().await?;
        wait_for("round delivered", Duration::from_secs(60), || stats.delivered() == n).await?;
    }
    let stats = running.stop().await?;
    ensure!(faults.s3.injected.load(Ordering::SeqCst) >= 4);
    ensure!(stats.put_failures.load(Ordering::SeqCst) > 0 && stats.success_ratio() < 1.0);
    // A retry PUTs the same key, so a lost response is overwritten, not
    // duplicated.
    let duplicates = assert_no_loss(&landed_ids(&pipeline.objects().await?)?, &all)?;
    ensure!(duplicates == 0, "{duplicates} duplicates");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_memory_bound_delivery_stops_reading_while_s3_is_down_and_catches_up() -> Result<()> {
    let limit = 64 * 1024;
    let pipeline = Pipeline::start_with(Path::new("fixtures/streams/orders-to-s3.json"), 3, now(), |mut o| {
        o.max_buffered_bytes = limit;
        o.faults(12).seed(12)
    })
    .await?;
    let faults = pipeline.faults()?;
    faults.s3.set_down(true);
    let running = pipeline.deliver().await?;
    let stats = running.stats.clone();
    let all = events(12, 2_000);
    pipeline.publish(all.clone()).await?;

    wait_for("the memory bound", Duration::from_secs(30), || stats.memory_limit_hits.load(Ordering::SeqCst) > 0)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let read = stats.read();
    // The interval passes, but the objects it cuts do not land: advance says
    // so, naming S3's error, instead of returning as if they had.
    let advanced = pipeline.stack.advance(Duration::from_secs(30)).await;
    ensure!(
        matches!(&advanced, Err(streamlab::stack::StackError::NotLanding { failure, .. }) if failure.last_error.contains("failed")),
        "{advanced:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(stats.read() == read, "kept reading while S3 was down: {read} -> {}", stats.read());
    // At most the bound plus the record that crossed it (events are < 1 KiB).
    ensure!(read * 200 <= limit + 1024, "{read} records read against a {limit}-byte bound");
    ensure!(stats.delivered() == 0);
    ensure!(stats.freshness_ms.load(Ordering::SeqCst) >= 30_000, "DataFreshness must show the stall");
    ensure!(stats.success_ratio() == 0.0);

    faults.s3.set_down(false);
    wait_for("catching up", Duration::from_secs(30), || stats.read() == 2_000).await?;
    pipeline.pass_interval().await?;
    wait_for("all delivered", Duration::from_secs(30), || stats.delivered() == 2_000).await?;
    running.stop().await?;
    let duplicates = assert_no_loss(&landed_ids(&pipeline.objects().await?)?, &all)?;
    ensure!(duplicates == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_heals_without_restart() -> Result<()> {
    let pipeline = Pipeline::start_faulty(Path::new("fixtures/streams/orders-to-s3.json"), 3, now(), 13).await?;
    let faults = pipeline.faults()?;
    let running = pipeline.deliver().await?;
    let stats = running.stats.clone();
    let all = events(13, 1_000);
    pipeline.publish(all[..500].to_vec()).await?;
    wait_for("first half read", Duration::from_secs(30), || stats.read() == 500).await?;

    faults.kafka.set_down(true);
    let producing = pipeline.publish_in_background(all[500..].to_vec(), None, pipeline.stack.clock());
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(stats.read() == 500, "read through an outage");
    faults.kafka.set_down(false);
    ensure!(producing.await?? == 500, "the producer lost events across the outage");
    wait_for("second half read", Duration::from_secs(60), || stats.read() == 1_000).await?;
    pipeline.pass_interval().await?;
    wait_for("all delivered", Duration::from_secs(30), || stats.delivered() == 1_000).await?;
    running.stop().await?;
    let duplicates = assert_no_loss(&landed_ids(&pipeline.objects().await?)?, &all)?;
    ensure!(duplicates == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_nothing_and_duplicate_only_the_uncommitted_window() -> Result<()> {
    let spec = "fixtures/streams/read-from-earliest.json";
    let pipeline = Pipeline::start(Path::new(spec), 3, now()).await?;
    let state = tempfile::tempdir()?;
    let all = events(14, 3_000);
    let producing = pipeline.publish_in_background(all.clone(), Some(400.0), Arc::new(SystemClock));
    let state_dir = state.path().to_str().context("utf-8 path")?;
    // Each run's output, for the failure message.
    let log = |run: &str| state.path().join(format!("deliver-{run}.log"));
    let crash = |run: &str| -> Result<_> {
        let out = std::fs::File::create(log(run))?;
        pipeline.spawn_deliver(spec, &["--instance-id", "crash", "--state-dir", state_dir], out.into())
    };

    let child = crash("first")?;
    wait_landed(&pipeline, 300, Duration::from_secs(30)).await?;
    // Landed offsets are committed within a second (librdkafka's auto commit
    // of the offsets delivery stored).
    let started = Instant::now();
    while !committed(&pipeline, pipeline.spec.name()).await?.values().any(Option::is_some) {
        ensure!(started.elapsed() < Duration::from_secs(5), "landed offsets were not committed within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.sigkill();
    // Anything at or past these offsets may land twice; nothing before them.
    let window = committed(&pipeline, pipeline.spec.name()).await?;
    ensure!(window.values().any(Option::is_some), "nothing was committed before the kill");

    let child = crash("second")?;
    ensure!(producing.await?? == 3_000);
    let landed = wait_landed(&pipeline, 3_000, Duration::from_secs(60)).await?;
    let stopped = child.sigterm()?;
    ensure!(
        stopped.success(),
        "delivery did not stop cleanly ({stopped}); its output:\n{}",
        std::fs::read_to_string(log("second")).unwrap_or_default()
    );

    let duplicates = assert_no_loss(&landed_ids(&pipeline.objects().await?)?, &all)?;
    let records = kafka_records(pipeline.bootstrap(), pipeline.spec.topic(), all.len())?;
    for (id, n) in landed.iter().filter(|(_, n)| **n > 1) {
        let (partition, offset, _) = records[id];
        let from = window.get(&partition).copied().flatten().unwrap_or(0);
        ensure!(offset >= from, "{id} landed {n} times but partition {partition} had committed {from} > {offset}");
    }
    // `streamlab inspect --id .event_id` finds the same duplicates.
    let options = streamlab::inspect::InspectOptions {
        id: Some(streamlab::inspect::JqPath::parse(".event_id").map_err(anyhow::Error::msg)?),
        ..Default::default()
    };
    let objects = pipeline.objects().await?;
    let extra: usize = landed_ids(&objects)?.values().map(|n| n - 1).sum();
    let report = streamlab::inspect::report("s3://shop-events-raw", &objects, &[], &options);
    ensure!(
        report.streams.iter().map(|s| s.tally.duplicates).sum::<u64>() == extra as u64,
        "inspect found {:?} repeated records, the landing {extra}",
        report.streams.iter().map(|s| s.tally.duplicates).collect::<Vec<_>>()
    );
    eprintln!("crash test: {duplicates} duplicates, all in the uncommitted window {window:?}");
    Ok(())
}

/// A second instance joins (partitions move, buffered records are handed
/// over uncommitted), leaves and comes back: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_joining_leaving_and_returning_lose_nothing() -> Result<()> {
    let pipeline = Pipeline::start(Path::new("fixtures/streams/orders-to-s3.json"), 3, now()).await?;
    let a = pipeline.instance("a", 15).await?;
    let all = events(15, 1_500);
    pipeline.publish(all[..600].to_vec()).await?;
    let a_stats = a.stats();
    wait_for("A reads the first batch", Duration::from_secs(30), || a_stats.read() == 600).await?;

    // B joins: the group rebalances while A holds 600 unlanded records.
    let b = pipeline.instance("b", 16).await?;
    let b_stats = b.stats();
    // With 3 partitions and 2 members each owns at least one; B re-reads the
    // records A held uncommitted for the partitions it took over.
    wait_for("B owns and reads partitions", Duration::from_secs(40), || b_stats.read() > 0).await?;
    pipeline.publish(all[600..1_200].to_vec()).await?;
    let landed = wait_landed_advancing(&pipeline, &[&a, &b], 1_200).await?;
    ensure!(landed.len() == 1_200);

    // B leaves (a rolling restart) while events keep coming, then returns
    // with its static id and takes its partitions back. (Real Kafka would
    // also hand them to A after the session timeout; tansu 0.6 does not.)
    b.stop().await?;
    pipeline.publish(all[1_200..].to_vec()).await?;
    let b = pipeline.instance("b", 17).await?;
    wait_landed_advancing(&pipeline, &[&a, &b], 1_500).await?;
    b.stop().await?;
    a.stop().await?;
    let duplicates = assert_no_loss(&landed_ids(&pipeline.objects().await?)?, &all)?;
    eprintln!(
        "rebalance test: {duplicates} duplicates; A handed over {}",
        a_stats.records_handed_over.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Keeps crossing buffer intervals until `n` distinct events have landed.
async fn wait_landed_advancing(
    pipeline: &Pipeline,
    instances: &[&streamlab::delivery::DeliveryHandle],
    n: usize,
) -> Result<BTreeMap<String, usize>> {
    let started = Instant::now();
    loop {
        pipeline.pass_interval().await?;
        for instance in instances {
            instance.tick().await;
        }
        let landed = landed_ids(&pipeline.objects().await?)?;
        if landed.len() >= n {
            return Ok(landed);
        }
        ensure!(started.elapsed() < Duration::from_secs(60), "{} of {n} events landed", landed.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
