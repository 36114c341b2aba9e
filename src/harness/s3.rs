//! The S3 side of the harness: buckets, and reading back what landed with
//! the headers Firehose sets.

use crate::aws_error::SdkFailure;
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::HarnessError;

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
                Err(HarnessError::Bucket { bucket: bucket.to_owned(), detail: SdkFailure::of(&e).to_string() })
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
    /// `Last-Modified`, in epoch milliseconds (S3 keeps seconds).
    pub last_modified_ms: Option<i64>,
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
            detail: SdkFailure::of(&e).to_string(),
        })?;
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
    }
    keys.sort();
    Ok(keys)
}

/// One object with its headers.
pub async fn read_object(client: &Client, bucket: &str, key: &str) -> Result<StoredObject, HarnessError> {
    let fail = |detail: String| HarnessError::Read { bucket: bucket.to_owned(), key: key.to_owned(), detail };
    let got =
        client.get_object().bucket(bucket).key(key).send().await.map_err(|e| fail(SdkFailure::of(&e).to_string()))?;
    let content_type = got.content_type().map(str::to_owned);
    let content_encoding = got.content_encoding().map(str::to_owned);
    let server_side_encryption = got.server_side_encryption().map(|s| s.as_str().to_owned());
    let sse_kms_key_id = got.ssekms_key_id().map(str::to_owned);
    let last_modified_ms = got.last_modified().and_then(|t| t.to_millis().ok());
    let body = got.body.collect().await.map_err(|e| fail(e.to_string()))?.into_bytes();
    Ok(StoredObject {
        key: key.to_owned(),
        body,
        content_type,
        content_encoding,
        server_side_encryption,
        sse_kms_key_id,
        last_modified_ms,
    })
}

/// Every object in the bucket, sorted by key.
pub async fn read_bucket(client: &Client, bucket: &str) -> Result<Vec<StoredObject>, HarnessError> {
    read_under(client, bucket, "").await
}

/// Every object under `prefix`, in key order.
pub async fn read_under(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<StoredObject>, HarnessError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let keys = list_keys_under(client, bucket, prefix).await?;
    // Owned keys: a closure over borrowed ones is not `Send` enough for the
    // servers that await this.
    futures::stream::iter(keys.into_iter().map(|key| async move { read_object(client, bucket, &key).await }))
        .buffered(CONCURRENT_REQUESTS)
        .try_collect()
        .await
}

/// GETs and DELETEs in flight at once when reading or removing many
/// objects: one at a time, a run's hundreds of small objects took seconds.
const CONCURRENT_REQUESTS: usize = 16;

/// Deletes every object under `prefix` (a run's objects in a shared bucket).
pub async fn delete_under(client: &Client, bucket: &str, prefix: &str) -> Result<usize, HarnessError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let keys = list_keys_under(client, bucket, prefix).await?;
    let count = keys.len();
    futures::stream::iter(keys.into_iter().map(|key| async move {
        client.delete_object().bucket(bucket).key(&key).send().await.map_err(|e| HarnessError::Read {
            bucket: bucket.to_owned(),
            key,
            detail: format!("cannot delete: {}", SdkFailure::of(&e)),
        })
    }))
    .buffer_unordered(CONCURRENT_REQUESTS)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(count)
}

/// Splits an object body into JSON records. Firehose concatenates records
/// with no delimiter unless `AppendDelimiterToRecord` is on, so this reads a
/// stream of JSON values, with or without whitespace between them.
pub fn json_records(body: &[u8]) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_reads_concatenated_and_delimited_bodies() {
        assert_eq!(json_records(br#"{"a":1}{"b":2}"#).unwrap().len(), 2);
        assert_eq!(json_records(b"{\"a\":1}\n{\"b\":2}\n").unwrap().len(), 2);
        assert!(json_records(br#"{"a":1}{"b""#).is_err());
    }
}
