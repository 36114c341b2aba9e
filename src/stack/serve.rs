//! The loop every loopback endpoint of a stack runs (the control API, the
//! Firehose, CloudWatch and Logs APIs): accept, serve each connection with
//! hyper, stop every connection when the endpoint stops; and the bounded
//! body read every handler uses, so no request grows the process past its
//! cap and a client that stops sending is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// A connection that sends no request headers for this long is closed
/// (idle keep-alive connections and slow clients alike).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Over the endpoint's cap (HTTP 413), by `Content-Length` or as read.
    TooLarge { limit: usize },
    /// The client went away or sent a malformed body.
    Broken(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "the request body is over {limit} bytes; send less per request"),
            BodyError::Broken(e) => write!(f, "the request body could not be read: {e}"),
        }
    }
}

/// The HTTP status of a body that could not be read.
pub fn body_status(e: &BodyError) -> http::StatusCode {
    match e {
        BodyError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::Broken(_) => http::StatusCode::BAD_REQUEST,
    }
}

/// Reads `req`'s body, at most `limit` bytes: a `Content-Length` over it is
/// refused before a byte is read, a chunked body as soon as it passes it.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}

/// Binds a free loopback port and serves `handle` there until `stop` fires;
/// returns the address.
pub async fn serve<H, F>(name: &'static str, stop: CancellationToken, handle: H) -> std::io::Result<SocketAddr>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        http.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        loop {
            let socket = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => { debug!(error = %e, endpoint = name, "accept failed"); continue; }
                },
            };
            let handle = handle.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = handle(req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let conn = http.serve_connection(TokioIo::new(socket), service).into_owned();
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    });
    Ok(addr)
}
