//! Your client works: the producers people use each write to the local
//! stack through `streamlab run`, and every record lands exactly once.
//! kafkajs and aiokafka idempotent producers need the patched broker
//! (`vendor/tansu-storage`): stock tansu 0.6 fails their InitProducerId.
//!
//! Node.js and Python packages come from `just install-clients`; under CI a
//! missing one fails, elsewhere its cells are reported as not checked.

use crate::common;

use anyhow::{ensure, Result};
use common::{available, node_modules, output, python_has, streamlab, BIN};
use rstest::rstest;

const SPEC: &str = "tests/clients/stream.json";

#[rstest]
#[case::kafkajs("node", &["tests/clients/kafkajs_producer.js"], false)]
#[case::kafkajs_idempotent("node", &["tests/clients/kafkajs_producer.js"], true)]
#[case::confluent_kafka("python", &["tests/clients/confluent_kafka_producer.py"], true)]
#[case::kafka_python("python", &["tests/clients/kafka_python_producer.py"], false)]
#[case::kafka_python_idempotent("python", &["tests/clients/kafka_python_producer.py"], true)]
#[case::aiokafka("python", &["tests/clients/aiokafka_producer.py"], false)]
#[case::aiokafka_idempotent("python", &["tests/clients/aiokafka_producer.py"], true)]
#[case::rdkafka(BIN, &["produce", "--topic", "client-matrix", "--count", "300"], true)]
fn client_lands_exactly_once(#[case] program: &str, #[case] args: &[&str], #[case] idempotent: bool) -> Result<()> {
    let present = match program {
        "node" => available("kafkajs (tests/clients/node_modules)", node_modules("tests/clients"))?,
        "python" => available(
            "Python confluent-kafka, kafka-python and aiokafka (.venv)",
            python_has(&["confluent_kafka", "kafka", "aiokafka"]),
        )?,
        _ => true,
    };
    if !present {
        return Ok(());
    }
    let mut command = vec!["run", "--spec", SPEC, "--expect", "exactly-once,no-errors,key-shape"];
    command.extend(["--expect-records", "300", "--", program]);
    command.extend(args);
    let (ok, out, err) = output(streamlab(&command).env("IDEMPOTENT", if idempotent { "1" } else { "0" }))?;
    ensure!(ok, "{program} {args:?} (idempotent {idempotent}):\n{out}\n{err}");
    ensure!(out.contains("ok: expect exactly-once: 300 records written, each landed exactly once"), "{out}");
    ensure!(out.contains("ok: expect records >= 300"), "{out}");
    Ok(())
}
