//! The Firehose emulator: Kafka topic in, S3 objects out.
//!
//! One loop per delivery instance: records from the [`source`] go into
//! per-partition [`buffer`]s; a due buffer is [`encode`]d, named by
//! [`naming`] and written by the [`sink`]; only then is its partition's offset
//! committed. The loop writes one object at a time, so a slow S3 stops the
//! loop from reading, and the consumer's bounded queue, not memory, absorbs
//! the backlog.

pub mod buffer;
pub mod encode;
pub mod naming;
pub mod sink;
pub mod source;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::SharedClock;
use crate::spec::{Compression, StreamSpec};
use buffer::{Batch, Buffers, Record};
use naming::{Namer, Randomness};
use sink::S3Sink;
use source::{Source, SourceError, SourceSettings};

/// How often due buffers are checked, in wall time. Under a `--speedup 300`
/// clock this is 6 virtual seconds: fine against intervals of minutes.
const TICK: Duration = Duration::from_millis(20);

/// How long shutdown keeps retrying the final PUTs before giving up; what it
/// gives up on stays uncommitted and is re-read on the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
}

/// One object delivery wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedObject {
    pub key: String,
    pub partition: i32,
    pub records: usize,
    /// Size of the object as stored (after compression).
    pub bytes: u64,
}

/// Live counters, shared with whoever watches (sandbox progress, tests).
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// `DataReadFromSource.Records`.
    pub records_read: AtomicU64,
    /// `DataReadFromSource.Bytes`.
    pub bytes_read: AtomicU64,
    /// Records before `ReadFromTimestamp`, read and passed over.
    pub records_skipped: AtomicU64,
    /// `DeliveryToS3.Records`.
    pub records_delivered: AtomicU64,
    /// `DeliveryToS3.ObjectCount`.
    pub objects: AtomicU64,
    /// Failed PUT attempts (each retried).
    pub put_failures: AtomicU64,
    /// Records dropped from buffers because their partition was revoked
    /// (they are re-read by the new owner).
    pub records_handed_over: AtomicU64,
    buffered: Mutex<BTreeMap<i32, u64>>,
    landed: Mutex<Vec<LandedObject>>,
}

impl DeliveryStats {
    pub fn buffered_bytes(&self) -> BTreeMap<i32, u64> {
        self.buffered.lock().expect("stats lock").clone()
    }

    pub fn landed(&self) -> Vec<LandedObject> {
        self.landed.lock().expect("stats lock").clone()
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn read(&self) -> u64 {
        Self::get(&self.records_read)
    }

    pub fn delivered(&self) -> u64 {
        Self::get(&self.records_delivered)
    }
}

/// Everything delivery needs besides the spec.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    pub source: SourceSettings,
    /// Stream version in object names. Starts at 1 (AWS grows it with each
    /// configuration change).
    pub version: u32,
    /// Seed for uuids and random strings; `None` draws from the OS.
    pub seed: Option<u64>,
}

/// A delivery instance, connected and ready to run.
pub struct Delivery {
    spec: StreamSpec,
    source: Source,
    sink: S3Sink,
    clock: SharedClock,
    namer: Namer,
    stats: Arc<DeliveryStats>,
    /// Next offset per partition whose records have all landed.
    positions: Mutex<BTreeMap<i32, i64>>,
    /// Partitions with a batch that did not land. Nothing later of theirs is
    /// written or committed: committing a later batch would skip the failed
    /// one for good.
    stalled: Mutex<std::collections::BTreeSet<i32>>,
}

impl Delivery {
    /// Checks the broker, topic and bucket, then joins the consumer group.
    /// Fails with a message naming the unreachable endpoint rather than
    /// retrying forever at start-up.
    pub async fn connect(
        spec: StreamSpec,
        options: DeliveryOptions,
        sink: S3Sink,
        clock: SharedClock,
    ) -> Result<Self, DeliveryError> {
        let bootstrap = options.source.bootstrap.clone();
        let topic = spec.topic.clone();
        let partitions = tokio::task::spawn_blocking(move || source::check_topic(&bootstrap, &topic))
            .await
            .expect("metadata check does not panic")?;
        sink.check().await?;
        let activated_at_ms = clock.now_millis();
        let source = source::subscribe(&options.source, &spec.name, &spec.topic, spec.start, activated_at_ms)?;
        info!(stream = %spec.name, topic = %spec.topic, partitions, bucket = sink.bucket(), "delivery connected");
        let randomness = options.seed.map(Randomness::seeded).unwrap_or_else(Randomness::from_entropy);
        let namer = Namer::new(spec.clone(), options.version, randomness);
        Ok(Self {
            spec,
            source,
            sink,
            clock,
            namer,
            stats: Arc::default(),
            positions: Mutex::default(),
            stalled: Mutex::default(),
        })
    }

    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` fires, then delivers every buffer and commits.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Arc<DeliveryStats>, DeliveryError> {
        let overhead = u64::from(self.spec.append_newline);
        let mut buffers = Buffers::new(self.spec.buffer, overhead);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let revoked = self.source.context().take_revoked();
                    if !revoked.is_empty() {
                        let mut positions = self.positions.lock().expect("positions lock");
                        revoked.iter().for_each(|p| {
                            positions.remove(p);
                        });
                        drop(positions);
                        let mut stalled = self.stalled.lock().expect("stalled lock");
                        revoked.iter().for_each(|p| {
                            stalled.remove(p);
                        });
                        drop(stalled);
                        let n = buffers.discard(&revoked);
                        self.stats.records_handed_over.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    for batch in buffers.due(self.clock.now_millis()) {
                        if !self.deliver(batch, &shutdown).await {
                            break;
                        }
                    }
                    *self.stats.buffered.lock().expect("stats lock") = buffers.buffered_bytes();
                }
                message = self.source.recv() => match message {
                    Ok(message) => {
                        let record = Record {
                            partition: message.partition(),
                            offset: message.offset(),
                            timestamp_ms: message.timestamp().to_millis().unwrap_or_else(|| self.clock.now_millis()),
                            value: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
                        };
                        if self.source.context().skip(record.partition, record.timestamp_ms) {
                            self.stats.records_skipped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        self.stats.records_read.fetch_add(1, Ordering::Relaxed);
                        self.stats.bytes_read.fetch_add(record.value.len() as u64, Ordering::Relaxed);
                        for batch in buffers.push(record, self.clock.now_millis()) {
                            if !self.deliver(batch, &shutdown).await {
                                break;
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "kafka consumer error; retrying"),
                },
            }
        }

        info!("shutting down: delivering every buffer");
        let grace = CancellationToken::new();
        let deadline = grace.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            deadline.cancel();
        });
        for batch in buffers.drain() {
            self.deliver(batch, &grace).await;
        }
        timer.abort();
        *self.stats.buffered.lock().expect("stats lock") = BTreeMap::new();
        // Async commits may still be in flight: commit the final positions
        // synchronously so a clean stop leaves nothing to re-read.
        let final_positions = self.positions.lock().expect("positions lock").clone();
        let (source, topic, stats) = (self.source, self.spec.topic, self.stats);
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for (partition, offset) in final_positions {
                let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
            }
            if tpl.count() > 0 {
                if let Err(e) = source.commit(&tpl, CommitMode::Sync) {
                    warn!(error = %e, "final commit failed; delivered records will be re-read on the next start");
                }
            }
            drop(source);
        })
        .await
        .expect("final commit does not panic");
        Ok(stats)
    }

    /// Writes one batch, retrying with exponential backoff until it lands or
    /// `stop` fires, then commits the partition's offset. Returns whether it
    /// landed; a batch that did not stays uncommitted and will be re-read.
    async fn deliver(&self, batch: Batch, stop: &CancellationToken) -> bool {
        if self.stalled.lock().expect("stalled lock").contains(&batch.partition) {
            return false;
        }
        let landed = self.write(&batch, stop).await;
        if !landed {
            self.stalled.lock().expect("stalled lock").insert(batch.partition);
        }
        landed
    }

    async fn write(&self, batch: &Batch, stop: &CancellationToken) -> bool {
        let entry = if self.spec.compression == Compression::Zip { self.namer.zip_entry_name() } else { String::new() };
        let body = encode::encode(batch, self.spec.append_newline, self.spec.compression, &entry);
        let key = match self.namer.object_key(batch.oldest_timestamp_ms()) {
            Ok(key) => key,
            Err(e) => {
                // Only the 512-character limit can fail here; static prefixes
                // were checked at load. Keep the batch uncommitted.
                warn!(error = %e, partition = batch.partition, "cannot name object");
                return false;
            }
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.sink.put(&key, body.clone(), self.spec.compression.content_encoding()).await {
                Ok(()) => break,
                Err(e) => {
                    self.stats.put_failures.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, retry_in = ?backoff, "PUT failed; retrying");
                    let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
                    tokio::select! {
                        () = stop.cancelled() => return false,
                        () = tokio::time::sleep(backoff + jitter) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.commit(batch.partition, batch.next_offset());
        self.stats.records_delivered.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        self.stats.objects.fetch_add(1, Ordering::Relaxed);
        debug!(%key, records = batch.records.len(), "landed");
        self.stats.landed.lock().expect("stats lock").push(LandedObject {
            key,
            partition: batch.partition,
            records: batch.records.len(),
            bytes: body.len() as u64,
        });
        true
    }

    /// Commits asynchronously: commits of one partition are applied in order,
    /// and a lost commit only means records are re-read (at-least-once).
    fn commit(&self, partition: i32, next_offset: i64) {
        self.positions.lock().expect("positions lock").insert(partition, next_offset);
        let mut tpl = TopicPartitionList::new();
        if let Err(e) = tpl.add_partition_offset(&self.spec.topic, partition, Offset::Offset(next_offset)) {
            warn!(error = %e, "cannot build commit");
            return;
        }
        if let Err(e) = self.source.commit(&tpl, CommitMode::Async) {
            warn!(error = %e, partition, next_offset, "commit failed; records will be re-read after a restart");
        }
    }
}
