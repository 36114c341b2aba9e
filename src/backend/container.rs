//! Redpanda and LocalStack in containers, for machines with Docker.
//!
//! Image tags are pinned so a landing does not change because an image did.
//! Redpanda must advertise the address clients use, which is only known once
//! Docker has mapped the port. So it starts in two phases: the container's
//! command waits for a file holding `HOST:PORT`, which is written through
//! `exec` once the mapping (and the engine's host, `get_host`) is known, and
//! only then runs Redpanda with it. No port is picked beforehand, so no other
//! process can take it in between.

use std::time::Duration;

use testcontainers::core::{ExecCommand, IntoContainerPort, WaitFor};
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
/// leave only through `Drop` inside a runtime, so a SIGKILLed run leaves
/// them behind until the next start.
async fn remove_orphans() {
    remove_where(|owner| {
        // SAFETY: signal 0 only checks that the process exists.
        owner.is_none_or(|pid| unsafe { libc::kill(pid, 0) } != 0)
    })
    .await
}

/// Removes this process's containers now: for an abort (the second Ctrl-C)
/// that exits without running destructors.
pub async fn remove_own_containers() {
    let me = std::process::id() as i32;
    remove_where(|owner| owner == Some(me)).await
}

/// Removes streamlab's containers on this host whose owner pid matches.
async fn remove_where(matches: impl Fn(Option<i32>) -> bool) {
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
        if let (true, Some(id)) = (matches(owner), container.id) {
            tracing::info!(container = %id, ?owner, "removing a streamlab container");
            let _ = docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
        }
    }
}

/// Ready means a metadata request through the bootstrap succeeds and lists
/// exactly that address (a wrong advertised address fails here, not in the
/// first producer). Redpanda logs that it started a moment before its Kafka
/// listener answers, so the request is retried for a while.
async fn check_advertised(bootstrap: &str) -> Result<(), BackendError> {
    let started = std::time::Instant::now();
    let brokers = loop {
        let addr = bootstrap.to_owned();
        let answer = tokio::task::spawn_blocking(move || crate::kafka::admin::broker_addresses(&addr.as_str().into()))
            .await
            .map_err(|e| BackendError::Container { image: REDPANDA_IMAGE.into(), detail: e.to_string() })?;
        match answer {
            Ok(brokers) => break brokers,
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                return Err(BackendError::Container { image: REDPANDA_IMAGE.into(), detail: e.to_string() })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
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

/// Where the container's command finds the advertised address.
const ADVERTISE_FILE: &str = "/tmp/streamlab-advertise";
/// What the container prints while it waits for that file: the start is
/// "ready" for testcontainers at this line, Redpanda itself not yet.
const WAITING_LINE: &str = "streamlab: waiting for the advertised address";

/// Redpanda's arguments: one core, 1 GiB, and topics not created on first
/// use (dev-container mode turns that on; MSK has it off). The advertised
/// address is added by the container's command (see [`redpanda_command`]).
pub fn redpanda_args() -> Vec<String> {
    vec![
        "redpanda".to_owned(),
        "start".to_owned(),
        "--mode=dev-container".to_owned(),
        "--smp=1".to_owned(),
        "--memory=1G".to_owned(),
        format!("--kafka-addr=0.0.0.0:{KAFKA_PORT}"),
        "--set".to_owned(),
        "redpanda.auto_create_topics_enabled=false".to_owned(),
    ]
}

/// The container's command (entrypoint `sh`): wait for [`ADVERTISE_FILE`],
/// then hand over to the image's entrypoint with Redpanda's arguments and
/// the address from the file.
pub fn redpanda_command() -> Vec<String> {
    let script = format!(
        "echo '{WAITING_LINE}'; \
         while [ ! -s {ADVERTISE_FILE} ]; do sleep 0.1; done; \
         exec /entrypoint.sh \"$@\" --advertise-kafka-addr=\"$(cat {ADVERTISE_FILE})\""
    );
    let mut command = vec!["-c".to_owned(), script, "sh".to_owned()];
    command.extend(redpanda_args());
    command
}

/// The `exec` that releases the waiting container: written to a temporary
/// file and renamed, so the loop never reads half an address.
pub fn advertise_command(bootstrap: &str) -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!("printf '%s' '{bootstrap}' > {ADVERTISE_FILE}.tmp && mv {ADVERTISE_FILE}.tmp {ADVERTISE_FILE}"),
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
        let owner = std::process::id().to_string();
        let redpanda =
            |detail: String| BackendError::Container { image: format!("{REDPANDA_IMAGE}:{REDPANDA_TAG}"), detail };
        // Only the Kafka port is published, to a port Docker picks.
        let kafka = GenericImage::new(REDPANDA_IMAGE, REDPANDA_TAG)
            .with_exposed_port(KAFKA_PORT.tcp())
            .with_wait_for(WaitFor::message_on_either_std(WAITING_LINE))
            .with_entrypoint("sh")
            .with_mapped_port(0, KAFKA_PORT.tcp())
            .with_cmd(redpanda_command())
            .with_label(OWNER_LABEL, owner.clone())
            .with_label(HOST_LABEL, host_name())
            .with_startup_timeout(STARTUP_TIMEOUT)
            .start()
            .await
            .map_err(|e| redpanda(e.to_string()))?;
        // The engine's host as testcontainers resolves it (a `tcp://`
        // DOCKER_HOST, or an override), with the port Docker mapped.
        let host = kafka.get_host().await.map_err(|e| redpanda(e.to_string()))?.to_string();
        let kafka_port = kafka.get_host_port_ipv4(KAFKA_PORT.tcp()).await.map_err(|e| redpanda(e.to_string()))?;
        let bootstrap = format!("{host}:{kafka_port}");
        kafka
            .exec(ExecCommand::new(advertise_command(&bootstrap)).with_container_ready_conditions(vec![
                WaitFor::message_on_either_std("Successfully started Redpanda!"),
            ]))
            .await
            .map_err(|e| redpanda(format!("releasing it with the advertised address {bootstrap}: {e}")))?;

        let mut s3 = GenericImage::new(LOCALSTACK_IMAGE, LOCALSTACK_TAG)
            .with_exposed_port(LOCALSTACK_PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready."))
            // Only the gateway, not every port the image exposes, to a port
            // Docker picks.
            .with_mapped_port(0, LOCALSTACK_PORT.tcp())
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
        let s3_port = s3.get_host_port_ipv4(LOCALSTACK_PORT.tcp()).await.map_err(|e| BackendError::Container {
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
    fn redpanda_waits_for_the_address_clients_use_and_refuses_auto_creation() {
        let command = redpanda_command();
        let (flag, script, argv0) = (&command[0], &command[1], &command[2]);
        assert_eq!((flag.as_str(), argv0.as_str()), ("-c", "sh"));
        assert!(script.starts_with(&format!("echo '{WAITING_LINE}'")), "{script}");
        assert!(script.contains("while [ ! -s /tmp/streamlab-advertise ]"), "{script}");
        assert!(
            script.ends_with(r#"exec /entrypoint.sh "$@" --advertise-kafka-addr="$(cat /tmp/streamlab-advertise)""#)
        );
        assert_eq!(&command[3..], redpanda_args().as_slice());
        assert!(command.contains(&"--memory=1G".to_owned()));
        assert!(command.windows(2).any(|w| w == ["--set", "redpanda.auto_create_topics_enabled=false"]));
        assert!(
            !command.iter().any(|a| a.contains("--advertise-kafka-addr=10")),
            "no address before the mapping is known"
        );
    }

    /// The script run as the container would run it, with a fake Redpanda
    /// entrypoint: it waits until the address is released, then passes it on.
    #[test]
    fn the_container_command_starts_redpanda_with_the_released_address() {
        let dir = tempfile::tempdir().unwrap();
        let (file, entrypoint) = (dir.path().join("advertise"), dir.path().join("entrypoint.sh"));
        std::fs::write(&entrypoint, "#!/bin/sh\necho \"$@\"\n").unwrap();
        std::fs::set_permissions(&entrypoint, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let localize = |s: &str| {
            s.replace(ADVERTISE_FILE, file.to_str().unwrap()).replace("/entrypoint.sh", entrypoint.to_str().unwrap())
        };
        let command: Vec<String> = redpanda_command().iter().map(|a| localize(a)).collect();
        let child =
            std::process::Command::new("sh").args(&command).stdout(std::process::Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let release: Vec<String> = advertise_command("10.0.0.5:40001").iter().map(|a| localize(a)).collect();
        assert!(std::process::Command::new(&release[0]).args(&release[1..]).status().unwrap().success());
        let output = child.wait_with_output().unwrap();
        let lines = String::from_utf8(output.stdout).unwrap();
        let mut lines = lines.lines();
        assert_eq!(lines.next(), Some(WAITING_LINE));
        assert_eq!(
            lines.next().unwrap(),
            format!("{} --advertise-kafka-addr=10.0.0.5:40001", redpanda_args().join(" "))
        );
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
