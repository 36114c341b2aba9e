//! How streamlab reaches a Kafka cluster: one [`KafkaConnection`] (bootstrap
//! plus security) behind every client it creates, so the producer, the
//! delivery consumer, the stream-state store and the harness all speak to a
//! team's MSK cluster the same way they speak to the local broker.
//!
//! MSK's listeners, one per security mode (see the README's backend table):
//!
//! | mode        | port | librdkafka                                   |
//! |-------------|------|----------------------------------------------|
//! | `plaintext` | 9092 | `PLAINTEXT`                                  |
//! | `tls`       | 9094 | `SSL` (optionally with a client certificate) |
//! | `scram`     | 9096 | `SASL_SSL` + `SCRAM-SHA-512`                 |
//! | `iam`       | 9098 | `SASL_SSL` + `OAUTHBEARER` (SigV4 token)     |

pub mod admin;
mod context;
pub mod iam;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;

pub use context::{KafkaContext, NativeHandle};
pub use iam::{IamError, TokenSigner};

/// How clients authenticate and encrypt, MSK's four listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityMode {
    /// No TLS, no authentication (MSK port 9092; every local backend).
    #[default]
    Plaintext,
    /// TLS, with a client certificate for MSK mutual TLS (port 9094).
    Tls,
    /// SASL/SCRAM-SHA-512 over TLS (port 9096), the password from an
    /// environment variable.
    Scram,
    /// MSK IAM: SASL/OAUTHBEARER over TLS with a SigV4-signed token (port 9098).
    Iam,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    #[error("{option} {path}: the file does not exist; give the path of a PEM file")]
    MissingFile { option: &'static str, path: PathBuf },
    #[error("--kafka-client-cert and --kafka-client-key go together; give both (MSK mutual TLS) or neither")]
    HalfClientCertificate,
    #[error("{option} has no effect with --kafka-security plaintext; use --kafka-security tls, scram or iam")]
    TlsOptionWithoutTls { option: &'static str },
    #[error("--kafka-security scram needs --scram-username (or STREAMLAB_SCRAM_USERNAME)")]
    MissingScramUser,
    #[error(
        "--kafka-security scram reads the password from the environment variable {variable}, which is not set; \
         export it (or name another variable with --scram-password-env)"
    )]
    MissingScramPassword { variable: String },
    #[error(transparent)]
    Iam(#[from] IamError),
}

impl SecurityMode {
    /// Every mode, by the name the command line and the environment use.
    pub const ALL: [(&'static str, SecurityMode); 4] = [
        ("plaintext", SecurityMode::Plaintext),
        ("tls", SecurityMode::Tls),
        ("scram", SecurityMode::Scram),
        ("iam", SecurityMode::Iam),
    ];
}

impl std::str::FromStr for SecurityMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, mode)| *mode)
            .ok_or_else(|| format!("{s:?} is not a Kafka security mode; use plaintext, tls, scram or iam"))
    }
}

/// A secret that `Debug` and `Display` never print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A client certificate and its private key (PEM files) for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// TLS settings: librdkafka verifies the broker against the system's CA
/// store unless a CA file is given (MSK's certificates chain to Amazon's
/// public roots, so usually none is needed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub client_certificate: Option<ClientCertificate>,
}

#[derive(Debug, Clone)]
enum Security {
    Plaintext,
    Tls(Tls),
    Scram { tls: Tls, username: String, password: Secret },
    Iam { tls: Tls, signer: Arc<TokenSigner> },
}

/// A Kafka cluster and how to reach it. Cheap to clone; `Debug` never shows
/// a password or a credential.
#[derive(Debug, Clone)]
pub struct KafkaConnection {
    bootstrap: String,
    security: Security,
}

impl From<&str> for KafkaConnection {
    fn from(bootstrap: &str) -> Self {
        KafkaConnection::plaintext(bootstrap)
    }
}

impl From<String> for KafkaConnection {
    fn from(bootstrap: String) -> Self {
        KafkaConnection::plaintext(bootstrap)
    }
}

impl KafkaConnection {
    /// A broker without TLS or authentication (every local backend).
    pub fn plaintext(bootstrap: impl Into<String>) -> Self {
        KafkaConnection { bootstrap: bootstrap.into(), security: Security::Plaintext }
    }

    /// TLS, optionally with a CA file and a client certificate.
    pub fn tls(bootstrap: impl Into<String>, tls: Tls) -> Result<Self, ConnectionError> {
        check_tls(&tls)?;
        Ok(KafkaConnection { bootstrap: bootstrap.into(), security: Security::Tls(tls) })
    }

    /// SASL/SCRAM-SHA-512 over TLS.
    pub fn scram(
        bootstrap: impl Into<String>,
        tls: Tls,
        username: impl Into<String>,
        password: Secret,
    ) -> Result<Self, ConnectionError> {
        check_tls(&tls)?;
        let username = username.into();
        if username.is_empty() {
            return Err(ConnectionError::MissingScramUser);
        }
        Ok(KafkaConnection { bootstrap: bootstrap.into(), security: Security::Scram { tls, username, password } })
    }

    /// MSK IAM: every client signs its tokens with `signer`.
    pub fn iam(bootstrap: impl Into<String>, tls: Tls, signer: Arc<TokenSigner>) -> Result<Self, ConnectionError> {
        check_tls(&tls)?;
        Ok(KafkaConnection { bootstrap: bootstrap.into(), security: Security::Iam { tls, signer } })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// A client configuration with the bootstrap and security keys set;
    /// callers add their own (group, timeouts).
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        // librdkafka spaces new broker connections by half this (50 ms by
        // default): a client that needs a second connection (the broker its
        // bootstrap names, a group coordinator) waited that long, several
        // times per start. The backoff still doubles on each failure up to
        // `reconnect.backoff.max.ms` (10 s), so an outage is not hammered.
        config.set("reconnect.backoff.ms", "10");
        if let Ok(contexts) = std::env::var("STREAMLAB_RDKAFKA_DEBUG") {
            // librdkafka's own tracing (e.g. `cgrp,fetch`) for every client,
            // shown with STREAMLAB_LOG=librdkafka=debug.
            config.set("debug", contexts);
        }
        let tls = match &self.security {
            Security::Plaintext => {
                config.set("security.protocol", "plaintext");
                return config;
            }
            Security::Tls(tls) => {
                config.set("security.protocol", "ssl");
                tls
            }
            Security::Scram { tls, username, password } => {
                config
                    .set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanism", "SCRAM-SHA-512")
                    .set("sasl.username", username)
                    .set("sasl.password", password.expose());
                tls
            }
            Security::Iam { tls, .. } => {
                config.set("security.protocol", "sasl_ssl").set("sasl.mechanism", "OAUTHBEARER");
                tls
            }
        };
        if let Some(ca) = &tls.ca_file {
            config.set("ssl.ca.location", ca.to_string_lossy());
        }
        if let Some(cert) = &tls.client_certificate {
            config
                .set("ssl.certificate.location", cert.certificate.to_string_lossy())
                .set("ssl.key.location", cert.key.to_string_lossy());
        }
        config
    }

    /// The context every client of this connection carries: it signs MSK
    /// IAM tokens when librdkafka asks for a fresh one.
    pub fn context(&self) -> KafkaContext {
        KafkaContext::new(self.signer())
    }

    fn signer(&self) -> Option<Arc<TokenSigner>> {
        match &self.security {
            Security::Iam { signer, .. } => Some(signer.clone()),
            _ => None,
        }
    }

    /// Creates a client from `config` (made by [`KafkaConnection::config`])
    /// with the connection's context.
    pub fn create<T>(&self, config: &ClientConfig) -> Result<T, KafkaError>
    where
        T: FromClientConfigAndContext<KafkaContext> + NativeHandle,
    {
        self.create_with_context(config, self.context())
    }

    /// Creates a client with a context of the caller's that embeds this
    /// connection's [`KafkaContext`], and hands it its first token.
    ///
    /// librdkafka asks for the first OAUTHBEARER token through an event on
    /// the main queue, which only a poll serves. Metadata requests made
    /// before any poll (topic checks, topic creation) and `AdminClient`,
    /// which never polls that queue, would wait forever, so the first token
    /// is set here, synchronously, right after the client exists.
    pub fn create_with_context<T, C>(&self, config: &ClientConfig, context: C) -> Result<T, KafkaError>
    where
        C: rdkafka::ClientContext,
        T: FromClientConfigAndContext<C> + NativeHandle,
    {
        let client = T::from_config_and_context(config, context)?;
        if let Some(signer) = self.signer() {
            context::set_first_token(&client, &signer);
        }
        Ok(client)
    }
}

fn check_tls(tls: &Tls) -> Result<(), ConnectionError> {
    let exists = |option, path: &Path| match path.exists() {
        true => Ok(()),
        false => Err(ConnectionError::MissingFile { option, path: path.to_owned() }),
    };
    if let Some(ca) = &tls.ca_file {
        exists("--kafka-ca-file", ca)?;
    }
    if let Some(cert) = &tls.client_certificate {
        exists("--kafka-client-cert", &cert.certificate)?;
        exists("--kafka-client-key", &cert.key)?;
    }
    Ok(())
}

/// How to reach a cluster besides its bootstrap address: what `produce`
/// and `deliver` take as options and `--backend external` reads from the
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionOptions {
    pub kafka_security: SecurityMode,
    /// PEM file of the CAs that sign the brokers' certificates; `None`: the
    /// system's store (enough for MSK).
    pub kafka_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for MSK mutual TLS; both or neither.
    pub kafka_client_cert: Option<PathBuf>,
    pub kafka_client_key: Option<PathBuf>,
    pub scram_username: Option<String>,
    /// The environment variable holding the SCRAM password (never a value
    /// of its own, so it stays out of shell history and process listings).
    pub scram_password_env: String,
    /// The cluster's region for MSK IAM tokens; `None`: from an MSK broker
    /// host name, else the AWS chain.
    pub kafka_region: Option<String>,
}

/// The variable naming the SCRAM password by default.
pub const DEFAULT_SCRAM_PASSWORD_ENV: &str = "STREAMLAB_SCRAM_PASSWORD";

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            kafka_security: SecurityMode::Plaintext,
            kafka_ca_file: None,
            kafka_client_cert: None,
            kafka_client_key: None,
            scram_username: None,
            scram_password_env: DEFAULT_SCRAM_PASSWORD_ENV.to_owned(),
            kafka_region: None,
        }
    }
}

/// The environment variables of [`ConnectionOptions`], read by
/// [`ConnectionOptions::from_env`] and by the command line alike.
pub mod env {
    pub const SECURITY: &str = "STREAMLAB_KAFKA_SECURITY";
    pub const CA_FILE: &str = "STREAMLAB_KAFKA_CA_FILE";
    pub const CLIENT_CERT: &str = "STREAMLAB_KAFKA_CLIENT_CERT";
    pub const CLIENT_KEY: &str = "STREAMLAB_KAFKA_CLIENT_KEY";
    pub const SCRAM_USERNAME: &str = "STREAMLAB_SCRAM_USERNAME";
    pub const SCRAM_PASSWORD_ENV: &str = "STREAMLAB_SCRAM_PASSWORD_ENV";
    pub const REGION: &str = "STREAMLAB_KAFKA_REGION";
}

impl ConnectionOptions {
    /// The options from their environment variables ([`env`]); unset or
    /// empty ones keep their defaults.
    pub fn from_env() -> Result<ConnectionOptions, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let defaults = ConnectionOptions::default();
        Ok(ConnectionOptions {
            kafka_security: match var(env::SECURITY) {
                Some(mode) => mode.parse().map_err(|e| format!("{}: {e}", env::SECURITY))?,
                None => defaults.kafka_security,
            },
            kafka_ca_file: var(env::CA_FILE).map(PathBuf::from),
            kafka_client_cert: var(env::CLIENT_CERT).map(PathBuf::from),
            kafka_client_key: var(env::CLIENT_KEY).map(PathBuf::from),
            scram_username: var(env::SCRAM_USERNAME),
            scram_password_env: var(env::SCRAM_PASSWORD_ENV).unwrap_or(defaults.scram_password_env),
            kafka_region: var(env::REGION),
        })
    }
}

impl ConnectionOptions {
    /// Validates the options and, for IAM, loads the first AWS credentials,
    /// so a bad configuration fails before anything connects.
    pub async fn connect(&self, bootstrap: &str) -> Result<KafkaConnection, ConnectionError> {
        let client_certificate = match (&self.kafka_client_cert, &self.kafka_client_key) {
            (Some(certificate), Some(key)) => {
                Some(ClientCertificate { certificate: certificate.clone(), key: key.clone() })
            }
            (None, None) => None,
            _ => return Err(ConnectionError::HalfClientCertificate),
        };
        let tls = Tls { ca_file: self.kafka_ca_file.clone(), client_certificate };
        match self.kafka_security {
            SecurityMode::Plaintext => {
                let option = match (&tls.ca_file, &tls.client_certificate) {
                    (Some(_), _) => Some("--kafka-ca-file"),
                    (_, Some(_)) => Some("--kafka-client-cert"),
                    _ => None,
                };
                match option {
                    Some(option) => Err(ConnectionError::TlsOptionWithoutTls { option }),
                    None => Ok(KafkaConnection::plaintext(bootstrap)),
                }
            }
            SecurityMode::Tls => KafkaConnection::tls(bootstrap, tls),
            SecurityMode::Scram => {
                let username = self.scram_username.clone().ok_or(ConnectionError::MissingScramUser)?;
                let password =
                    std::env::var(&self.scram_password_env).ok().filter(|p| !p.is_empty()).ok_or_else(|| {
                        ConnectionError::MissingScramPassword { variable: self.scram_password_env.clone() }
                    })?;
                KafkaConnection::scram(bootstrap, tls, username, Secret::new(password))
            }
            SecurityMode::Iam => {
                let region = match &self.kafka_region {
                    Some(region) => Some(region.clone()),
                    None => iam::region_of_bootstrap(bootstrap),
                };
                let signer = TokenSigner::from_environment(region).await?;
                KafkaConnection::iam(bootstrap, tls, signer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys(connection: &KafkaConnection) -> Vec<(String, String)> {
        let config = connection.config();
        let mut keys: Vec<(String, String)> =
            config.config_map().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        keys.sort();
        keys
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn plaintext_sets_only_the_bootstrap_and_protocol() {
        let connection = KafkaConnection::plaintext("localhost:9092");
        assert_eq!(
            keys(&connection),
            pairs(&[
                ("bootstrap.servers", "localhost:9092"),
                ("reconnect.backoff.ms", "10"),
                ("security.protocol", "plaintext")
            ])
        );
    }

    #[test]
    fn tls_with_a_client_certificate_sets_the_ssl_locations() {
        let dir = tempfile::tempdir().unwrap();
        let [ca, cert, key] = ["ca.pem", "cert.pem", "key.pem"].map(|f| {
            std::fs::write(dir.path().join(f), "pem").unwrap();
            dir.path().join(f)
        });
        let tls = Tls {
            ca_file: Some(ca.clone()),
            client_certificate: Some(ClientCertificate { certificate: cert.clone(), key: key.clone() }),
        };
        let connection = KafkaConnection::tls("b-1:9094", tls).unwrap();
        assert_eq!(
            keys(&connection),
            pairs(&[
                ("bootstrap.servers", "b-1:9094"),
                ("reconnect.backoff.ms", "10"),
                ("security.protocol", "ssl"),
                ("ssl.ca.location", ca.to_str().unwrap()),
                ("ssl.certificate.location", cert.to_str().unwrap()),
                ("ssl.key.location", key.to_str().unwrap()),
            ])
        );
    }

    #[test]
    fn scram_uses_sha_512_over_tls_and_never_prints_the_password() {
        let connection =
            KafkaConnection::scram("b-1:9096", Tls::default(), "alice", Secret::new("hunter2-secret")).unwrap();
        assert_eq!(
            keys(&connection),
            pairs(&[
                ("bootstrap.servers", "b-1:9096"),
                ("reconnect.backoff.ms", "10"),
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "alice"),
                ("sasl.password", "[sanitized for safety]"),
            ])
        );
        assert_eq!(connection.config().get("sasl.password"), Some("hunter2-secret"));
        let debug = format!("{connection:?} {:?}", connection.config());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("alice"), "{debug}");
    }

    #[test]
    fn iam_uses_oauthbearer_over_tls_and_never_prints_the_credentials() {
        let signer = iam::tests::fixed_signer();
        let connection = KafkaConnection::iam("b-1:9098", Tls::default(), signer).unwrap();
        assert_eq!(
            keys(&connection),
            pairs(&[
                ("bootstrap.servers", "b-1:9098"),
                ("reconnect.backoff.ms", "10"),
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanism", "OAUTHBEARER"),
            ])
        );
        let debug = format!("{connection:?}");
        assert!(!debug.contains(iam::tests::SECRET_KEY) && !debug.contains(iam::tests::SESSION_TOKEN), "{debug}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let error =
            KafkaConnection::tls("b:9094", Tls { ca_file: Some("/nonexistent/ca.pem".into()), ..Tls::default() })
                .unwrap_err()
                .to_string();
        assert_eq!(error, "--kafka-ca-file /nonexistent/ca.pem: the file does not exist; give the path of a PEM file");
    }

    #[tokio::test]
    async fn command_line_mistakes_are_rejected_before_connecting() {
        let args = |f: fn(&mut ConnectionOptions)| {
            let mut args =
                ConnectionOptions { scram_password_env: "STREAMLAB_TEST_UNSET_PASSWORD".into(), ..Default::default() };
            f(&mut args);
            args
        };
        let error = |args: ConnectionOptions| async move { args.connect("b:1").await.unwrap_err().to_string() };
        assert!(error(args(|a| a.kafka_client_cert = Some("c.pem".into()))).await.contains("go together"));
        assert!(error(args(|a| a.kafka_ca_file = Some("ca.pem".into())))
            .await
            .contains("no effect with --kafka-security plaintext"));
        assert!(error(args(|a| a.kafka_security = SecurityMode::Scram)).await.contains("--scram-username"));
        let unset = error(args(|a| {
            a.kafka_security = SecurityMode::Scram;
            a.scram_username = Some("alice".into());
        }))
        .await;
        assert!(unset.contains("STREAMLAB_TEST_UNSET_PASSWORD, which is not set"), "{unset}");
    }

    /// librdkafka connects to an OAUTHBEARER broker only once a token is
    /// set. Nothing polls this consumer, so without the first token set at
    /// creation its metadata request would never open a connection (what
    /// made `check_topic` and `AdminClient` stall). A bare TCP listener
    /// stands in for the broker: the TLS ClientHello arriving shows the
    /// client went ahead.
    #[test]
    fn an_oauthbearer_client_has_a_token_before_its_first_metadata_request() {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use std::io::Read;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bootstrap = listener.local_addr().unwrap().to_string();
        let credentials = aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let signer = Arc::new(TokenSigner::new("eu-west-1", credentials, Arc::new(crate::clock::SystemClock)));
        let connection = KafkaConnection::iam(&bootstrap, Tls::default(), signer).unwrap();
        let consumer: BaseConsumer<KafkaContext> = connection.create(&connection.config()).unwrap();
        let metadata = std::thread::spawn(move || consumer.fetch_metadata(None, Duration::from_secs(4)).map(|_| ()));

        listener.set_nonblocking(false).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok((mut socket, _)) = listener.accept() {
                let mut first = [0u8; 1];
                let _ = tx.send(socket.read_exact(&mut first).map(|()| first[0]).ok());
            }
        });
        let first_byte = rx.recv_timeout(Duration::from_secs(3)).ok().flatten();
        assert_eq!(first_byte, Some(0x16), "no TLS handshake reached the broker: the client waited for a token");
        assert!(metadata.join().unwrap().is_err(), "a TCP listener is not a broker");
    }
}
