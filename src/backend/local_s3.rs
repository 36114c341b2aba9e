//! An S3 API over a directory (s3s-fs), served in-process on a loopback port.
//!
//! In-process rather than a child process: nothing to install, nothing to
//! orphan, and objects are plain files under `<root>/<bucket>/<key>` that a
//! user can browse.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s::{HttpError, HttpResponse};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::BackendError;
use crate::delivery::sink::StaticCredentials;
use crate::faults::{Decision, S3Fault, S3FaultPlan};

/// A running server; stops when dropped.
pub struct LocalS3 {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl LocalS3 {
    /// Serves `root`; with a fault plan, PUTs suffer its faults.
    pub async fn start(
        root: &Path,
        credentials: &StaticCredentials,
        faults: Option<Arc<S3FaultPlan>>,
    ) -> Result<Self, BackendError> {
        let fail = |source: std::io::Error| BackendError::S3Start { root: root.to_owned(), source };
        std::fs::create_dir_all(root).map_err(fail)?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| fail(std::io::Error::other(format!("{e:?}"))))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
        ));
        let service = builder.build();
        let sse = SseStore { dir: root.join(".streamlab-sse") };
        let files = root.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(fail)?;
        let addr = listener.local_addr().map_err(fail)?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    () = stopped.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(e) => { debug!(error = %e, "accept failed"); continue; }
                    },
                };
                let (service, faults, sse, files) = (service.clone(), faults.clone(), sse.clone(), files.clone());
                let faulty = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (service, faults, sse, files) = (service.clone(), faults.clone(), sse.clone(), files.clone());
                    async move {
                        let object = object_of(req.uri().path());
                        let is_put = req.method() == http::Method::PUT && object.is_some();
                        let decision = faults.filter(|_| is_put).map(|plan| plan.decide());
                        let encryption = is_put.then(|| SseRecord::from_headers(req.headers())).flatten();
                        let read = matches!(*req.method(), http::Method::GET | http::Method::HEAD) && object.is_some();
                        // A key that is a "directory" of others (`events` under
                        // `events/dt=.../x.parquet`) is not an object: S3 answers
                        // 404, which readers such as pyarrow rely on; s3s-fs
                        // would answer 500.
                        if let Some((bucket, key)) = object.as_ref().filter(|_| read) {
                            if files.join(bucket).join(key).is_dir() {
                                return Ok(error_response(404, "NoSuchKey", "The specified key does not exist."));
                            }
                        }
                        let req = req.map(s3s::Body::from);
                        let call = |req| {
                            let (service, sse, object, encryption) =
                                (service.clone(), sse.clone(), object.clone(), encryption.clone());
                            async move {
                                let mut response = service.call(req).await?;
                                let Some((bucket, key)) = object else { return Ok(response) };
                                if response.status().is_success() {
                                    if is_put {
                                        sse.record(&bucket, &key, encryption.as_ref());
                                    }
                                    if is_put || read {
                                        if let Some(record) = sse.get(&bucket, &key) {
                                            record.add_headers(response.headers_mut());
                                        }
                                    }
                                }
                                Ok(response)
                            }
                        };
                        let Some(Decision { delay, fault }) = decision else { return call(req).await };
                        if let Some(delay) = delay {
                            tokio::time::sleep(delay).await;
                        }
                        match fault {
                            None => call(req).await,
                            Some(S3Fault::InternalError) => Ok(error_response(
                                500,
                                "InternalError",
                                "We encountered an internal error. Please try again.",
                            )),
                            Some(S3Fault::SlowDown) => {
                                Ok(error_response(503, "SlowDown", "Please reduce your request rate."))
                            }
                            Some(S3Fault::Reset) => Err(HttpError::new("injected connection reset".into())),
                            Some(S3Fault::LostResponse) => {
                                // Written, then the answer is lost with the connection.
                                let _ = call(req).await;
                                Err(HttpError::new("injected lost response".into()))
                            }
                        }
                    }
                });
                let conn = http.serve_connection(TokioIo::new(socket), faulty).into_owned();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = stopped.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
        Ok(Self { addr, stop })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The bucket and key of a path-style object path `/bucket/key...`.
fn object_of(path: &str) -> Option<(String, String)> {
    let (bucket, key) = path.trim_start_matches('/').split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let key = percent_decode(key);
    Some((bucket.to_owned(), key))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Server-side encryption an object was written with. The file-system S3
/// does not keep it, so it is kept beside the objects (one JSON file per
/// object under `<root>/.streamlab-sse/`) and returned on PUT, GET and HEAD
/// as S3 does: tests see what a PUT asked for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SseRecord {
    algorithm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
}

const SSE_HEADER: &str = "x-amz-server-side-encryption";
const SSE_KEY_HEADER: &str = "x-amz-server-side-encryption-aws-kms-key-id";

impl SseRecord {
    fn from_headers(headers: &http::HeaderMap) -> Option<SseRecord> {
        let algorithm = headers.get(SSE_HEADER)?.to_str().ok()?.to_owned();
        let kms_key_id = headers.get(SSE_KEY_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Some(SseRecord { algorithm, kms_key_id })
    }

    fn add_headers(&self, headers: &mut http::HeaderMap) {
        if let Ok(v) = http::HeaderValue::from_str(&self.algorithm) {
            headers.insert(SSE_HEADER, v);
        }
        if let Some(v) = self.kms_key_id.as_deref().and_then(|k| http::HeaderValue::from_str(k).ok()) {
            headers.insert(SSE_KEY_HEADER, v);
        }
    }
}

#[derive(Debug, Clone)]
struct SseStore {
    dir: std::path::PathBuf,
}

impl SseStore {
    fn path(&self, bucket: &str, key: &str) -> std::path::PathBuf {
        self.dir.join(bucket).join(format!("{key}.json"))
    }

    /// Records (or, for a PUT without encryption, forgets) an object's SSE.
    fn record(&self, bucket: &str, key: &str, record: Option<&SseRecord>) {
        let path = self.path(bucket, key);
        match record {
            Some(record) => {
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let _ = std::fs::write(&path, serde_json::to_vec(record).expect("serializes"));
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn get(&self, bucket: &str, key: &str) -> Option<SseRecord> {
        serde_json::from_slice(&std::fs::read(self.path(bucket, key)).ok()?).ok()
    }
}

fn error_response(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"#
    );
    let mut response = HttpResponse::new(s3s::Body::from(body));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    response
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server over a new directory, and an S3 client of it; both live as
    /// long as the directory and server returned.
    async fn fresh_server() -> (tempfile::TempDir, LocalS3, aws_sdk_s3::Client) {
        let dir = tempfile::tempdir().unwrap();
        let credentials = crate::backend::local_credentials();
        let server = LocalS3::start(dir.path(), &credentials, None).await.unwrap();
        let settings = crate::delivery::sink::S3Settings {
            endpoint: Some(server.endpoint()),
            region: Some("us-east-1".into()),
            credentials: Some(credentials),
        };
        let client = crate::delivery::sink::client(&settings).await;
        (dir, server, client)
    }

    /// S3 takes keys of up to 1024 bytes, and Firehose keys with a long
    /// prefix and stream name pass 150 bytes easily. s3s-fs as published
    /// names a file after the key's base64 and answered such PUTs with 500;
    /// the patched copy in `vendor/s3s-fs` does not.
    #[tokio::test]
    async fn long_keys_with_headers_are_stored_and_read_back() {
        let (_dir, _server, client) = fresh_server().await;
        crate::harness::create_bucket(&client, "a-bucket-with-a-long-name-for-this-test").await.unwrap();
        let segment = "event_type=order_placed/customer_tier=gold/";
        let key = format!("{}stream-1-2026-11-26-05-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz", segment.repeat(20));
        assert!(key.len() > 900 && key.len() <= 1024, "{}", key.len());
        client
            .put_object()
            .bucket("a-bucket-with-a-long-name-for-this-test")
            .key(&key)
            .content_encoding("gzip")
            .body(b"payload".to_vec().into())
            .send()
            .await
            .unwrap();
        let object =
            crate::harness::read_object(&client, "a-bucket-with-a-long-name-for-this-test", &key).await.unwrap();
        assert_eq!((object.body.as_ref(), object.content_encoding.as_deref()), (&b"payload"[..], Some("gzip")));
        let keys = crate::harness::list_keys(&client, "a-bucket-with-a-long-name-for-this-test").await.unwrap();
        assert_eq!(keys, [key]);
    }

    /// An ETag is the MD5 of the body, quoted, as S3 answers a PUT (and a
    /// HEAD) of a single-part object; the S3 server hashes with OpenSSL's
    /// MD5 (`vendor/s3s-fs`). Expected digests from Python's `hashlib`.
    #[tokio::test]
    async fn etags_are_the_md5_of_the_body() {
        let (_dir, _server, client) = fresh_server().await;
        crate::harness::create_bucket(&client, "etags").await.unwrap();
        // Many 64-byte blocks and a partial one, in more than one body chunk.
        let large: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for (key, body, md5) in [
            ("small", b"payload".to_vec(), "321c3cf486ed509164edec1e1981fec8"),
            ("large", large, "2359b3063b928d91794364d5322baa19"),
        ] {
            let put = client.put_object().bucket("etags").key(key).body(body.into()).send().await.unwrap();
            let head = client.head_object().bucket("etags").key(key).send().await.unwrap();
            let quoted = format!("\"{md5}\"");
            assert_eq!((put.e_tag(), head.e_tag()), (Some(&*quoted), Some(&*quoted)), "{key}");
        }
    }
}
