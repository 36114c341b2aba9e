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

/// Where a Docker engine may answer, in testcontainers' order: `DOCKER_HOST`
/// alone when set; else the system socket, then the rootless and Docker
/// Desktop ones.
pub fn docker_candidates(var: impl Fn(&str) -> Option<String>) -> Vec<String> {
    if let Some(host) = var("DOCKER_HOST").filter(|h| !h.is_empty()) {
        return vec![host];
    }
    let mut out = vec!["unix:///var/run/docker.sock".to_owned()];
    if let Some(runtime) = var("XDG_RUNTIME_DIR") {
        out.push(format!("unix://{runtime}/.docker/run/docker.sock"));
    }
    if let Some(home) = var("HOME") {
        out.push(format!("unix://{home}/.docker/run/docker.sock"));
        out.push(format!("unix://{home}/.docker/desktop/docker.sock"));
    }
    out
}

/// Whether a Docker engine answers, and if not, why (each place tried).
pub async fn docker_reachable() -> Result<(), String> {
    let mut tried = Vec::new();
    for host in docker_candidates(|k| std::env::var(k).ok()) {
        let outcome = match host.strip_prefix("unix://") {
            Some(path) => tokio::net::UnixStream::connect(path).await.map(drop),
            None => tokio::net::TcpStream::connect(host.trim_start_matches("tcp://")).await.map(drop),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => tried.push(format!("{host}: {e}")),
        }
    }
    Err(tried.join("; "))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_is_looked_for_where_testcontainers_looks() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(
            docker_candidates(env(&[("DOCKER_HOST", "tcp://10.0.0.5:2375"), ("HOME", "/h")])),
            ["tcp://10.0.0.5:2375"]
        );
        assert_eq!(
            docker_candidates(env(&[("XDG_RUNTIME_DIR", "/run/user/1000"), ("HOME", "/home/me")])),
            [
                "unix:///var/run/docker.sock",
                "unix:///run/user/1000/.docker/run/docker.sock",
                "unix:///home/me/.docker/run/docker.sock",
                "unix:///home/me/.docker/desktop/docker.sock",
            ]
        );
    }
}
