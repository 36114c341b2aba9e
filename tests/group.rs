//! The consumer group: several `streamlab deliver` processes share a
//! stream's partitions and survive one being killed; an S3 outage longer
//! than the poll interval does not cost an instance its partitions. Apart
//! from the fault tests because group joins are slow on a loaded machine.

use crate::common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use streamlab::clock::SystemClock;
use streamlab::harness::DeliverProcess;

use common::{assert_no_loss, committed, events, kafka_records, landed_ids, now, wait_for, wait_landed, Pipeline};

/// An S3 outage longer than the consumer's `max.poll.interval.ms`, with
/// delivery at its memory bound: the driver keeps polling with its
/// partitions paused, so the instance stays in its group (no revocation, no
/// rejoin) and, once S3 is back, everything lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_longer_than_the_poll_interval_keeps_the_group_stable() -> Result<()> {
    let pipeline = Pipeline::start_faulty(Path::new("fixtures/streams/orders-to-s3.json"), 3, now(), 17).await?;
    let faults = pipeline.faults()?;
    let poll_interval = Duration::from_secs(7);
    let member = pipeline
        .instance_with(17, |settings, endpoints| {
            endpoints.source.max_poll_interval = Some(poll_interval);
            settings.limits.max_buffered_bytes = 64 * 1024;
        })
        .await?;
    let stats = member.stats();
    wait_for("partitions assigned", Duration::from_secs(60), || stats.positions().len() == 3).await?;

    // The group has formed once no rebalance happened for 3 s with every
    // partition owned (tansu may take the join in two generations).
    let counters = || (stats.revocations.load(Ordering::SeqCst), stats.rejoins.load(Ordering::SeqCst));
    let mut settled = counters();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if counters() != settled || stats.positions().len() != 3 {
            (settled, quiet) = (counters(), Instant::now());
        }
    }
    eprintln!("{} outage starts; revocations and rejoins so far {settled:?}", chrono::Utc::now());
    faults.s3.set_down(true);
    let all = events(17, 2_000);
    pipeline.publish(all.clone()).await?;
    wait_for("the memory bound", Duration::from_secs(30), || stats.backpressured.load(Ordering::SeqCst)).await?;
    // Three poll intervals of S3 down, reading paused.
    let outage = Instant::now();
    while outage.elapsed() < poll_interval * 3 {
        pipeline.pass_interval().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(!member.is_finished(), "delivery stopped during the outage");
    }
    ensure!(stats.delivered() == 0 && stats.read() < 2_000, "S3 was down: read {}", stats.read());
    eprintln!("{} outage ends; revocations {}", chrono::Utc::now(), stats.revocations.load(Ordering::SeqCst));
    faults.s3.set_down(false);

    let started = Instant::now();
    while stats.delivered() < 2_000 {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{} of 2000 delivered after S3 came back",
            stats.delivered()
        );
        pipeline.pass_interval().await?;
        member.tick().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Counted from the outage's start: a rebalance while the group formed
    // (before any record was written) is not what this test is about.
    let revocations = stats.revocations.load(Ordering::SeqCst) - settled.0;
    let rejoins = stats.rejoins.load(Ordering::SeqCst) - settled.1;
    member.stop().await?;
    ensure!(revocations == 0, "the instance lost its partitions {revocations} times during the outage");
    ensure!(rejoins == 0, "the instance rejoined its group {rejoins} times");
    let duplicates = assert_no_loss(&landed_ids(&pipeline.objects().await?)?, &all)?;
    ensure!(duplicates == 0, "{duplicates} duplicates");
    Ok(())
}

/// Scale-out: three `streamlab deliver` processes with one spec split the
/// partitions through the consumer group. One is SIGKILLed mid-run and a
/// replacement started (as an orchestrator would): every event lands, and
/// only records past the offsets committed at the kill land twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_processes_split_the_partitions_and_survive_a_sigkill() -> Result<()> {
    let spec = "fixtures/streams/read-from-earliest.json";
    let pipeline = Pipeline::start(Path::new(spec), 6, now()).await?;
    let logs = tempfile::tempdir()?;
    // A `streamlab deliver` started the way a user starts several: same
    // spec, no `--instance-id`.
    let log = |name: &str| logs.path().join(format!("{name}.log"));
    let member = |name: &str| -> Result<DeliverProcess> {
        pipeline.spawn_deliver(spec, &[], std::fs::File::create(log(name))?.into())
    };
    let mut members: Vec<DeliverProcess> = ["a", "b", "c"].into_iter().map(member).collect::<Result<_>>()?;

    // The group forms before any event is produced: each process owns
    // partitions and no rebalance happened for 3 s. A rebalance while records
    // flow duplicates the ones in flight at the revocation (they land, the new
    // owner reads them again from the last commit), which is at-least-once but
    // not the duplicates this test bounds: those of the kill.
    let started = Instant::now();
    let mut last = (0, 0);
    let mut quiet = Instant::now();
    loop {
        let texts: Vec<String> =
            ["a", "b", "c"].iter().map(|name| std::fs::read_to_string(log(name)).unwrap_or_default()).collect();
        let owners = texts.iter().filter(|text| text.contains("assigned")).count();
        let rebalances = texts.iter().map(|text| text.matches("assigned").count() + text.matches("revoked").count());
        let seen = (owners, rebalances.sum::<usize>());
        if seen != last {
            (last, quiet) = (seen, Instant::now());
        } else if owners == 3 && quiet.elapsed() >= Duration::from_secs(3) {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(60), "only {owners} of 3 processes got partitions");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all = events(18, 6_000);
    let producing = pipeline.publish_in_background(all.clone(), Some(300.0), Arc::new(SystemClock));
    wait_landed(&pipeline, 1_500, Duration::from_secs(60)).await?;
    members.remove(1).sigkill();
    let window = committed(&pipeline, pipeline.spec.name()).await?;
    // Kafka hands a dead member's partitions to the others once its session
    // times out (10 s). tansu 0.6 keeps the dead member in the assignment
    // until a member joins after that, so the replacement waits for it.
    tokio::time::sleep(Duration::from_secs(11)).await;
    members.push(member("d")?);

    ensure!(producing.await?? == 6_000);
    let landed = wait_landed(&pipeline, 6_000, Duration::from_secs(120)).await.inspect_err(|_| {
        for name in ["a", "b", "c", "d"] {
            let text = std::fs::read_to_string(log(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains("PUT failed")).collect();
            eprintln!("--- {name} ---\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
        }
    })?;
    for member in members {
        ensure!(member.sigterm()?.success(), "a delivery did not stop cleanly");
    }
    let duplicates = assert_no_loss(&landed_ids(&pipeline.objects().await?)?, &all)?;
    let records = kafka_records(pipeline.bootstrap(), pipeline.spec.topic(), all.len())?;
    for (id, n) in landed.iter().filter(|(_, n)| **n > 1) {
        let (partition, offset, _) = records[id];
        let from = window.get(&partition).copied().flatten().unwrap_or(0);
        ensure!(offset >= from, "{id} landed {n} times but partition {partition} had committed {from} > {offset}");
    }
    eprintln!("scale-out: {duplicates} duplicates, all in the uncommitted window {window:?}");
    Ok(())
}
