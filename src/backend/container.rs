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
/// The last LocalStack tag that starts without `LOCALSTACK_AUTH_TOKEN`
/// (2026.x images exit with code 55 without one); a token in the
/// environment is passed through.
pub const LOCALSTACK_TAG: &str = "4.14.0";
const KAFKA_PORT: u16 = 9092;
const LOCALSTACK_PORT: u16 = 4566;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Label on every container streamlab starts, with the owning process id.
pub const OWNER_LABEL: &str = "dev.streamlab.owner-pid";
/// And the owner's host name: an engine reached over `tcp://` may serve
/// several machines, whose process ids mean nothing here.
pub const HOST_LABEL: &str = "dev.streamlab.owner-host";

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// Removes the containers of earlier runs whose owner is gone: containers
/// leave only through `Drop` inside a runtime, so a SIGKILLed (or twice
/// interrupted) run leaves them behind until the next start.
async fn remove_orphans() {
    use testcontainers::bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
    let Ok(docker) = testcontainers::bollard::Docker::connect_with_defaults() else { return };
    let filters = std::collections::HashMap::from([("label", vec![OWNER_LABEL])]);
    let Ok(containers) =
        docker.list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filters).build())).await
    else {
        return;
    };
    for container in containers {
        let labels = container.labels.unwrap_or_default();
        if labels.get(HOST_LABEL).map(String::as_str) != Some(host_name().as_str()) {
            continue;
        }
        let owner = labels.get(OWNER_LABEL).and_then(|p| p.parse::<i32>().ok());
        // SAFETY: signal 0 only checks that the process exists.
        let alive = owner.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if let (false, Some(id)) = (alive, container.id) {
            tracing::info!(container = %id, ?owner, "removing a container left by a run that is gone");
            let _ = docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
        }
    }
}

/// Ready means a metadata request through the bootstrap succeeds and lists
/// exactly that address (a wrong advertised address fails here, not in the
/// first producer).
async fn check_advertised(bootstrap: &str) -> Result<(), BackendError> {
    let addr = bootstrap.to_owned();
    let brokers = tokio::task::spawn_blocking(move || crate::harness::broker_addresses(&addr.as_str().into()))
        .await
        .map_err(|e| BackendError::Container { image: REDPANDA_IMAGE.into(), detail: e.to_string() })?
        .map_err(|e| BackendError::Container { image: REDPANDA_IMAGE.into(), detail: e.to_string() })?;
    if brokers != [bootstrap] {
        return Err(BackendError::Container {
            image: format!("{REDPANDA_IMAGE}:{REDPANDA_TAG}"),
            detail: format!("it advertises {brokers:?}, not {bootstrap:?}, so clients could not reach it"),
        });
    }
    Ok(())
}

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

/// The host clients reach published ports on: the host of a `tcp://`
/// `DOCKER_HOST`, else loopback.
pub fn docker_host_address(var: impl Fn(&str) -> Option<String>) -> String {
    var("DOCKER_HOST")
        .and_then(|h| h.strip_prefix("tcp://").map(|rest| rest.split(':').next().unwrap_or_default().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// Redpanda's command: one core, 1 GiB, and topics not created on first
/// use (dev-container mode turns that on; MSK has it off), advertising the
/// address clients use.
pub fn redpanda_command(advertised: &str) -> Vec<String> {
    vec![
        "redpanda".to_owned(),
        "start".to_owned(),
        "--mode=dev-container".to_owned(),
        "--smp=1".to_owned(),
        "--memory=1G".to_owned(),
        format!("--kafka-addr=0.0.0.0:{KAFKA_PORT}"),
        format!("--advertise-kafka-addr={advertised}"),
        "--set".to_owned(),
        "redpanda.auto_create_topics_enabled=false".to_owned(),
    ]
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
        remove_orphans().await;
        let host = docker_host_address(|k| std::env::var(k).ok());
        let kafka_port = super::free_port()?;
        let bootstrap = format!("{host}:{kafka_port}");
        let owner = std::process::id().to_string();
        let kafka = GenericImage::new(REDPANDA_IMAGE, REDPANDA_TAG)
            .with_exposed_port(KAFKA_PORT.tcp())
            .with_wait_for(WaitFor::message_on_either_std("Successfully started Redpanda!"))
            .with_mapped_port(kafka_port, KAFKA_PORT.tcp())
            .with_cmd(redpanda_command(&bootstrap))
            .with_label(OWNER_LABEL, owner.clone())
            .with_label(HOST_LABEL, host_name())
            .with_startup_timeout(STARTUP_TIMEOUT)
            .start()
            .await
            .map_err(|e| BackendError::Container {
                image: format!("{REDPANDA_IMAGE}:{REDPANDA_TAG}"),
                detail: e.to_string(),
            })?;

        let s3_port = super::free_port()?;
        let mut s3 = GenericImage::new(LOCALSTACK_IMAGE, LOCALSTACK_TAG)
            .with_exposed_port(LOCALSTACK_PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready."))
            // Only the gateway: not every port the image exposes.
            .with_mapped_port(s3_port, LOCALSTACK_PORT.tcp())
            .with_env_var("SERVICES", "s3")
            .with_label(OWNER_LABEL, owner)
            .with_label(HOST_LABEL, host_name());
        if let Ok(token) = std::env::var("LOCALSTACK_AUTH_TOKEN") {
            s3 = s3.with_env_var("LOCALSTACK_AUTH_TOKEN", token);
        }
        let s3 = s3.with_startup_timeout(STARTUP_TIMEOUT).start().await.map_err(|e| BackendError::Container {
            image: format!("{LOCALSTACK_IMAGE}:{LOCALSTACK_TAG}"),
            detail: e.to_string(),
        })?;
        check_advertised(&bootstrap).await?;
        Ok(Self {
            bootstrap,
            s3: S3Settings {
                endpoint: Some(format!("http://{host}:{s3_port}")),
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
    fn redpanda_advertises_the_address_clients_use_and_refuses_auto_creation() {
        let command = redpanda_command("10.0.0.5:40001");
        assert!(command.contains(&"--advertise-kafka-addr=10.0.0.5:40001".to_owned()));
        assert!(command.contains(&"--memory=1G".to_owned()));
        assert!(command.windows(2).any(|w| w == ["--set", "redpanda.auto_create_topics_enabled=false"]));
        let env = |host: &'static str| move |k: &str| (k == "DOCKER_HOST").then(|| host.to_owned());
        assert_eq!(docker_host_address(env("tcp://10.0.0.5:2375")), "10.0.0.5");
        assert_eq!(docker_host_address(env("unix:///var/run/docker.sock")), "127.0.0.1");
        assert_eq!(docker_host_address(|_| None), "127.0.0.1");
    }

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
