//! CloudWatch of the stack, read as teams read it: the runbook's freshness
//! alarm proven to fire and clear with boto3 on the manual clock
//! (`tests/clients/cloudwatch_boto3.py`); the same metric through the AWS
//! CLI (rpc-v2-cbor), aws-sdk-cloudwatch (Rust), a JSON 1.0 and a query
//! request, all giving the same sum.

mod common;

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
