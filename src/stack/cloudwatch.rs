//! The CloudWatch endpoint of a stack: CloudWatch's three protocols
//! ([`crate::cloudwatch::protocol`]) on a loopback port, answering from the
//! stack's [`Monitor`](crate::cloudwatch::Monitor). `up` and `run` serve it
//! and write `AWS_ENDPOINT_URL_CLOUDWATCH`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::cloudwatch::api::{ApiError, CloudWatch};
use crate::cloudwatch::protocol::{self, Protocol};

/// Request bodies larger than this are refused before they are read: the
/// largest valid request, a `PutMetricData` of 1,000 items, is about 1 MB.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The CloudWatch endpoint; stops when dropped.
pub struct CloudWatchServer {
    url: String,
    stop: CancellationToken,
}

impl CloudWatchServer {
    /// Serves `api` on a free loopback port.
    pub async fn start(api: Arc<CloudWatch>) -> std::io::Result<CloudWatchServer> {
        let stop = CancellationToken::new();
        let addr = super::serve::serve("cloudwatch", stop.clone(), move |req| {
            let api = api.clone();
            async move { handle(&api, req).await }
        })
        .await?;
        Ok(CloudWatchServer { url: format!("http://{addr}"), stop })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for CloudWatchServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(api: &CloudWatch, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // Errors before the protocol is known answer in JSON 1.0's form.
    let guess = if parts.uri.path().starts_with("/service/") { Protocol::Cbor } else { Protocol::Json };
    if parts.method != Method::POST {
        let e =
            ApiError::new("InvalidAction", format!("{} is not a CloudWatch call: every protocol POSTs", parts.method));
        return protocol::encode_error(guess, &e);
    }
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let e = ApiError::new("InvalidParameterValue", format!("the request body is over {MAX_BODY_BYTES} bytes"));
            let mut response = protocol::encode_error(guess, &e);
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return response;
        }
    };
    let request = match protocol::decode(parts.uri.path(), &parts.headers, &bytes) {
        Ok(request) => request,
        Err(e) => return protocol::encode_error(guess, &e),
    };
    match api.call(&request.operation, &request.body) {
        Ok(answer) => protocol::encode(request.protocol, &request.operation, &answer),
        Err(e) => protocol::encode_error(request.protocol, &e),
    }
}
