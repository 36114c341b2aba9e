//! streamlab: run a Kafka (MSK) -> Firehose -> S3 pipeline locally, with the
//! real producer and a faithful delivery component, on an accelerated clock.
//!
//! The layout is the architecture:
//! - [`events`]: the e-commerce event model and a seeded traffic generator;
//! - [`producer`]: publishes events with rdkafka;
//! - [`spec`]: the `CreateDeliveryStream` JSON, validated;
//! - [`prefix`]: Firehose prefix expressions and object naming rules;
//! - [`delivery`]: the Firehose emulator (source, buffers, encoding, sink);
//! - [`clock`]: the one injected notion of time;
//! - [`backend`]: broker and S3 as local processes or containers;
//! - [`kafka`]: one connection (bootstrap and security: TLS, SCRAM, MSK IAM) for every Kafka client;
//! - [`harness`]: topic/bucket set-up and reading back what landed;
//! - [`sandbox`]: the whole pipeline with live progress.

pub mod backend;
pub mod bench;
pub mod checks;
pub mod clock;
pub mod convert;
pub mod delivery;
pub mod events;
pub mod faults;
pub mod harness;
pub mod kafka;
pub mod landing;
pub mod prefix;
pub mod producer;
pub mod sandbox;
pub mod soak;
pub mod spec;
pub mod stack;
pub mod transform;
