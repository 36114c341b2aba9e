//! The unit everything downstream of the source handles: one Kafka record
//! as delivery, the Lambda transform and format conversion see it. A leaf:
//! it depends on nothing else in the crate.

use bytes::Bytes;

/// One Kafka record as delivery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Kafka record timestamp (CreateTime or LogAppendTime), epoch ms; the
    /// object's time prefix comes from the oldest of these.
    pub timestamp_ms: i64,
    pub value: Bytes,
}
