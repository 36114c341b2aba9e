//! CloudWatch of the stack, read as teams read it: the runbook's freshness
//! alarm proven to fire and clear with boto3 on the manual clock
//! (`tests/clients/cloudwatch_boto3.py`); the same metric through the AWS
//! CLI (rpc-v2-cbor), aws-sdk-cloudwatch (Rust), a JSON 1.0 and a query
//! request, all giving the same sum.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use chrono::{TimeZone, Utc};
use common::{available, output, python_has, repo, streamlab};
use streamlab::cloudwatch::api::CloudWatch;
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::stack::cloudwatch::CloudWatchServer;
use streamlab::stack::{Stack, StackOptions};

#[test]
fn a_freshness_alarm_fires_and_clears_with_boto3() -> Result<()> {
    if !available("boto3 and confluent-kafka (.venv)", python_has(&["boto3", "confluent_kafka"]))? {
        return Ok(());
    }
    let (ok, out, err) = output(&mut streamlab(&[
        "run",
        "--spec",
        "tests/clients/cloudwatch-stream.json",
        "--seed",
        "5",
        "--expect",
        "alarm:orders-freshness=OK",
        "--then",
        &format!("{} logs --stream orders-to-s3", common::BIN),
        "--",
        "python",
        "tests/clients/cloudwatch_boto3.py",
    ]))?;
    ensure!(ok, "{out}\n{err}");
    ensure!(out.contains("ok: expect alarm:orders-freshness=OK: alarm orders-freshness is OK, OK expected"), "{out}");
    // `streamlab logs` prints Firehose's error events from the stack.
    let printed = format!("{out}{err}");
    ensure!(
        printed.lines().any(|l| l.contains(" /aws/kinesisfirehose/orders-to-s3/DestinationDelivery {")
            && l.contains("\"errorCode\":\"S3.NoSuchBucket\"")),
        "{printed}"
    );
    ensure!(
        out.contains("cloudwatch: 500 read and delivered by the metrics; alarm OK -> ALARM -> OK;")
            && out.contains("S3.NoSuchBucket log events; 500 held records landed once"),
        "{out}"
    );
    Ok(())
}

/// `--alarm FILE` defines alarms at start (a new alarm has no data yet);
/// a file `PutMetricAlarm` would refuse stops the stack before it starts,
/// naming the file and the member.
#[test]
fn alarm_files_load_at_start_and_bad_ones_are_refused() -> Result<()> {
    let (ok, out, err) = output(&mut streamlab(&[
        "run",
        "--spec",
        "fixtures/streams/orders-to-s3.json",
        "--alarm",
        "fixtures/alarms",
        "--expect",
        "alarm:orders-freshness=INSUFFICIENT_DATA",
        "--",
        "true",
    ]))?;
    ensure!(ok, "{out}\n{err}");
    ensure!(out.contains("ok: expect alarm:orders-freshness=INSUFFICIENT_DATA"), "{out}");
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"AlarmName": "x", "Namespace": "N", "MetricName": "M", "Statistic": "Maximum", "Period": 45, "EvaluationPeriods": 1, "Threshold": 1, "ComparisonOperator": "GreaterThanThreshold"}"#,
    )?;
    let (ok, out, err) = output(&mut streamlab(&["run", "--alarm", bad.to_str().context("path")?, "--", "true"]))?;
    ensure!(!ok && err.contains("bad.json: The parameter Period must be a multiple of 60"), "{out}\n{err}");
    Ok(())
}

/// One raw request; (status, body).
async fn raw(url: &str, headers: &[(&str, &str)], path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>)> {
    use http_body_util::{BodyExt, Full};
    let addr = url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut request = http::Request::post(path).header("host", addr);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = sender.send_request(request.body(Full::new(bytes::Bytes::from(body)))?).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes().to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_reads_the_same_metric() -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let options = StackOptions::new(["fixtures/streams/orders-to-s3.json"]).manual_clock(start).seed(3);
    let stack = Arc::new(Stack::start(options).await?);
    let api = CloudWatch::new(stack.monitor().clone(), stack.clock(), "us-east-1");
    let server = CloudWatchServer::start(Arc::new(api)).await?;
    let outcome = protocols(&stack, server.url()).await;
    stack.shutdown().await?;
    outcome
}

async fn protocols(stack: &Stack, url: &str) -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let events = EventGenerator::new(&GeneratorConfig::new(1, start.timestamp_millis())).take(300);
    stack.produce("shop-events", events).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.advance(Duration::from_secs(120)).await?;

    // aws-sdk-cloudwatch, as a team's Rust code reads it.
    let credentials = aws_credential_types::Credentials::new("test", "test", None, None, "test");
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(url)
        .http_client(streamlab::aws_http::client())
        .build();
    let client = aws_sdk_cloudwatch::Client::from_conf(config);
    let dimension = Dimension::builder().name("DeliveryStreamName").value("orders-to-s3").build();
    let answer = client
        .get_metric_statistics()
        .namespace("AWS/Firehose")
        .metric_name("DataReadFromSource.Records")
        .dimensions(dimension)
        .start_time(aws_smithy_types::DateTime::from_secs(start.timestamp()))
        .end_time(aws_smithy_types::DateTime::from_secs(start.timestamp() + 3600))
        .period(3600)
        .statistics(Statistic::Sum)
        .send()
        .await?;
    let sum: f64 = answer.datapoints().iter().filter_map(|d| d.sum()).sum();
    ensure!(sum == 300.0, "aws-sdk-cloudwatch: {answer:?}");
    let listed = client.list_metrics().namespace("AWS/Firehose").send().await?;
    ensure!(listed.metrics().iter().any(|m| m.metric_name() == Some("DeliveryToS3.DataFreshness")), "{listed:?}");

    // JSON 1.0.
    let request = serde_json::json!({
        "Namespace": "AWS/Firehose", "MetricName": "DataReadFromSource.Records",
        "Dimensions": [{"Name": "DeliveryStreamName", "Value": "orders-to-s3"}],
        "StartTime": start.timestamp(), "EndTime": start.timestamp() + 3600, "Period": 3600, "Statistics": ["Sum"],
    });
    let headers = [
        ("x-amz-target", "GraniteServiceVersion20100801.GetMetricStatistics"),
        ("content-type", "application/x-amz-json-1.0"),
    ];
    let (status, body) = raw(url, &headers, "/", serde_json::to_vec(&request)?).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    ensure!(status == 200 && answer["Datapoints"][0]["Sum"] == 300.0, "JSON 1.0: {answer}");
    let (status, body) = raw(url, &headers, "/", br#"{"Namespace": "AWS/Firehose"}"#.to_vec()).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    ensure!(status == 400 && answer["__type"] == "MissingRequiredParameterException", "{answer}");

    // Query.
    let form =
        "Action=GetMetricStatistics&Version=2010-08-01&Namespace=AWS%2FFirehose&MetricName=DataReadFromSource.Records\
        &Dimensions.member.1.Name=DeliveryStreamName&Dimensions.member.1.Value=orders-to-s3\
        &StartTime=2026-07-13T14%3A00%3A00Z&EndTime=2026-07-13T15%3A00%3A00Z&Period=3600&Statistics.member.1=Sum";
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let (status, body) = raw(url, &headers, "/", form.as_bytes().to_vec()).await?;
    let xml = String::from_utf8(body)?;
    ensure!(status == 200 && xml.contains("<Sum>300.0</Sum>") && xml.contains("<GetMetricStatisticsResult>"), "{xml}");

    // The AWS CLI, which speaks rpc-v2-cbor.
    let cli = repo().join(".venv-aws/bin/aws");
    if available("the AWS CLI (.venv-aws)", cli.is_file())? {
        let out = std::process::Command::new(cli)
            .args(["cloudwatch", "get-metric-statistics", "--namespace", "AWS/Firehose"])
            .args(["--metric-name", "DataReadFromSource.Records"])
            .args(["--dimensions", "Name=DeliveryStreamName,Value=orders-to-s3"])
            .args(["--start-time", "2026-07-13T14:00:00Z", "--end-time", "2026-07-13T15:00:00Z"])
            .args(["--period", "3600", "--statistics", "Sum", "--endpoint-url", url, "--region", "us-east-1"])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let answer: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{text}{}", String::from_utf8_lossy(&out.stderr)))?;
        ensure!(answer["Datapoints"][0]["Sum"] == 300.0, "AWS CLI: {answer}");
    }
    Ok(())
}

/// `GET /metrics` on the control endpoint: Prometheus series named from
/// CloudWatch's, equal to the landing while records wait and after they
/// land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counters_equal_the_landing() -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let options = StackOptions::new(["fixtures/streams/orders-to-s3.json"]).manual_clock(start).seed(4);
    let stack = Arc::new(Stack::start(options).await?);
    let control = streamlab::stack::control::ControlServer::start(stack.clone(), Vec::new()).await?;
    let outcome = scrape_during_and_after(&stack, control.url()).await;
    stack.shutdown().await?;
    outcome
}

async fn metrics_page(url: &str) -> Result<String> {
    use http_body_util::{BodyExt, Empty};
    let addr = url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::get("/metrics").header("host", addr).body(Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    ensure!(response.headers()["content-type"].to_str()?.starts_with("text/plain; version=0.0.4"));
    Ok(String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?)
}

fn series(page: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{delivery_stream_name=\"orders-to-s3\"}} ");
    page.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.trim().parse().ok())
}

async fn scrape_during_and_after(stack: &Stack, url: &str) -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let events = EventGenerator::new(&GeneratorConfig::new(2, start.timestamp_millis())).take(250);
    stack.produce("shop-events", events).await?;
    stack.settle(Duration::from_secs(30)).await?;
    let during = metrics_page(url).await?;
    let landed = |landing: &streamlab::landing::Landing| landing.data_records() as f64;
    ensure!(series(&during, "firehose_data_read_from_source_records") == Some(250.0), "{during}");
    ensure!(
        series(&during, "firehose_delivery_to_s3_records") == Some(landed(&stack.landing(None).await?)),
        "{during}"
    );
    ensure!(during.contains("# HELP firehose_delivery_to_s3_records CloudWatch AWS/Firehose DeliveryToS3.Records"));
    stack.advance(Duration::from_secs(300)).await?;
    let after = metrics_page(url).await?;
    let landing = stack.landing(None).await?;
    ensure!(landed(&landing) == 250.0, "everything landed");
    ensure!(series(&after, "firehose_delivery_to_s3_records") == Some(250.0), "{after}");
    let objects = landing.streams[0].objects.len() as f64;
    ensure!(series(&after, "firehose_delivery_to_s3_object_count") == Some(objects), "{after}");
    ensure!(series(&after, "firehose_delivery_to_s3_data_freshness") == Some(0.0), "{after}");
    Ok(())
}

/// Where `deliver --cloudwatch` publishes in a test.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A CloudWatch and a CloudWatch Logs endpoint of streamlab's own.
    Streamlab,
    /// LocalStack's CloudWatch and Logs (a host process), when installed.
    LocalStack,
}

/// Both endpoints, and what keeps them up.
struct Endpoints {
    cloudwatch: String,
    logs: String,
    _servers: Option<(CloudWatchServer, streamlab::stack::cloudwatch::LogsServer)>,
    _localstack: Option<streamlab::backend::LocalStackProcess>,
}

impl Endpoints {
    async fn start(target: Target, dir: &std::path::Path) -> Result<Option<Self>> {
        match target {
            Target::Streamlab => {
                let clock: streamlab::clock::SharedClock = Arc::new(streamlab::clock::SystemClock);
                let monitor = Arc::new(streamlab::cloudwatch::Monitor::default());
                let metrics =
                    CloudWatchServer::start(Arc::new(CloudWatch::new(monitor, clock.clone(), "us-east-1"))).await?;
                let logs = streamlab::stack::cloudwatch::LogsServer::start(Arc::default(), clock).await?;
                Ok(Some(Endpoints {
                    cloudwatch: metrics.url().to_owned(),
                    logs: logs.url().to_owned(),
                    _servers: Some((metrics, logs)),
                    _localstack: None,
                }))
            }
            Target::LocalStack => {
                if let Err(e) = streamlab::backend::localstack_python() {
                    ensure!(std::env::var_os("CI").is_none(), "LocalStack is required under CI: {e}");
                    use std::io::Write as _;
                    let _ = writeln!(std::io::stderr(), "SKIPPED localstack: {e}");
                    return Ok(None);
                }
                let process = streamlab::backend::LocalStackProcess::start_services(dir, "s3,cloudwatch,logs").await?;
                let url = process.url();
                Ok(Some(Endpoints { cloudwatch: url.clone(), logs: url, _servers: None, _localstack: Some(process) }))
            }
        }
    }
}

fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("test", "test", None, None, "test"),
        ))
        .endpoint_url(url)
        .http_client(streamlab::aws_http::client())
        .build()
}

/// `deliver --cloudwatch`: with its bucket gone, the delivery's failed PUTs
/// are `S3.NoSuchBucket` events in the spec's log group (PutLogEvents);
/// once the bucket is back and everything landed, the sums it published
/// (PutMetricData, namespace `Streamlab/Firehose`) equal its own report.
#[rstest::rstest]
#[case::streamlab(Target::Streamlab)]
#[case::localstack(Target::LocalStack)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_publishes_its_metrics_and_error_events(#[case] target: Target) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(endpoints) = Endpoints::start(target, dir.path()).await? else { return Ok(()) };
    let (group, log_stream) = ("/aws/kinesisfirehose/orders-to-s3", "DestinationDelivery");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("fixtures/streams/orders-to-s3.json"))?)?;
    spec["MSKSourceConfiguration"]["ReadFromTimestamp"] = serde_json::json!(0);
    spec["ExtendedS3DestinationConfiguration"]["CloudWatchLoggingOptions"] =
        serde_json::json!({"Enabled": true, "LogGroupName": group, "LogStreamName": log_stream});
    let spec_path = dir.path().join("orders-to-s3.json");
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;

    let pipeline = common::Pipeline::start_faulty(&spec_path, 2, Utc::now(), 7).await?;
    let events = EventGenerator::new(&GeneratorConfig::new(7, Utc::now().timestamp_millis())).take(500).collect();
    pipeline.publish(events).await?;
    let s3 = pipeline.stack.s3_client();
    // Every PUT fails (503 SlowDown) until the bucket is gone: `deliver`
    // checks its bucket at start.
    let faults = pipeline.faults()?;
    faults.s3.set_down(true);
    // Firehose writes only into a group and stream that exist.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk_config(&endpoints.logs));
    logs.create_log_group().log_group_name(group).send().await?;
    logs.create_log_stream().log_group_name(group).log_stream_name(log_stream).send().await?;

    let report = dir.path().join("report.json");
    let command = streamlab::harness::DeliverCommand {
        s3_endpoint: pipeline.stack.s3_endpoint().map(str::to_owned),
        exit_at_end: true,
        report: Some(report.clone()),
        ..streamlab::harness::DeliverCommand::new(&spec_path, pipeline.bootstrap())
    };
    let mut args = command.args();
    args.push("--cloudwatch".into());
    let log_path = dir.path().join("deliver.log");
    let env = [
        ("AWS_ENDPOINT_URL_CLOUDWATCH", endpoints.cloudwatch.as_str()),
        ("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", endpoints.logs.as_str()),
    ];
    let deliver = streamlab::harness::DeliverProcess::spawn_with_env(
        std::path::Path::new(env!("CARGO_BIN_EXE_streamlab")),
        &args,
        &env,
        pipeline.stack.s3_settings(),
        std::fs::File::create(&log_path)?.into(),
    )?;
    let deliver_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    common::wait_for("deliver to start", Duration::from_secs(30), || deliver_log().contains("delivering stream"))
        .await?;
    s3.delete_bucket().bucket("shop-events-raw").send().await?;
    faults.s3.set_down(false);

    // The failed PUTs arrive as Firehose's error events.
    let started = std::time::Instant::now();
    let events = loop {
        let found = logs
            .filter_log_events()
            .log_group_name(group)
            .filter_pattern(r#"{ $.errorCode = "S3.NoSuchBucket" }"#)
            .send()
            .await?;
        if !found.events().is_empty() {
            break found.events().to_vec();
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no S3.NoSuchBucket event; deliver said:\n{}",
            deliver_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let event: serde_json::Value = serde_json::from_str(events[0].message().unwrap_or_default())?;
    ensure!(event["destination"] == "arn:aws:s3:::shop-events-raw", "{event}");
    ensure!(event["deliveryStreamVersionId"] == 1, "{event}");
    ensure!(
        event["message"].as_str().unwrap_or_default().starts_with("The specified bucket does not exist"),
        "{event}"
    );

    streamlab::harness::create_bucket(s3, "shop-events-raw").await?;
    let (status, _) = tokio::task::spawn_blocking(move || deliver.wait_with_usage()).await??;
    let said = deliver_log();
    ensure!(status.success(), "deliver failed:\n{said}");
    ensure!(said.contains("custom metrics x $0.30"), "the monthly cost is printed at start:\n{said}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    ensure!(summary["records_delivered"] == 500, "{summary}");

    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk_config(&endpoints.cloudwatch));
    let now = Utc::now().timestamp();
    let sum = |name: &'static str, statistic: Statistic| {
        let request = cloudwatch
            .get_metric_statistics()
            .namespace("Streamlab/Firehose")
            .metric_name(name)
            .dimensions(Dimension::builder().name("DeliveryStreamName").value("orders-to-s3").build())
            .start_time(aws_smithy_types::DateTime::from_secs(now - 3600))
            .end_time(aws_smithy_types::DateTime::from_secs(now + 3600))
            .period(60)
            .statistics(statistic.clone());
        async move {
            let answer = request.send().await?;
            let value = |d: &aws_sdk_cloudwatch::types::Datapoint| match statistic {
                Statistic::SampleCount => d.sample_count(),
                Statistic::Minimum => d.minimum(),
                _ => d.sum(),
            };
            let values: Vec<f64> = answer.datapoints().iter().filter_map(value).collect();
            anyhow::Ok(match statistic {
                Statistic::Minimum => values.into_iter().fold(f64::MAX, f64::min),
                _ => values.into_iter().sum(),
            })
        }
    };
    for (metric, field) in [
        ("DataReadFromSource.Records", "records_read"),
        ("DataReadFromSource.Bytes", "bytes_read"),
        ("DeliveryToS3.Records", "records_delivered"),
        ("DeliveryToS3.Bytes", "bytes_delivered"),
        ("DeliveryToS3.ObjectCount", "objects"),
    ] {
        let published = sum(metric, Statistic::Sum).await?;
        ensure!(
            Some(published) == summary[field].as_f64(),
            "{target:?}: {metric} sums to {published}, the delivery counted {}; deliver said:\n{said}",
            summary[field]
        );
    }
    // One datapoint per PUT attempt: the failures are zeros.
    ensure!(sum("DeliveryToS3.Success", Statistic::Minimum).await? == 0.0, "{target:?}: no failed attempt published");
    ensure!(sum("DeliveryToS3.Success", Statistic::SampleCount).await? > summary["objects"].as_f64().unwrap_or(0.0));
    Ok(())
}
