//! Every integration test in one binary: each file in `tests/` is a module here.
//!
//! One binary instead of one per file: each would link the whole crate (the AWS
//! SDKs, arrow, parquet, the broker), and libtest runs the tests of all files in
//! parallel instead of one file after another. `cargo test --test integration
//! fixtures::` runs one file's tests. `scale.rs` and `bounded_inputs.rs` stay
//! binaries of their own: they measure their process's threads, descriptors and
//! memory, which other tests running beside them would disturb.

mod common;

mod architecture;
mod broker;
mod cli;
mod clients;
mod cloudwatch;
mod conformance;
mod decoders;
mod durable;
mod e2e;
mod errors;
mod examples;
mod faults;
mod firehose_api;
mod firehose_cli;
mod fixtures;
mod fuzz;
mod group;
mod invalid_specs;
mod java_formatter;
mod kafka_tls;
mod lambda;
mod own_pipeline;
mod parquet;
mod report;
mod stack_api;
mod stream_state;
