//! What tests, the stack and the tools do around the pipeline, by concept:
//! [`s3`] (buckets, reading back what landed), [`topics`] (reading back what
//! a topic holds) and [`process`] (`streamlab deliver` as a child process).
//! Questions for the cluster itself (topics, offsets, groups) are in
//! [`crate::kafka::admin`].

pub mod process;
pub mod s3;
pub mod topics;

pub use process::{wait_with_usage, DeliverCommand, DeliverProcess, Usage};
pub use s3::{
    create_bucket, delete_under, json_records, list_keys, list_keys_under, read_bucket, read_object, read_under,
    StoredObject,
};
pub use topics::{read_range, read_topic};

use crate::kafka::admin::AdminError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    #[error(transparent)]
    Kafka(#[from] AdminError),
    #[error("cannot create bucket {bucket:?}: {detail}")]
    Bucket { bucket: String, detail: String },
    #[error("cannot read s3://{bucket}/{key}: {detail}")]
    Read { bucket: String, key: String, detail: String },
    #[error("cannot read topic {topic:?} on {bootstrap}: {detail}")]
    Topic { topic: String, bootstrap: String, detail: String },
}
