//! One conformance suite, every backend: the same scenarios run on local
//! processes (always), on LocalStack's S3 as a host process (when `just
//! install-localstack` has built its venv; required under CI) and on
//! containers (when a Docker engine answers; otherwise each case prints
//! `SKIPPED container: <reason>`, and `STREAMLAB_REQUIRE_DOCKER=1` makes that
//! a failure). Scenarios read through the S3 API only and use their own
//! stack, so names never collide. Fault scenarios stay in `tests/faults.rs`.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rstest::rstest;
use streamlab::backend::{docker_reachable, localstack_python, BackendKind};
use streamlab::checks::expect::Expectation;
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::harness;
use streamlab::stack::{Stack, StackOptions};

use common::repo;

/// Whether `backend` can run here; `Err` when it must and cannot.
async fn runnable(backend: BackendKind) -> Result<bool> {
    let missing = match backend {
        BackendKind::Localstack => localstack_python().err().map(|e| e.to_string()),
        BackendKind::Container => docker_reachable().await.err(),
        _ => None,
    };
    let Some(reason) = missing else { return Ok(true) };
    let required = match backend {
        BackendKind::Container => std::env::var_os("STREAMLAB_REQUIRE_DOCKER").is_some(),
        _ => std::env::var_os("CI").is_some(),
    };
    ensure!(!required, "{backend:?} is required here but cannot run: {reason}");
    eprintln!("SKIPPED {}: {reason}", format!("{backend:?}").to_lowercase());
    Ok(false)
}

async fn stack(backend: BackendKind, spec: &str) -> Result<Stack> {
    let mut options = StackOptions::new([repo().join(spec)]).seed(5);
    options.backend = backend;
    Ok(Stack::start(options).await?)
}

/// Seeded events through delivery and back through the S3 API: each landed
/// exactly once, every key of AWS's shape, the object headers the spec
/// implies (content encoding, SSE-KMS).
#[rstest]
#[case::uncompressed("fixtures/streams/orders-to-s3.json")]
#[case::gzip("fixtures/streams/gzip.json")]
#[case::zip("fixtures/streams/zip.json")]
#[case::snappy("fixtures/streams/snappy.json")]
#[case::hadoop_snappy("fixtures/streams/hadoop-snappy.json")]
#[case::dynamic_partitioning("fixtures/streams/dynamic-partitioning-event-type.json")]
#[case::sse_kms("fixtures/streams/sse-kms-zip.json")]
#[case::parquet("fixtures/streams/parquet-openx.json")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip(
    #[values(BackendKind::Local, BackendKind::Localstack, BackendKind::Container)] backend: BackendKind,
    #[case] spec: &str,
) -> Result<()> {
    if !runnable(backend).await? {
        return Ok(());
    }
    let stack = stack(backend, spec).await?;
    let spec = stack.specs()[0].clone();
    let events = EventGenerator::new(&GeneratorConfig::new(9, stack.clock().now_millis())).take(200);
    stack.produce(&spec.topic, events).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.flush(None).await?;
    let outcomes = stack.check(&[Expectation::ExactlyOnce, Expectation::KeyShape, Expectation::NoErrors]).await?;
    for outcome in &outcomes {
        ensure!(outcome.passed, "{backend:?} {}: {:?}: {}", spec.name, outcome.expectation, outcome.detail);
    }
    let objects = harness::read_bucket(stack.s3_client(), &spec.bucket).await?;
    ensure!(!objects.is_empty());
    for object in &objects {
        let encoding = if spec.conversion.is_some() { None } else { spec.compression.content_encoding() };
        ensure!(
            object.content_encoding.as_deref() == encoding,
            "{backend:?} {}: {:?}",
            object.key,
            object.content_encoding
        );
        if let Some(key) = &spec.sse_kms_key_id {
            ensure!(
                object.server_side_encryption.as_deref() == Some("aws:kms")
                    && object.sse_kms_key_id.as_deref() == Some(key),
                "{backend:?} {}: SSE {:?} {:?}",
                object.key,
                object.server_side_encryption,
                object.sse_kms_key_id
            );
        }
    }
    stack.shutdown().await?;
    Ok(())
}

/// Records that cannot be delivered as configured land under the error
/// prefix on every backend, with their bytes.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_output(
    #[values(BackendKind::Local, BackendKind::Localstack, BackendKind::Container)] backend: BackendKind,
) -> Result<()> {
    if !runnable(backend).await? {
        return Ok(());
    }
    let stack = stack(backend, "fixtures/streams/dynamic-partitioning-event-type.json").await?;
    let spec = stack.specs()[0].clone();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", stack.bootstrap()).create()?;
    for value in [&b"not json"[..], br#"{"no_event_type": 1}"#, br#"{"event_type": "order_placed", "id": 1}"#] {
        producer
            .send(FutureRecord::<(), _>::to(&spec.topic).payload(value), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
    }
    stack.settle(Duration::from_secs(30)).await?;
    stack.flush(None).await?;
    let objects = harness::read_bucket(stack.s3_client(), &spec.bucket).await?;
    let errors: Vec<_> = objects.iter().filter(|o| o.key.starts_with("errors/")).collect();
    let lines: usize = errors.iter().map(|o| o.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count()).sum();
    ensure!(
        lines == 2,
        "{backend:?}: two error lines, got {lines} in {:?}",
        errors.iter().map(|o| &o.key).collect::<Vec<_>>()
    );
    ensure!(errors.iter().all(|o| o.key.contains("metadata-extraction-failed")), "{backend:?}");
    let checks = stack.check(&[Expectation::ExactlyOnce]).await?;
    ensure!(checks[0].passed, "{backend:?}: {}", checks[0].detail);
    stack.shutdown().await?;
    Ok(())
}

/// A missing bucket is named at start-up on every backend.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_named(
    #[values(BackendKind::Local, BackendKind::Localstack, BackendKind::Container)] backend: BackendKind,
) -> Result<()> {
    if !runnable(backend).await? {
        return Ok(());
    }
    let stack = {
        let mut options = StackOptions::new([repo().join("fixtures/streams/orders-to-s3.json")]).defer_deliveries();
        options.backend = backend;
        Stack::start(options).await?
    };
    let spec = stack.specs()[0].clone();
    stack.s3_client().delete_bucket().bucket(&spec.bucket).send().await.context("deleting the bucket")?;
    let error = match stack.start_deliveries().await {
        Ok(()) => anyhow::bail!("{backend:?}: delivery started without its bucket"),
        Err(e) => e.to_string(),
    };
    ensure!(error.contains(&spec.bucket) && error.contains("does not exist"), "{backend:?}: {error}");
    Ok(())
}

/// The broker advertises exactly the address clients were given (what the
/// container backend's readiness check requires of Redpanda).
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_advertises_the_bootstrap_address(
    #[values(BackendKind::Local, BackendKind::Localstack, BackendKind::Container)] backend: BackendKind,
) -> Result<()> {
    if !runnable(backend).await? {
        return Ok(());
    }
    let stack = stack(backend, "fixtures/streams/orders-to-s3.json").await?;
    let bootstrap = stack.bootstrap().to_owned();
    let brokers = tokio::task::spawn_blocking({
        let b = bootstrap.clone();
        move || harness::broker_addresses(&b.into())
    })
    .await??;
    assert_eq!(brokers, vec![bootstrap]);
    stack.shutdown().await?;
    Ok(())
}
