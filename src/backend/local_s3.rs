//! An S3 API over a directory (s3s-fs), served in-process on a loopback port.
//!
//! In-process rather than a child process: nothing to install, nothing to
//! orphan, and objects are plain files under `<root>/<bucket>/<key>` that a
//! user can browse.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::BackendError;
use crate::delivery::sink::StaticCredentials;

/// A running server; stops when dropped.
pub struct LocalS3 {
    addr: SocketAddr,
    root: PathBuf,
    stop: CancellationToken,
}

impl LocalS3 {
    pub async fn start(root: &Path, credentials: &StaticCredentials) -> Result<Self, BackendError> {
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
                let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = stopped.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
        Ok(Self { addr, root: root.to_owned(), stop })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
