//! The examples under `examples/` run end to end through `streamlab run`, as
//! their READMEs show, and their landings match the committed snapshots.

use crate::common;

use anyhow::{ensure, Result};
use common::{available, node_modules, output, python_has, streamlab};

/// A kafkajs backend stamping records with the wall clock and random ids:
/// its snapshot masks times and uuids in keys and redacts the random fields.
#[test]
fn node_producer_example() -> Result<()> {
    if !available("kafkajs (examples/node-producer/node_modules)", node_modules("examples/node-producer"))? {
        return Ok(());
    }
    let (ok, out, err) = output(&mut streamlab(&[
        "run",
        "--spec",
        "examples/node-producer/stream.json",
        "--snapshot",
        "examples/node-producer/landing.snap.yaml",
        "--expect",
        "exactly-once,no-errors,key-shape",
        "--",
        "node",
        "examples/node-producer/producer.js",
    ]))?;
    ensure!(ok, "{out}\n{err}");
    ensure!(out.contains("ok: landing matches snapshot examples/node-producer/landing.snap.yaml"), "{out}");
    ensure!(out.contains("ok: expect exactly-once: 200 records written"), "{out}");
    Ok(())
}

/// The backend writing its clickstream to a DirectPut stream with the AWS
/// SDK for JavaScript (`PutRecordBatch`, failed records resent), finding the
/// stack's Firehose endpoint from the environment alone.
#[test]
fn node_direct_put_example() -> Result<()> {
    if !available(
        "@aws-sdk/client-firehose (examples/node-direct-put/node_modules)",
        node_modules("examples/node-direct-put"),
    )? {
        return Ok(());
    }
    let (ok, out, err) = output(&mut streamlab(&[
        "run",
        "--spec",
        "examples/node-direct-put/stream.json",
        "--snapshot",
        "examples/node-direct-put/landing.snap.yaml",
        "--expect",
        "exactly-once,no-errors,key-shape",
        "--",
        "node",
        "examples/node-direct-put/producer.js",
    ]))?;
    ensure!(ok, "{out}\n{err}");
    ensure!(out.contains("put 2000 events to Firehose stream shop-clickstream"), "{out}");
    ensure!(out.contains("ok: landing matches snapshot examples/node-direct-put/landing.snap.yaml"), "{out}");
    ensure!(out.contains("ok: expect exactly-once: 2000 records written"), "{out}");
    Ok(())
}

/// A seeded Python service with event-time timestamps: nothing is masked;
/// a downstream boto3 reader runs against the landing with `--then`.
#[test]
fn python_producer_example_with_a_downstream_reader() -> Result<()> {
    if !available("Python confluent-kafka and boto3 (.venv)", python_has(&["confluent_kafka", "boto3"]))? {
        return Ok(());
    }
    let (ok, out, err) = output(&mut streamlab(&[
        "run",
        "--spec",
        "examples/python-producer/stream.json",
        "--seed",
        "7",
        "--snapshot",
        "examples/python-producer/landing.snap.yaml",
        "--expect",
        "exactly-once,no-errors,key-shape",
        "--then",
        "python examples/python-producer/reader.py",
        "--",
        "python",
        "examples/python-producer/producer.py",
    ]))?;
    ensure!(ok, "{out}\n{err}");
    ensure!(out.contains("ok: landing matches snapshot examples/python-producer/landing.snap.yaml"), "{out}");
    ensure!(out.contains("reader: 500 orders, 500 distinct"), "the reader ran against the landing: {out}");
    Ok(())
}

/// The transform examples, each run as its README shows: from its own
/// directory (the handler's module is imported from the current
/// directory), the team's handler run unmodified by AWS's runtime interface
/// client, the landing (with the transform's Ok, dropped and failed counts)
/// compared with the committed snapshot.
fn transform_example(dir: &str, lambda: &str, producer: &[&str]) -> Result<()> {
    let mut args = vec![
        "run",
        "--spec",
        "stream.json",
        "--seed",
        "1",
        "--clock-start",
        "2026-07-13T15:00:00Z",
        "--lambda",
        lambda,
        "--snapshot",
        "landing.snap.yaml",
        "--expect",
        "exactly-once,key-shape",
        "--",
    ];
    args.extend(producer);
    let (ok, out, err) = output(streamlab(&args).current_dir(common::repo().join(dir)))?;
    ensure!(ok, "{out}\n{err}");
    ensure!(out.contains("ok: landing matches snapshot landing.snap.yaml"), "{out}");
    ensure!(out.contains("Lambda transform: 201 records processed"), "{out}");
    ensure!(out.contains("ok: expect exactly-once: 201 records written"), "{out}");
    Ok(())
}

#[test]
fn python_transform_example() -> Result<()> {
    if !available("awslambdaric and confluent-kafka (.venv)", python_has(&["awslambdaric", "confluent_kafka"]))? {
        return Ok(());
    }
    transform_example(
        "examples/python-transform",
        "enrich-shop-events=python -m awslambdaric transform.handler",
        &["python", "producer.py"],
    )
}

#[test]
fn node_transform_example() -> Result<()> {
    if !available(
        "aws-lambda-ric and kafkajs (examples/node-transform/node_modules)",
        node_modules("examples/node-transform"),
    )? {
        return Ok(());
    }
    transform_example(
        "examples/node-transform",
        "enrich-shop-events=npx aws-lambda-ric index.handler",
        &["node", "producer.js"],
    )
}
