//! Where records come from: the [`RecordSource`] the driver reads, with
//! Kafka for real runs (one consumer group per stream, offsets committed
//! only once delivery stored them) and memory for the engine benchmark.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::client::OAuthToken;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::buffer::Record;
use crate::kafka::admin::{self, AdminError};
use crate::kafka::{KafkaConnection, KafkaContext};

/// How long broker requests made before and during start-up may take.
pub const BROKER_TIMEOUT: Duration = admin::TIMEOUT;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The broker or the topic (unreachable, missing).
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("cannot create a Kafka consumer for {bootstrap}: {source}")]
    Client { bootstrap: String, source: KafkaError },
    /// librdkafka gave up on the consumer; it cannot go on (e.g. another
    /// process joined with the same static `group.instance.id`).
    #[error("the Kafka consumer of group {group:?} hit a fatal error ({code:?}): {reason}. {hint}")]
    Fatal { group: String, code: rdkafka::types::RDKafkaErrorCode, reason: String, hint: &'static str },
}

/// How long an instance may own no partitions before it rejoins the group.
/// tansu 0.6 can leave a group stuck after a static member's join is cut
/// off (a broker outage mid-rebalance); a rejoin as a dynamic member clears
/// it. A healthy join takes about 6 s on tansu, half of this.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(12);

/// Records handed over per [`RecordSource::recv`] at most: enough to
/// amortise the driver's per-batch work, small enough to keep it responsive.
const RECV_BATCH: usize = 1024;

/// What the driver reads from. The driver calls [`RecordSource::recv`] in
/// every turn of its loop, paused or not: for Kafka that is the poll that
/// keeps the instance in its group (`max.poll.interval.ms`) while S3 is
/// down.
#[async_trait]
pub trait RecordSource: Send + 'static {
    /// Waits for records and appends them to `out`, stopping at about
    /// `max_bytes` (at least one record) or at a rebalance, so that
    /// [`RecordSource::take_revoked`] applies between the records before and
    /// after it. `now_ms` stands in for a missing record timestamp. Returns
    /// `false` once a finite source has nothing more.
    async fn recv(&mut self, out: &mut Vec<Record>, max_bytes: usize, now_ms: i64) -> Result<bool, SourceError>;

    /// Partitions taken away since the last call.
    fn take_revoked(&mut self) -> Vec<i32>;

    /// Stops or resumes fetching; `recv` must still be called while paused.
    fn set_paused(&mut self, paused: bool);

    /// Periodic upkeep (the assignment watchdog). Returns whether the
    /// instance rejoined its group.
    fn maintain(&mut self) -> bool;

    /// Whether everything this source was asked to read has been read
    /// (`deliver --exit-at-end`); delivery then lands it and stops.
    fn finished(&self) -> bool {
        false
    }

    /// Offsets delivery completed: (partition, next offset to read). They
    /// are committed in the background and again by [`RecordSource::close`].
    fn store(&mut self, commits: &[(i32, i64)]);

    /// The next offset to read per owned partition.
    fn positions(&self) -> BTreeMap<i32, i64>;

    /// How many partitions this instance owns now.
    fn owned_partitions(&self) -> usize {
        self.positions().len()
    }

    /// Commits `committed` synchronously and lets go of the partitions.
    async fn close(self, committed: BTreeMap<i32, i64>);
}

/// Decides where partitions without a committed offset start, and tells the
/// delivery loop which partitions it owns and which were taken away.
pub struct SourceContext {
    topic: String,
    /// Where each never-committed partition starts, resolved once when the
    /// stream became active (see [`resolve_start_offsets`]). A partition
    /// missing here was added later and starts at its earliest offset.
    start_offsets: BTreeMap<i32, i64>,
    revoked: Mutex<Vec<i32>>,
    /// Partitions currently assigned, for the assignment watchdog.
    assigned: Mutex<HashSet<i32>>,
    /// The offset each assigned partition started reading at, before any
    /// record arrives from it.
    started_at: Mutex<BTreeMap<i32, i64>>,
    /// Rebalance callbacks so far: a batch of records stops at one.
    rebalances: AtomicU64,
    /// Signs MSK IAM tokens when the connection uses them.
    kafka: KafkaContext,
}

impl SourceContext {
    fn new(topic: &str, start_offsets: BTreeMap<i32, i64>, kafka: KafkaContext) -> Self {
        Self {
            kafka,
            topic: topic.to_owned(),
            start_offsets,
            revoked: Mutex::default(),
            assigned: Mutex::default(),
            started_at: Mutex::default(),
            rebalances: AtomicU64::new(0),
        }
    }

    /// How many partitions this instance owns now.
    pub fn assigned_count(&self) -> usize {
        self.assigned.lock().expect("assigned lock").len()
    }

    /// The partitions this instance owns now.
    pub fn assigned_partitions(&self) -> HashSet<i32> {
        self.assigned.lock().expect("assigned lock").clone()
    }

    /// Where each owned partition started reading.
    pub fn start_positions(&self) -> BTreeMap<i32, i64> {
        let owned = self.assigned_partitions();
        self.started_at
            .lock()
            .expect("started lock")
            .iter()
            .filter(|(p, _)| owned.contains(p))
            .map(|(p, o)| (*p, *o))
            .collect()
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked lock"))
    }

    /// Rewrites the assignment's offsets: committed offsets win; partitions
    /// the group never committed start where the stream's start position put
    /// them.
    fn position<C: ConsumerContext, K: Consumer<C>>(
        &self,
        consumer: &K,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), KafkaError> {
        let committed = consumer.committed_offsets(tpl.clone(), BROKER_TIMEOUT)?;
        for element in committed.elements() {
            let partition = element.partition();
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => self.start_offsets.get(&partition).map_or(Offset::Beginning, |o| Offset::Offset(*o)),
            };
            if let Offset::Offset(o) = offset {
                self.started_at.lock().expect("started lock").insert(partition, o);
            }
            info!(topic = %self.topic, partition, ?offset, "assigned");
            tpl.set_partition_offset(&self.topic, partition, offset)?;
        }
        Ok(())
    }
}

impl ClientContext for SourceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = KafkaContext::ENABLE_REFRESH_OAUTH_TOKEN;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.kafka.oauth_token()
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.position(consumer, tpl) {
                    // Without a position librdkafka falls back to
                    // auto.offset.reset=earliest: duplicates, never loss.
                    error!(error = %e, "cannot resolve start offsets; starting from committed or earliest");
                }
                if let Err(e) = consumer.assign(tpl) {
                    error!(error = %e, "assign failed");
                }
                self.assigned.lock().expect("assigned lock").extend(tpl.elements().iter().map(|e| e.partition()));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(?partitions, "revoked");
                let mut assigned = self.assigned.lock().expect("assigned lock");
                partitions.iter().for_each(|p| {
                    assigned.remove(p);
                });
                drop(assigned);
                self.revoked.lock().expect("revoked lock").extend(partitions);
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "unassign failed");
                }
            }
            other => {
                warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

pub type Source = StreamConsumer<SourceContext>;

/// How an instance gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Every partition, assigned directly, offsets still committed to the
    /// stream's group: for a stack that runs one instance per stream. No group
    /// join, so no rebalance delay (tansu makes a joining member wait ~6 s).
    Assigned,
    /// Consumer-group membership, so several instances share the partitions.
    Group,
}

/// Settings for the consumer beyond the spec.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub kafka: KafkaConnection,
    /// Stable id of this delivery instance: given, it makes the instance a
    /// static member of the group (`group.instance.id`), so a restarted
    /// instance with the same id gets its partitions back without a
    /// rebalance. Absent, the instance is a dynamic member: two instances
    /// started the same way never share an id, which would fence one of them.
    pub instance_id: Option<String>,
    pub membership: Membership,
    /// librdkafka's `max.poll.interval.ms` (default 300 s). Delivery polls
    /// every 20 ms whatever S3 does; the fault tests lower it to show that.
    pub max_poll_interval: Option<Duration>,
    /// Stop once every owned partition is read up to where it ended when
    /// delivery started (backfills, benchmarks).
    pub exit_at_end: bool,
}

impl SourceSettings {
    /// A consumer-group member with librdkafka's defaults.
    pub fn new(kafka: impl Into<KafkaConnection>, membership: Membership) -> Self {
        SourceSettings {
            kafka: kafka.into(),
            instance_id: None,
            membership,
            max_poll_interval: None,
            exit_at_end: false,
        }
    }
}

/// How delivery's consumer fetches; the bench's ceiling consumer reads
/// with the same settings.
pub fn fetch_settings(config: &mut rdkafka::ClientConfig) {
    config
        // Prefetch up to 8 MiB (librdkafka's default is 64 MiB): memory
        // outside the delivery's bound, and a pause drops it anyway. It costs
        // several times its size for small records: with a broker that
        // answers at once the queue stays full, and 12 MiB less of it took
        // 45 MB off peak RSS in `just bench` (251-byte records).
        .set("queued.max.messages.kbytes", "8192")
        // When that prefetch is full, librdkafka (2.4 and later) waits this
        // long before fetching the partition again: 1 s by default, which
        // is a second of no reading whenever delivery is briefly slower
        // than a broker that answers at once (as MSK does). About a tick.
        .set("fetch.queue.backoff.ms", "10")
        // A local emulator should react within a tick, not a 500 ms long poll.
        .set("fetch.wait.max.ms", "50");
}

fn consumer_config(settings: &SourceSettings, group: &str) -> rdkafka::ClientConfig {
    let mut config = settings.kafka.config();
    config
        .set("group.id", group)
        .set(
            "client.id",
            format!(
                "streamlab-deliver-{}",
                settings.instance_id.clone().unwrap_or_else(|| std::process::id().to_string())
            ),
        )
        // One commit path: delivery stores the offsets of what landed and
        // asks for a commit of what is stored at once; librdkafka also
        // commits stored offsets every 250 ms (again after a broker outage;
        // nothing when they did not move) and on revocation; the driver
        // commits once more, synchronously, when it stops.
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "250")
        .set("enable.auto.offset.store", "false")
        // Only reached when a committed offset fell out of retention:
        // re-reading beats skipping.
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("allow.auto.create.topics", "false");
    fetch_settings(&mut config);
    if let Some(interval) = settings.max_poll_interval {
        let ms = interval.as_millis().to_string();
        // librdkafka requires the session timeout to fit in the poll interval.
        let session = interval.as_millis().min(10_000).to_string();
        config.set("max.poll.interval.ms", ms).set("session.timeout.ms", session);
    }
    config
}

/// Creates the consumer: subscribed to the group, or with every partition
/// assigned directly, per `settings.membership`.
pub fn connect(
    settings: &SourceSettings,
    group: &str,
    topic: &str,
    start_offsets: BTreeMap<i32, i64>,
    static_membership: bool,
) -> Result<Source, SourceError> {
    let fail = |source| SourceError::Client { bootstrap: settings.kafka.bootstrap().to_owned(), source };
    let context = SourceContext::new(topic, start_offsets, settings.kafka.context());
    let mut config = consumer_config(settings, group);
    if let (true, Membership::Group, Some(id)) = (static_membership, settings.membership, &settings.instance_id) {
        config.set("group.instance.id", format!("{group}-{id}"));
    }
    let consumer: Source = settings.kafka.create_with_context(&config, context).map_err(fail)?;
    match settings.membership {
        Membership::Group => consumer.subscribe(&[topic]).map_err(fail)?,
        Membership::Assigned => {
            let partitions = admin::check_topic(&settings.kafka, topic)?;
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(topic, *p);
            }
            consumer.context().position(&consumer, &mut tpl).map_err(|source| AdminError::Unreachable {
                bootstrap: settings.kafka.bootstrap().to_owned(),
                detail: source.to_string(),
            })?;
            consumer.assign(&tpl).map_err(fail)?;
            consumer.context().assigned.lock().expect("assigned lock").extend(partitions);
        }
    }
    Ok(consumer)
}

/// The Kafka side of a delivery: the consumer, the assignment watchdog, and
/// pausing while delivery cannot take more.
pub struct KafkaSource {
    consumer: Source,
    settings: SourceSettings,
    group: String,
    topic: String,
    start_offsets: BTreeMap<i32, i64>,
    /// Whether the next rejoin is as a static member: the watchdog
    /// alternates, because a stuck static join is what it works around.
    static_membership: bool,
    unassigned_since: Instant,
    paused: bool,
    /// Partitions paused now; a rebalance assigns new ones unpaused.
    paused_partitions: HashSet<i32>,
    /// With `exit_at_end`: each partition's end when delivery started.
    end_offsets: Option<BTreeMap<i32, i64>>,
    /// Where record values are copied out of librdkafka's buffers; see
    /// [`KafkaSource::share_allocations`].
    payloads: Payloads,
}

impl KafkaSource {
    /// Creates the consumer: subscribed to the group, or with every
    /// partition assigned directly, per `settings.membership`.
    pub fn connect(
        settings: &SourceSettings,
        group: &str,
        topic: &str,
        start_offsets: BTreeMap<i32, i64>,
    ) -> Result<Self, SourceError> {
        let consumer = connect(settings, group, topic, start_offsets.clone(), true)?;
        let end_offsets = settings.exit_at_end.then(|| admin::end_offsets(&settings.kafka, topic)).transpose()?;
        Ok(KafkaSource {
            end_offsets,
            consumer,
            settings: settings.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            start_offsets,
            static_membership: true,
            unassigned_since: Instant::now(),
            paused: false,
            paused_partitions: HashSet::new(),
            payloads: Payloads::PerRecord,
        })
    }

    /// Lets consecutive records of a partition share allocations of
    /// [`ARENA_BYTES`] instead of one allocation each. Only for a delivery
    /// whose records of a partition all go to one buffer (no dynamic
    /// partitioning): buffers then land a partition's records in order, so
    /// an allocation outlives its records by at most the partition's
    /// unfilled tail. With records of a partition spread over prefixes, one
    /// record in a slow prefix would keep everything around it in memory,
    /// outside delivery's bound.
    ///
    /// A record allocated and freed on its own was a fifth of `deliver`'s
    /// CPU in `perf` of `just bench` (mostly page faults of new memory).
    pub fn share_allocations(mut self, share: bool) -> Self {
        self.payloads = if share { Payloads::Shared(Arenas::default()) } else { Payloads::PerRecord };
        self
    }

    /// A consumer error: fatal ones end delivery with the reason, others
    /// (a broker away) are retried by librdkafka.
    fn check(&self, error: KafkaError) -> Result<(), SourceError> {
        if let Some((code, reason)) = self.consumer.client().fatal_error() {
            let hint = match code {
                rdkafka::types::RDKafkaErrorCode::FencedInstanceId => {
                    "Another delivery instance joined with the same --instance-id; give each instance its own id, or none"
                }
                _ => "Restart the delivery; records not yet committed are read again",
            };
            return Err(SourceError::Fatal { group: self.group.clone(), code, reason, hint });
        }
        warn!(error = %error, "kafka consumer error; retrying");
        Ok(())
    }

    /// Replaces the consumer with a new member of the group. The old one is
    /// closed off the async threads (closing leaves the group, which blocks).
    fn rejoin(&mut self) -> bool {
        self.static_membership = !self.static_membership;
        let kind = if self.static_membership { "static" } else { "dynamic" };
        warn!(after = ?ASSIGNMENT_TIMEOUT, "no partitions assigned; rejoining the consumer group as a {kind} member");
        match connect(&self.settings, &self.group, &self.topic, self.start_offsets.clone(), self.static_membership) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.consumer, fresh);
                tokio::task::spawn_blocking(move || drop(old));
                self.paused_partitions.clear();
                true
            }
            Err(e) => {
                warn!(error = %e, "rejoin failed; keeping the current consumer");
                false
            }
        }
    }

    fn partition_list(&self, partitions: impl IntoIterator<Item = i32>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, p);
        }
        tpl
    }

    /// Pauses what is assigned and not paused yet (after a rebalance).
    fn pause_assigned(&mut self) {
        let assigned = self.consumer.context().assigned_partitions();
        let fresh: Vec<i32> = assigned.difference(&self.paused_partitions).copied().collect();
        if !fresh.is_empty() {
            if let Err(e) = self.consumer.pause(&self.partition_list(fresh)) {
                warn!(error = %e, "cannot pause partitions");
            }
        }
        self.paused_partitions = assigned;
    }
}

/// Records of a partition sharing allocations: see
/// [`KafkaSource::share_allocations`]. Larger values take [`ARENA_BYTES`]
/// of memory more than their bytes per partition at most.
const ARENA_BYTES: usize = 32 * 1024;

/// How [`KafkaSource`] copies record values.
enum Payloads {
    PerRecord,
    /// The unfilled rest of each partition's current allocation.
    Shared(Arenas),
}

#[derive(Default)]
struct Arenas {
    open: Vec<(i32, BytesMut)>,
    /// Where the last record's partition is in `open`: librdkafka hands
    /// over a partition's records in runs, so most lookups end here.
    last: usize,
}

impl Payloads {
    fn copy(&mut self, partition: i32, payload: &[u8]) -> Bytes {
        let Payloads::Shared(arenas) = self else {
            return Bytes::copy_from_slice(payload);
        };
        // A value of a quarter of an arena or more is allocated alone: the
        // arena's rest would mostly go unused.
        if payload.len() >= ARENA_BYTES / 4 {
            return Bytes::copy_from_slice(payload);
        }
        if arenas.open.get(arenas.last).is_none_or(|(p, _)| *p != partition) {
            arenas.last = match arenas.open.iter().position(|(p, _)| *p == partition) {
                Some(at) => at,
                None => {
                    arenas.open.push((partition, BytesMut::new()));
                    arenas.open.len() - 1
                }
            };
        }
        let arena = &mut arenas.open[arenas.last].1;
        if arena.capacity() < payload.len() {
            *arena = BytesMut::with_capacity(ARENA_BYTES);
        }
        arena.extend_from_slice(payload);
        arena.split().freeze()
    }
}

#[async_trait]
impl RecordSource for KafkaSource {
    async fn recv(&mut self, out: &mut Vec<Record>, max_bytes: usize, now_ms: i64) -> Result<bool, SourceError> {
        let rebalances = self.consumer.context().rebalances.load(Ordering::SeqCst);
        // One stream for the batch: each `StreamConsumer::recv` registers
        // and unregisters a waker under a lock, per record.
        let mut stream = self.consumer.stream();
        let mut bytes = 0;
        // Cancelled (a `select!` elsewhere won), nothing was taken: the only
        // await is before the first record.
        let mut next = stream.next().await;
        while let Some(message) = next.take() {
            match message {
                Ok(message) => {
                    let payload = message.payload().unwrap_or_default();
                    bytes += payload.len();
                    out.push(Record {
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis().unwrap_or(now_ms),
                        value: self.payloads.copy(message.partition(), payload),
                    });
                }
                Err(e) => self.check(e)?,
            }
            if out.len() >= RECV_BATCH
                || bytes >= max_bytes
                || self.consumer.context().rebalances.load(Ordering::SeqCst) != rebalances
            {
                break;
            }
            next = stream.next().now_or_never().flatten();
        }
        Ok(true)
    }

    fn take_revoked(&mut self) -> Vec<i32> {
        let revoked = self.consumer.context().take_revoked();
        for p in &revoked {
            self.paused_partitions.remove(p);
        }
        revoked
    }

    fn set_paused(&mut self, paused: bool) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        if paused {
            self.pause_assigned();
        } else {
            let all = std::mem::take(&mut self.paused_partitions);
            if let Err(e) = self.consumer.resume(&self.partition_list(all)) {
                warn!(error = %e, "cannot resume partitions");
            }
        }
    }

    fn maintain(&mut self) -> bool {
        if self.paused {
            self.pause_assigned();
        }
        if self.settings.membership == Membership::Assigned || self.consumer.context().assigned_count() > 0 {
            self.unassigned_since = Instant::now();
            return false;
        }
        if self.unassigned_since.elapsed() < ASSIGNMENT_TIMEOUT {
            return false;
        }
        self.unassigned_since = Instant::now();
        self.rejoin()
    }

    fn finished(&self) -> bool {
        let Some(ends) = &self.end_offsets else { return false };
        let positions = self.positions();
        !positions.is_empty() && positions.iter().all(|(p, at)| ends.get(p).is_none_or(|end| at >= end))
    }

    fn store(&mut self, commits: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in commits {
            let _ = tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset));
        }
        // Fails only for partitions no longer assigned, whose landings do not
        // count any more.
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            debug!(error = %e, "cannot store offsets");
        }
        // Commit what is stored now rather than at the next auto-commit
        // (every 250 ms, still the backstop): a landing counts as soon as
        // it lands, which is when `status`, lag metrics and a restart see
        // it. Only the current assignment's stored offsets are sent, so a
        // partition lost in a rebalance is never committed from here.
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
            debug!(error = %e, "cannot commit stored offsets now; the auto-commit sends them");
        }
    }

    /// The consumer's own positions: they move past control records
    /// (transaction markers) no message shows, and exist before the first
    /// record of a partition arrives.
    fn owned_partitions(&self) -> usize {
        self.consumer.context().assigned_count()
    }

    fn positions(&self) -> BTreeMap<i32, i64> {
        let context = self.consumer.context();
        let owned = context.assigned_partitions();
        let mut out: BTreeMap<i32, i64> = context.start_positions();
        if let Ok(positions) = self.consumer.position() {
            for element in positions.elements() {
                if let (Offset::Offset(o), true) = (element.offset(), owned.contains(&element.partition())) {
                    let at = out.entry(element.partition()).or_insert(o);
                    *at = (*at).max(o);
                }
            }
        }
        out
    }

    async fn close(self, committed: BTreeMap<i32, i64>) {
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in committed {
            let _ = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset));
        }
        let consumer = self.consumer;
        tokio::task::spawn_blocking(move || {
            if tpl.count() > 0 {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    warn!(error = %e, "final commit failed; delivered records will be re-read on the next start");
                }
            }
            drop(consumer);
        })
        .await
        .expect("final commit does not panic");
    }
}

/// Records from memory, for the engine benchmark and tests: `total` records
/// spread round-robin over `partitions`, their values cycling through
/// `values`. It keeps what delivery stored, so a run can check that every
/// record was committed.
#[derive(Debug)]
pub struct MemorySource {
    values: Vec<Bytes>,
    partitions: i32,
    total: u64,
    next: u64,
    timestamp_ms: i64,
    paused: bool,
    stored: std::sync::Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl MemorySource {
    pub fn new(values: Vec<Bytes>, partitions: i32, total: u64, timestamp_ms: i64) -> Self {
        assert!(!values.is_empty() && partitions > 0, "a memory source needs values and partitions");
        MemorySource { values, partitions, total, next: 0, timestamp_ms, paused: false, stored: Default::default() }
    }

    /// Offsets delivery stored per partition, as they are stored.
    pub fn stored(&self) -> std::sync::Arc<Mutex<BTreeMap<i32, i64>>> {
        self.stored.clone()
    }
}

#[async_trait]
impl RecordSource for MemorySource {
    async fn recv(&mut self, out: &mut Vec<Record>, max_bytes: usize, _now_ms: i64) -> Result<bool, SourceError> {
        if self.paused {
            // Like a paused consumer: nothing until resumed.
            std::future::pending::<()>().await;
        }
        if self.next == self.total {
            return Ok(false);
        }
        let mut bytes = 0;
        while self.next < self.total && out.len() < RECV_BATCH && (bytes < max_bytes || out.is_empty()) {
            let n = self.next;
            let value = self.values[(n % self.values.len() as u64) as usize].clone();
            bytes += value.len();
            let partitions = self.partitions as u64;
            out.push(Record {
                partition: (n % partitions) as i32,
                offset: (n / partitions) as i64,
                timestamp_ms: self.timestamp_ms,
                value,
            });
            self.next += 1;
        }
        Ok(true)
    }

    fn take_revoked(&mut self) -> Vec<i32> {
        Vec::new()
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    fn maintain(&mut self) -> bool {
        false
    }

    fn store(&mut self, commits: &[(i32, i64)]) {
        self.stored.lock().expect("stored lock").extend(commits.iter().copied());
    }

    fn positions(&self) -> BTreeMap<i32, i64> {
        let partitions = self.partitions as u64;
        (0..self.partitions).map(|p| (p, self.next.saturating_sub(p as u64).div_ceil(partitions) as i64)).collect()
    }

    async fn close(self, committed: BTreeMap<i32, i64>) {
        self.stored.lock().expect("stored lock").extend(committed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The span of memory a value occupies.
    fn span(value: &Bytes) -> std::ops::Range<usize> {
        let start = value.as_ptr() as usize;
        start..start + value.len()
    }

    #[test]
    fn shared_allocations_hold_one_partitions_records_in_order_and_large_values_alone() {
        let mut payloads = Payloads::Shared(Arenas::default());
        let record = |i: usize| format!("{{\"partition\":{},\"n\":{i}}}", i % 2).into_bytes();
        // Enough records of two interleaved partitions to fill several arenas.
        let values: Vec<(i32, Bytes)> =
            (0..4 * ARENA_BYTES / 20).map(|i| ((i % 2) as i32, payloads.copy((i % 2) as i32, &record(i)))).collect();
        for (i, (_, value)) in values.iter().enumerate() {
            assert_eq!(value[..], record(i)[..], "record {i} reads back as written");
        }
        // A partition's records follow each other in memory until its
        // arena is full; no record lies right after another partition's.
        let (mut contiguous, mut fresh) = (0, 0);
        for partition in 0..2 {
            let mine: Vec<&Bytes> = values.iter().filter(|(p, _)| *p == partition).map(|(_, v)| v).collect();
            for pair in mine.windows(2) {
                if span(pair[1]).start == span(pair[0]).end {
                    contiguous += 1;
                } else {
                    fresh += 1;
                }
            }
        }
        let ends: HashSet<usize> = values.iter().filter(|(p, _)| *p == 0).map(|(_, v)| span(v).end).collect();
        assert!(
            values.iter().filter(|(p, _)| *p == 1).all(|(_, v)| !ends.contains(&span(v).start)),
            "partitions never share an arena"
        );
        assert!(fresh >= 4, "every arena of {ARENA_BYTES} bytes fills and a new one starts ({fresh} starts)");
        assert!(contiguous > 10 * fresh, "most records share an arena ({contiguous} contiguous, {fresh} starts)");

        let large = vec![7u8; ARENA_BYTES / 4];
        let alone = payloads.copy(0, &large);
        let after = payloads.copy(0, b"small");
        assert_eq!(alone[..], large[..]);
        assert_ne!(span(&after).start, span(&alone).end, "a large value takes no arena space");
    }

    #[test]
    fn per_record_payloads_share_nothing() {
        let mut payloads = Payloads::PerRecord;
        let (a, b) = (payloads.copy(0, b"first"), payloads.copy(0, b"second"));
        assert_eq!((&a[..], &b[..]), (&b"first"[..], &b"second"[..]));
        assert!(a.is_unique() && b.is_unique(), "each record owns its allocation");
    }
}
