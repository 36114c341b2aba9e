//! What tests and the sandbox do around the pipeline: create the topic and the
//! bucket, read back what landed, measure consumer lag.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::Client;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{KafkaConnection, KafkaContext};

type KafkaConsumer = BaseConsumer<KafkaContext>;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot create topic {topic:?} on {bootstrap}: {detail}")]
    Topic { topic: String, bootstrap: String, detail: String },
    #[error("cannot create bucket {bucket:?}: {detail}")]
    Bucket { bucket: String, detail: String },
    #[error("cannot read s3://{bucket}/{key}: {detail}")]
    Read { bucket: String, key: String, detail: String },
    #[error("cannot query consumer group {group:?} on {bootstrap}: {detail}")]
    Lag { group: String, bootstrap: String, detail: String },
}

/// Deletes topics (missing ones are fine).
pub async fn delete_topics(kafka: &KafkaConnection, topics: &[&str]) -> Result<(), HarnessError> {
    let fail = |detail: String| HarnessError::Topic {
        topic: topics.join(","),
        bootstrap: kafka.bootstrap().to_owned(),
        detail: format!("cannot delete: {detail}"),
    };
    let admin: AdminClient<KafkaContext> = kafka.create(&kafka.config()).map_err(|e| fail(e.to_string()))?;
    let results = admin
        .delete_topics(topics, &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .map_err(|e| fail(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(fail(format!("{topic}: {code}"))),
        }
    }
    Ok(())
}

/// Creates a topic (an existing one is fine) and waits until its metadata
/// shows every partition.
pub async fn create_topic(kafka: &KafkaConnection, topic: &str, partitions: i32) -> Result<(), HarnessError> {
    let fail = |detail: String| HarnessError::Topic {
        topic: topic.to_owned(),
        bootstrap: kafka.bootstrap().to_owned(),
        detail,
    };
    let admin: AdminClient<KafkaContext> = kafka.create(&kafka.config()).map_err(|e| fail(e.to_string()))?;
    // -1: the cluster's default replication (KIP-464): 1 on a local broker, 3 on
    // MSK, where 1 would fail acks=all producers under min.insync.replicas=2.
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let results = admin
        .create_topics(&[new_topic], &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .map_err(|e| fail(e.to_string()))?;
    // A topic that exists is used as it is: whatever its partition count, and
    // also where this identity may not create topics (a team's MSK).
    let mut existing = false;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existing = true,
            Err((
                _,
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::ClusterAuthorizationFailed),
            )) => {
                let metadata = admin.inner().fetch_metadata(Some(topic), TIMEOUT).map_err(|e| fail(e.to_string()))?;
                if !metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none()) {
                    return Err(fail(format!("{code}: the topic does not exist and this identity may not create it")));
                }
                existing = true;
            }
            Err((_, code)) => return Err(fail(code.to_string())),
        }
    }
    let wanted = if existing { 1 } else { partitions };
    let started = Instant::now();
    loop {
        let metadata = admin.inner().fetch_metadata(Some(topic), TIMEOUT).map_err(|e| fail(e.to_string()))?;
        let ready = metadata.topics().iter().any(|t| t.name() == topic && t.partitions().len() as i32 >= wanted);
        if ready {
            return Ok(());
        }
        if started.elapsed() > TIMEOUT {
            return Err(fail(format!("metadata does not show {partitions} partitions after {TIMEOUT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a bucket; one that already exists and is ours is fine.
pub async fn create_bucket(client: &Client, bucket: &str) -> Result<(), HarnessError> {
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let code =
                e.as_service_error().and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s)).unwrap_or_default();
            if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
                Ok(())
            } else {
                Err(HarnessError::Bucket { bucket: bucket.to_owned(), detail: DisplayErrorContext(&e).to_string() })
            }
        }
    }
}

/// An object as stored, with the headers Firehose sets.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub key: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// `x-amz-server-side-encryption`.
    pub server_side_encryption: Option<String>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
}

/// Every key in the bucket, sorted.
pub async fn list_keys(client: &Client, bucket: &str) -> Result<Vec<String>, HarnessError> {
    list_keys_under(client, bucket, "").await
}

/// Every key under `prefix`, sorted.
pub async fn list_keys_under(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, HarnessError> {
    let mut keys = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| HarnessError::Read {
            bucket: bucket.to_owned(),
            key: String::new(),
            detail: DisplayErrorContext(&e).to_string(),
        })?;
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
    }
    keys.sort();
    Ok(keys)
}

/// One object with its headers.
pub async fn read_object(client: &Client, bucket: &str, key: &str) -> Result<StoredObject, HarnessError> {
    let fail = |detail: String| HarnessError::Read { bucket: bucket.to_owned(), key: key.to_owned(), detail };
    let got = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| fail(DisplayErrorContext(&e).to_string()))?;
    let content_type = got.content_type().map(str::to_owned);
    let content_encoding = got.content_encoding().map(str::to_owned);
    let server_side_encryption = got.server_side_encryption().map(|s| s.as_str().to_owned());
    let sse_kms_key_id = got.ssekms_key_id().map(str::to_owned);
    let body = got.body.collect().await.map_err(|e| fail(e.to_string()))?.into_bytes();
    Ok(StoredObject {
        key: key.to_owned(),
        body,
        content_type,
        content_encoding,
        server_side_encryption,
        sse_kms_key_id,
    })
}

/// Every object in the bucket, sorted by key.
pub async fn read_bucket(client: &Client, bucket: &str) -> Result<Vec<StoredObject>, HarnessError> {
    read_under(client, bucket, "").await
}

/// Every object under `prefix`, in key order.
pub async fn read_under(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<StoredObject>, HarnessError> {
    let mut objects = Vec::new();
    for key in list_keys_under(client, bucket, prefix).await? {
        objects.push(read_object(client, bucket, &key).await?);
    }
    Ok(objects)
}

/// Deletes every object under `prefix` (a run's objects in a shared bucket).
pub async fn delete_under(client: &Client, bucket: &str, prefix: &str) -> Result<usize, HarnessError> {
    let keys = list_keys_under(client, bucket, prefix).await?;
    for key in &keys {
        client.delete_object().bucket(bucket).key(key).send().await.map_err(|e| HarnessError::Read {
            bucket: bucket.to_owned(),
            key: key.clone(),
            detail: format!("cannot delete: {}", DisplayErrorContext(&e)),
        })?;
    }
    Ok(keys.len())
}

/// Splits an object body into JSON records. Firehose concatenates records
/// with no delimiter unless `AppendDelimiterToRecord` is on, so this reads a
/// stream of JSON values, with or without whitespace between them.
pub fn json_records(body: &[u8]) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>().collect()
}

/// A consumer for group queries; it never joins the group.
fn group_client(
    kafka: &KafkaConnection,
    group: &str,
) -> Result<(KafkaConsumer, impl Fn(KafkaError) -> HarnessError), HarnessError> {
    let (b, g) = (kafka.bootstrap().to_owned(), group.to_owned());
    let fail = move |e: KafkaError| HarnessError::Lag { group: g.clone(), bootstrap: b.clone(), detail: e.to_string() };
    let consumer =
        kafka.create(kafka.config().set("group.id", group).set("enable.auto.commit", "false")).map_err(&fail)?;
    Ok((consumer, fail))
}

/// The group's committed offset per partition (`None`: never committed).
/// Blocking (broker round trips); call from a blocking task.
pub fn committed_offsets(
    kafka: &KafkaConnection,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, Option<i64>>, HarnessError> {
    let (consumer, fail) = group_client(kafka, group)?;
    committed_with(&consumer, topic).map_err(fail)
}

fn committed_with(consumer: &KafkaConsumer, topic: &str) -> Result<BTreeMap<i32, Option<i64>>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| (e.partition(), if let Offset::Offset(o) = e.offset() { Some(o) } else { None }))
        .collect())
}

fn metadata_client(kafka: &KafkaConnection) -> Result<KafkaConsumer, HarnessError> {
    kafka.create(&kafka.config()).map_err(|e| HarnessError::Topic {
        topic: String::new(),
        bootstrap: kafka.bootstrap().to_owned(),
        detail: e.to_string(),
    })
}

/// Every topic on the broker. Blocking; call from a blocking task.
pub fn list_topics(kafka: &KafkaConnection) -> Result<Vec<String>, HarnessError> {
    list_topics_within(kafka, TIMEOUT)
}

/// [`list_topics`], waiting at most `timeout` for the broker: for periodic
/// checks, whose call in flight would otherwise hold up the process's exit
/// (a runtime waits for its blocking tasks) for the full timeout once the
/// broker is gone.
pub fn list_topics_within(kafka: &KafkaConnection, timeout: Duration) -> Result<Vec<String>, HarnessError> {
    Ok(cluster_metadata(kafka, timeout)?.topics().iter().map(|t| t.name().to_owned()).collect())
}

/// The whole cluster's metadata. Blocking.
fn cluster_metadata(kafka: &KafkaConnection, timeout: Duration) -> Result<rdkafka::metadata::Metadata, HarnessError> {
    metadata_client(kafka)?.fetch_metadata(None, timeout).map_err(|e| HarnessError::Topic {
        topic: String::new(),
        bootstrap: kafka.bootstrap().to_owned(),
        detail: e.to_string(),
    })
}

/// The `host:port` of every broker the cluster advertises. Blocking.
pub fn broker_addresses(kafka: &KafkaConnection) -> Result<Vec<String>, HarnessError> {
    Ok(cluster_metadata(kafka, TIMEOUT)?.brokers().iter().map(|b| format!("{}:{}", b.host(), b.port())).collect())
}

/// The end offset (high watermark) of every partition of `topic`: where the
/// next record written will go. Blocking; call from a blocking task.
pub fn end_offsets(kafka: &KafkaConnection, topic: &str) -> Result<BTreeMap<i32, i64>, HarnessError> {
    Ok(watermarks(kafka, topic)?.into_iter().map(|(p, (_, high))| (p, high)).collect())
}

/// Records held in `topic` across its partitions. Blocking.
pub fn topic_records(kafka: &KafkaConnection, topic: &str) -> Result<i64, HarnessError> {
    Ok(watermarks(kafka, topic)?.values().map(|(low, high)| (high - low).max(0)).sum())
}

fn watermarks(kafka: &KafkaConnection, topic: &str) -> Result<BTreeMap<i32, (i64, i64)>, HarnessError> {
    let fail = |detail: String| HarnessError::Topic {
        topic: topic.to_owned(),
        bootstrap: kafka.bootstrap().to_owned(),
        detail,
    };
    let consumer = metadata_client(kafka)?;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(|e| fail(e.to_string()))?;
    let mut out = BTreeMap::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let marks = consumer.fetch_watermarks(topic, p.id(), TIMEOUT).map_err(|e| fail(e.to_string()))?;
            out.insert(p.id(), marks);
        }
    }
    Ok(out)
}

/// The values of every record of `topic` from `from` (per partition; absent
/// partitions from their start) up to `to` (exclusive), in offset order per
/// partition. Blocking; call from a blocking task.
pub fn read_range(
    kafka: &KafkaConnection,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    to: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<Vec<Bytes>, HarnessError> {
    use rdkafka::Message;
    let fail = |detail: String| HarnessError::Topic {
        topic: topic.to_owned(),
        bootstrap: kafka.bootstrap().to_owned(),
        detail,
    };
    let consumer: KafkaConsumer = kafka
        .create(
            kafka
                .config()
                .set("group.id", "streamlab-checker")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10"),
        )
        .map_err(|e| fail(e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0usize;
    for (partition, end) in to {
        let start = from.get(partition).map_or(Offset::Beginning, |o| Offset::Offset(*o));
        if from.get(partition).is_some_and(|o| o >= end) || *end == 0 {
            continue;
        }
        tpl.add_partition_offset(topic, *partition, start).map_err(|e| fail(e.to_string()))?;
        remaining += 1;
    }
    if remaining == 0 {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl).map_err(|e| fail(e.to_string()))?;
    let mut done = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let started = Instant::now();
    while done.len() < remaining {
        if started.elapsed() > timeout {
            return Err(fail(format!("could not read the topic to its end within {timeout:?}")));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            // Transaction markers take offsets no message shows: the
            // consumer's position still moves past them.
            if let Ok(positions) = consumer.position() {
                for e in positions.elements() {
                    if let (Offset::Offset(o), Some(end)) = (e.offset(), to.get(&e.partition())) {
                        if o >= *end {
                            done.insert(e.partition());
                        }
                    }
                }
            }
            continue;
        };
        let message = message.map_err(|e| fail(e.to_string()))?;
        let end = to.get(&message.partition()).copied().unwrap_or(0);
        if message.offset() < end {
            out.push(Bytes::copy_from_slice(message.payload().unwrap_or_default()));
        }
        if message.offset() + 1 >= end {
            done.insert(message.partition());
        }
    }
    Ok(out)
}

/// `KafkaOffsetLag`: records in the topic the group has not committed past.
/// Blocking (broker round trips); call from a blocking task.
pub fn consumer_lag(kafka: &KafkaConnection, group: &str, topic: &str) -> Result<i64, HarnessError> {
    let (consumer, fail) = group_client(kafka, group)?;
    let mut lag = 0;
    for (partition, committed) in committed_with(&consumer, topic).map_err(&fail)? {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT).map_err(&fail)?;
        lag += (high - committed.unwrap_or(low)).max(0);
    }
    Ok(lag)
}

/// Where each event is in the topic: event id -> (partition, offset, record
/// timestamp), read back from the earliest offset until `expected` events are
/// seen. Blocking; call from a blocking task.
pub fn read_topic(
    kafka: &KafkaConnection,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, (i32, i64, i64)>, HarnessError> {
    use rdkafka::Message;
    let fail = |detail: String| HarnessError::Topic {
        topic: topic.to_owned(),
        bootstrap: kafka.bootstrap().to_owned(),
        detail,
    };
    let consumer: KafkaConsumer = kafka
        .create(kafka.config().set("group.id", "streamlab-reader").set("fetch.wait.max.ms", "10"))
        .map_err(|e| fail(e.to_string()))?;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(|e| fail(e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).map_err(|e| fail(e.to_string()))?;
        }
    }
    consumer.assign(&tpl).map_err(|e| fail(e.to_string()))?;
    let mut out = std::collections::HashMap::with_capacity(expected);
    let started = Instant::now();
    while out.len() < expected {
        if started.elapsed() > timeout {
            return Err(fail(format!("read back {} of {expected} events within {timeout:?}", out.len())));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.map_err(|e| fail(e.to_string()))?;
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(message.payload().unwrap_or_default()) else {
            continue;
        };
        if let Some(id) = event["event_id"].as_str() {
            let ts = message.timestamp().to_millis().unwrap_or_default();
            out.insert(id.to_owned(), (message.partition(), message.offset(), ts));
        }
    }
    Ok(out)
}

/// A `streamlab deliver` child process: delivery exactly as users run it, so
/// it can be SIGKILLed. Credentials and region come from `s3`, through the
/// environment as the AWS chain reads them. Killed when dropped.
pub struct DeliverProcess {
    child: std::process::Child,
}

impl DeliverProcess {
    /// Runs `binary deliver ARGS...`; `output` receives stdout and stderr.
    pub fn spawn(
        binary: &std::path::Path,
        args: &[String],
        s3: &crate::delivery::sink::S3Settings,
        output: std::process::Stdio,
    ) -> std::io::Result<Self> {
        let mut command = std::process::Command::new(binary);
        command
            .arg("deliver")
            .args(args)
            .env("AWS_REGION", s3.region.as_deref().unwrap_or("us-east-1"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("STREAMLAB_LOG", "streamlab=info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(output);
        if let Some(c) = &s3.credentials {
            command.env("AWS_ACCESS_KEY_ID", &c.access_key_id).env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
        }
        Ok(Self { child: command.spawn()? })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for it to exit on its own (`deliver --exit-at-end`).
    pub fn wait_with_usage(mut self) -> std::io::Result<(std::process::ExitStatus, Usage)> {
        wait_with_usage(&mut self.child)
    }

    /// The crash: no flush, no commit.
    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The clean stop: every buffer delivered and committed.
    pub fn sigterm(mut self) -> std::io::Result<std::process::ExitStatus> {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()
    }
}

impl Drop for DeliverProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a child process used, as the kernel counted it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// Peak resident set size.
    pub peak_rss_bytes: u64,
}

/// Waits for `child` and returns its exit status with its resource usage
/// (`wait4`), which `std` does not expose.
pub fn wait_with_usage(child: &mut std::process::Child) -> std::io::Result<(std::process::ExitStatus, Usage)> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let usage = Usage {
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // Linux reports kilobytes.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
    };
    Ok((std::process::ExitStatus::from_raw(status), usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_with_usage_reports_what_the_child_used() {
        // A child that allocates and touches 64 MiB, then spins briefly.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "b = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nsum(range(3_000_000))",
            ])
            .spawn()
            .unwrap();
        let (status, usage) = wait_with_usage(&mut child).unwrap();
        assert!(status.success());
        assert!(usage.peak_rss_bytes >= 64 * 1024 * 1024, "{usage:?}");
        assert!(usage.cpu_seconds > 0.0, "{usage:?}");
    }

    #[test]
    fn json_records_reads_concatenated_and_delimited_bodies() {
        assert_eq!(json_records(br#"{"a":1}{"b":2}"#).unwrap().len(), 2);
        assert_eq!(json_records(b"{\"a\":1}\n{\"b\":2}\n").unwrap().len(), 2);
        assert!(json_records(br#"{"a":1}{"b""#).is_err());
    }
}
