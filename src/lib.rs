//! streamlab: run a Kafka (MSK) -> Firehose -> S3 pipeline locally, with the
//! real producer and a faithful delivery component, on an accelerated clock.
//!
//! The layout is the architecture, in pipeline order (the command line is
//! the binary's, in `src/cli`, and not part of this library):
//! - [`events`]: the e-commerce event model and a seeded traffic generator;
//! - [`producer`]: publishes events with rdkafka;
//! - [`kafka`]: one connection (bootstrap and security) for every Kafka client, and the cluster's admin queries;
//! - [`spec`]: the `CreateDeliveryStream` JSON, validated once into a stream spec;
//! - [`prefix`]: Firehose prefix expressions and object naming rules;
//! - [`record`]: one Kafka record as everything downstream of the source sees it;
//! - [`extract`]: record de-aggregation and the jq metadata queries of dynamic partitioning;
//! - [`transform`]: the Lambda data transformation (Firehose's event, retries, the team's handler);
//! - [`convert`]: record format conversion to Parquet with a Glue table's columns;
//! - [`delivery`]: the Firehose emulator (plan, source, core, buffers, encoding, sink);
//! - [`clock`]: the one injected notion of time;
//! - [`backend`]: broker and S3 as local processes, containers or someone else's cluster;
//! - [`faults`]: S3 and broker faults injected into a local backend;
//! - [`stack`]: a running broker, S3 and deliveries, with streams added and removed, its control API and its Firehose API;
//! - [`deploy`]: the same spec files deployed with aws-sdk-firehose, to the stack or to AWS;
//! - [`cloudwatch`]: Firehose's metrics, alarms and error logs, served by a stack or published by `deliver --cloudwatch`;
//! - [`aws_error`]: one readable line from an AWS SDK error;
//! - [`exit_cleanup`]: the env files and temporary directories an aborted exit still removes;
//! - [`harness`]: reading back what landed and what topics hold, and `deliver` as a child process;
//! - [`landing`]: what landed, decoded, for tables, snapshots and checks;
//! - [`checks`]: expectations and snapshot files evaluated against a landing;
//! - [`inspect`]: a report of what landed in any bucket (sizes, duplicates, late and error records, freshness), as a table, JSON or one HTML page;
//! - [`cost`]: the month's AWS bill from a run's measured quantities and a price list kept as data;
//! - [`sandbox`]: the whole pipeline with live progress;
//! - [`soak`]: every fault at volume, with loss and duplicate figures;
//! - [`bench`]: throughput, cost and the test loop, measured against ceilings.

pub mod aws_error;
pub mod aws_http;
pub mod backend;
pub mod bench;
pub mod checks;
pub mod clock;
pub mod cloudwatch;
pub mod convert;
pub mod cost;
pub mod delivery;
pub mod deploy;
pub mod events;
pub mod exit_cleanup;
pub mod extract;
pub mod faults;
pub mod harness;
pub mod inspect;
pub mod kafka;
pub mod landing;
pub mod prefix;
pub mod producer;
pub mod record;
pub mod sandbox;
pub mod soak;
pub mod spec;
pub mod stack;
pub mod transform;
