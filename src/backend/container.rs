//! Redpanda and LocalStack in containers, for machines with Docker.
//!
//! Image tags are pinned so a landing does not change because an image did.
//! Redpanda must advertise the address clients use, which is only known once
//! the host port is chosen: so the host port is picked first and mapped
//! explicitly, and the advertised listener is written into the command.

use std::time::Duration;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::BackendError;
use crate::delivery::sink::{S3Settings, StaticCredentials};

pub const REDPANDA_IMAGE: &str = "docker.redpanda.com/redpandadata/redpanda";
pub const REDPANDA_TAG: &str = "v24.2.7";
pub const LOCALSTACK_IMAGE: &str = "localstack/localstack";
pub const LOCALSTACK_TAG: &str = "4.0.3";
const KAFKA_PORT: u16 = 9092;
const LOCALSTACK_PORT: u16 = 4566;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether a Docker engine answers, and if not, why.
pub async fn docker_reachable() -> Result<(), String> {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if let Some(path) = host.strip_prefix("unix://") {
            return tokio::net::UnixStream::connect(path).await.map(drop).map_err(|e| format!("{host}: {e}"));
        }
        let addr = host.trim_start_matches("tcp://").to_owned();
        return tokio::net::TcpStream::connect(&addr).await.map(drop).map_err(|e| format!("{host}: {e}"));
    }
    let socket = "/var/run/docker.sock";
    tokio::net::UnixStream::connect(socket).await.map(drop).map_err(|e| format!("{socket}: {e}"))
}

/// The running containers; testcontainers removes them when dropped.
pub struct Containers {
    pub bootstrap: String,
    pub s3: S3Settings,
    _kafka: ContainerAsync<GenericImage>,
    _s3: ContainerAsync<GenericImage>,
}

impl Containers {
    pub async fn start() -> Result<Self, BackendError> {
        docker_reachable().await.map_err(BackendError::NoDocker)?;
        let kafka_port = super::free_port()?;
        let kafka = GenericImage::new(REDPANDA_IMAGE, REDPANDA_TAG)
            .with_exposed_port(KAFKA_PORT.tcp())
            .with_wait_for(WaitFor::message_on_either_std("Successfully started Redpanda!"))
            .with_mapped_port(kafka_port, KAFKA_PORT.tcp())
            .with_cmd([
                "redpanda".to_owned(),
                "start".to_owned(),
                "--mode=dev-container".to_owned(),
                "--smp=1".to_owned(),
                format!("--kafka-addr=0.0.0.0:{KAFKA_PORT}"),
                format!("--advertise-kafka-addr=127.0.0.1:{kafka_port}"),
            ])
            .with_startup_timeout(STARTUP_TIMEOUT)
            .start()
            .await
            .map_err(|e| BackendError::Container {
                image: format!("{REDPANDA_IMAGE}:{REDPANDA_TAG}"),
                detail: e.to_string(),
            })?;

        let s3 = GenericImage::new(LOCALSTACK_IMAGE, LOCALSTACK_TAG)
            .with_exposed_port(LOCALSTACK_PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready."))
            .with_env_var("SERVICES", "s3")
            .with_startup_timeout(STARTUP_TIMEOUT)
            .start()
            .await
            .map_err(|e| BackendError::Container {
                image: format!("{LOCALSTACK_IMAGE}:{LOCALSTACK_TAG}"),
                detail: e.to_string(),
            })?;
        let s3_port = s3
            .get_host_port_ipv4(LOCALSTACK_PORT.tcp())
            .await
            .map_err(|e| BackendError::Container { image: LOCALSTACK_IMAGE.into(), detail: e.to_string() })?;
        Ok(Self {
            bootstrap: format!("127.0.0.1:{kafka_port}"),
            s3: S3Settings {
                endpoint: Some(format!("http://127.0.0.1:{s3_port}")),
                region: Some("us-east-1".into()),
                // LocalStack accepts any key; these are its documented defaults.
                credentials: Some(StaticCredentials { access_key_id: "test".into(), secret_access_key: "test".into() }),
            },
            _kafka: kafka,
            _s3: s3,
        })
    }
}
