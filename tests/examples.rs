//! The examples under `examples/` run end to end through `streamlab run`, as
//! their READMEs show, and their landings match the committed snapshots.

mod common;

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
