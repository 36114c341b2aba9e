//! `DescribeDeliveryStream`'s answer, as AWS gives it: every field of the
//! request echoed, with AWS's defaults filled in where the request left them
//! out, and the derived `S3DestinationDescription` beside the extended one,
//! so a Terraform plan against the stack shows no diff.

use serde_json::{json, Map, Value};

use crate::spec::{SourceKind, StreamSpec};

/// The id of a stream's one destination.
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// What the description says besides the spec.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `CREATING`, `CREATING_FAILED`, `ACTIVE` or `DELETING`.
    pub status: &'static str,
    pub version: u32,
    pub created_ms: i64,
    pub updated_ms: Option<i64>,
    /// When the stream started reading (it became active).
    pub delivery_start_ms: Option<i64>,
    /// Why a creation failed.
    pub failure: Option<String>,
    /// `DeliveryStreamEncryptionConfiguration`: `{"Status": "DISABLED"}`
    /// unless encryption was asked for.
    pub encryption: Value,
}

/// Epoch seconds, as the JSON protocol writes timestamps.
fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// Inserts `value` at `key` unless the request gave one.
fn default(object: &mut Map<String, Value>, key: &str, value: Value) {
    match (object.get_mut(key), value) {
        (Some(Value::Object(given)), Value::Object(defaults)) => {
            for (k, v) in defaults {
                given.entry(k).or_insert(v);
            }
        }
        (Some(_), _) => {}
        (None, value) => {
            object.insert(key.to_owned(), value);
        }
    }
}

/// The `ExtendedS3DestinationDescription`: the configuration as given with
/// AWS's defaults.
pub fn extended_s3(spec: &StreamSpec) -> Map<String, Value> {
    let mut out = spec.destination().as_object().cloned().unwrap_or_default();
    default(&mut out, "BufferingHints", json!({ "SizeInMBs": 5, "IntervalInSeconds": 300 }));
    default(&mut out, "CompressionFormat", json!("UNCOMPRESSED"));
    default(&mut out, "EncryptionConfiguration", json!({ "NoEncryptionConfig": "NoEncryption" }));
    default(&mut out, "CloudWatchLoggingOptions", json!({ "Enabled": false }));
    default(&mut out, "S3BackupMode", json!("Disabled"));
    out
}

/// The `S3DestinationDescription` AWS derives from the extended one.
fn s3(extended: &Map<String, Value>) -> Map<String, Value> {
    [
        "RoleARN",
        "BucketARN",
        "Prefix",
        "ErrorOutputPrefix",
        "BufferingHints",
        "CompressionFormat",
        "EncryptionConfiguration",
        "CloudWatchLoggingOptions",
    ]
    .iter()
    .filter_map(|k| extended.get(*k).map(|v| ((*k).to_owned(), v.clone())))
    .collect()
}

/// The whole `DeliveryStreamDescription`.
pub fn description(spec: &StreamSpec, facts: &Facts) -> Value {
    let request = spec.request();
    let source = match spec.source_kind() {
        SourceKind::Msk => json!({ "MSKSourceDescription": msk_source(request, facts) }),
        // Only a given DirectPutSourceConfiguration is described.
        SourceKind::DirectPut => match request.get("DirectPutSourceConfiguration") {
            Some(config) => json!({ "DirectPutSourceDescription": config }),
            None => Value::Null,
        },
    };
    let extended = extended_s3(spec);
    let mut out = json!({
        "DeliveryStreamName": spec.name(),
        "DeliveryStreamARN": spec.delivery_stream_arn(),
        "DeliveryStreamStatus": facts.status,
        "DeliveryStreamType": spec.source_kind().as_str(),
        "VersionId": facts.version.to_string(),
        "CreateTimestamp": seconds(facts.created_ms),
        "DeliveryStreamEncryptionConfiguration": facts.encryption,
        "Source": source,
        "Destinations": [{
            "DestinationId": DESTINATION_ID,
            "S3DestinationDescription": s3(&extended),
            "ExtendedS3DestinationDescription": extended,
        }],
        "HasMoreDestinations": false,
    });
    if out["Source"].is_null() {
        out.as_object_mut().expect("an object").remove("Source");
    }
    if let Some(updated) = facts.updated_ms {
        out["LastUpdateTimestamp"] = seconds(updated);
    }
    if let Some(failure) = &facts.failure {
        out["FailureDescription"] = json!({ "Type": "UNKNOWN_ERROR", "Details": failure });
    }
    out
}

/// `MSKSourceDescription`: the configuration with where reading started.
fn msk_source(request: &Value, facts: &Facts) -> Map<String, Value> {
    let source = &request["MSKSourceConfiguration"];
    let mut msk = Map::new();
    for key in ["MSKClusterARN", "TopicName", "AuthenticationConfiguration"] {
        if let Some(v) = source.get(key) {
            msk.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(start) = facts.delivery_start_ms {
        msk.insert("DeliveryStartTimestamp".into(), seconds(start));
    }
    match source.get("ReadFromTimestamp") {
        Some(given) => {
            msk.insert("ReadFromTimestamp".into(), given.clone());
        }
        None => {
            if let Some(start) = facts.delivery_start_ms {
                msk.insert("ReadFromTimestamp".into(), seconds(start));
            }
        }
    }
    msk
}
