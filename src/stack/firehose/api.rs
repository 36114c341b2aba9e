//! The twelve Firehose operations against a stack. The stack is the truth
//! for which streams exist, their state and version; this layer keeps what
//! only the API knows (tags, timestamps, creations still under way or
//! failed) and speaks AWS's shapes, limits and error types.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tracing::warn;

use super::describe;
use super::store::{Store, StoreError, Stored};
use super::ApiError;
use crate::spec::{self, StreamSpec};
use crate::stack::intake::PutOutcome;
use crate::stack::{Stack, StackError, StreamInfo, StreamLifecycle};

/// Streams per region (Firehose's default quota).
pub const MAX_STREAMS: usize = 50;
/// Tags per stream.
pub const MAX_TAGS: usize = 50;
/// Records per `PutRecordBatch`.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Bytes of one record's data (before base64).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Bytes of one `PutRecordBatch`'s data.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What the API knows of a stream beyond the stack.
#[derive(Debug, Clone)]
struct Entry {
    spec: StreamSpec,
    created_ms: i64,
    updated_ms: Option<i64>,
    tags: Vec<(String, String)>,
    /// `Some` while the stack is adding it; `Some(Err)` once that failed
    /// (`CREATING_FAILED`).
    creation: Option<Result<(), String>>,
    /// Server-side encryption of a DirectPut stream.
    encryption: Encryption,
    /// Created through the API (not given with `--spec`).
    api_created: bool,
}

impl Entry {
    /// What a kept work dir keeps of it; nothing for a failed creation.
    fn stored(&self) -> Option<Stored> {
        if matches!(self.creation, Some(Err(_))) {
            return None;
        }
        let done = match self.encryption.status {
            "ENABLED" | "ENABLING" => "ENABLED",
            _ => "DISABLED",
        };
        Some(Stored {
            request: self.spec.request().clone(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            tags: self.tags.clone(),
            encryption_status: done.to_owned(),
            encryption_input: self.encryption.input.clone(),
            api_created: self.api_created,
        })
    }

    /// Takes what was kept of the stream beyond its spec.
    fn restore(&mut self, kept: &Stored) {
        self.created_ms = kept.created_ms;
        self.updated_ms = kept.updated_ms;
        self.tags.clone_from(&kept.tags);
        self.encryption = Encryption::kept(kept);
    }
}

/// Writes what the API knows to the work dir's store, if there is one.
fn persist(store: Option<&Store>, entries: &BTreeMap<String, Entry>) {
    let Some(store) = store else { return };
    let stored = entries.iter().filter_map(|(name, e)| Some((name.clone(), e.stored()?))).collect();
    if let Err(e) = store.save(&stored) {
        warn!(error = %e, "cannot keep the Firehose streams in the work dir; a restart on it will not bring API-created streams back");
    }
}

/// `DeliveryStreamEncryptionConfiguration` of a stream.
#[derive(Debug, Clone, Default)]
struct Encryption {
    /// `ENABLED`, `ENABLING`, `DISABLED`, `DISABLING`.
    status: &'static str,
    /// The `DeliveryStreamEncryptionConfigurationInput` last asked for.
    input: Option<Value>,
}

impl Encryption {
    /// As the create request asks (ENABLED when the stream is).
    fn of(request: &Value) -> Self {
        match request.get("DeliveryStreamEncryptionConfigurationInput").filter(|v| !v.is_null()) {
            Some(input) => Encryption { status: "ENABLED", input: Some(input.clone()) },
            None => Encryption { status: "DISABLED", input: None },
        }
    }

    fn kept(kept: &Stored) -> Self {
        let status = if kept.encryption_status == "ENABLED" { "ENABLED" } else { "DISABLED" };
        Encryption { status, input: kept.encryption_input.clone() }
    }

    fn describe(&self) -> Value {
        let mut out = json!({ "Status": self.status });
        if let Some(input) = &self.input {
            for key in ["KeyARN", "KeyType"] {
                if let Some(v) = input.get(key) {
                    out[key] = v.clone();
                }
            }
        }
        out
    }
}

/// How long a change of encryption shows ENABLING or DISABLING before it
/// is done (AWS takes seconds; a poller sees the step either way).
const ENCRYPTION_CHANGE: std::time::Duration = std::time::Duration::from_millis(300);

/// The Firehose API of one stack.
pub struct Firehose {
    stack: Arc<Stack>,
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    /// Where a kept work dir keeps the entries.
    store: Option<Store>,
}

impl Firehose {
    /// The API over `stack`; its streams so far (from `--spec`) are ACTIVE,
    /// version 1, created now.
    pub fn new(stack: Arc<Stack>) -> Self {
        let now = stack.clock().now_millis();
        let entries = stack
            .streams()
            .into_iter()
            .map(|info| {
                let entry = Entry {
                    spec: info.spec.clone(),
                    created_ms: now,
                    updated_ms: None,
                    tags: tags_of(info.spec.request()),
                    creation: None,
                    encryption: Encryption::of(info.spec.request()),
                    api_created: false,
                };
                (info.spec.name().to_owned(), entry)
            })
            .collect();
        Firehose { stack, entries: Arc::new(Mutex::new(entries)), store: None }
    }

    /// The API over `stack`, with the streams a previous stack on the same
    /// `--work-dir` created through the API created again (their versions
    /// and offsets are the broker's), and what the API knew of the others
    /// (tags, timestamps, encryption). Returns once every restored stream
    /// is ACTIVE or has failed (`CREATING_FAILED`, with the reason).
    pub async fn open(stack: Arc<Stack>) -> Result<Self, StoreError> {
        let mut firehose = Self::new(stack.clone());
        let Some(dir) = stack.kept_dir() else { return Ok(firehose) };
        let store = Store::in_dir(dir);
        let kept = store.load()?;
        firehose.store = Some(store);
        for (name, kept) in kept {
            if let Some(entry) = firehose.entries().get_mut(&name) {
                entry.restore(&kept);
                continue;
            }
            if !kept.api_created {
                continue; // a --spec stream not given this time
            }
            let spec = match spec::validate(&kept.request) {
                Ok(spec) => spec,
                Err(violations) => {
                    let reasons = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                    warn!(stream = %name, %reasons, "a stream kept in the work dir is no longer valid; it is not created again");
                    continue;
                }
            };
            let outcome = match stack.prepare_stream(spec.clone()) {
                Ok(plan) => stack.add_prepared(plan).await,
                Err(e) => Err(e),
            };
            let creation = match outcome {
                Ok(()) => {
                    tracing::info!(stream = %name, "stream created through the API restored from the work dir");
                    None
                }
                Err(e) => {
                    warn!(stream = %name, error = %e, "cannot create again a stream kept in the work dir");
                    Some(Err(e.to_string()))
                }
            };
            let mut entry = Entry {
                spec,
                created_ms: kept.created_ms,
                updated_ms: None,
                tags: Vec::new(),
                creation,
                encryption: Encryption::default(),
                api_created: true,
            };
            entry.restore(&kept);
            firehose.entries().insert(name, entry);
        }
        firehose.persist();
        Ok(firehose)
    }

    /// Keeps what the API knows in the work dir (a kept one only).
    fn persist(&self) {
        persist(self.store.as_ref(), &self.entries());
    }

    pub fn stack(&self) -> &Arc<Stack> {
        &self.stack
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().expect("entries lock")
    }

    /// Runs one operation on its JSON request.
    pub async fn call(&self, operation: &str, body: &Value) -> Result<Value, ApiError> {
        match operation {
            "CreateDeliveryStream" => self.create(body).await,
            "DeleteDeliveryStream" => self.delete(body).await,
            "DescribeDeliveryStream" => self.describe(body),
            "ListDeliveryStreams" => self.list(body),
            "UpdateDestination" => self.update(body).await,
            "ListTagsForDeliveryStream" => self.list_tags(body),
            "TagDeliveryStream" => self.tag(body),
            "UntagDeliveryStream" => self.untag(body),
            "PutRecord" => self.put_record(body).await,
            "PutRecordBatch" => self.put_record_batch(body).await,
            "StartDeliveryStreamEncryption" | "StopDeliveryStreamEncryption" => self.encryption(operation, body),
            other => Err(ApiError::new(
                "UnknownOperationException",
                format!("{other} is not a Firehose operation (Firehose_20150804 has 12)"),
            )),
        }
    }

    /// The stream's current view: the stack's when it runs it, else the
    /// API's (a creation under way or failed).
    fn view(&self, name: &str) -> Result<(Entry, Option<StreamInfo>), ApiError> {
        let info = self.stack.streams().into_iter().find(|s| s.spec.name() == name);
        let entry = self.entries().get(name).cloned();
        match (entry, info) {
            (Some(entry), info) => Ok((entry, info)),
            (None, Some(info)) => {
                let entry = Entry {
                    spec: info.spec.clone(),
                    created_ms: self.stack.clock().now_millis(),
                    updated_ms: None,
                    tags: tags_of(info.spec.request()),
                    creation: None,
                    encryption: Encryption::of(info.spec.request()),
                    api_created: false,
                };
                Ok((entry, Some(info)))
            }
            (None, None) => Err(not_found(name)),
        }
    }

    async fn create(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let tags = parse_tags(body.get("Tags"), "tags")?;
        let spec = spec::validate(body).map_err(|violations| {
            ApiError::invalid_argument(violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        })?;
        let (_, account) = spec.region_and_account();
        let exists = self.entries().contains_key(&name) || self.stack.stream_state(&name).is_ok();
        if exists {
            return Err(ApiError::new(
                "ResourceInUseException",
                format!("Firehose {name} under accountId {account} already exists"),
            ));
        }
        let count = self.names().len();
        if count >= MAX_STREAMS {
            return Err(ApiError::new(
                "LimitExceededException",
                format!(
                    "You have already consumed your firehose quota of {MAX_STREAMS} hoses. Firehose names: {:?}",
                    self.names()
                ),
            ));
        }
        let plan = self.stack.prepare_stream(spec.clone()).map_err(|e| ApiError::invalid_argument(e.to_string()))?;
        let arn = spec.delivery_stream_arn();
        let entry = Entry {
            spec: spec.clone(),
            created_ms: self.stack.clock().now_millis(),
            updated_ms: None,
            tags,
            creation: Some(Ok(())),
            encryption: Encryption::of(spec.request()),
            api_created: true,
        };
        self.entries().insert(name.clone(), entry);
        self.persist();
        let (stack, entries, store) = (self.stack.clone(), self.entries.clone(), self.store.clone());
        tokio::spawn(async move {
            let outcome = stack.add_prepared(plan).await;
            let mut entries = entries.lock().expect("entries lock");
            if let Some(entry) = entries.get_mut(&name) {
                entry.creation = match outcome {
                    Ok(()) => None,
                    Err(e) => {
                        warn!(stream = %name, error = %e, "CreateDeliveryStream failed");
                        Some(Err(e.to_string()))
                    }
                };
            }
            persist(store.as_ref(), &entries);
        });
        Ok(json!({ "DeliveryStreamARN": arn }))
    }

    async fn delete(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let (entry, info) = self.view(&name)?;
        match (&entry.creation, info.as_ref().map(|i| i.lifecycle)) {
            (Some(Err(_)), _) => {
                self.entries().remove(&name);
                self.persist();
                return Ok(json!({}));
            }
            (Some(Ok(())), _) | (_, Some(StreamLifecycle::Creating)) => {
                return Err(ApiError::new(
                    "ResourceInUseException",
                    format!("Firehose {name} is CREATING; it can be deleted once it is ACTIVE"),
                ))
            }
            (_, Some(StreamLifecycle::Deleting)) => return Ok(json!({})),
            _ => {}
        }
        let (stack, entries, store) = (self.stack.clone(), self.entries.clone(), self.store.clone());
        // DELETING while the delivery delivers what it holds; then gone.
        let removal = tokio::spawn(async move {
            let outcome = stack.remove_stream(&name).await;
            let mut entries = entries.lock().expect("entries lock");
            entries.remove(&name);
            persist(store.as_ref(), &entries);
            outcome
        });
        // Answer once the stream shows DELETING, as AWS does.
        for _ in 0..100 {
            if removal.is_finished()
                || self.stack.stream_state(entry.spec.name()).is_ok_and(|s| s == StreamLifecycle::Deleting)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(json!({}))
    }

    fn describe(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        optional_int(body, "Limit", 1, 10_000)?;
        let (entry, info) = self.view(&name)?;
        let status = match (&entry.creation, info.as_ref().map(|i| i.lifecycle)) {
            (Some(Err(_)), _) => "CREATING_FAILED",
            (Some(Ok(())), _) | (_, Some(StreamLifecycle::Creating)) => "CREATING",
            (_, Some(StreamLifecycle::Deleting)) => "DELETING",
            _ => "ACTIVE",
        };
        let spec = info.as_ref().map_or(&entry.spec, |i| &i.spec);
        let facts = describe::Facts {
            status,
            version: info.as_ref().and_then(|i| i.version).unwrap_or(1),
            created_ms: entry.created_ms,
            updated_ms: entry.updated_ms,
            delivery_start_ms: info.as_ref().and_then(|i| i.activated_at_ms),
            failure: entry.creation.as_ref().and_then(|c| c.as_ref().err()).cloned(),
            encryption: entry.encryption.describe(),
        };
        Ok(json!({ "DeliveryStreamDescription": describe::description(spec, &facts) }))
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries().keys().cloned().collect();
        names.extend(self.stack.streams().into_iter().map(|s| s.spec.name().to_owned()));
        names.sort();
        names.dedup();
        names
    }

    fn list(&self, body: &Value) -> Result<Value, ApiError> {
        let limit = optional_int(body, "Limit", 1, 10_000)?.unwrap_or(10) as usize;
        let kind = optional_str(body, "DeliveryStreamType")?;
        if let Some(kind) = &kind {
            if !["DirectPut", "KinesisStreamAsSource", "MSKAsSource", "DatabaseAsSource"].contains(&kind.as_str()) {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{kind}' at 'deliveryStreamType' failed to satisfy constraint: Member must satisfy enum value set: [DirectPut, KinesisStreamAsSource, MSKAsSource, DatabaseAsSource]"
                )));
            }
        }
        let start = optional_str(body, "ExclusiveStartDeliveryStreamName")?;
        let kind_of =
            |name: &str| self.view(name).map(|(entry, info)| info.map_or(entry.spec, |i| i.spec).source_kind());
        let names: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| kind.as_deref().is_none_or(|k| kind_of(n).is_ok_and(|kind| kind.as_str() == k)))
            .filter(|n| start.as_deref().is_none_or(|s| n.as_str() > s))
            .collect();
        let more = names.len() > limit;
        Ok(
            json!({ "DeliveryStreamNames": names.into_iter().take(limit).collect::<Vec<_>>(), "HasMoreDeliveryStreams": more }),
        )
    }

    async fn update(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let current = required_str(body, "CurrentDeliveryStreamVersionId")?;
        let destination = required_str(body, "DestinationId")?;
        let (entry, info) = self.view(&name)?;
        let Some(info) = info.filter(|i| i.lifecycle == StreamLifecycle::Active && entry.creation.is_none()) else {
            return Err(ApiError::new(
                "ResourceInUseException",
                format!("Firehose {name} is not ACTIVE; its destination can be updated once it is"),
            ));
        };
        let version = info.version.unwrap_or(1).to_string();
        if current != version {
            return Err(ApiError::new(
                "ConcurrentModificationException",
                format!("Cannot update firehose: {name} since the current version id: {version} and specified version id: {current} do not match"),
            ));
        }
        if destination != describe::DESTINATION_ID {
            return Err(ApiError::invalid_argument(format!(
                "Destination Id {destination} not found for firehose {name}; its destination is {}",
                describe::DESTINATION_ID
            )));
        }
        let mut request = info.spec.request().clone();
        let target = request
            .as_object_mut()
            .and_then(|r| r.get_mut("ExtendedS3DestinationConfiguration"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::invalid_argument(format!("Firehose {name} has no ExtendedS3 destination")))?;
        let mut changed = false;
        for key in ["ExtendedS3DestinationUpdate", "S3DestinationUpdate"] {
            if let Some(update) = body.get(key) {
                let update =
                    update.as_object().ok_or_else(|| ApiError::validation(format!("{key} must be an object")))?;
                merge(target, update);
                changed = true;
            }
        }
        if !changed {
            return Err(ApiError::invalid_argument(
                "UpdateDestination needs ExtendedS3DestinationUpdate (or S3DestinationUpdate) for an S3 destination",
            ));
        }
        let spec = spec::validate(&request).map_err(|violations| {
            ApiError::invalid_argument(violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        })?;
        let plan = self.stack.prepare_stream(spec.clone()).map_err(|e| ApiError::invalid_argument(e.to_string()))?;
        self.stack.update_prepared(plan).await.map_err(|e| stack_error(&name, e))?;
        let mut entries = self.entries();
        let now = self.stack.clock().now_millis();
        let slot = entries.entry(name).or_insert(entry);
        slot.spec = spec;
        slot.updated_ms = Some(now);
        persist(self.store.as_ref(), &entries);
        Ok(json!({}))
    }

    fn list_tags(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let limit = optional_int(body, "Limit", 1, 50)?.unwrap_or(50) as usize;
        let start = optional_str(body, "ExclusiveStartTagKey")?;
        let (entry, _) = self.view(&name)?;
        let tags: Vec<&(String, String)> =
            entry.tags.iter().skip_while(|(k, _)| start.as_deref().is_some_and(|s| k.as_str() <= s)).collect();
        let more = tags.len() > limit;
        let tags: Vec<Value> = tags.into_iter().take(limit).map(|(k, v)| json!({ "Key": k, "Value": v })).collect();
        Ok(json!({ "Tags": tags, "HasMoreTags": more }))
    }

    fn tag(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let tags = parse_tags(body.get("Tags"), "tags")?;
        if tags.is_empty() {
            return Err(ApiError::validation(
                "1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null",
            ));
        }
        let (mut entry, _) = self.view(&name)?;
        for (key, value) in tags {
            match entry.tags.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => entry.tags.push((key, value)),
            }
        }
        if entry.tags.len() > MAX_TAGS {
            return Err(ApiError::new(
                "LimitExceededException",
                format!(
                    "Firehose {name} would have {} tags; a delivery stream can have at most {MAX_TAGS}",
                    entry.tags.len()
                ),
            ));
        }
        entry.tags.sort();
        self.entries().insert(name, entry);
        self.persist();
        Ok(json!({}))
    }

    fn untag(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let keys: Vec<String> = match body.get("TagKeys") {
            Some(Value::Array(keys)) if (1..=MAX_TAGS).contains(&keys.len()) => {
                keys.iter().map(|k| k.as_str().map(str::to_owned).ok_or_else(|| ApiError::validation("TagKeys must be strings"))).collect::<Result<_, _>>()?
            }
            Some(Value::Array(_)) => {
                return Err(ApiError::validation(
                    "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must have length between 1 and 50",
                ))
            }
            _ => {
                return Err(ApiError::validation(
                    "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null",
                ))
            }
        };
        let (mut entry, _) = self.view(&name)?;
        entry.tags.retain(|(k, _)| !keys.contains(k));
        self.entries().insert(name, entry);
        self.persist();
        Ok(json!({}))
    }

    /// `PutRecord`: one record, answered with its `RecordId`, or
    /// `ServiceUnavailableException` when the stream is at its memory bound.
    async fn put_record(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let record = body.get("Record").ok_or_else(|| {
            ApiError::validation("1 validation error detected: Value null at 'record' failed to satisfy constraint: Member must not be null")
        })?;
        let data = record_data(record, "record.data")?;
        let (outcomes, encrypted) = self.put(&name, vec![data]).await?;
        match outcomes.into_iter().next() {
            Some(Ok(id)) => Ok(json!({ "RecordId": id, "Encrypted": encrypted })),
            Some(Err(refusal)) => Err(ApiError::new(refusal.code(), refusal.to_string())),
            None => Err(ApiError::new("InternalFailure", "the record was not answered")),
        }
    }

    /// `PutRecordBatch`: 1-500 records, 4 MiB; each answered on its own, so
    /// the caller resends only the failed ones (`FailedPutCount`).
    async fn put_record_batch(&self, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let records = match body.get("Records") {
            Some(Value::Array(records)) => records,
            _ => {
                return Err(ApiError::validation(
                    "1 validation error detected: Value null at 'records' failed to satisfy constraint: Member must not be null",
                ))
            }
        };
        if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length {}",
                if records.is_empty() { "greater than or equal to 1".to_owned() } else { format!("less than or equal to {MAX_BATCH_RECORDS}") }
            )));
        }
        let data = records
            .iter()
            .enumerate()
            .map(|(i, record)| record_data(record, &format!("records.{}.member.data", i + 1)))
            .collect::<Result<Vec<Bytes>, ApiError>>()?;
        let total: usize = data.iter().map(Bytes::len).sum();
        if total > MAX_BATCH_BYTES {
            return Err(ApiError::invalid_argument(format!(
                "Records size {total} bytes exceeds the {MAX_BATCH_BYTES}-byte (4 MiB) limit of a PutRecordBatch call"
            )));
        }
        let (outcomes, encrypted) = self.put(&name, data).await?;
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        let responses: Vec<Value> = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(id) => json!({ "RecordId": id }),
                Err(refusal) => json!({ "ErrorCode": refusal.code(), "ErrorMessage": refusal.to_string() }),
            })
            .collect();
        Ok(json!({ "FailedPutCount": failed, "Encrypted": encrypted, "RequestResponses": responses }))
    }

    /// Puts to a DirectPut stream that is ACTIVE; returns each record's
    /// outcome and whether the stream is encrypted.
    async fn put(&self, name: &str, data: Vec<Bytes>) -> Result<(Vec<PutOutcome>, bool), ApiError> {
        let (entry, info) = self.view(name)?;
        let (_, account) = entry.spec.region_and_account();
        if !entry.spec.is_direct_put() {
            return Err(ApiError::invalid_argument(format!(
                "This operation is not permitted on MSKAsSource delivery stream type: {name} reads its Kafka topic; write to the topic instead"
            )));
        }
        if entry.creation.is_some() || info.is_none_or(|i| i.lifecycle != StreamLifecycle::Active) {
            return Err(ApiError::new(
                "ResourceNotFoundException",
                format!("Firehose {name} under account {account} is not ACTIVE; put records once DescribeDeliveryStream shows it ACTIVE"),
            ));
        }
        let outcomes = self.stack.put_records(name, &data).await.map_err(|e| stack_error(name, e))?;
        Ok((outcomes, entry.encryption.status == "ENABLED"))
    }

    /// `StartDeliveryStreamEncryption` / `StopDeliveryStreamEncryption`:
    /// DirectPut streams only; the status passes ENABLING (DISABLING) on its
    /// way, and a change while one is under way is refused, as on AWS.
    fn encryption(&self, operation: &str, body: &Value) -> Result<Value, ApiError> {
        let name = required_str(body, "DeliveryStreamName")?;
        let (entry, info) = self.view(&name)?;
        if !entry.spec.is_direct_put() {
            return Err(ApiError::invalid_argument(format!(
                "Server side encryption from firehose is only allowed for direct put delivery streams and database as a source delivery streams; {name} is an MSKAsSource stream (objects are encrypted by the destination's EncryptionConfiguration)"
            )));
        }
        if entry.creation.is_some() || info.is_none_or(|i| i.lifecycle != StreamLifecycle::Active) {
            return Err(ApiError::new(
                "ResourceInUseException",
                format!("Firehose {name} is not ACTIVE; its encryption can be changed once it is"),
            ));
        }
        if ["ENABLING", "DISABLING"].contains(&entry.encryption.status) {
            return Err(ApiError::new(
                "ResourceInUseException",
                format!("Firehose {name} encryption is {}; wait until it is done", entry.encryption.status),
            ));
        }
        let (step, done, input) = if operation == "StartDeliveryStreamEncryption" {
            let input = body
                .get("DeliveryStreamEncryptionConfigurationInput")
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or_else(|| json!({ "KeyType": "AWS_OWNED_CMK" }));
            spec::validate_stream_encryption(&input).map_err(|violations| {
                ApiError::invalid_argument(violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
            })?;
            ("ENABLING", "ENABLED", Some(input))
        } else {
            ("DISABLING", "DISABLED", None)
        };
        self.set_encryption(&name, Encryption { status: step, input: input.clone() });
        let (entries, name) = (self.entries.clone(), name.clone());
        tokio::spawn(async move {
            tokio::time::sleep(ENCRYPTION_CHANGE).await;
            if let Some(entry) = entries.lock().expect("entries lock").get_mut(&name) {
                entry.encryption = Encryption { status: done, input };
            }
        });
        Ok(json!({}))
    }

    fn set_encryption(&self, name: &str, encryption: Encryption) {
        if let Ok((mut entry, _)) = self.view(name) {
            entry.encryption = encryption;
            self.entries().insert(name.to_owned(), entry);
            self.persist();
        }
    }
}

/// AWS merges an update into the destination it has: given keys replace
/// theirs, nested objects merge the same way.
fn merge(target: &mut Map<String, Value>, update: &Map<String, Value>) {
    for (key, value) in update {
        match (target.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(patch)) => merge(inner, patch),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new("ResourceNotFoundException", format!("Firehose {name} not found."))
}

fn stack_error(name: &str, e: StackError) -> ApiError {
    match e {
        StackError::UnknownStream { .. } => not_found(name),
        StackError::StreamBusy { .. } => ApiError::new("ResourceInUseException", e.to_string()),
        StackError::NotDirectPut { .. } => ApiError::invalid_argument(e.to_string()),
        other => ApiError::new("ServiceUnavailableException", other.to_string()),
    }
}

fn member(field: &str) -> String {
    let mut chars = field.chars();
    chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

fn required_str(body: &Value, field: &str) -> Result<String, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '' at '{}' failed to satisfy constraint: Member must have length greater than or equal to 1",
            member(field)
        ))),
        Some(_) => Err(ApiError::new("SerializationException", format!("{field} must be a string"))),
        None => Err(ApiError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            member(field)
        ))),
    }
}

fn optional_str(body: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::new("SerializationException", format!("{field} must be a string"))),
    }
}

fn optional_int(body: &Value, field: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between {min} and {max}",
                member(field)
            ))),
        },
        Some(_) => Err(ApiError::new("SerializationException", format!("{field} must be a number"))),
    }
}

/// A record's `Data`, decoded and checked against the limit.
fn record_data(record: &Value, at: &str) -> Result<Bytes, ApiError> {
    let data = record.get("Data").and_then(Value::as_str).ok_or_else(|| {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{at}' failed to satisfy constraint: Member must not be null"
        ))
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| ApiError::new("SerializationException", format!("{at} is not base64: {e}")))?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}"
        )));
    }
    Ok(Bytes::from(bytes))
}

/// Tags as the request gives them, checked against AWS's key rules.
fn parse_tags(tags: Option<&Value>, at: &str) -> Result<Vec<(String, String)>, ApiError> {
    let Some(tags) = tags.filter(|t| !t.is_null()) else { return Ok(Vec::new()) };
    let Value::Array(tags) = tags else {
        return Err(ApiError::new("SerializationException", "Tags must be a list of {Key, Value}"));
    };
    if tags.len() > MAX_TAGS {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{at}' failed to satisfy constraint: Member must have length less than or equal to {MAX_TAGS}"
        )));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for tag in tags {
        let key = tag.get("Key").and_then(Value::as_str).unwrap_or_default();
        let value = tag.get("Value").and_then(Value::as_str).unwrap_or_default();
        let key_ok = !key.is_empty()
            && key.chars().count() <= 128
            && key.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@%".contains(c));
        if !key_ok {
            return Err(ApiError::invalid_argument(format!(
                "Tag key {key:?} is invalid: 1-128 Unicode letters, digits, white space and _ . : / = + - @ %"
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid_argument(format!("Tag key {key:?} is invalid: the aws: prefix is reserved")));
        }
        if value.chars().count() > 256
            || !value.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@%".contains(c))
        {
            return Err(ApiError::invalid_argument(format!(
                "Tag value {value:?} of key {key:?} is invalid: 0-256 Unicode letters, digits, white space and _ . : / = + - @ %"
            )));
        }
        out.retain(|(k, _)| k != key);
        out.push((key.to_owned(), value.to_owned()));
    }
    out.sort();
    Ok(out)
}

/// The tags a `--spec` file carries.
fn tags_of(request: &Value) -> Vec<(String, String)> {
    parse_tags(request.get("Tags"), "tags").unwrap_or_default()
}
