//! `streamlab cost` and `streamlab inspect`: golden tests of the bill's
//! arithmetic (at a given rate, and from seeded runs on the manual clock),
//! the price overrides and warnings, the inspect report of seeded runs, late
//! records, and the HTML page's self-containment.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chrono::{TimeZone, Utc};
use streamlab::cost::{self, Cluster, CostOptions, PriceBook, Rate, RunUsage};
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::inspect::{self, InspectOptions, JqPath, Provenance};
use streamlab::spec::{self, StreamSpec};

use common::{wait_for, Pipeline};

use crate::common;

const SEED: u64 = 11;

fn load(name: &str) -> StreamSpec {
    spec::load(&common::repo().join("fixtures/streams").join(name)).expect("a valid fixture")
}

/// A fixed jq time: the golden figures must not depend on this machine's speed.
fn jq(_: &StreamSpec) -> f64 {
    2e-6
}

fn at_rate(specs: &[StreamSpec], events_per_sec: f64, record_bytes: u64, options: &CostOptions) -> cost::CostReport {
    let rate = Rate { events_per_sec: Some(events_per_sec), record_bytes: Some(record_bytes) };
    let workloads = cost::workloads(specs, &rate, None, options).unwrap();
    cost::estimate(specs, &workloads, options, &PriceBook::built_in(), jq).unwrap()
}

#[test]
fn orders_at_100_events_per_second_on_three_m5_large_brokers() {
    let report = at_rate(&[load("orders-to-s3.json")], 100.0, 250, &CostOptions::default());
    // 100 x 250 B/s over 730 h is 61.19 GB; a 5 MiB buffer fills in 210 s.
    let ingestion = &report.lines[0];
    assert_eq!(ingestion.price_key, "firehose-msk-ingestion-gb");
    assert!((ingestion.quantity - 100.0 * 250.0 * 730.0 * 3600.0 / 1_073_741_824.0).abs() < 1e-9);
    assert!((report.streams[0].objects_per_hour - 3600.0 / (5.0 * 1_048_576.0 / 25_000.0)).abs() < 1e-9);
    let sum: f64 = report.lines.iter().map(|l| l.usd).sum();
    assert!((report.total_usd - sum).abs() < 1e-9);
    insta::assert_snapshot!("cost_orders_100_per_second", report.render_table());
}

#[test]
fn the_parquet_fixture_pays_conversion_on_what_is_ingested() {
    let report = at_rate(&[load("parquet-openx.json")], 100.0, 250, &CostOptions::default());
    let conversion = report.lines.iter().find(|l| l.price_key == "firehose-format-conversion-gb").unwrap();
    assert!((conversion.quantity - report.streams[0].gb_read).abs() < 1e-9);
    insta::assert_json_snapshot!("cost_parquet_openx_100_per_second", report);
}

#[test]
fn private_connectivity_on_t3_small_brokers_is_warned_about() {
    let options = CostOptions {
        cluster: Cluster::Provisioned { brokers: 2, broker_type: "kafka.t3.small".into() },
        ..CostOptions::default()
    };
    let report = at_rate(&[load("orders-to-s3.json")], 10.0, 250, &options);
    let warning = report.warnings.iter().find(|w| w.code == "private-connectivity-t3-small").expect("a warning");
    // (0.21 - 0.0456) x 2 brokers x 730 h
    assert!(
        warning.message.contains("which kafka.t3.small brokers do not support: this stream cannot read"),
        "{warning:?}"
    );
    assert!(warning.message.contains("+$240.02/month for 2 brokers"), "{warning:?}");
    let text = std::fs::read_to_string(common::repo().join("fixtures/streams/orders-to-s3.json")).unwrap();
    let public = spec::parse(Path::new("public.json"), &text.replace("\"PRIVATE\"", "\"PUBLIC\"")).unwrap();
    let public = at_rate(&[public], 10.0, 250, &options);
    assert!(public.lines.iter().all(|l| !l.price_key.starts_with("msk-multi-vpc")), "no multi-VPC charges");
    assert!(public.warnings.iter().all(|w| w.code != "private-connectivity-t3-small"));
}

#[test]
fn overrides_change_the_bill_and_unknown_broker_types_are_refused() {
    let specs = [load("orders-to-s3.json")];
    let options = CostOptions::default();
    let workloads =
        cost::workloads(&specs, &Rate { events_per_sec: Some(100.0), record_bytes: Some(250) }, None, &options)
            .unwrap();
    let mut prices = PriceBook::built_in();
    let base = cost::estimate(&specs, &workloads, &options, &prices, jq).unwrap();
    prices.apply("[\"msk-broker-hour:kafka.m5.large\"]\nprice = 0.25\n", "mine.toml").unwrap();
    let changed = cost::estimate(&specs, &workloads, &options, &prices, jq).unwrap();
    assert!((changed.total_usd - base.total_usd - 0.04 * 3.0 * 730.0).abs() < 1e-6);
    let brokers = changed.lines.iter().find(|l| l.price_key == "msk-broker-hour:kafka.m5.large").unwrap();
    assert_eq!(brokers.unit_price, 0.25);
    let other = CostOptions {
        cluster: Cluster::Provisioned { brokers: 3, broker_type: "kafka.m5.huge".into() },
        ..CostOptions::default()
    };
    let err = cost::estimate(&specs, &workloads, &other, &prices, jq).unwrap_err().to_string();
    assert!(
        err.starts_with("--broker-type kafka.m5.huge has no price; known: kafka.m5.large, kafka.t3.small."),
        "{err}"
    );
}

/// A seeded run of `fixture` on the manual clock: `n` events, one buffer
/// interval passed. Returns the stack's usage, objects and provenance.
async fn seeded_run(
    fixture: &str,
    n: usize,
) -> Result<(RunUsage, Vec<streamlab::harness::StoredObject>, Vec<Provenance>, RunUsage)> {
    let start = Utc.with_ymd_and_hms(2026, 3, 8, 6, 58, 0).unwrap();
    let path = common::repo().join("fixtures/streams").join(fixture);
    let pipeline = Pipeline::start_with(&path, 3, start, |o| o.seed(SEED)).await?;
    let running = pipeline.deliver().await?;
    let events: Vec<_> = EventGenerator::new(&GeneratorConfig::new(SEED, start.timestamp_millis())).take(n).collect();
    pipeline.publish(events).await?;
    let stats = running.stats.clone();
    wait_for("all records read", Duration::from_secs(30), || stats.read() == n as u64).await?;
    pipeline.pass_interval().await?;
    wait_for("all records delivered", Duration::from_secs(10), || stats.delivered() == n as u64).await?;
    let usage = pipeline.stack.usage();
    let provenance = pipeline.stack.provenance();
    let objects = pipeline.objects().await?;
    let work = pipeline.stack.work_dir().to_owned();
    running.stop().await?;
    // What the stack wrote when it stopped is what it served while running.
    let saved = RunUsage::load(&work)?;
    Ok((usage, objects, provenance, saved))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_partitioning_priced_from_a_seeded_run() -> Result<()> {
    let (usage, objects, _, saved) = seeded_run("dynamic-partitioning-event-type.json", 400).await?;
    ensure!(saved == usage, "usage.json {saved:?} differs from the served usage {usage:?}");
    let u = &usage.streams[0];
    ensure!(u.records_read == 400 && u.objects == objects.len() as u64, "{u:?}");
    let keys: std::collections::BTreeSet<&str> = objects.iter().filter_map(|o| o.key.split('/').nth(1)).collect();
    ensure!(u.partition_keys == keys.len() as u64, "{} key values in {keys:?}", u.partition_keys);
    let specs = [load("dynamic-partitioning-event-type.json")];
    let options = CostOptions::default();
    // At the run's own rate, and at 100 events/s of the run's record size.
    for (name, rate) in [("own_rate", None), ("100_per_second", Some(100.0))] {
        let rate = Rate { events_per_sec: rate, record_bytes: None };
        let workloads = cost::workloads(&specs, &rate, Some((&usage, "the seeded run")), &options)?;
        let report = cost::estimate(&specs, &workloads, &options, &PriceBook::built_in(), jq)?;
        ensure!(report.warnings.iter().any(|w| w.code == "dynamic-partitioning-objects"), "{:?}", report.warnings);
        insta::assert_json_snapshot!(format!("cost_dynamic_partitioning_{name}"), report);
    }
    Ok(())
}

fn inspect_options() -> InspectOptions {
    InspectOptions { id: Some(JqPath::parse(".event_id").unwrap()), ..InspectOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reports_seeded_runs_of_three_fixtures() -> Result<()> {
    for fixture in ["orders-to-s3.json", "dynamic-partitioning-event-type.json", "parquet-openx.json"] {
        let (_, objects, provenance, _) = seeded_run(fixture, 300).await?;
        let spec = load(fixture);
        let report = inspect::report(&format!("s3://{}", spec.bucket()), &objects, &provenance, &inspect_options());
        let stream = &report.streams[0];
        ensure!(
            stream.records == 300 && stream.tally.duplicates == 0 && stream.tally.late_records == 0,
            "{fixture}: {stream:?}"
        );
        ensure!(report.objects.iter().all(|o| o.sources.is_some()), "{fixture}: every object came from the stack");
        ensure!(
            report.warnings.iter().any(|w| w.contains("are under 128 MB, the size Athena reads well")),
            "{fixture}: {:?}",
            report.warnings
        );
        let name = fixture.trim_end_matches(".json");
        insta::assert_json_snapshot!(format!("inspect_{name}"), report);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_with_old_event_times_are_reported_late() -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 3, 8, 6, 58, 0).unwrap();
    let pipeline =
        Pipeline::start_with(Path::new("fixtures/streams/orders-to-s3.json"), 1, start, |o| o.seed(SEED)).await?;
    let running = pipeline.deliver().await?;
    // A producer replaying events of three hours ago: Kafka stamps them now.
    let old = start - chrono::Duration::hours(3);
    let events: Vec<_> = EventGenerator::new(&GeneratorConfig::new(SEED, old.timestamp_millis())).take(50).collect();
    let newest = events.iter().map(|e| e.occurred_at.clone()).max().context("events")?;
    pipeline.publish(events).await?;
    let stats = running.stats.clone();
    wait_for("all records read", Duration::from_secs(30), || stats.read() == 50).await?;
    pipeline.pass_interval().await?;
    wait_for("all records delivered", Duration::from_secs(10), || stats.delivered() == 50).await?;
    let objects = pipeline.objects().await?;
    let report = inspect::report("s3://shop-events-raw", &objects, &pipeline.stack.provenance(), &inspect_options());
    let stream = &report.streams[0];
    ensure!(stream.tally.late_records == 50, "{stream:?}");
    // The hour prefix is 06:00; the newest event is from about 03:58.
    let newest = chrono::DateTime::parse_from_rfc3339(&newest)?;
    let hour = Utc.with_ymd_and_hms(2026, 3, 8, 6, 0, 0).unwrap();
    ensure!(
        stream.tally.max_late_secs >= (hour.timestamp_millis() - newest.timestamp_millis()) as f64 / 1000.0,
        "{stream:?}"
    );
    ensure!(report.warnings.iter().any(|w| w.contains("50 records landed under a later hour than their event time")));
    let freshness = stream.tally.freshness_secs.as_ref().context("freshness")?;
    ensure!(freshness.min >= 3.0 * 3600.0, "landed at the clock's 07:03, oldest event at 03:58: {freshness:?}");
    running.stop().await?;
    Ok(())
}

#[test]
fn the_html_report_is_one_self_contained_file() {
    let id = "0b0e6f4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
    let object = |key: String, body: &str| streamlab::harness::StoredObject {
        key,
        body: bytes::Bytes::from(body.to_owned()),
        content_type: None,
        content_encoding: None,
        server_side_encryption: None,
        sse_kms_key_id: None,
        last_modified_ms: Some(1_783_951_500_000),
    };
    let objects = [
        object(
            format!("2026/07/13/14/orders-1-2026-07-13-14-00-05-{id}"),
            r#"{"event_id":"<a href='x'>","occurred_at":"2026-07-13T14:00:01Z"}"#,
        ),
        object(
            format!("errors/processing-failed/2026/07/13/14/orders-1-2026-07-13-14-00-05-{id}"),
            r#"{"errorCode":"Lambda.FunctionError","rawData":"e30="}"#,
        ),
    ];
    let report = inspect::report("s3://b", &objects, &[], &inspect_options());
    let cost = at_rate(&[load("orders-to-s3.json")], 100.0, 250, &CostOptions::default());
    let html = inspect::html::render(&report, Some(&cost));
    for forbidden in ["<script", "src=", "href=", "url(", "@import", "http://", "https://"] {
        assert!(!html.to_lowercase().contains(forbidden), "the page has {forbidden:?}");
    }
    assert!(html.contains("&lt;a href=&#39;x&#39;&gt;") || !html.contains("<a href"), "record text is escaped");
    for part in [
        "Data objects per hour",
        "Data object sizes of orders",
        "128 MB: small below",
        "Error records of orders by code",
        "Cost a month",
        "Lambda.FunctionError",
    ] {
        assert!(html.contains(part), "the page lacks {part:?}");
    }
    // Every chart's figures are in text too (images off).
    assert!(html.contains("<td>2026-07-13T14</td><td>1</td>"), "objects per hour as a table");
}

#[test]
fn cost_and_inspect_refuse_bad_input_with_what_to_fix() -> Result<()> {
    let (ok, _, err) =
        common::output(&mut common::streamlab(&["cost", "--spec", "fixtures/streams/orders-to-s3.json"]))?;
    ensure!(
        !ok && err.contains("no traffic to price: give --events-per-sec and --record-bytes, or --from-run DIR"),
        "{err}"
    );
    let empty = tempfile::tempdir()?;
    let dir = empty.path().to_str().context("utf-8")?;
    let (ok, _, err) = common::output(&mut common::streamlab(&[
        "cost",
        "--spec",
        "fixtures/streams/orders-to-s3.json",
        "--from-run",
        dir,
    ]))?;
    ensure!(!ok && err.contains("has no usage.json: a stack writes it there when it stops"), "{err}");
    let prices = empty.path().join("prices.toml");
    std::fs::write(&prices, "[\"s3-put-1k\"]\nprice = 0.006\n")?;
    let (ok, out, err) = common::output(&mut common::streamlab(&[
        "cost",
        "--spec",
        "fixtures/streams/orders-to-s3.json",
        "--events-per-sec",
        "100",
        "--record-bytes",
        "250",
        "--prices",
        prices.to_str().context("utf-8")?,
        "--format",
        "json",
    ]))?;
    ensure!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out)?;
    let put = report["lines"]
        .as_array()
        .context("lines")?
        .iter()
        .find(|l| l["price_key"] == "s3-put-1k")
        .context("PUT line")?;
    ensure!(put["unit_price"] == 0.006, "{put}");
    let (ok, _, err) =
        common::output(&mut common::streamlab(&["inspect", "shop-events-raw", "--s3-endpoint", "http://127.0.0.1:1"]))?;
    ensure!(
        !ok && err.contains("shop-events-raw is not an S3 location: give s3://bucket or s3://bucket/prefix"),
        "{err}"
    );
    let (ok, _, err) = common::output(&mut common::streamlab(&[
        "inspect",
        "s3://b",
        "--id",
        "order_id",
        "--s3-endpoint",
        "http://127.0.0.1:1",
    ]))?;
    ensure!(!ok && err.contains("--id \"order_id\" is not a jq path"), "{err}");
    // No credentials anywhere: said as such, not as an endpoint that does
    // not answer.
    let (ok, _, err) = common::output(
        common::streamlab(&["inspect", "s3://b", "--s3-endpoint", "http://127.0.0.1:1"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    )?;
    ensure!(!ok && err.contains("inspect: no AWS credentials to read s3://b with"), "{err}");
    ensure!(err.contains("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") && err.contains("--control"), "{err}");
    // With credentials, the unreachable endpoint, and the location said once.
    let (ok, _, err) = common::output(
        common::streamlab(&["inspect", "s3://b", "--s3-endpoint", "http://127.0.0.1:1"])
            .env("AWS_ACCESS_KEY_ID", "AKIASTREAMLABTEST")
            .env("AWS_SECRET_ACCESS_KEY", "streamlab-test-secret"),
    )?;
    ensure!(!ok && err.contains("cannot read s3://b/: no answer from the endpoint"), "{err}");
    ensure!(err.matches("cannot read").count() == 1, "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_and_cost_read_a_running_stack_through_its_control_api() -> Result<()> {
    use std::sync::Arc;
    common::init_logging();
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let options =
        streamlab::stack::StackOptions::new(["fixtures/streams/orders-to-s3.json"]).manual_clock(start).seed(SEED);
    let stack = Arc::new(streamlab::stack::Stack::start(options).await?);
    let control = streamlab::stack::control::ControlServer::start(stack.clone(), Vec::new()).await?;
    let url = control.url().to_owned();
    let outcome = async {
        let events: Vec<_> =
            EventGenerator::new(&GeneratorConfig::new(SEED, start.timestamp_millis())).take(200).collect();
        ensure!(stack.produce("shop-events", events).await? == 200);
        stack.settle(Duration::from_secs(30)).await?;
        stack.advance(Duration::from_secs(301)).await?;
        let (ok, out, err) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || {
                common::output(
                    common::streamlab(&["inspect", "s3://shop-events-raw", "--format", "json", "--id", ".event_id"])
                        .env("STREAMLAB_CONTROL", &url),
                )
            }
        })
        .await??;
        ensure!(ok, "{err}");
        let report: inspect::InspectReport = serde_json::from_str(&out)?;
        ensure!(report.streams[0].records == 200, "{out}");
        ensure!(report.objects.iter().all(|o| o.sources.is_some() && o.freshness_secs.is_some()), "{out}");
        let (ok, out, err) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || {
                common::output(&mut common::streamlab(&[
                    "cost",
                    "--spec",
                    "fixtures/streams/orders-to-s3.json",
                    "--control",
                    &url,
                ]))
            }
        })
        .await??;
        ensure!(ok, "{err}");
        ensure!(out.contains("200 records of") && out.contains("over 301 s of the stack's clock"), "{out}");
        Ok(())
    }
    .await;
    drop(control);
    stack.shutdown().await?;
    outcome
}

#[test]
fn run_writes_its_html_report() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("report.html");
    let (ok, _, err) = common::output(&mut common::streamlab(&[
        "run",
        "--spec",
        "fixtures/streams/orders-to-s3.json",
        "--report",
        report.to_str().context("utf-8")?,
        "--",
        env!("CARGO_BIN_EXE_streamlab"),
        "produce",
        "--topic",
        "shop-events",
        "--count",
        "300",
    ]))?;
    ensure!(ok, "{err}");
    ensure!(err.contains(&format!("wrote {}", report.display())), "{err}");
    // A `run` flushes rather than waits: too short a span to price.
    ensure!(err.contains("the report has no cost table: the run in this run's stack spans 0.0 s"), "{err}");
    let html = std::fs::read_to_string(&report)?;
    ensure!(html.contains("What landed in s3://shop-events-raw") && html.contains("<td>300</td>"), "{html}");
    ensure!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    Ok(())
}

#[test]
fn a_freshness_alarm_the_buffer_interval_always_trips_is_warned_about() -> Result<()> {
    let alarms = streamlab::stack::load_alarms(&[common::repo().join("fixtures/alarms/orders-freshness.json")])?;
    let mut options = CostOptions { freshness_alarms: cost::freshness_alarms(&alarms), ..CostOptions::default() };
    ensure!(options.freshness_alarms == [("orders-freshness".to_owned(), "orders-to-s3".to_owned(), 600.0)]);
    // 300 s interval under a 600 s threshold: quiet.
    let quiet = at_rate(&[load("orders-to-s3.json")], 1.0, 250, &options);
    ensure!(quiet.warnings.iter().all(|w| w.code != "freshness-alarm"), "{:?}", quiet.warnings);
    options.freshness_alarms[0].2 = 120.0;
    let loud = at_rate(&[load("orders-to-s3.json")], 1.0, 250, &options);
    let warning = loud.warnings.iter().find(|w| w.code == "freshness-alarm").context("a freshness warning")?;
    ensure!(
        warning.message.contains("alarm orders-freshness fires on every buffer: at this rate records wait up to 300 s"),
        "{warning:?}"
    );
    // At 100 events/s the 5 MiB buffer fills in 210 s: still over 120 s.
    ensure!(at_rate(&[load("orders-to-s3.json")], 100.0, 250, &options)
        .warnings
        .iter()
        .any(|w| w.code == "freshness-alarm"));
    Ok(())
}
