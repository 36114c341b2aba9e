//! `--kafka-security tls` end to end, without MSK: tansu behind a
//! TLS-terminating proxy (what MSK's port 9094 is to a client), with a CA
//! made for the test. Topic creation, the producer, delivery's topic check
//! and the harness's reads all go through TLS; a client that trusts another
//! CA is refused with librdkafka's reason.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use streamlab::backend::{external_tansu, free_port, BrokerSettings, BrokerStorage, TansuBroker};
use streamlab::clock::SystemClock;
use streamlab::harness;
use streamlab::kafka::{KafkaConnection, Tls};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn authority(name: &str) -> Result<Authority> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate()?;
    Ok(Authority { cert: params.self_signed(&key)?, key })
}

/// Accepts TLS with a certificate for 127.0.0.1 signed by `ca` and forwards
/// the plaintext to `broker`. Connections that do not start a TLS handshake
/// are forwarded as they are: the broker's own readiness probe speaks
/// plaintext to the address it advertises.
async fn tls_proxy(listener: TcpListener, broker: u16, ca: &Authority) -> Result<()> {
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &ca.cert, &ca.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", broker)).await else { return };
                let mut first = [0u8; 1];
                let is_tls = client.peek(&mut first).await.is_ok_and(|n| n == 1 && first[0] == 0x16);
                if is_tls {
                    if let Ok(mut tls) = acceptor.accept(client).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                        let _ = tls.shutdown().await;
                    }
                } else {
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    Ok(())
}

fn write_pem(dir: &Path, name: &str, ca: &Authority) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, ca.cert.pem())?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_is_reached_with_its_ca_and_refused_without_it() -> Result<()> {
    common::init_logging();
    let dir = tempfile::tempdir()?;
    let (ca, stranger) = (authority("streamlab test CA")?, authority("some other CA")?);
    let proxy = TcpListener::bind("127.0.0.1:0").await?;
    let proxy_port = proxy.local_addr()?.port();
    let broker_port = free_port()?;
    tls_proxy(proxy, broker_port, &ca).await?;
    let settings = BrokerSettings {
        port: broker_port,
        advertised: Some(proxy_port),
        auto_create_partitions: None,
        storage: BrokerStorage::Memory,
    };
    let _broker = TansuBroker::start(external_tansu()?.as_deref(), dir.path(), &settings).await.context("tansu")?;
    let bootstrap = format!("127.0.0.1:{proxy_port}");

    let tls = Tls { ca_file: Some(write_pem(dir.path(), "ca.pem", &ca)?), client_certificate: None };
    let kafka = KafkaConnection::tls(&bootstrap, tls)?;
    streamlab::kafka::admin::create_topic(&kafka, "orders-tls", 2).await?;
    let events: Vec<_> = common::events(21, 40);
    let stats = Arc::new(streamlab::producer::ProducerStats::default());
    streamlab::producer::publish(
        &kafka,
        "orders-tls",
        None,
        events.clone().into_iter(),
        Arc::new(SystemClock),
        stats.clone(),
        Default::default(),
    )
    .await?;
    ensure!(stats.acked() == 40, "{} of 40 acknowledged", stats.acked());
    let read = tokio::task::spawn_blocking({
        let kafka = kafka.clone();
        move || -> Result<_> {
            let partitions = streamlab::kafka::admin::check_topic(&kafka, "orders-tls")?;
            let records = harness::read_topic(&kafka, "orders-tls", 40, Duration::from_secs(30))?;
            Ok((partitions, records))
        }
    })
    .await??;
    ensure!(read.0.len() == 2, "partitions {:?}", read.0);
    ensure!(events.iter().all(|e| read.1.contains_key(&e.event_id)), "not every event read back over TLS");

    // The same broker, trusted through another CA: refused, with the reason.
    let tls = Tls { ca_file: Some(write_pem(dir.path(), "other.pem", &stranger)?), client_certificate: None };
    let untrusting = KafkaConnection::tls(&bootstrap, tls)?;
    let error = tokio::task::spawn_blocking(move || streamlab::kafka::admin::check_topic(&untrusting, "orders-tls"))
        .await?
        .expect_err("a broker whose CA is not trusted was reached");
    let message = error.to_string();
    ensure!(message.contains(&bootstrap) && message.contains("--kafka-security"), "{message}");
    ensure!(message.contains("certificate verify failed"), "the reason is not named: {message}");
    Ok(())
}
