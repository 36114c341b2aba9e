//! One stack with 100 streams, as a team with many pipelines starts it:
//! every stream ready and delivering, and what each stream costs the
//! process (threads, file descriptors, memory) within what the README
//! states ("Scale of one stack"). Growth is measured from before the stack
//! started, so the stack's fixed cost is charged to its streams too.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::{TimeZone, Utc};
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::stack::{Stack, StackOptions};

const STREAMS: usize = 100;
/// The README's bounds, per stream. The broker runs in this process, so its
/// end of each delivery's connections counts too (about 2 descriptors).
const THREADS_PER_STREAM: f64 = 6.0;
const FDS_PER_STREAM: f64 = 15.0;
const RSS_MB_PER_STREAM: f64 = 3.0;
/// Not a performance target (`just bench` has those): a stack that needs
/// longer than this to start is broken, not slow.
const READY_WITHIN: Duration = Duration::from_secs(180);

/// (threads, open file descriptors, resident MB) of this process.
fn usage() -> Result<(f64, f64, f64)> {
    let threads = std::fs::read_dir("/proc/self/task")?.count() as f64;
    let fds = std::fs::read_dir("/proc/self/fd")?.count() as f64;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()?;
    Ok((threads, fds, rss_kb / 1024.0))
}

fn write_specs(dir: &Path) -> Result<()> {
    let seed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/streams/orders-to-s3.json")?)?;
    for n in 0..STREAMS {
        let mut spec = seed.clone();
        spec["DeliveryStreamName"] = format!("stream-{n:03}").into();
        spec["MSKSourceConfiguration"]["TopicName"] = format!("topic-{n:03}").into();
        spec["ExtendedS3DestinationConfiguration"]["BucketARN"] = format!("arn:aws:s3:::scale-bucket-{n:03}").into();
        std::fs::write(dir.join(format!("stream-{n:03}.json")), serde_json::to_vec(&spec)?)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_streams_start_deliver_and_cost_what_the_readme_says() -> Result<()> {
    let specs = tempfile::tempdir()?;
    write_specs(specs.path())?;
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let before = usage()?;
    let started = Instant::now();
    let stack = Stack::start(StackOptions::new([specs.path()]).manual_clock(start).partitions(1)).await?;
    let ready = started.elapsed();
    let after = usage()?;
    ensure!(stack.specs().len() == STREAMS, "{} streams", stack.specs().len());

    let phase = Instant::now();
    let produced = (0..STREAMS).map(|n| {
        let events = EventGenerator::new(&GeneratorConfig::new(n as u64, start.timestamp_millis())).take(10);
        let topic = format!("topic-{n:03}");
        let stack = &stack;
        async move { stack.produce(&topic, events).await }
    });
    futures::future::try_join_all(produced).await?;
    eprintln!("produced in {:.1} s", phase.elapsed().as_secs_f64());
    let phase = Instant::now();
    stack.settle(Duration::from_secs(120)).await?;
    eprintln!("settled in {:.1} s", phase.elapsed().as_secs_f64());
    let phase = Instant::now();
    stack.advance(Duration::from_secs(300)).await?;
    eprintln!("advanced in {:.1} s", phase.elapsed().as_secs_f64());
    let landing = stack.landing(None).await?;
    eprintln!("advanced and read back in {:.1} s", phase.elapsed().as_secs_f64());
    let per = |i: usize| {
        let (b, a) = ([before.0, before.1, before.2][i], [after.0, after.1, after.2][i]);
        (a - b) / STREAMS as f64
    };
    eprintln!(
        "{STREAMS} streams ready in {:.1} s; per stream: {:.1} threads, {:.1} fds, {:.2} MB (process: {} threads, {} fds, {:.0} MB)",
        ready.as_secs_f64(),
        per(0),
        per(1),
        per(2),
        after.0,
        after.1,
        after.2
    );
    ensure!(landing.data_records() == 10 * STREAMS, "{} records landed", landing.data_records());
    ensure!(ready < READY_WITHIN, "ready in {ready:?}");
    ensure!(per(0) <= THREADS_PER_STREAM, "{:.1} threads per stream", per(0));
    ensure!(per(1) <= FDS_PER_STREAM, "{:.1} file descriptors per stream", per(1));
    ensure!(per(2) <= RSS_MB_PER_STREAM, "{:.2} MB per stream", per(2));
    let phase = Instant::now();
    stack.shutdown().await?;
    eprintln!("shut down in {:.1} s", phase.elapsed().as_secs_f64());
    let phase = Instant::now();
    drop(stack);
    eprintln!("dropped in {:.1} s", phase.elapsed().as_secs_f64());
    Ok(())
}
