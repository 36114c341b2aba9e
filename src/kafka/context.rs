//! The rdkafka client context of a connection: what librdkafka calls back
//! into for OAUTHBEARER tokens.

use std::ffi::CString;
use std::sync::{Arc, Mutex};

use rdkafka::admin::AdminClient;
use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, StreamConsumer};
use rdkafka::producer::{BaseProducer, FutureProducer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tracing::{debug, error};

use super::TokenSigner;

/// The context of every client streamlab creates. With MSK IAM it signs a
/// token whenever librdkafka asks (at 80% of the previous one's lifetime).
/// It also keeps librdkafka's last error reason: a failed request reports
/// only "broker transport failure", while the reason ("certificate verify
/// failed", "SASL authentication error") comes as a separate event.
#[derive(Debug, Clone, Default)]
pub struct KafkaContext {
    signer: Option<Arc<TokenSigner>>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl KafkaContext {
    pub(super) fn new(signer: Option<Arc<TokenSigner>>) -> Self {
        KafkaContext { signer, last_error: Arc::default() }
    }

    /// librdkafka's most recent error reason, if any (events are only
    /// delivered by a poll: call one first).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("last error lock").clone()
    }

    /// For contexts that embed this one: the token librdkafka asks for.
    pub fn oauth_token(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let signer = self.signer.as_ref().ok_or("OAUTHBEARER needs --kafka-security iam")?;
        let token = signer.token()?;
        Ok(OAuthToken { token: token.value, principal_name: String::new(), lifetime_ms: token.expires_at_ms })
    }
}

impl ClientContext for KafkaContext {
    // Only consulted when `sasl.mechanism` is OAUTHBEARER.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.oauth_token()
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        error!(target: "librdkafka", "librdkafka: {error}: {reason}");
        *self.last_error.lock().expect("last error lock") = Some(reason.to_owned());
    }

    /// As rdkafka's default (to the `librdkafka` target), and connection
    /// failures (`FAIL`: TLS handshakes, SASL) kept as the last error.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}");
                *self.last_error.lock().expect("last error lock") = Some(message.to_owned());
            }
            Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
            Notice | Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
            Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
        }
    }
}

impl ConsumerContext for KafkaContext {}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// A client whose native handle can be reached, to hand it a token.
pub trait NativeHandle {
    fn native(&self) -> *mut rdsys::rd_kafka_t;
}

fn native_of<C: ClientContext>(client: &Client<C>) -> *mut rdsys::rd_kafka_t {
    client.native_ptr()
}

impl<C: ConsumerContext> NativeHandle for BaseConsumer<C> {
    fn native(&self) -> *mut rdsys::rd_kafka_t {
        native_of(rdkafka::consumer::Consumer::client(self))
    }
}

impl<C: ConsumerContext + 'static> NativeHandle for StreamConsumer<C> {
    fn native(&self) -> *mut rdsys::rd_kafka_t {
        native_of(rdkafka::consumer::Consumer::client(self))
    }
}

impl<C: ProducerContext> NativeHandle for BaseProducer<C> {
    fn native(&self) -> *mut rdsys::rd_kafka_t {
        native_of(rdkafka::producer::Producer::client(self))
    }
}

impl<C: ProducerContext + 'static> NativeHandle for ThreadedProducer<C> {
    fn native(&self) -> *mut rdsys::rd_kafka_t {
        native_of(rdkafka::producer::Producer::client(self))
    }
}

impl<C: ClientContext + 'static> NativeHandle for FutureProducer<C> {
    fn native(&self) -> *mut rdsys::rd_kafka_t {
        native_of(rdkafka::producer::Producer::client(self))
    }
}

impl<C: ClientContext> NativeHandle for AdminClient<C> {
    fn native(&self) -> *mut rdsys::rd_kafka_t {
        native_of(self.inner())
    }
}

/// Hands a new client its first token (see
/// [`super::KafkaConnection::create_with_context`]). A failure is reported
/// to librdkafka, which then fails the connection attempts with this message.
pub(super) fn set_first_token(client: &impl NativeHandle, signer: &TokenSigner) {
    let native = client.native();
    let message = |text: String| CString::new(text.replace('\0', " ")).expect("no NUL");
    let token = match signer.token() {
        Ok(token) => token,
        Err(e) => {
            error!(error = %e, "cannot sign the first MSK IAM token");
            let reason = message(e.to_string());
            // SAFETY: `native` is a live handle owned by `client`.
            unsafe { rdsys::rd_kafka_oauthbearer_set_token_failure(native, reason.as_ptr()) };
            return;
        }
    };
    let (value, principal) = (message(token.value), message(String::new()));
    let mut errstr = [0 as std::ffi::c_char; 512];
    // SAFETY: `native` is a live handle owned by `client`; every pointer
    // outlives the call, and `errstr`'s length is passed with it.
    let code = unsafe {
        rdsys::rd_kafka_oauthbearer_set_token(
            native,
            value.as_ptr(),
            token.expires_at_ms,
            principal.as_ptr(),
            std::ptr::null_mut(),
            0,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if code == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        debug!("set the first MSK IAM token");
    } else {
        // SAFETY: librdkafka NUL-terminates what it writes into `errstr`.
        let reason = unsafe { std::ffi::CStr::from_ptr(errstr.as_ptr()) }.to_string_lossy().into_owned();
        error!(?code, %reason, "librdkafka refused the first MSK IAM token");
    }
}
