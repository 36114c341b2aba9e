//! What a stream remembers between runs: its version, when it became active,
//! where each partition started, and which consumer group holds its offsets.
//!
//! AWS keeps this with the stream, so it lives where the stream's other state
//! lives: by default in a compacted topic on the same cluster as the consumer
//! group ([`TopicStateStore`]). A fresh broker therefore starts every stream at
//! version 1, and two stacks never see each other's streams. A local directory
//! ([`DirStateStore`], `--state-dir`) is the alternative for clusters where
//! streamlab may not create topics.
//!
//! The rules are AWS's: only a change to the destination configuration
//! (`UpdateDestination`) bumps the version; tags do not count; a change of
//! `MSKSourceConfiguration` cannot be applied in place, so it makes a new
//! stream: version 1, a new activation time, its start position resolved from
//! `ReadFromTimestamp` again, and a new consumer group (the old group's
//! offsets belong to the old stream).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::kafka::{KafkaConnection, KafkaContext};
use crate::spec::StreamSpec;

/// The compacted topic holding stream state, one record per change, keyed by
/// stream name.
pub const STATE_TOPIC: &str = "__streamlab_stream_state";

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("cannot {action} stream state in topic {STATE_TOPIC:?} on {bootstrap}: {detail}. Create the topic (1 partition, cleanup.policy=compact) if streamlab may not, or pass --state-dir DIR to keep stream state in a local directory")]
    Topic { action: &'static str, bootstrap: String, detail: String },
    #[error("cannot {action} stream state file {}: {detail}; fix or delete the file, or choose another --state-dir", path.display())]
    File { action: &'static str, path: PathBuf, detail: String },
}

/// One stream's state, as recorded when it last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    pub stream: String,
    /// `DeliveryStreamVersion` in object keys: 1 for a new stream, one more per
    /// destination change.
    pub version: u32,
    /// How many times a stream of this name was created (a source change
    /// creates it anew); names the consumer group.
    pub incarnation: u32,
    /// The consumer group holding this incarnation's offsets.
    pub group: String,
    /// SHA-256 of `DeliveryStreamType` and `MSKSourceConfiguration` in canonical
    /// form.
    pub source_sha256: String,
    /// SHA-256 of `ExtendedS3DestinationConfiguration` in canonical form.
    pub destination_sha256: String,
    /// When the stream became active (clock milliseconds): AWS's
    /// `DeliveryStartTimestamp`, the start point when `ReadFromTimestamp` is
    /// absent. Recorded once; restarts do not move it.
    pub activated_at_ms: i64,
    /// Where each partition starts when the group has committed nothing:
    /// resolved once, at activation, from `ReadFromTimestamp` (or the
    /// activation time). Partitions missing here (added later) start at the
    /// earliest offset.
    pub start_offsets: BTreeMap<i32, i64>,
}

/// What changed when a spec was applied to the recorded state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// No state for this stream: version 1.
    Created,
    /// The source changed: a new stream of the same name, version 1.
    Recreated,
    /// The destination changed: the version grew.
    Updated,
    /// Nothing that AWS counts changed.
    Unchanged,
}

impl StreamState {
    /// The state after starting `spec` at `now_ms`, given the recorded state.
    /// Start offsets of a new stream are left empty for the caller to resolve
    /// (that needs the broker).
    pub fn apply(previous: Option<&StreamState>, spec: &StreamSpec, now_ms: i64) -> (StreamState, Transition) {
        let fresh = |incarnation: u32| StreamState {
            stream: spec.name().to_owned(),
            version: 1,
            incarnation,
            group: if incarnation == 1 { spec.name().to_owned() } else { format!("{}.{incarnation}", spec.name()) },
            source_sha256: spec.source_sha256().to_owned(),
            destination_sha256: spec.destination_sha256().to_owned(),
            activated_at_ms: now_ms,
            start_offsets: BTreeMap::new(),
        };
        match previous {
            None => (fresh(1), Transition::Created),
            Some(p) if p.source_sha256 != spec.source_sha256() => (fresh(p.incarnation + 1), Transition::Recreated),
            Some(p) if p.destination_sha256 != spec.destination_sha256() => (
                StreamState {
                    version: p.version + 1,
                    destination_sha256: spec.destination_sha256().to_owned(),
                    ..p.clone()
                },
                Transition::Updated,
            ),
            Some(p) => (p.clone(), Transition::Unchanged),
        }
    }

    /// Orders concurrent writes: a newer incarnation, then a higher version,
    /// wins; between equals the one written first does (see
    /// [`TopicStateStore::save`]).
    fn rank(&self) -> (u32, u32) {
        (self.incarnation, self.version)
    }
}

/// Where stream state is kept.
#[derive(Debug, Clone)]
pub enum StateStore {
    Topic(TopicStateStore),
    Dir(DirStateStore),
}

impl StateStore {
    /// The recorded state of `stream`, if any.
    pub async fn load(&self, stream: &str) -> Result<Option<StreamState>, StateError> {
        match self {
            StateStore::Topic(t) => {
                let (t, stream) = (t.clone(), stream.to_owned());
                blocking(move || t.load(&stream)).await
            }
            StateStore::Dir(d) => d.load(stream),
        }
    }

    /// Records `state`; returns the state that holds afterwards, which is
    /// another writer's when two instances of one stream raced to record the
    /// same change.
    pub async fn save(&self, state: &StreamState) -> Result<StreamState, StateError> {
        match self {
            StateStore::Topic(t) => {
                let (t, state) = (t.clone(), state.clone());
                blocking(move || t.save(&state)).await
            }
            StateStore::Dir(d) => d.save(state).map(|()| state.clone()),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f).await.expect("state store calls do not panic")
}

/// Stream state in a compacted topic on the cluster.
#[derive(Debug, Clone)]
pub struct TopicStateStore {
    kafka: KafkaConnection,
    /// The state topic was seen or created: no metadata round trip (about
    /// 100 ms with a new client) before every read and write.
    ensured: Arc<AtomicBool>,
}

/// A Kafka client dropped on a thread of its own when this goes out of
/// scope: librdkafka's destroy waits for its threads (about 190 ms for a
/// consumer here), which a starting delivery need not wait for. Measured: a
/// new stream's state took 820 ms before its delivery could start.
struct DropLater<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Drop for DropLater<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            std::thread::spawn(move || drop(client));
        }
    }
}

impl<T: Send + 'static> std::ops::Deref for DropLater<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl TopicStateStore {
    pub fn new(kafka: impl Into<KafkaConnection>) -> Self {
        Self { kafka: kafka.into(), ensured: Arc::default() }
    }

    /// Never auto-created: a broker with `auto.create.topics.enable` would
    /// give the topic its default partition count, and stream state must live
    /// in one partition to keep its order.
    fn config(&self) -> rdkafka::ClientConfig {
        let mut config = self.kafka.config();
        config.set("allow.auto.create.topics", "false");
        config
    }

    fn fail(&self, action: &'static str, detail: impl ToString) -> StateError {
        StateError::Topic { action, bootstrap: self.kafka.bootstrap().to_owned(), detail: detail.to_string() }
    }

    /// Creates the state topic unless it exists.
    fn ensure_topic(&self) -> Result<(), StateError> {
        if self.ensured.load(Ordering::Acquire) {
            return Ok(());
        }
        let admin: AdminClient<KafkaContext> = self.kafka.create(&self.config()).map_err(|e| self.fail("create", e))?;
        let admin = DropLater(Some(admin));
        self.ensure_with(&admin)?;
        self.ensured.store(true, Ordering::Release);
        Ok(())
    }

    fn ensure_with(&self, admin: &AdminClient<KafkaContext>) -> Result<(), StateError> {
        let metadata = admin.inner().fetch_metadata(Some(STATE_TOPIC), TIMEOUT).map_err(|e| self.fail("read", e))?;
        if metadata
            .topics()
            .iter()
            .any(|t| t.name() == STATE_TOPIC && t.error().is_none() && !t.partitions().is_empty())
        {
            return Ok(());
        }
        let topic = NewTopic::new(STATE_TOPIC, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime starts");
        let results = runtime
            .block_on(admin.create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(TIMEOUT))))
            .map_err(|e| self.fail("create", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(self.fail("create", code)),
            }
        }
        let started = Instant::now();
        loop {
            let metadata =
                admin.inner().fetch_metadata(Some(STATE_TOPIC), TIMEOUT).map_err(|e| self.fail("read", e))?;
            if metadata.topics().iter().any(|t| t.name() == STATE_TOPIC && !t.partitions().is_empty()) {
                return Ok(());
            }
            if started.elapsed() > TIMEOUT {
                return Err(self.fail("create", "the topic did not appear in metadata"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every record of `stream`, in offset order.
    fn history(&self, stream: &str) -> Result<Vec<StreamState>, StateError> {
        self.ensure_topic()?;
        let consumer: BaseConsumer<KafkaContext> = self
            .kafka
            .create(
                self.config()
                    .set("group.id", "streamlab-state-reader")
                    .set("enable.auto.commit", "false")
                    .set("fetch.wait.max.ms", "10"),
            )
            .map_err(|e| self.fail("read", e))?;
        let consumer = DropLater(Some(consumer));
        let (low, high) = consumer.fetch_watermarks(STATE_TOPIC, 0, TIMEOUT).map_err(|e| self.fail("read", e))?;
        let mut out = Vec::new();
        if high <= low {
            return Ok(out);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(STATE_TOPIC, 0, Offset::Beginning).map_err(|e| self.fail("read", e))?;
        consumer.assign(&tpl).map_err(|e| self.fail("read", e))?;
        let started = Instant::now();
        let mut next = low;
        while next < high {
            if started.elapsed() > TIMEOUT {
                return Err(self.fail("read", format!("read up to offset {next} of {high} within {TIMEOUT:?}")));
            }
            let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
            let message = message.map_err(|e| self.fail("read", e))?;
            next = message.offset() + 1;
            if message.key() != Some(stream.as_bytes()) {
                continue;
            }
            // A record that does not parse is another version's: skip it
            // rather than refuse to start.
            if let Some(state) = message.payload().and_then(|p| serde_json::from_slice::<StreamState>(p).ok()) {
                out.push(state);
            }
        }
        Ok(out)
    }

    fn load(&self, stream: &str) -> Result<Option<StreamState>, StateError> {
        Ok(winner(self.history(stream)?))
    }

    /// Appends `state`, then reads the stream's history back: of the records
    /// with the highest rank the first one written wins, so instances that
    /// raced to record the same new stream or the same update agree on it.
    fn save(&self, state: &StreamState) -> Result<StreamState, StateError> {
        self.ensure_topic()?;
        let producer: BaseProducer<KafkaContext> = self
            .kafka
            .create(self.config().set("acks", "all").set("linger.ms", "0"))
            .map_err(|e| self.fail("write", e))?;
        let producer = DropLater(Some(producer));
        let payload = serde_json::to_vec(state).expect("state serializes");
        producer
            .send(BaseRecord::to(STATE_TOPIC).partition(0).key(state.stream.as_bytes()).payload(&payload))
            .map_err(|(e, _)| self.fail("write", e))?;
        // Done once nothing is in flight (polling serves the client's queue,
        // which a base producer needs to send); a record the broker refused
        // is found missing when the history is read back. Not
        // `flush(TIMEOUT)`: rdkafka's flush polls in steps of 100 ms that run
        // to their end, so it took a tenth of a second on every new stream.
        // Nor `flush` in a tight loop: each call wakes every broker thread,
        // and a hundred streams saving at once starved the broker. Polls
        // start at 1 ms and double to 16 ms, so a quick acknowledgement is
        // seen within a few ms and a slow one costs little CPU.
        let deadline = Instant::now() + TIMEOUT;
        let mut step = Duration::from_millis(1);
        while producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                return Err(self.fail("write", format!("the broker did not acknowledge the record within {TIMEOUT:?}")));
            }
            producer.poll(step);
            step = (step * 2).min(Duration::from_millis(16));
        }
        winner(self.history(&state.stream)?).ok_or_else(|| self.fail("read", "the record just written is missing"))
    }
}

/// The state that holds given a stream's history in offset order.
fn winner(history: Vec<StreamState>) -> Option<StreamState> {
    let best = history.iter().map(StreamState::rank).max()?;
    history.into_iter().find(|s| s.rank() == best)
}

/// Stream state as one JSON file per stream in a directory.
#[derive(Debug, Clone)]
pub struct DirStateStore {
    dir: PathBuf,
}

impl DirStateStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, stream: &str) -> PathBuf {
        self.dir.join("streams").join(format!("{stream}.json"))
    }

    fn load(&self, stream: &str) -> Result<Option<StreamState>, StateError> {
        let path = self.path(stream);
        let fail = |detail: String| StateError::File { action: "read", path: path.clone(), detail };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| fail(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    fn save(&self, state: &StreamState) -> Result<(), StateError> {
        let path = self.path(&state.stream);
        let fail = |detail: String| StateError::File { action: "write", path: path.clone(), detail };
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
        // Write then rename, so a crash never leaves half a file.
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(state).expect("state serializes");
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)).map_err(|e| fail(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> StreamSpec {
        crate::spec::parse(Path::new("t.json"), text).unwrap()
    }

    const SPEC: &str = include_str!("../../fixtures/streams/orders-to-s3.json");

    fn with_tags(text: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["Tags"] = serde_json::json!([{"Key": "team", "Value": "data"}]);
        v.to_string()
    }

    #[test]
    fn only_destination_changes_bump_the_version() {
        let (s1, t) = StreamState::apply(None, &spec(SPEC), 1_000);
        assert_eq!((s1.version, s1.incarnation, t), (1, 1, Transition::Created));
        assert_eq!(s1.group, "orders-to-s3");
        // Reformatting and tags are not changes.
        let reformatted: serde_json::Value = serde_json::from_str(SPEC).unwrap();
        assert_eq!(StreamState::apply(Some(&s1), &spec(&reformatted.to_string()), 2_000).1, Transition::Unchanged);
        assert_eq!(StreamState::apply(Some(&s1), &spec(&with_tags(SPEC)), 2_000).1, Transition::Unchanged);
        // A destination change: version 2, same activation, same group.
        let changed = SPEC.replace("\"SizeInMBs\": 5", "\"SizeInMBs\": 6");
        let (s2, t) = StreamState::apply(Some(&s1), &spec(&changed), 3_000);
        assert_eq!(
            (s2.version, s2.activated_at_ms, s2.group.as_str(), t),
            (2, 1_000, "orders-to-s3", Transition::Updated)
        );
        // A source change: a new stream of the same name.
        let resourced = changed.replace("\"TopicName\": \"shop-events\"", "\"TopicName\": \"shop-events-v2\"");
        let (s3, t) = StreamState::apply(Some(&s2), &spec(&resourced), 4_000);
        assert_eq!((s3.version, s3.incarnation, s3.activated_at_ms, t), (1, 2, 4_000, Transition::Recreated));
        assert_eq!(s3.group, "orders-to-s3.2");
    }

    #[test]
    fn the_first_write_of_the_highest_rank_wins() {
        let (a, _) = StreamState::apply(None, &spec(SPEC), 1_000);
        let b = StreamState { activated_at_ms: 1_001, ..a.clone() };
        let c = StreamState { version: 2, activated_at_ms: 1_000, ..a.clone() };
        assert_eq!(winner(vec![a.clone(), b.clone()]), Some(a.clone()));
        assert_eq!(winner(vec![b.clone(), a.clone(), c.clone()]), Some(c));
        assert_eq!(winner(vec![]), None);
    }

    #[test]
    fn directory_store_round_trips_and_names_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStateStore::new(dir.path());
        assert_eq!(store.load("orders-to-s3").unwrap(), None);
        let (state, _) = StreamState::apply(None, &spec(SPEC), 1_000);
        store.save(&state).unwrap();
        assert_eq!(store.load("orders-to-s3").unwrap(), Some(state));
        std::fs::write(dir.path().join("streams/orders-to-s3.json"), "{").unwrap();
        let err = store.load("orders-to-s3").unwrap_err().to_string();
        assert!(err.contains("streams/orders-to-s3.json") && err.contains("--state-dir"), "{err}");
    }
}
