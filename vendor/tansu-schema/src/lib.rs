//! What tansu's broker and storage crates name of `tansu-schema` 0.6.0, for a
//! broker that runs neither a schema registry nor a lake house.
//!
//! streamlab's broker stores and serves records; it never validates them
//! against a registry or copies them to a lake (a broker started with either
//! is tansu's own binary's business, not the stack's). The real crate brings
//! rhai (built twice), apache-avro, protobuf-parse and jsonschema to every cold
//! build, about 60 of its 730 CPU-seconds on two cores. Here [`Registry`] and
//! [`lake::House`] are enums without variants: no value of either can exist,
//! so every `Some(registry)` and `Some(lake)` path in the storage crate is
//! unreachable, and the compiler checks that rather than a comment. Nothing
//! else changes in the crates that use it (README.streamlab.md).

use tansu_sans_io::{ErrorCode, record::inflated::Batch};

/// The schema crate's error. Only `Api` is named by the storage crate (which
/// matches on it as on the real crate's many variants, hence non-exhaustive).
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum Error {
    #[error("{0:?}")]
    Api(ErrorCode),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A schema registry: none can be made, so `Option<Registry>` is always `None`.
#[derive(Clone, Debug)]
pub enum Registry {}

impl Registry {
    /// Check a batch against the topic's schema (unreachable: no registry exists).
    pub async fn validate(&self, _topic: &str, _batch: &Batch) -> Result<()> {
        match *self {}
    }
}

pub mod lake {
    //! A lake house sink: none can be made, so `Option<House>` is always `None`.

    use async_trait::async_trait;
    use tansu_sans_io::{describe_configs_response::DescribeConfigsResult, record::inflated::Batch};

    use crate::Result;

    #[derive(Clone, Debug)]
    pub enum House {}

    /// The calls the storage crate makes on a lake house, as in tansu-schema.
    #[async_trait]
    pub trait LakeHouse: Clone + std::fmt::Debug + Send + Sync + 'static {
        async fn store(
            &self,
            topic: &str,
            partition: i32,
            offset: i64,
            inflated: &Batch,
            config: DescribeConfigsResult,
        ) -> Result<()>;

        async fn maintain(&self) -> Result<()>;
    }

    #[async_trait]
    impl LakeHouse for House {
        async fn store(
            &self,
            _topic: &str,
            _partition: i32,
            _offset: i64,
            _inflated: &Batch,
            _config: DescribeConfigsResult,
        ) -> Result<()> {
            match *self {}
        }

        async fn maintain(&self) -> Result<()> {
            match *self {}
        }
    }
}
