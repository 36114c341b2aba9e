//! One conformance suite, every backend. The same scenarios run on:
//! - `local`: tansu and the in-process S3 (always);
//! - `localstack`: LocalStack's S3 as a host process (when `just
//!   install-localstack` has built its venv; required under CI): one
//!   LocalStack and one broker for the whole test binary, shared the way a
//!   team's long-running LocalStack is, each scenario in a run scope of its
//!   own (as on the external arms). `the_localstack_backend_…` starts the
//!   backend as `--backend localstack` does, LocalStack and all;
//! - `container`: Redpanda and LocalStack (when a Docker engine answers;
//!   otherwise each case prints `SKIPPED container: <reason>`, and
//!   `STREAMLAB_REQUIRE_DOCKER=1` makes that a failure);
//! - `external`: a running cluster and S3 (a team's MSK), when
//!   `STREAMLAB_EXTERNAL_BOOTSTRAP` and `STREAMLAB_EXTERNAL_BUCKET` are set
//!   (with `STREAMLAB_KAFKA_SECURITY` and friends, see the README);
//! - `external_on_local`: the external backend pointed at a local broker
//!   and S3 that stand in for a shared cluster and bucket (always), so the
//!   external path, the per-run names and the clean-up are checked here.
//!
//! Scenarios read through the S3 API only. On the external arms they run in
//! a scope of their own (streams, topics and keys named per run, one shared
//! bucket) and remove what they wrote. Fault scenarios, and group scenarios
//! with killed members and S3 outages, stay local (`tests/faults.rs`,
//! `tests/group.rs`).

use crate::common;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rstest::rstest;
use streamlab::backend::external::{self, ExternalSettings};
use streamlab::backend::{docker_reachable, localstack_python, Backend, BackendKind};
use streamlab::checks::expect::Expectation;
use streamlab::delivery::sink::S3Sink;
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::harness;
use streamlab::kafka::KafkaContext;
use streamlab::stack::{RunScope, Stack, StackOptions};

use common::repo;

/// Where a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    Local,
    Localstack,
    Container,
    External,
    ExternalOnLocal,
}

/// A backend ready for one scenario.
struct Env {
    arm: Arm,
    /// For the external arms: the cluster, S3 and the shared bucket.
    external: Option<(ExternalSettings, String)>,
    /// For `ExternalOnLocal`: the local broker and S3 playing the cluster.
    _host: Option<Backend>,
    _host_dir: Option<tempfile::TempDir>,
}

/// The bucket `ExternalOnLocal` shares between runs; it also holds an
/// object no run wrote, which clean-up must leave alone.
const SHARED_BUCKET: &str = "shared-conformance";
const BYSTANDER_KEY: &str = "production/2026/11/26/05/not-a-test-object";
/// The bucket the `Localstack` arm's scenarios share.
const LOCALSTACK_BUCKET: &str = "shared-localstack";

/// The `Localstack` arm's LocalStack and broker, started once per test
/// binary: a LocalStack start costs seconds of CPU, and fifteen scenarios
/// each starting their own made them the slowest tests here. They run on a
/// thread of their own that never ends, so they live as long as the process
/// (and die with it: their processes are bound to that thread), with a
/// runtime that keeps driving the broker between scenarios.
fn shared_localstack() -> Result<ExternalSettings> {
    static SHARED: std::sync::OnceLock<Result<ExternalSettings, String>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => return drop(tx.send(Err(format!("a runtime for the shared LocalStack: {e}")))),
                };
                runtime.block_on(async move {
                    let started = async {
                        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-localstack");
                        let _ = std::fs::remove_dir_all(&dir);
                        let backend = Backend::start(BackendKind::Localstack, &dir).await?;
                        let client = streamlab::delivery::sink::client(&backend.s3).await;
                        harness::create_bucket(&client, LOCALSTACK_BUCKET).await?;
                        anyhow::Ok(backend)
                    };
                    match started.await {
                        Ok(backend) => {
                            let _ =
                                tx.send(Ok(ExternalSettings { kafka: backend.kafka.clone(), s3: backend.s3.clone() }));
                            std::future::pending::<()>().await;
                        }
                        Err(e) => drop(tx.send(Err(format!("{e:#}")))),
                    }
                })
            });
            rx.recv().unwrap_or_else(|_| Err("the shared LocalStack's thread ended before it started".into()))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("the shared LocalStack did not start: {e}"))
}

/// Whether `arm` can run here; when it cannot and need not, prints why
/// (`SKIPPED <arm>: <reason>`) and says no; when it must (LocalStack under
/// CI, containers with `STREAMLAB_REQUIRE_DOCKER`), fails.
async fn runnable(arm: Arm) -> Result<bool> {
    common::init_logging();
    let missing = match arm {
        Arm::Localstack => localstack_python().err().map(|e| e.to_string()),
        Arm::Container => docker_reachable().await.err(),
        Arm::External => match (std::env::var_os(external::BOOTSTRAP_VAR), external::external_bucket()) {
            (Some(_), Some(_)) => None,
            _ => Some(format!("set {} and {} to run against a cluster", external::BOOTSTRAP_VAR, external::BUCKET_VAR)),
        },
        Arm::Local | Arm::ExternalOnLocal => None,
    };
    if let Some(reason) = missing {
        let required = match arm {
            Arm::Container => std::env::var_os("STREAMLAB_REQUIRE_DOCKER").is_some(),
            Arm::Localstack => std::env::var_os("CI").is_some(),
            _ => false,
        };
        ensure!(!required, "{arm:?} is required here but cannot run: {reason}");
        // Straight to the stream: libtest captures `eprintln!` of
        // passing tests, and a skip must show in the run's output.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIPPED {}: {reason}", format!("{arm:?}").to_lowercase());
        return Ok(false);
    }
    Ok(true)
}

impl Env {
    /// The arm's environment, or `None` (after printing why) when it cannot
    /// run here and need not.
    async fn get(arm: Arm) -> Result<Option<Env>> {
        if !runnable(arm).await? {
            return Ok(None);
        }
        let mut env = Env { arm, external: None, _host: None, _host_dir: None };
        match arm {
            Arm::Localstack => {
                let settings = tokio::task::spawn_blocking(shared_localstack).await??;
                env.external = Some((settings, LOCALSTACK_BUCKET.to_owned()));
            }
            Arm::External => {
                let bucket = external::external_bucket().expect("checked above");
                env.external = Some((ExternalSettings::from_env().await?, bucket));
            }
            Arm::ExternalOnLocal => {
                let dir = tempfile::tempdir()?;
                let host = Backend::start(BackendKind::Local, dir.path()).await?;
                let client = streamlab::delivery::sink::client(&host.s3).await;
                harness::create_bucket(&client, SHARED_BUCKET).await?;
                client
                    .put_object()
                    .bucket(SHARED_BUCKET)
                    .key(BYSTANDER_KEY)
                    .body(b"keep me".to_vec().into())
                    .send()
                    .await?;
                let settings = ExternalSettings { kafka: host.kafka.clone(), s3: host.s3.clone() };
                env.external = Some((settings, SHARED_BUCKET.to_owned()));
                env._host = Some(host);
                env._host_dir = Some(dir);
            }
            _ => {}
        }
        Ok(Some(env))
    }

    fn backend(&self) -> BackendKind {
        match self.arm {
            Arm::Local => BackendKind::Local,
            Arm::Container => BackendKind::Container,
            Arm::Localstack | Arm::External | Arm::ExternalOnLocal => BackendKind::External,
        }
    }

    /// Stack options for `spec` on this arm: on the external arms, scoped
    /// to a run of its own in the shared bucket.
    fn options(&self, spec: &str) -> StackOptions {
        let mut options = StackOptions::new([repo().join(spec)]).seed(5);
        options.backend = self.backend();
        if let Some((settings, bucket)) = &self.external {
            options.external = Some(settings.clone());
            options.scope = Some(RunScope::new().in_bucket(bucket));
        }
        options
    }

    async fn stack(&self, spec: &str) -> Result<Stack> {
        Ok(Stack::start(self.options(spec)).await?)
    }

    /// Removes what a scoped run wrote and, where another party's objects
    /// share the bucket, checks they are still there.
    async fn finish(&self, stack: &Stack) -> Result<()> {
        stack.clean_up().await?;
        if matches!(self.arm, Arm::ExternalOnLocal | Arm::Localstack) {
            let spec = &stack.specs()[0];
            ensure!(stack.objects(spec).await?.is_empty(), "clean-up left the run's objects");
            if self.arm == Arm::ExternalOnLocal {
                let keys = harness::list_keys(stack.s3_client(), spec.bucket()).await?;
                ensure!(keys == [BYSTANDER_KEY], "clean-up touched objects outside the run: {keys:?}");
            }
            let topics = tokio::task::spawn_blocking({
                let kafka = stack.kafka().clone();
                move || streamlab::kafka::admin::list_topics(&kafka)
            })
            .await??;
            ensure!(!topics.iter().any(|t| t == spec.topic()), "clean-up left the run's topic {}", spec.topic());
        }
        Ok(())
    }
}

async fn produce_seeded(stack: &Stack, seed: u64, n: usize) -> Result<()> {
    let spec = &stack.specs()[0];
    let events = EventGenerator::new(&GeneratorConfig::new(seed, stack.clock().now_millis())).take(n);
    stack.produce(spec.topic(), events).await?;
    Ok(())
}

async fn expect(stack: &Stack, arm: Arm, expectations: &[Expectation]) -> Result<()> {
    for outcome in stack.check(expectations).await? {
        ensure!(outcome.passed, "{arm:?} {}: {:?}: {}", stack.specs()[0].name(), outcome.expectation, outcome.detail);
    }
    Ok(())
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
    #[values(Arm::Local, Arm::Localstack, Arm::Container, Arm::External, Arm::ExternalOnLocal)] arm: Arm,
    #[case] spec: &str,
) -> Result<()> {
    let Some(env) = Env::get(arm).await? else { return Ok(()) };
    let stack = env.stack(spec).await?;
    let spec = stack.specs()[0].clone();
    produce_seeded(&stack, 9, 200).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.flush(None).await?;
    expect(&stack, arm, &[Expectation::ExactlyOnce, Expectation::KeyShape, Expectation::NoErrors]).await?;
    let objects = stack.objects(&spec).await?;
    ensure!(!objects.is_empty());
    for object in &objects {
        let encoding = if spec.conversion().is_some() { None } else { spec.compression().content_encoding() };
        ensure!(
            object.content_encoding.as_deref() == encoding,
            "{arm:?} {}: {:?}",
            object.key,
            object.content_encoding
        );
        if let Some(key) = &spec.sse_kms_key_id() {
            ensure!(
                object.server_side_encryption.as_deref() == Some("aws:kms")
                    && object.sse_kms_key_id.as_deref() == Some(key),
                "{arm:?} {}: SSE {:?} {:?}",
                object.key,
                object.server_side_encryption,
                object.sse_kms_key_id
            );
        }
    }
    stack.shutdown().await?;
    env.finish(&stack).await
}

/// `--backend localstack` as a user starts it (the other scenarios share
/// one LocalStack): the stack starts LocalStack and a broker of its own,
/// delivers through LocalStack's S3, and takes LocalStack down with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_localstack_backend_starts_its_own_localstack_and_stops_it() -> Result<()> {
    if !runnable(Arm::Localstack).await? {
        return Ok(());
    }
    let mut options = StackOptions::new([repo().join("fixtures/streams/gzip.json")]).seed(5);
    options.backend = BackendKind::Localstack;
    let stack = Stack::start(options).await?;
    let url = stack.s3_endpoint().context("LocalStack's endpoint")?.to_owned();
    produce_seeded(&stack, 9, 200).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.flush(None).await?;
    expect(&stack, Arm::Localstack, &[Expectation::ExactlyOnce, Expectation::KeyShape, Expectation::NoErrors]).await?;
    let objects = stack.objects(&stack.specs()[0]).await?;
    ensure!(objects.iter().all(|o| o.content_encoding.as_deref() == Some("gzip")), "{objects:?}");
    stack.shutdown().await?;
    drop(stack);
    let addr = url.trim_start_matches("http://").to_owned();
    ensure!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "LocalStack still answers at {addr} after its stack stopped"
    );
    Ok(())
}

/// Records that cannot be delivered as configured land under the error
/// prefix on every backend, with their bytes.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_output(
    #[values(Arm::Local, Arm::Localstack, Arm::Container, Arm::External, Arm::ExternalOnLocal)] arm: Arm,
) -> Result<()> {
    let Some(env) = Env::get(arm).await? else { return Ok(()) };
    let stack = env.stack("fixtures/streams/dynamic-partitioning-event-type.json").await?;
    let spec = stack.specs()[0].clone();
    let kafka = stack.kafka();
    let producer: FutureProducer<KafkaContext> = kafka.create(&kafka.config())?;
    for value in [&b"not json"[..], br#"{"no_event_type": 1}"#, br#"{"event_type": "order_placed", "id": 1}"#] {
        producer
            .send(FutureRecord::<(), _>::to(spec.topic()).payload(value), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
    }
    stack.settle(Duration::from_secs(30)).await?;
    stack.flush(None).await?;
    let objects = stack.objects(&spec).await?;
    let errors: Vec<_> = objects.iter().filter(|o| o.key.starts_with("errors/")).collect();
    let lines: usize = errors.iter().map(|o| o.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count()).sum();
    ensure!(
        lines == 2,
        "{arm:?}: two error lines, got {lines} in {:?}",
        errors.iter().map(|o| &o.key).collect::<Vec<_>>()
    );
    ensure!(errors.iter().all(|o| o.key.contains("metadata-extraction-failed")), "{arm:?}");
    expect(&stack, arm, &[Expectation::ExactlyOnce]).await?;
    stack.shutdown().await?;
    env.finish(&stack).await
}

/// A delivery stopped and started again resumes where it committed: every
/// record, from before and after the restart, lands exactly once.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_where_it_committed(
    #[values(Arm::Local, Arm::Localstack, Arm::Container, Arm::External, Arm::ExternalOnLocal)] arm: Arm,
) -> Result<()> {
    let Some(env) = Env::get(arm).await? else { return Ok(()) };
    let stack = env.stack("fixtures/streams/orders-to-s3.json").await?;
    produce_seeded(&stack, 11, 120).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.shutdown().await?;
    let before = stack.objects(&stack.specs()[0]).await?.len();
    ensure!(before > 0, "{arm:?}: the first run delivered nothing at shutdown");
    produce_seeded(&stack, 12, 80).await?;
    stack.start_deliveries().await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.flush(None).await?;
    expect(&stack, arm, &[Expectation::ExactlyOnce, Expectation::KeyShape, Expectation::NoErrors]).await?;
    stack.shutdown().await?;
    env.finish(&stack).await
}

/// `ReadFromTimestamp: 0` reads what the topic held before the stream
/// existed: records written before delivery started land with the rest.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_earliest_includes_earlier_records(
    #[values(Arm::Local, Arm::Localstack, Arm::Container, Arm::External, Arm::ExternalOnLocal)] arm: Arm,
) -> Result<()> {
    let Some(env) = Env::get(arm).await? else { return Ok(()) };
    let stack = Stack::start(env.options("fixtures/streams/read-from-earliest.json").defer_deliveries()).await?;
    produce_seeded(&stack, 13, 60).await?;
    stack.start_deliveries().await?;
    produce_seeded(&stack, 14, 40).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.flush(None).await?;
    expect(&stack, arm, &[Expectation::ExactlyOnce, Expectation::Records(100)]).await?;
    stack.shutdown().await?;
    env.finish(&stack).await
}

/// A missing topic is named at start-up, as on MSK (no auto-creation).
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_is_named(
    #[values(Arm::Local, Arm::Localstack, Arm::Container, Arm::External, Arm::ExternalOnLocal)] arm: Arm,
) -> Result<()> {
    let Some(env) = Env::get(arm).await? else { return Ok(()) };
    let stack = Stack::start(env.options("fixtures/streams/orders-to-s3.json").defer_deliveries()).await?;
    let spec = stack.specs()[0].clone();
    streamlab::kafka::admin::delete_topics(stack.kafka(), &[spec.topic()]).await?;
    // Deletion is asynchronous on some brokers: wait until metadata agrees.
    let started = std::time::Instant::now();
    loop {
        let kafka = stack.kafka().clone();
        let topics = tokio::task::spawn_blocking(move || streamlab::kafka::admin::list_topics(&kafka)).await??;
        if !topics.iter().any(|t| t == spec.topic()) {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "{arm:?}: topic {} still listed after deletion",
            spec.topic()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let error = match stack.start_deliveries().await {
        Ok(()) => bail!("{arm:?}: delivery started without its topic"),
        Err(e) => e.to_string(),
    };
    ensure!(error.contains(&format!("topic {:?} does not exist", spec.topic())), "{arm:?}: {error}");
    env.finish(&stack).await
}

/// A missing bucket is named at start-up on every backend. (On the
/// external arms the stream points at a bucket that does not exist rather
/// than deleting the shared one.)
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_named(
    #[values(Arm::Local, Arm::Localstack, Arm::Container, Arm::External, Arm::ExternalOnLocal)] arm: Arm,
) -> Result<()> {
    let Some(env) = Env::get(arm).await? else { return Ok(()) };
    let mut options = env.options("fixtures/streams/orders-to-s3.json").defer_deliveries();
    let missing = options.scope.take().map(|scope| {
        let bucket = format!("streamlab-missing-{}", scope.run());
        options.scope = Some(scope.in_bucket(&bucket));
        bucket
    });
    let stack = Stack::start(options).await?;
    let spec = stack.specs()[0].clone();
    if missing.is_none() {
        stack.s3_client().delete_bucket().bucket(spec.bucket()).send().await.context("deleting the bucket")?;
    }
    let error = match stack.start_deliveries().await {
        Ok(()) => bail!("{arm:?}: delivery started without its bucket"),
        Err(e) => e.to_string(),
    };
    ensure!(error.contains(spec.bucket()) && error.contains("does not exist"), "{arm:?}: {error}");
    // The sink's own check, as `deliver` runs it.
    let sink = S3Sink::new(stack.s3_client().clone(), spec.bucket(), stack.s3_endpoint());
    ensure!(sink.check().await.is_err(), "{arm:?}: the sink accepted a missing bucket");
    streamlab::kafka::admin::delete_topics(stack.kafka(), &[spec.topic()]).await?;
    Ok(())
}

/// The broker advertises exactly the address clients were given (what the
/// container backend's readiness check requires of Redpanda). A real
/// cluster advertises its brokers' own names, so the external arm has no
/// such promise to check.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_advertises_the_bootstrap_address(
    #[values(Arm::Local, Arm::Localstack, Arm::Container)] arm: Arm,
) -> Result<()> {
    let Some(env) = Env::get(arm).await? else { return Ok(()) };
    let stack = env.stack("fixtures/streams/orders-to-s3.json").await?;
    let bootstrap = stack.bootstrap().to_owned();
    let brokers = tokio::task::spawn_blocking({
        let kafka = stack.kafka().clone();
        move || streamlab::kafka::admin::broker_addresses(&kafka)
    })
    .await??;
    assert_eq!(brokers, vec![bootstrap]);
    stack.shutdown().await?;
    Ok(())
}

/// Two instances of one stream share its partitions through the consumer
/// group (as two `deliver` processes do): every record lands, and the group
/// commits every partition to its end. Outcomes, not assignments: Redpanda
/// and tansu hand out partitions on their own schedules.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions(
    #[values(Arm::Local, Arm::Localstack, Arm::Container, Arm::External, Arm::ExternalOnLocal)] arm: Arm,
) -> Result<()> {
    use streamlab::delivery::source::{Membership, SourceSettings};
    use streamlab::delivery::state::{StateStore, TopicStateStore};
    use streamlab::delivery::{Delivery, Endpoints, Plan, Settings};

    let Some(env) = Env::get(arm).await? else { return Ok(()) };
    let stack = Stack::start(env.options("fixtures/streams/read-from-earliest.json").defer_deliveries()).await?;
    let spec = stack.specs()[0].clone();
    // 300 s buffer intervals pass in half a second.
    let clock: streamlab::clock::SharedClock = std::sync::Arc::new(streamlab::clock::ScaledClock::new(600.0));
    let mut instances = Vec::new();
    for _ in 0..2 {
        let endpoints = Endpoints {
            source: SourceSettings::new(stack.kafka().clone(), Membership::Group),
            state: StateStore::Topic(TopicStateStore::new(stack.kafka().clone())),
            sink: S3Sink::new(stack.s3_client().clone(), spec.bucket(), stack.s3_endpoint()),
        };
        let plan = Plan::prepare(spec.clone(), &Settings::new(clock.clone()))?;
        let delivery = Delivery::connect(plan, endpoints).await?;
        let (group, stats) = (delivery.state().group.clone(), delivery.stats());
        let stop = tokio_util::sync::CancellationToken::new();
        instances.push((group, stats, stop.clone(), tokio::spawn(delivery.run(stop))));
    }
    // Records go in once both own partitions, so both have some to deliver.
    let started = std::time::Instant::now();
    while !instances.iter().all(|(_, stats, ..)| stats.owned_partitions.load(std::sync::atomic::Ordering::Relaxed) > 0)
    {
        ensure!(started.elapsed() < Duration::from_secs(60), "{arm:?}: the two instances did not both get partitions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: Vec<_> = EventGenerator::new(&GeneratorConfig::new(15, stack.clock().now_millis())).take(600).collect();
    stack.produce(spec.topic(), events.clone()).await?;

    let started = std::time::Instant::now();
    let landed = loop {
        let landed = common::landed_ids(&stack.objects(&spec).await?)?;
        if landed.len() >= events.len() {
            break landed;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(90),
            "{arm:?}: {} of {} records landed after 90 s",
            landed.len(),
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let group = instances[0].0.clone();
    let mut read = Vec::new();
    for (_, _, stop, running) in instances {
        stop.cancel();
        read.push(running.await??.read());
    }
    let duplicates = common::assert_no_loss(&landed, &events)?;
    ensure!(read.iter().all(|r| *r > 0), "{arm:?}: the instances read {read:?}: one did no work");
    let (kafka, topic) = (stack.kafka().clone(), spec.topic().to_owned());
    let (committed, ends) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            streamlab::kafka::admin::committed_offsets(&kafka, &group, &topic)?,
            streamlab::kafka::admin::end_offsets(&kafka, &topic)?,
        ))
    })
    .await??;
    let ends: std::collections::BTreeMap<i32, Option<i64>> = ends.into_iter().map(|(p, o)| (p, Some(o))).collect();
    ensure!(committed == ends, "{arm:?}: the group committed {committed:?}, the partitions end at {ends:?}");
    eprintln!("{arm:?}: two instances read {read:?} records, {duplicates} landed twice");
    env.finish(&stack).await
}
