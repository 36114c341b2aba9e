//! MSK IAM authentication: the SASL/OAUTHBEARER token is a SigV4
//! query-presigned `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect`
//! (service `kafka-cluster`, valid 900 s) plus a `User-Agent` parameter,
//! base64url-encoded without padding: the format of AWS's own signers
//! (`aws-msk-iam-sasl-signer-python`, `-js`, `-go`), checked against the
//! Python one byte for byte in the tests.
//!
//! librdkafka asks for tokens synchronously, from inside a poll, so signing
//! must not wait on the network: credentials are loaded once before any
//! client exists (so missing credentials fail at start-up) and refreshed in
//! the background before they expire. Signing uses the wall clock, never the
//! stack's virtual one: AWS checks the signature date against its own.
//!
//! The `aws-msk-iam-sasl-signer` crate makes the same token, but only
//! through async functions that load credentials on every call and sign at
//! `SystemTime::now()`, which a test cannot pin; the signing itself is
//! aws-sigv4 either way.

use std::fmt;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tracing::{debug, warn};

use crate::clock::{SharedClock, SystemClock};

/// How long a token is valid, as AWS's signers make it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// Credentials this close to expiring are refreshed.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(600);
const REFRESH_CHECK_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IamError {
    #[error(
        "--kafka-security iam needs the cluster's region: pass --kafka-region, set AWS_REGION, \
         or use the MSK broker host names (….kafka.<region>.amazonaws.com)"
    )]
    NoRegion,
    #[error(
        "--kafka-security iam found no AWS credentials ({0}); configure the standard chain \
         (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO, an instance role)"
    )]
    Credentials(String),
    #[error("cannot sign the MSK IAM token: {0}")]
    Sign(String),
}

/// A signed token and when it expires (milliseconds since the epoch), what
/// librdkafka's `rd_kafka_oauthbearer_set_token` takes.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub expires_at_ms: i64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("value", &"<redacted>").field("expires_at_ms", &self.expires_at_ms).finish()
    }
}

/// Signs MSK IAM tokens from cached credentials.
pub struct TokenSigner {
    region: String,
    credentials: RwLock<Credentials>,
    clock: SharedClock,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner").field("region", &self.region).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer over fixed credentials and a given clock.
    pub fn new(region: impl Into<String>, credentials: Credentials, clock: SharedClock) -> Self {
        TokenSigner { region: region.into(), credentials: RwLock::new(credentials), clock }
    }

    /// A signer over the standard AWS credential chain (environment,
    /// profile, SSO, container and instance roles), with the first
    /// credentials loaded now and later ones refreshed in the background
    /// while the signer lives.
    pub async fn from_environment(region: Option<String>) -> Result<Arc<TokenSigner>, IamError> {
        let mut loader = crate::aws_http::loader();
        if let Some(region) = &region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let config = loader.load().await;
        let region = config.region().map(|r| r.to_string()).ok_or(IamError::NoRegion)?;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| IamError::Credentials("no credentials provider is configured".into()))?;
        let credentials = provider.provide_credentials().await.map_err(|e| IamError::Credentials(e.to_string()))?;
        let signer = Arc::new(TokenSigner::new(region, credentials, Arc::new(SystemClock)));
        tokio::spawn(refresh_credentials(Arc::downgrade(&signer), provider));
        Ok(signer)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A fresh token, signed now.
    pub fn token(&self) -> Result<Token, IamError> {
        let credentials = self.credentials.read().expect("credentials lock").clone();
        let now_ms = self.clock.now_millis();
        let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
        let value = sign_token(&self.region, credentials, time)?;
        // AWS's signers sign at whole seconds (X-Amz-Date) and expire 900 s later.
        let signed_at_ms = now_ms - now_ms.rem_euclid(1000);
        Ok(Token { value, expires_at_ms: signed_at_ms + TOKEN_LIFETIME.as_millis() as i64 })
    }

    fn needs_refresh(&self) -> bool {
        let credentials = self.credentials.read().expect("credentials lock");
        credentials.expiry().is_some_and(|expiry| expiry < SystemTime::now() + REFRESH_BEFORE_EXPIRY)
    }
}

/// Keeps the signer's credentials fresh until the signer is dropped.
async fn refresh_credentials(signer: Weak<TokenSigner>, provider: SharedCredentialsProvider) {
    loop {
        tokio::time::sleep(REFRESH_CHECK_EVERY).await;
        let Some(signer) = signer.upgrade() else { return };
        if !signer.needs_refresh() {
            continue;
        }
        match provider.provide_credentials().await {
            Ok(credentials) => {
                debug!("refreshed the AWS credentials for MSK IAM tokens");
                *signer.credentials.write().expect("credentials lock") = credentials;
            }
            // Tokens keep being signed with the old credentials; the broker
            // rejects them once they expire, and librdkafka reports it.
            Err(e) => warn!(error = %e, "cannot refresh the AWS credentials for MSK IAM tokens; retrying in a minute"),
        }
    }
}

/// The token for `region` signed with `credentials` at `time`.
fn sign_token(region: &str, credentials: Credentials, time: SystemTime) -> Result<String, IamError> {
    let fail = |e: &dyn fmt::Display| IamError::Sign(e.to_string());
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| fail(&e))?;
    let endpoint = format!("https://kafka.{region}.amazonaws.com/");
    let action = [("Action", "kafka-cluster:Connect")];
    let request = SignableRequest::new(
        "GET",
        format!("{endpoint}?{}", query(action)),
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| fail(&e))?;
    let (instructions, _) = sign(request, &params.into()).map_err(|e| fail(&e))?.into_parts();
    let user_agent = [("User-Agent", concat!("streamlab/", env!("CARGO_PKG_VERSION")))];
    // In the order AWS's signers send them: the signature last before the User-Agent.
    let mut signed: Vec<(&str, &str)> = instructions.params().iter().map(|(k, v)| (*k, v.as_ref())).collect();
    signed.sort_by_key(|(name, _)| *name == "X-Amz-Signature");
    let url = format!("{endpoint}?{}", query(action.into_iter().chain(signed).chain(user_agent)));
    Ok(BASE64_URL_SAFE_NO_PAD.encode(url))
}

/// SigV4's query encoding: everything but `A-Z a-z 0-9 - _ . ~` escaped
/// (spaces as `%20`, not form encoding's `+`), as AWS's signers send it.
const SIGV4_QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let encode = |s| utf8_percent_encode(s, SIGV4_QUERY);
    pairs.into_iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// The region of an MSK bootstrap address (`b-1.x.y.c2.kafka.us-east-1.amazonaws.com:9098`,
/// or `kafka-serverless` for MSK Serverless), if it is one.
pub fn region_of_bootstrap(bootstrap: &str) -> Option<String> {
    let host = bootstrap.split(',').next()?.trim().rsplit_once(':').map_or(bootstrap, |(host, _)| host);
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels.iter().position(|l| *l == "kafka" || *l == "kafka-serverless")?;
    match (labels.get(at + 1), labels.get(at + 2)) {
        (Some(region), Some(&"amazonaws")) if !region.is_empty() => Some((*region).to_owned()),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::ManualClock;

    pub(crate) const ACCESS_KEY: &str = "AKIDEXAMPLE";
    pub(crate) const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    pub(crate) const SESSION_TOKEN: &str = "session/token+with=odd chars";

    fn signer(session_token: Option<&str>) -> TokenSigner {
        let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY, session_token.map(str::to_owned), None, "test");
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T05:00:00.250Z").unwrap().to_utc();
        TokenSigner::new("eu-west-1", credentials, Arc::new(ManualClock::new(at)))
    }

    pub(crate) fn fixed_signer() -> Arc<TokenSigner> {
        Arc::new(signer(Some(SESSION_TOKEN)))
    }

    fn decode(token: &Token) -> String {
        String::from_utf8(BASE64_URL_SAFE_NO_PAD.decode(&token.value).expect("base64url without padding")).unwrap()
    }

    /// The URLs AWS's own signer (aws-msk-iam-sasl-signer-python 1.0.2) makes
    /// for the same credentials, region and time, User-Agent aside: the
    /// signature is only right if the canonical request, the scope and the
    /// key derivation all are.
    const PYTHON_SIGNER: &str = "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect\
        &X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20261126%2Feu-west-1%2Fkafka-cluster%2Faws4_request\
        &X-Amz-Date=20261126T050000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=b9795fc70fac7b1918ba5beec035b4787a6ec4b8bdc3a5306099dcd71946a4bf";
    const PYTHON_SIGNER_WITH_SESSION: &str = "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect\
        &X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20261126%2Feu-west-1%2Fkafka-cluster%2Faws4_request\
        &X-Amz-Date=20261126T050000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
        &X-Amz-Security-Token=session%2Ftoken%2Bwith%3Dodd%20chars\
        &X-Amz-Signature=a0093a4c261d20ff6513be588a14055efccd9543f315c5e9ba84cf3d8790d58e";

    #[test]
    fn the_token_is_the_presigned_connect_url_aws_signers_make() {
        for (session, expected) in [(None, PYTHON_SIGNER), (Some(SESSION_TOKEN), PYTHON_SIGNER_WITH_SESSION)] {
            let token = signer(session).token().unwrap();
            assert!(!token.value.contains('=') && !token.value.contains('+') && !token.value.contains('/'));
            let url = decode(&token);
            let (signed, user_agent) = url.rsplit_once("&User-Agent=").expect("User-Agent parameter");
            assert_eq!(signed, expected);
            assert_eq!(user_agent, format!("streamlab%2F{}", env!("CARGO_PKG_VERSION")));
            // Signed at 05:00:00 (whole seconds), valid 900 s: what the
            // Python signer reports too (1795670100000).
            assert_eq!(token.expires_at_ms, 1_795_670_100_000);
        }
    }

    #[test]
    fn the_token_debug_hides_the_value() {
        let token = fixed_signer().token().unwrap();
        assert!(!format!("{token:?}").contains(&token.value[..20]));
    }

    #[test]
    fn the_region_comes_from_msk_broker_names() {
        let cases = [
            ("b-1.orders.abc123.c2.kafka.us-east-1.amazonaws.com:9098", Some("us-east-1")),
            (
                "b-1.orders.x.c3.kafka.eu-west-1.amazonaws.com:9098,b-2.orders.x.c3.kafka.eu-west-1.amazonaws.com:9098",
                Some("eu-west-1"),
            ),
            ("boot-abc.c2.kafka-serverless.ap-south-1.amazonaws.com:9098", Some("ap-south-1")),
            ("localhost:9092", None),
            ("kafka.internal:9092", None),
        ];
        for (bootstrap, region) in cases {
            assert_eq!(region_of_bootstrap(bootstrap).as_deref(), region, "{bootstrap}");
        }
    }
}
