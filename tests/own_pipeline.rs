//! Testing your own pipeline, as a user does from the command line: `up`
//! with a producer in another language, the control verbs, `run` with
//! snapshots and expectations, and every bad input named with its fix.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{available, output, python_has, repo, streamlab};

const SPEC: &str = "fixtures/streams/orders-to-s3.json";

/// A Python producer (confluent-kafka): `EVENTS` records to `TOPIC`.
const PYTHON_PRODUCER: &str = r#"
import json, os
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP"]})
for n in range(int(os.environ["EVENTS"])):
    p.produce(os.environ["TOPIC"], key=f"k{n % 5}", value=json.dumps({"event_id": f"e{n}", "event_type": "order_placed", "n": n}))
p.flush(30)
"#;

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// `up`, then a Python producer, `settle`, `status`, `flush` and `landing
/// --format json` through the control endpoint; a write to a topic no spec
/// reads is warned about and shown; Ctrl-C delivers, stops, and leaves no
/// process or env file behind.
#[test]
fn up_then_a_python_producer_flush_and_landing() -> Result<()> {
    if !available("Python confluent-kafka", python_has(&["confluent_kafka"]))? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let env_file = work.path().join("stack.env");
    let mut up = streamlab(&["up", "--spec", SPEC, "--env-file", env_file.to_str().context("path")?])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    while !env_file.exists() {
        ensure!(started.elapsed() < Duration::from_secs(60), "the env file did not appear");
        ensure!(up.try_wait()?.is_none(), "up exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let env = parse_env(&std::fs::read_to_string(&env_file)?);
    for key in [
        "KAFKA_BOOTSTRAP",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "STREAMLAB_CONTROL",
    ] {
        ensure!(env.contains_key(key), "{key} missing from the env file: {env:?}");
    }
    let with_env = |mut c: std::process::Command| {
        c.envs(&env);
        c
    };

    // A producer in another language, and one writing to a misspelt topic.
    let script = work.path().join("producer.py");
    std::fs::write(&script, PYTHON_PRODUCER)?;
    for (topic, n) in [("shop-events", "250"), ("shop-evnts", "3")] {
        let mut python = with_env(std::process::Command::new(repo().join(".venv/bin/python")));
        let status = python.arg(&script).env("TOPIC", topic).env("EVENTS", n).status()?;
        ensure!(status.success(), "the producer failed");
    }

    let (ok, _, err) = output(&mut with_env(streamlab(&["settle", "--timeout", "30s"])))?;
    ensure!(ok, "settle failed: {err}");
    let (ok, status, err) = output(&mut with_env(streamlab(&["status", "--json"])))?;
    ensure!(ok, "status failed: {err}");
    let status: serde_json::Value = serde_json::from_str(&status)?;
    ensure!(status["streams"][0]["read"] == 250 && status["streams"][0]["delivered"] == 0, "{status}");
    ensure!(status["clock"]["mode"] == "manual");
    ensure!(
        status["unread_topics"] == serde_json::json!([{ "topic": "shop-evnts", "records": 3 }]),
        "a topic no spec reads must show in status: {status}"
    );
    let (_, table, _) = output(&mut with_env(streamlab(&["status"])))?;
    ensure!(table.contains("topic \"shop-evnts\" holds 3 records and no stream reads it"), "{table}");

    let (ok, _, err) = output(&mut with_env(streamlab(&["flush"])))?;
    ensure!(ok, "flush failed: {err}");
    let (ok, landing, err) = output(&mut with_env(streamlab(&["landing", "--format", "json"])))?;
    ensure!(ok, "landing failed: {err}");
    let landing: serde_json::Value = serde_json::from_str(&landing)?;
    let objects = landing["streams"][0]["objects"].as_array().context("objects")?;
    let records: u64 = objects.iter().map(|o| o["records"].as_u64().unwrap_or(0)).sum();
    ensure!(records == 250, "{records} records landed");
    for object in objects {
        let key = object["key"].as_str().context("key")?;
        ensure!(streamlab::delivery::naming::default_key_regex("orders-to-s3", "").is_match(key), "{key}");
        ensure!(object["content_type"] == "application/octet-stream");
        ensure!(object["data"][0]["event_type"] == "order_placed", "{object}");
    }

    // Ctrl-C: buffers were flushed; the stack stops and cleans up.
    // The broker runs inside `up`: its port closes with it.
    let broker = env.get("KAFKA_BOOTSTRAP").context("KAFKA_BOOTSTRAP")?.clone();
    ensure!(std::net::TcpStream::connect(&broker).is_ok(), "nothing answers at {broker}");
    unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
    let mut stderr = String::new();
    std::io::Read::read_to_string(up.stderr.as_mut().context("stderr")?, &mut stderr)?;
    ensure!(up.wait()?.success(), "up did not stop cleanly: {stderr}");
    ensure!(stderr.contains("topic \"shop-evnts\" was created by a producer's first write"), "{stderr}");
    ensure!(stderr.contains("orders-to-s3: 250 records read, 250 delivered"), "{stderr}");
    ensure!(!env_file.exists(), "the env file outlived the stack");
    ensure!(std::net::TcpStream::connect(&broker).is_err(), "the broker at {broker} outlived the stack");
    Ok(())
}

/// `run --snapshot` passes on the same input, then fails with a readable diff
/// after a change of the spec's compression.
#[test]
fn run_snapshot_passes_then_fails_after_a_spec_change() -> Result<()> {
    let work = tempfile::tempdir()?;
    let spec = work.path().join("stream.json");
    std::fs::copy(repo().join(SPEC), &spec)?;
    let snapshot = work.path().join("landing.snap.yaml");
    let run = |update: bool| {
        let mut args = vec!["run", "--spec", spec.to_str().unwrap(), "--seed", "5"];
        args.extend(["--snapshot", snapshot.to_str().unwrap(), "--expect", "exactly-once,no-errors,key-shape"]);
        if update {
            args.push("--update-snapshot");
        }
        args.extend(["--", common::BIN, "produce", "--topic", "shop-events", "--count", "300"]);
        args.extend(["--seed", "5", "--start", "2026-07-13T14:00:00Z", "--timestamps", "event"]);
        output(&mut streamlab(&args))
    };
    let (ok, out, err) = run(true)?;
    ensure!(ok, "{out}\n{err}");
    ensure!(out.contains("wrote snapshot"), "{out}");
    let written = std::fs::read_to_string(&snapshot)?;
    ensure!(written.contains("uuid: false") && !written.contains("[uuid]"), "seeded: nothing is masked");

    let (ok, out, err) = run(false)?;
    ensure!(ok, "the same input must match: {out}\n{err}");
    ensure!(out.contains("ok: landing matches snapshot"), "{out}");
    ensure!(out.contains("ok: expect exactly-once: 300 records written, each landed exactly once"), "{out}");

    let changed = std::fs::read_to_string(&spec)?.replace("\"UNCOMPRESSED\"", "\"GZIP\"");
    std::fs::write(&spec, changed)?;
    let (ok, out, _) = run(false)?;
    ensure!(!ok, "a changed compression must fail the snapshot");
    ensure!(
        out.contains("-      CompressionFormat: UNCOMPRESSED") && out.contains("+      CompressionFormat: GZIP"),
        "{out}"
    );
    ensure!(out.contains(".gz") && out.contains("+      content_encoding: gzip"), "keys and headers change too: {out}");
    ensure!(out.contains("FAILED: the landing differs from snapshot"), "{out}");
    Ok(())
}

/// Each bad input gets one message naming the thing and the fix, a non-zero
/// exit, and nothing started.
#[test]
fn bad_input_is_named_with_its_fix() -> Result<()> {
    let work = tempfile::tempdir()?;
    // An invalid spec: refused before anything starts.
    let started = Instant::now();
    let (ok, _, err) = output(&mut streamlab(&["up", "--spec", "fixtures/invalid/buffer-size-too-large.json"]))?;
    ensure!(!ok && err.contains("SizeInMBs: Value at 'extendedS3DestinationConfiguration.bufferingHints.sizeInMBs' failed to satisfy constraint: Member must have value less than or equal to 128; got 256"), "{err}");
    ensure!(started.elapsed() < Duration::from_secs(3), "validation must come first");

    // An env file in a directory that does not exist.
    let (ok, _, err) = output(&mut streamlab(&["up", "--spec", SPEC, "--env-file", "/nonexistent/dir/stack.env"]))?;
    ensure!(
        !ok && err.contains("--env-file /nonexistent/dir/stack.env: its directory /nonexistent/dir does not exist"),
        "{err}"
    );

    // A control command with no stack running.
    let (ok, _, err) = output(&mut streamlab(&["status"]))?;
    ensure!(!ok && err.contains("no control endpoint given: set STREAMLAB_CONTROL"), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");
    let (ok, _, err) = output(streamlab(&["flush"]).env("STREAMLAB_CONTROL", &url))?;
    ensure!(
        !ok && err.contains(&format!("no streamlab stack answers at {url}")) && err.contains("streamlab up"),
        "{err}"
    );

    // A snapshot file that does not parse.
    let broken = work.path().join("broken.snap.yaml");
    std::fs::write(&broken, "streamlab_snapshot: [")?;
    let (ok, out, err) =
        output(&mut streamlab(&["run", "--spec", SPEC, "--snapshot", broken.to_str().context("path")?, "--", "true"]))?;
    ensure!(!ok && err.contains("broken.snap.yaml does not parse"), "{out}\n{err}");

    // A command that exits non-zero: its code, and the landing for debugging.
    let (ok, out, err) = output(&mut streamlab(&["run", "--spec", SPEC, "--", "sh", "-c", "exit 3"]))?;
    ensure!(!ok && err.contains("FAILED: `sh -c exit 3` exited with exit status: 3"), "{err}");
    ensure!(out.contains("stream orders-to-s3 -> s3://shop-events-raw/: 0 objects"), "{out}");
    let status = streamlab(&["run", "--spec", SPEC, "--", "sh", "-c", "exit 3"]).output()?.status;
    ensure!(status.code() == Some(3), "the command's exit code is the run's: {status}");

    // A command that does not exist.
    let (ok, _, err) = output(&mut streamlab(&["run", "--spec", SPEC, "--", "no-such-producer-binary"]))?;
    ensure!(!ok && err.contains("cannot run `no-such-producer-binary`") && err.contains("on PATH"), "{err}");
    Ok(())
}

/// `up` prints its endpoints; a second `up` at the same time gets its own.
#[test]
fn two_ups_side_by_side_share_nothing() -> Result<()> {
    let mut ups = Vec::new();
    for _ in 0..2 {
        let mut child = streamlab(&["up", "--spec", SPEC]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let mut reader = BufReader::new(child.stdout.take().context("stdout")?);
        let mut env = BTreeMap::new();
        // STREAMLAB_CONTROL is the last line up prints.
        while !env.contains_key("STREAMLAB_CONTROL") {
            let mut line = String::new();
            ensure!(reader.read_line(&mut line)? > 0, "up exited before printing its endpoints");
            if let Some((k, v)) = line.trim().split_once('=') {
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        ups.push((child, env));
    }
    for key in ["KAFKA_BOOTSTRAP", "AWS_ENDPOINT_URL_S3", "STREAMLAB_CONTROL"] {
        ensure!(ups[0].1[key] != ups[1].1[key], "{key} is shared: {}", ups[0].1[key]);
    }
    for (mut child, _) in ups {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        ensure!(child.wait()?.success());
    }
    Ok(())
}
