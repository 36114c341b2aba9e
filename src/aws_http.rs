//! The HTTPS client of every AWS SDK client streamlab builds, and the config
//! loader that carries it.
//!
//! The SDK's `default-https-client` feature builds rustls on aws-lc, whose C
//! build (`aws-lc-sys`, cmake and about 25 s of CPU) was the largest single
//! unit of a cold build; ring is in the tree anyway (testcontainers, rcgen).
//! So the SDK crates are built without a default client and every config
//! gets this one: the SDK's own hyper client on rustls with ring. A config
//! built without it fails its first request with "no HTTP client".

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_s3::config::SharedHttpClient;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// A new client (its connection pool belongs to the runtime that first uses
/// it, so each config gets its own rather than one shared across runtimes).
pub fn client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// `aws_config::defaults` with [`client`]: the credential providers (SSO,
/// STS, IMDS) and every client built from the loaded config use it.
pub fn loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(client())
}
