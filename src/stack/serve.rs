//! The loop every loopback endpoint of a stack runs (the control API, the
//! Firehose API): accept, serve each connection with hyper, stop every
//! connection when the endpoint stops.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

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
        let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
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
