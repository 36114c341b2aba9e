//! The stack's Firehose API through the AWS CLI, as a team's scripts use it
//! after `streamlab up` (which writes AWS_ENDPOINT_URL_FIREHOSE, so the CLI
//! needs no flag): every fixture spec created with `create-delivery-stream
//! --cli-input-json` and ACTIVE, every invalid fixture refused with the
//! validator's messages, and a stream created this way delivering 10,000
//! records exactly once, then version 2 under a new prefix after
//! `update-destination`. The 87 fixture commands go through the CLI's own
//! driver in one Python process (`aws_many`), the rest through `aws` itself.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{available, repo, streamlab, BIN};

fn aws_cli() -> PathBuf {
    repo().join(".venv-aws/bin/aws")
}

struct Up {
    child: Child,
    env: BTreeMap<String, String>,
    _work: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

fn up() -> Result<Up> {
    let work = tempfile::tempdir()?;
    let env_file = work.path().join("stack.env");
    // Lambda fixtures need somewhere for their function to run.
    let child = streamlab(&["up", "--seed", "3", "--env-file", env_file.to_str().context("path")?])
        .args(["--lambda-endpoint", "http://127.0.0.1:9"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    while !env_file.exists() {
        ensure!(started.elapsed() < Duration::from_secs(60), "the env file did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    let env = std::fs::read_to_string(&env_file)?
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(Up { child, env, _work: work })
}

/// A command with the stack's env as the AWS CLI tests run it: from the
/// repository, one attempt per request (a refusal is the answer, not a retry),
/// no profile from the user's own configuration.
fn with_stack_env(mut command: Command, up: &Up) -> Command {
    command.current_dir(repo()).envs(&up.env).env("AWS_MAX_ATTEMPTS", "1").env_remove("AWS_PROFILE");
    command
}

/// `aws firehose ARGS…` with the stack's env; (success, stdout, stderr).
fn aws(up: &Up, args: &[&str]) -> Result<(bool, String, String)> {
    let mut command = Command::new(aws_cli());
    command.arg("firehose").args(args);
    let out = with_stack_env(command, up).output().with_context(|| {
        format!("cannot run the AWS CLI at {}: `just install-clients` installs it", aws_cli().display())
    })?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Many `aws firehose …` commands through the CLI's own driver in one Python
/// process (`tests/clients/aws_cli_many.py`): the same parsing, validation and
/// requests as the `aws` script, without a Python start (half a second of
/// CPU) per command. One (success, stdout, stderr) per command, in order.
fn aws_many(up: &Up, commands: &[Vec<String>]) -> Result<Vec<(bool, String, String)>> {
    let commands: Vec<Vec<&str>> =
        commands.iter().map(|c| std::iter::once("firehose").chain(c.iter().map(String::as_str)).collect()).collect();
    let mut command = Command::new(repo().join(".venv-aws/bin/python"));
    command.arg(repo().join("tests/clients/aws_cli_many.py"));
    let mut child = with_stack_env(command, up)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run .venv-aws/bin/python: `just install-clients` installs it")?;
    serde_json::to_writer(child.stdin.take().context("stdin")?, &commands)?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "aws_cli_many.py failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    ensure!(answers.len() == commands.len(), "{} answers to {} commands", answers.len(), commands.len());
    Ok(answers
        .iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (a["rc"] == 0, text("stdout"), text("stderr"))
        })
        .collect())
}

fn describe(up: &Up, name: &str) -> Result<serde_json::Value> {
    let (ok, out, err) = aws(up, &["describe-delivery-stream", "--delivery-stream-name", name])?;
    ensure!(ok, "describe {name}: {err}");
    Ok(serde_json::from_str::<serde_json::Value>(&out)?["DeliveryStreamDescription"].clone())
}

fn wait_active(up: &Up, name: &str) -> Result<serde_json::Value> {
    until_active(name, || {
        let d = describe(up, name)?;
        let status = d["DeliveryStreamStatus"].as_str().unwrap_or_default().to_owned();
        Ok((status, d))
    })
}

/// Polls `describe` (a stream's status and its description) until the stream
/// is ACTIVE; fails on any status but CREATING, or after 60 s.
fn until_active<D: std::fmt::Debug>(name: &str, mut describe: impl FnMut() -> Result<(String, D)>) -> Result<D> {
    let started = Instant::now();
    loop {
        let (status, d) = describe()?;
        if status == "ACTIVE" {
            return Ok(d);
        }
        ensure!(status == "CREATING", "{name}: {d:?}");
        ensure!(started.elapsed() < Duration::from_secs(60), "{name} did not become ACTIVE");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn files(dir: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(repo().join(dir))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    Ok(files)
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

#[test]
fn every_fixture_is_created_and_every_invalid_one_refused_through_the_aws_cli() -> Result<()> {
    if !available("the AWS CLI", aws_cli().is_file())? {
        return Ok(());
    }
    let up = up()?;
    let mut valid = files("fixtures/streams")?;
    valid.extend(files("fixtures/direct-put")?);
    // The creates and refusals through the CLI's driver in one Python process
    // (`aws_many`); a stream's status through the SDK.
    let creates = |paths: &[PathBuf]| -> Vec<Vec<String>> {
        paths.iter().map(|p| vec!["create-delivery-stream".into(), "--cli-input-json".into(), file_url(p)]).collect()
    };
    for (path, (ok, out, err)) in valid.iter().zip(aws_many(&up, &creates(&valid))?) {
        ensure!(ok, "{}: {err}", path.display());
        ensure!(out.contains("arn:aws:firehose:"), "{out}");
    }
    // What the CLI created, read back through the SDK (the CLI's part here
    // is the requests it sends; its describe is covered by the next test).
    let client = sdk_client(&up)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for path in &valid {
        let spec = streamlab::spec::load(path)?;
        let d = until_active(spec.name(), || {
            let answer =
                runtime.block_on(client.describe_delivery_stream().delivery_stream_name(spec.name()).send())?;
            let d = answer.delivery_stream_description().context("description")?.clone();
            Ok((d.delivery_stream_status().as_str().to_owned(), d))
        })?;
        ensure!(
            d.version_id() == "1" && d.delivery_stream_type().as_str() == spec.source_kind().as_str(),
            "{}: {d:?}",
            spec.name()
        );
    }
    let (ok, out, _) = aws(&up, &["list-delivery-streams", "--limit", "100"])?;
    let listed: serde_json::Value = serde_json::from_str(&out)?;
    ensure!(ok && listed["DeliveryStreamNames"].as_array().map(Vec::len) == Some(valid.len()), "{listed}");

    let invalid = files("fixtures/invalid")?;
    for (path, (ok, _, err)) in invalid.iter().zip(aws_many(&up, &creates(&invalid))?) {
        let Err(expected) = streamlab::spec::load(path) else { anyhow::bail!("{} is valid", path.display()) };
        // The CLI checks the model's own constraints before sending; what it
        // lets through, the stack refuses with the validator's messages.
        ensure!(!ok, "{} was accepted", path.display());
        if err.contains("InvalidArgumentException") {
            for violation in expected.violations() {
                ensure!(err.contains(&violation.to_string()), "{}: {err} lacks {violation}", path.display());
            }
        } else {
            ensure!(
                err.contains("Parameter validation failed") || err.contains("ValidationException"),
                "{}: {err}",
                path.display()
            );
        }
    }
    Ok(())
}

/// The SDK's Firehose client at the endpoint `streamlab up` wrote.
fn sdk_client(up: &Up) -> Result<aws_sdk_firehose::Client> {
    let url = up.env.get("AWS_ENDPOINT_URL_FIREHOSE").context("the env file has no AWS_ENDPOINT_URL_FIREHOSE")?;
    let region = up.env.get("AWS_REGION").cloned().unwrap_or_else(|| "us-east-1".to_owned());
    let credentials = aws_credential_types::Credentials::new("test", "test", None, None, "test");
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new(region))
        .credentials_provider(credentials)
        .endpoint_url(url)
        .http_client(streamlab::aws_http::client())
        .build();
    Ok(aws_sdk_firehose::Client::from_conf(config))
}

#[test]
fn a_stream_created_with_the_aws_cli_delivers_exactly_once_across_an_update() -> Result<()> {
    if !available("the AWS CLI", aws_cli().is_file())? {
        return Ok(());
    }
    let up = up()?;
    let spec = repo().join("fixtures/streams/orders-to-s3.json");
    let (ok, _, err) = aws(&up, &["create-delivery-stream", "--cli-input-json", &file_url(&spec)])?;
    ensure!(ok, "{err}");
    wait_active(&up, "orders-to-s3")?;
    let produce = |count: &str, seed: &str| -> Result<()> {
        let out = Command::new(BIN)
            .args(["produce", "--topic", "shop-events", "--count", count, "--seed", seed])
            .envs(&up.env)
            .output()?;
        ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    let control = |args: &[&str]| -> Result<String> {
        let out = Command::new(BIN).args(args).envs(&up.env).output()?;
        ensure!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    produce("10000", "1")?;
    control(&["settle", "--timeout", "60s"])?;
    let (ok, _, err) = aws(
        &up,
        &[
            "update-destination",
            "--delivery-stream-name",
            "orders-to-s3",
            "--current-delivery-stream-version-id",
            "1",
            "--destination-id",
            "destinationId-000000000001",
            "--extended-s3-destination-update",
            r#"{"Prefix": "v2/"}"#,
        ],
    )?;
    ensure!(ok, "{err}");
    ensure!(describe(&up, "orders-to-s3")?["VersionId"] == "2");
    produce("2000", "2")?;
    control(&["settle", "--timeout", "60s"])?;
    control(&["flush"])?;
    // Every record once, across both versions' objects.
    let s3 = Command::new(aws_cli())
        .args([
            "s3api",
            "list-objects-v2",
            "--bucket",
            "shop-events-raw",
            "--query",
            "Contents[].Key",
            "--output",
            "json",
        ])
        .envs(&up.env)
        .output()?;
    ensure!(s3.status.success(), "{}", String::from_utf8_lossy(&s3.stderr));
    let keys: Vec<String> = serde_json::from_slice(&s3.stdout)?;
    ensure!(keys.iter().any(|k| k.contains("/orders-to-s3-1-")), "{keys:?}");
    ensure!(keys.iter().any(|k| k.starts_with("v2/") && k.contains("/orders-to-s3-2-")), "{keys:?}");
    let mut ids = std::collections::BTreeSet::new();
    for key in &keys {
        let body = Command::new(aws_cli())
            .args(["s3", "cp", &format!("s3://shop-events-raw/{key}"), "-"])
            .envs(&up.env)
            .output()?;
        ensure!(body.status.success(), "{}", String::from_utf8_lossy(&body.stderr));
        for record in streamlab::harness::json_records(&body.stdout)? {
            ensure!(ids.insert(record["event_id"].to_string()), "a duplicate in {key}");
        }
    }
    ensure!(ids.len() == 12_000, "{} of 12000 records landed", ids.len());
    Ok(())
}

/// `streamlab deploy` with the env file sourced: the fixture is created on
/// the stack (version 1), deployed again with a changed prefix it is
/// updated (version 2), and a changed source is refused with the fix.
#[test]
fn deploy_creates_then_updates_a_stream_on_the_stack() -> Result<()> {
    let up = up()?;
    let deploy = |spec: &Path| -> Result<(bool, String, String)> {
        let out = Command::new(BIN).args(["deploy", "--spec"]).arg(spec).envs(&up.env).current_dir(repo()).output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let spec = repo().join("fixtures/streams/orders-to-s3.json");
    let (ok, out, err) = deploy(&spec)?;
    ensure!(ok, "{err}");
    ensure!(
        out == "orders-to-s3: created, arn:aws:firehose:us-east-1:123456789012:deliverystream/orders-to-s3 version 1\n",
        "{out}"
    );
    let dir = tempfile::tempdir()?;
    let changed = dir.path().join("orders-to-s3.json");
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&spec)?)?;
    value["ExtendedS3DestinationConfiguration"]["Prefix"] = "v2/".into();
    std::fs::write(&changed, value.to_string())?;
    let (ok, out, err) = deploy(&changed)?;
    ensure!(ok && out.contains("orders-to-s3: updated") && out.ends_with("version 2\n"), "{out} {err}");
    ensure!(describe(&up, "orders-to-s3")?["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "v2/");
    value["MSKSourceConfiguration"]["TopicName"] = "other-topic".into();
    std::fs::write(&changed, value.to_string())?;
    let (ok, _, err) = deploy(&changed)?;
    ensure!(!ok && err.contains("cannot change a stream's source in place: delete the stream"), "{err}");
    // Nothing answers there: one line naming the cause and the fix.
    let out = Command::new(BIN)
        .args(["deploy", "--spec"])
        .arg(&spec)
        .args(["--endpoint-url", "http://127.0.0.1:1"])
        .envs(&up.env)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("the Firehose endpoint did not answer (Connection refused"), "{err}");
    ensure!(err.lines().count() <= 2, "one readable error, not an SDK dump: {err}");
    Ok(())
}

/// A team's boto3 code (`tests/clients/firehose_boto3.py`) under `streamlab
/// run`: the endpoint comes from the environment alone; a DirectPut and an
/// MSK stream are created from the fixtures, listed, tagged, fed, updated
/// and deleted with boto3's own error classes; what was put lands exactly
/// once, the records put before the update under version 1, the rest under
/// version 2 and the new prefix.
#[test]
fn boto3_drives_the_firehose_api() -> Result<()> {
    if !available("boto3 (.venv)", common::python_has(&["boto3"]))? {
        return Ok(());
    }
    let (ok, out, err) = common::output(&mut streamlab(&[
        "run",
        "--seed",
        "4",
        "--expect",
        "exactly-once,no-errors,key-shape",
        "--",
        "python",
        "tests/clients/firehose_boto3.py",
    ]))?;
    ensure!(ok, "{out}\n{err}");
    ensure!(out.contains("boto3: put 3000 records to clickstream across an update"), "{out}");
    ensure!(out.contains("ok: expect exactly-once: 3000 records written, each landed exactly once"), "{out}");
    let versions: Vec<(&str, &str)> = out
        .lines()
        .filter(|l| l.contains("clickstream-") && l.contains(" data "))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            Some((fields.next()?, fields.nth(1)?))
        })
        .collect();
    ensure!(
        versions.iter().any(|(k, n)| k.starts_with("20") && k.contains("/clickstream-1-") && *n == "1500")
            && versions.iter().any(|(k, n)| k.starts_with("v2/") && k.contains("/clickstream-2-") && *n == "1500"),
        "1,500 records under each version: {versions:?}"
    );
    Ok(())
}
