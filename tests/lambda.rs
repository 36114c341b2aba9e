//! Lambda data transformation with a real runtime client: AWS's
//! `awslambdaric` runs the handlers in `tests/transforms/handlers.py`
//! against streamlab's Runtime API, and a minimal Invoke API endpoint
//! (`tests/transforms/invoke_endpoint.py`) stands in for `sam local
//! start-lambda`. Every outcome ends where Firehose puts it, and every record
//! written is accounted for: landed, dropped, or an error record, once.

use crate::common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use streamlab::checks::expect::Expectation;
use streamlab::harness;
use streamlab::stack::{Stack, StackOptions};
use streamlab::transform::FunctionsConfig;

use common::{available, python_has, repo, test_functions};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:enrich";

/// A stream reading topic `name` into bucket `name`, through function
/// `function` with `NumberOfRetries` `retries`.
fn spec(name: &str, function: &str, retries: u32) -> Value {
    json!({
        "DeliveryStreamName": name,
        "DeliveryStreamType": "MSKAsSource",
        "MSKSourceConfiguration": {
            "MSKClusterARN": "arn:aws:kafka:us-east-1:123456789012:cluster/shop/0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e-1",
            "TopicName": name,
            "AuthenticationConfiguration": {"RoleARN": "arn:aws:iam::123456789012:role/r", "Connectivity": "PRIVATE"}
        },
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::123456789012:role/r",
            "BucketARN": format!("arn:aws:s3:::{name}"),
            "Prefix": "data/",
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
            "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda", "Parameters": [
                {"ParameterName": "LambdaArn", "ParameterValue": format!("arn:aws:lambda:us-east-1:123456789012:function:{function}")},
                {"ParameterName": "NumberOfRetries", "ParameterValue": retries.to_string()}
            ]}]}
        }
    })
}

struct Harness {
    stack: Stack,
    _specs: tempfile::TempDir,
}

async fn start(specs: &[Value], functions: FunctionsConfig) -> Result<Harness> {
    let dir = tempfile::tempdir()?;
    for spec in specs {
        let name = spec["DeliveryStreamName"].as_str().context("name")?;
        std::fs::write(dir.path().join(format!("{name}.json")), serde_json::to_vec_pretty(spec)?)?;
    }
    let stack = Stack::start(StackOptions::new([dir.path()]).seed(1).functions(functions)).await?;
    Ok(Harness { stack, _specs: dir })
}

impl Harness {
    async fn send(&self, topic: &str, values: &[Vec<u8>]) -> Result<()> {
        let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", self.stack.bootstrap()).create()?;
        for value in values {
            producer
                .send(FutureRecord::<(), _>::to(topic).payload(value), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// Everything read, through the function and landed.
    async fn land(&self) -> Result<()> {
        self.stack.settle(Duration::from_secs(30)).await?;
        self.stack.flush(None).await?;
        Ok(())
    }

    async fn objects(&self, bucket: &str) -> Result<Vec<harness::StoredObject>> {
        Ok(harness::read_bucket(self.stack.s3_client(), bucket).await?)
    }
}

/// The error lines under `processing-failed`, with Firehose's fields in its
/// order.
fn processing_failed(objects: &[harness::StoredObject]) -> Result<Vec<Value>> {
    let mut fields = common::ERROR_FIELDS.to_vec();
    fields.push("lambdaARN");
    let lines = common::error_lines(objects, &fields)?;
    for (key, _) in &lines {
        ensure!(key.starts_with("errors/processing-failed/"), "{key}");
    }
    Ok(lines.into_iter().map(|(_, line)| line).collect())
}

fn raw(line: &Value) -> Result<Value> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().context("rawData")?)?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn data_records(objects: &[harness::StoredObject]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for object in objects.iter().filter(|o| o.key.starts_with("data/")) {
        out.extend(harness::json_records(&object.body)?);
    }
    Ok(out)
}

fn have_runtime_client() -> Result<bool> {
    available("awslambdaric (.venv, `just install-clients`)", python_has(&["awslambdaric"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_result_of_the_status_model_ends_where_firehose_puts_it() -> Result<()> {
    if !have_runtime_client()? {
        return Ok(());
    }
    let h = start(&[spec("outcomes", "enrich", 3)], test_functions("outcomes")).await?;
    let modes = ["ok", "drop", "fail", "missing", "duplicate", "bad-base64", "null", "unknown-result"];
    let values: Vec<Vec<u8>> =
        modes.iter().enumerate().map(|(n, m)| json!({"n": n, "mode": m}).to_string().into_bytes()).collect();
    h.send("outcomes", &values).await?;
    h.land().await?;

    let objects = h.objects("outcomes").await?;
    assert_eq!(
        data_records(&objects)?,
        vec![json!({"transformed": 0})],
        "only the Ok record lands as data, transformed"
    );
    let mut failed: Vec<(String, String, u64, String)> = processing_failed(&objects)?
        .iter()
        .map(|l| {
            let mode = raw(l).map(|r| r["mode"].as_str().unwrap_or_default().to_owned()).unwrap_or_default();
            (
                mode,
                l["errorCode"].as_str().unwrap_or_default().to_owned(),
                l["attemptsMade"].as_u64().unwrap_or(0),
                l["lambdaARN"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    failed.sort();
    let expected = |mode: &str, code: &str| (mode.to_owned(), code.to_owned(), 1, ARN.to_owned());
    assert_eq!(
        failed,
        vec![
            expected("bad-base64", "Lambda.JsonProcessingException"),
            expected("duplicate", "Lambda.DuplicatedRecordId"),
            expected("fail", "Lambda.ProcessingFailedStatus"),
            expected("missing", "Lambda.MissingRecordId"),
            expected("null", "Lambda.JsonProcessingException"),
            expected("unknown-result", "Lambda.JsonProcessingException"),
        ],
        "each failure is an error record with its original bytes and AWS's code"
    );

    let status = h.stack.status().await;
    let lambda = status.streams[0].lambda.as_ref().context("lambda status")?;
    assert_eq!((lambda.ok, lambda.dropped, lambda.failed, lambda.invocations), (1, 1, 6, 1));
    let checks = h.stack.check(&[Expectation::ExactlyOnce]).await?;
    ensure!(checks[0].passed, "produced = landed + dropped + error records: {}", checks[0].detail);
    h.stack.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_throws_is_retried_then_its_batch_fails_and_delivery_goes_on() -> Result<()> {
    if !have_runtime_client()? {
        return Ok(());
    }
    let h = start(&[spec("throws", "enrich", 1)], test_functions("throws")).await?;
    h.send("throws", &[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]).await?;
    h.land().await?;
    let lines = processing_failed(&h.objects("throws").await?)?;
    ensure!(lines.len() == 2, "{lines:?}");
    for line in &lines {
        assert_eq!(line["errorCode"], "Lambda.FunctionError");
        assert_eq!(
            line["errorMessage"],
            "The Lambda function was successfully invoked but it returned an error result."
        );
        assert_eq!(line["attemptsMade"], 2, "NumberOfRetries 1: two attempts");
    }
    let status = h.stack.status().await;
    let lambda = status.streams[0].lambda.as_ref().context("lambda status")?;
    assert_eq!((lambda.invocations, lambda.success_ratio), (2, 0.0));
    let error = lambda.last_error.clone().unwrap_or_default();
    ensure!(error.contains("ValueError") && error.contains("this transform fails on purpose"), "{error}");

    // Delivery goes on: later records are processed (and fail) too.
    h.send("throws", &[b"{\"a\":3}".to_vec()]).await?;
    h.land().await?;
    ensure!(processing_failed(&h.objects("throws").await?)?.len() == 3);
    h.stack.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_invocation_fails_its_batch_and_resets_the_runtime() -> Result<()> {
    if !have_runtime_client()? {
        return Ok(());
    }
    let functions = FunctionsConfig { timeout: Some(Duration::from_secs(1)), ..test_functions("sleeps") };
    let h = start(&[spec("sleeps", "enrich", 0)], functions).await?;
    h.send("sleeps", &[b"{\"a\":1}".to_vec()]).await?;
    h.land().await?;
    let lines = processing_failed(&h.objects("sleeps").await?)?;
    ensure!(lines.len() == 1, "{lines:?}");
    assert_eq!(lines[0]["errorCode"], "Lambda.FunctionTimedOut");
    assert_eq!(lines[0]["attemptsMade"], 1);
    h.stack.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_runtime_is_restarted_and_the_retry_succeeds() -> Result<()> {
    if !have_runtime_client()? {
        return Ok(());
    }
    let marker = tempfile::tempdir()?;
    let mut functions = test_functions("crashes_once");
    functions.local[0].1 =
        format!("export CRASH_MARKER='{}'; {}", marker.path().join("crashed").display(), functions.local[0].1);
    let h = start(&[spec("crashes", "enrich", 2)], functions).await?;
    h.send("crashes", &[b"{\"event_type\":\"x\"}".to_vec()]).await?;
    h.land().await?;
    let objects = h.objects("crashes").await?;
    ensure!(processing_failed(&objects)?.is_empty());
    let records = data_records(&objects)?;
    ensure!(records.len() == 1 && records[0]["enriched"] == true, "{records:?}");
    let status = h.stack.status().await;
    let lambda = status.streams[0].lambda.as_ref().context("lambda status")?;
    assert_eq!(lambda.invocations, 2, "the crash, then the restarted process");
    h.stack.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_is_not_the_status_model_fails_every_record() -> Result<()> {
    if !have_runtime_client()? {
        return Ok(());
    }
    let h = start(&[spec("plain", "enrich", 3)], test_functions("not_the_status_model")).await?;
    h.send("plain", &[b"{\"a\":1}".to_vec(), b"not json at all".to_vec()]).await?;
    h.land().await?;
    let lines = processing_failed(&h.objects("plain").await?)?;
    ensure!(lines.len() == 2 && lines.iter().all(|l| l["errorCode"] == "Lambda.JsonProcessingException"), "{lines:?}");
    h.stack.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_does_not_import_stops_the_start_with_the_reason() -> Result<()> {
    if !have_runtime_client()? {
        return Ok(());
    }
    let mut functions = test_functions("outcomes");
    functions.local[0].1 = functions.local[0].1.replace("handlers.outcomes", "broken.handler");
    let error = match start(&[spec("broken", "enrich", 3)], functions).await {
        Ok(_) => anyhow::bail!("a handler that cannot be imported must stop the start"),
        Err(e) => e.to_string(),
    };
    for part in [ARN, "did not start", "Runtime.ImportModuleError", "a_module_that_is_not_installed", "fix the handler"]
    {
        ensure!(error.contains(part), "{part:?} missing from: {error}");
    }
    Ok(())
}

#[tokio::test]
async fn a_lambda_processor_with_nowhere_to_run_is_refused_before_anything_starts() -> Result<()> {
    let started = std::time::Instant::now();
    let error = match start(&[spec("nowhere", "enrich", 3)], FunctionsConfig::default()).await {
        Ok(_) => anyhow::bail!("a Lambda processor without --lambda or --lambda-endpoint must be refused"),
        Err(e) => e.to_string(),
    };
    for part in [ARN, "--lambda", "--lambda-endpoint", "nowhere"] {
        ensure!(error.contains(part), "{part:?} missing from: {error}");
    }
    ensure!(started.elapsed() < Duration::from_secs(1), "refused before the broker starts");
    Ok(())
}

/// The Invoke API endpoint: started, its port read from its first line.
struct Endpoint(std::process::Child, u16);

impl Endpoint {
    fn start() -> Result<Self> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(repo().join(".venv/bin/python"))
            .arg("invoke_endpoint.py")
            .current_dir(repo().join("tests/transforms"))
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        Ok(Endpoint(child, line.trim().parse().with_context(|| format!("port from {line:?}"))?))
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.1)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_behind_an_invoke_api_endpoint() -> Result<()> {
    if !have_runtime_client()? {
        return Ok(());
    }
    let endpoint = Endpoint::start()?;
    let functions = FunctionsConfig { endpoint: Some(endpoint.url()), ..FunctionsConfig::default() };
    let specs = [
        spec("via-endpoint", "enrich", 0),
        spec("throws-at-endpoint", "throws", 0),
        spec("no-such-function", "missing", 0),
    ];
    let h = start(&specs, functions).await?;
    for topic in ["via-endpoint", "throws-at-endpoint", "no-such-function"] {
        h.send(topic, &[b"{\"event_type\":\"order_placed\"}".to_vec()]).await?;
    }
    h.land().await?;

    let records = data_records(&h.objects("via-endpoint").await?)?;
    ensure!(records.len() == 1 && records[0]["enriched"] == true, "{records:?}");
    for (bucket, code) in
        [("throws-at-endpoint", "Lambda.FunctionError"), ("no-such-function", "Lambda.ResourceNotFound")]
    {
        let lines = processing_failed(&h.objects(bucket).await?)?;
        ensure!(lines.len() == 1 && lines[0]["errorCode"] == code, "{bucket}: {lines:?}");
    }
    h.stack.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_refuses_connections_fails_the_batch_and_delivery_goes_on() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let functions =
        FunctionsConfig { endpoint: Some(format!("http://127.0.0.1:{port}")), ..FunctionsConfig::default() };
    let h = start(&[spec("refused", "enrich", 1)], functions).await?;
    h.send("refused", &[b"{\"a\":1}".to_vec()]).await?;
    h.land().await?;
    let lines = processing_failed(&h.objects("refused").await?)?;
    ensure!(lines.len() == 1, "{lines:?}");
    assert_eq!(lines[0]["errorCode"], "Lambda.InvokeFailed");
    assert_eq!(lines[0]["attemptsMade"], 2);
    let status = h.stack.status().await;
    let error = status.streams[0].lambda.as_ref().and_then(|l| l.last_error.clone()).unwrap_or_default();
    ensure!(error.contains(&format!("127.0.0.1:{port}")) && error.contains("--lambda-endpoint"), "{error}");
    h.stack.shutdown().await?;
    Ok(())
}
