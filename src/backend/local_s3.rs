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
                let (service, faults) = (service.clone(), faults.clone());
                let faulty = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (service, faults) = (service.clone(), faults.clone());
                    async move {
                        let is_put = req.method() == http::Method::PUT && is_object_path(req.uri().path());
                        let decision = faults.filter(|_| is_put).map(|plan| plan.decide());
                        let req = req.map(s3s::Body::from);
                        let Some(Decision { delay, fault }) = decision else { return service.call(req).await };
                        if let Some(delay) = delay {
                            tokio::time::sleep(delay).await;
                        }
                        match fault {
                            None => service.call(req).await,
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
                                let _ = service.call(req).await;
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

/// Path-style object paths are `/bucket/key...`.
fn is_object_path(path: &str) -> bool {
    path.trim_start_matches('/').split_once('/').is_some_and(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
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
