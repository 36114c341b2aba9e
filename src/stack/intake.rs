//! Where `PutRecord` and `PutRecordBatch` put records: each DirectPut
//! stream's internal topic on the stack's broker ([`direct_put_topic`]).
//!
//! A put is acknowledged once the broker has the record, so what Firehose
//! acknowledged is never only in memory: the stream's delivery reads the
//! topic with the same engine, commits and at-least-once guarantee as an MSK
//! stream, and the record's timestamp is its arrival on the stack's clock
//! (the key time of its object, as on AWS).
//!
//! Puts are refused, never dropped, while the stream cannot keep up: when
//! the bytes accepted but not yet read, plus what the delivery holds, would
//! pass the stack's memory bound (S3 down, or a producer faster than
//! delivery), the records are answered `ServiceUnavailableException` ("Slow
//! down."), and the caller retries only those, as with AWS's throttling.
//!
//! [`direct_put_topic`]: crate::spec::direct_put_topic

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::delivery::DeliveryStats;
use crate::kafka::{KafkaConnection, KafkaContext};

/// Why one record of a put was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutRefusal {
    /// The stream holds as much as the stack's memory bound allows: retry
    /// this record later (AWS's throttling answer).
    #[error("Slow down.")]
    SlowDown,
    /// The broker did not take the record: retry it.
    #[error("the stack's broker did not take the record ({0}); retry it")]
    Broker(String),
}

impl PutRefusal {
    /// The `ErrorCode` of a `PutRecordBatch` response entry.
    pub fn code(&self) -> &'static str {
        match self {
            PutRefusal::SlowDown => "ServiceUnavailableException",
            PutRefusal::Broker(_) => "InternalFailure",
        }
    }
}

/// What one put record became: its `RecordId`, or why it was refused.
pub type PutOutcome = Result<String, PutRefusal>;

/// One DirectPut stream's intake figures: bytes put, and bytes its earlier
/// deliveries read (a delivery's own figures start at zero).
#[derive(Debug, Default)]
pub struct Intake {
    /// `IncomingBytes`: data bytes accepted.
    pub bytes: AtomicU64,
    /// `IncomingRecords`: records accepted.
    pub records: AtomicU64,
    /// `IncomingPutRequests`: calls that put at least one record.
    pub put_requests: AtomicU64,
    /// Records refused at the memory bound.
    pub throttled_records: AtomicU64,
    /// Bytes read by deliveries of this stream that have stopped.
    read_before: AtomicU64,
}

impl Intake {
    /// Bytes accepted that no delivery has read yet.
    fn unread(&self, current: &DeliveryStats) -> u64 {
        let read = self.read_before.load(Ordering::Relaxed) + current.bytes_read.load(Ordering::Relaxed);
        self.bytes.load(Ordering::Relaxed).saturating_sub(read)
    }

    /// Counts what a delivery that stopped had read.
    pub fn delivery_stopped(&self, stats: &DeliveryStats) {
        self.read_before.fetch_add(stats.bytes_read.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Writes put records to the stack's broker. The producer is made on the
/// first put, so stacks without DirectPut streams have none.
pub struct Putter {
    kafka: KafkaConnection,
    producer: Mutex<Option<Arc<FutureProducer<KafkaContext>>>>,
    max_bytes: u64,
}

impl Putter {
    /// A putter onto `kafka`, refusing records past `max_bytes` unread and
    /// held per stream.
    pub fn new(kafka: KafkaConnection, max_bytes: u64) -> Self {
        Putter { kafka, producer: Mutex::default(), max_bytes }
    }

    fn producer(&self) -> Result<Arc<FutureProducer<KafkaContext>>, PutRefusal> {
        let mut slot = self.producer.lock().expect("producer lock");
        if let Some(producer) = &*slot {
            return Ok(producer.clone());
        }
        let mut config = self.kafka.config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.max.bytes", "2000000")
            .set("client.id", "streamlab-firehose-put");
        let made: Result<FutureProducer<KafkaContext>, KafkaError> = self.kafka.create(&config);
        let producer = Arc::new(made.map_err(|e| PutRefusal::Broker(e.to_string()))?);
        *slot = Some(producer.clone());
        Ok(producer)
    }

    /// Lets go of the producer (made again by the next put): the stack
    /// shuts down, and the broker is about to go.
    pub fn close(&self) {
        self.producer.lock().expect("producer lock").take();
    }

    /// Puts `records` on `topic` with timestamp `now_ms`, in order, each
    /// answered on its own: accepted records get their `RecordId`; records
    /// past the memory bound (counted over this call's earlier records too)
    /// are refused with [`PutRefusal::SlowDown`].
    pub async fn put(
        &self,
        topic: &str,
        records: &[Bytes],
        now_ms: i64,
        intake: &Intake,
        delivery: &DeliveryStats,
    ) -> Vec<PutOutcome> {
        let producer = match self.producer() {
            Ok(producer) => producer,
            Err(refusal) => return vec![Err(refusal); records.len()],
        };
        let held = intake.unread(delivery) + delivery.held_bytes.load(Ordering::Relaxed);
        let mut room = self.max_bytes.saturating_sub(held);
        let sends = records.iter().map(|data| {
            let size = data.len() as u64;
            let fits = size <= room;
            if fits {
                room -= size;
            }
            let producer = producer.clone();
            async move {
                if !fits {
                    return Err(PutRefusal::SlowDown);
                }
                let record: FutureRecord<'_, (), [u8]> =
                    FutureRecord::to(topic).payload(data.as_ref()).timestamp(now_ms);
                match producer.send(record, rdkafka::util::Timeout::After(std::time::Duration::from_secs(30))).await {
                    Ok(delivered) => Ok(record_id(delivered.partition, delivered.offset)),
                    Err((e, _)) => Err(PutRefusal::Broker(e.to_string())),
                }
            }
        });
        let outcomes = join_all(sends).await;
        let mut accepted = 0;
        for (outcome, data) in outcomes.iter().zip(records) {
            match outcome {
                Ok(_) => {
                    accepted += 1;
                    intake.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Err(PutRefusal::SlowDown) => {
                    intake.throttled_records.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {}
            }
        }
        intake.records.fetch_add(accepted, Ordering::Relaxed);
        if accepted > 0 {
            intake.put_requests.fetch_add(1, Ordering::Relaxed);
        }
        outcomes
    }
}

/// A `RecordId` as opaque and unique as AWS's (a 56-digit number, like a
/// Kinesis sequence number): the record's place on the internal topic.
fn record_id(partition: i32, offset: i64) -> String {
    format!("4963{partition:010}{offset:042}")
}

/// A putter shared by the stack and its Firehose API.
pub type SharedPutter = Arc<Putter>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_56_digits_and_unique_per_place() {
        let a = record_id(0, 7);
        assert_eq!(a.len(), 56);
        assert!(a.chars().all(|c| c.is_ascii_digit()));
        assert_ne!(a, record_id(0, 8));
        assert_ne!(a, record_id(1, 7));
    }

    #[test]
    fn unread_counts_earlier_deliveries() {
        let intake = Intake::default();
        intake.bytes.store(100, Ordering::Relaxed);
        let first = DeliveryStats::default();
        first.bytes_read.store(60, Ordering::Relaxed);
        assert_eq!(intake.unread(&first), 40);
        intake.delivery_stopped(&first);
        let second = DeliveryStats::default();
        assert_eq!(intake.unread(&second), 40);
        second.bytes_read.store(40, Ordering::Relaxed);
        assert_eq!(intake.unread(&second), 0);
    }
}
