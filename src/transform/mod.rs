//! Lambda data transformation, as Firehose runs it for an MSK source: records
//! buffered for the function ([`stage`]), one synchronous invocation per
//! batch with the MSK event shape ([`event`]), failed invocations retried
//! `NumberOfRetries` times, and every record's outcome (Ok, Dropped, or an
//! error record under `processing-failed`) handed to the delivery core.
//!
//! Where a function runs is chosen on the command line, never in the spec:
//! a local runtime process speaking the Runtime API ([`runtime`]) or any
//! Invoke API endpoint ([`invoke`]). [`Functions`] maps the spec's ARNs to
//! them and refuses, before anything starts, an ARN with neither.

pub mod event;
pub mod invoke;
pub mod runtime;
pub mod stage;
mod stats;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::record::Record;
use crate::spec::{LambdaProcessor, StreamSpec};
use event::{EventContext, Outcome};
pub use invoke::{InvokeError, Invoker, StartError};
pub use stats::LambdaStats;

/// Firehose's maximum function timeout, and the default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A record waiting for (or in) an invocation.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The `recordId` it is sent with.
    pub id: String,
    pub record: Record,
    /// Its partition's assignment epoch when it was read (see
    /// [`stage::Stage::is_current`]).
    pub epoch: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    #[error("stream {stream}: its Lambda processor {arn} has nowhere to run. Run your handler locally with --lambda '{arn}=COMMAND' (e.g. --lambda '{arn}=python -m awslambdaric transform.handler'), or send it to an Invoke API endpoint (sam local start-lambda, LocalStack) with --lambda-endpoint URL")]
    NoFunction { stream: String, arn: String },
    #[error("--lambda {0:?} is not ARN=COMMAND: give the function's ARN (or name) as in the spec's LambdaArn, then `=`, then the command that runs its runtime, e.g. 'arn:aws:lambda:us-east-1:123456789012:function:enrich=python -m awslambdaric transform.handler'")]
    BadLambdaOption(String),
    #[error("cannot serve the Lambda Runtime API for {arn}: {source}")]
    Serve { arn: String, source: std::io::Error },
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Where functions run, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct FunctionsConfig {
    /// `--lambda ARN=COMMAND`: a local runtime process per function (ARN or
    /// function name).
    pub local: Vec<(String, String)>,
    /// `--lambda-endpoint URL`: every other function.
    pub endpoint: Option<String>,
    /// `--lambda-timeout`: the function's timeout.
    pub timeout: Option<Duration>,
}

impl FunctionsConfig {
    /// Parses one `--lambda ARN=COMMAND`.
    pub fn parse_local(option: &str) -> Result<(String, String), TransformError> {
        // ARNs hold no `=`; the command may.
        match option.split_once('=') {
            Some((arn, command)) if !arn.trim().is_empty() && !command.trim().is_empty() => {
                Ok((arn.trim().to_owned(), command.trim().to_owned()))
            }
            _ => Err(TransformError::BadLambdaOption(option.to_owned())),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Whether `spec` could run: its Lambda ARN (if any) has a place to run.
    /// Checked before anything starts.
    pub fn check(&self, spec: &StreamSpec) -> Result<(), TransformError> {
        match &spec.lambda() {
            Some(lambda) if self.endpoint.is_none() && self.local_command(&lambda.arn).is_none() => {
                Err(TransformError::NoFunction { stream: spec.name().to_owned(), arn: lambda.arn.clone() })
            }
            _ => Ok(()),
        }
    }

    fn local_command(&self, arn: &str) -> Option<&str> {
        let name = runtime::function_name(arn);
        self.local.iter().find(|(key, _)| key == arn || key == name).map(|(_, command)| command.as_str())
    }
}

/// The functions of every stream in a process, started once and shared (two
/// streams naming one ARN share its runtime process, as they share the
/// function on AWS).
#[derive(Debug, Default)]
pub struct Functions {
    config: FunctionsConfig,
    started: tokio::sync::Mutex<BTreeMap<String, Arc<dyn Invoker>>>,
}

impl Functions {
    pub fn new(config: FunctionsConfig) -> Self {
        Functions { config, started: Default::default() }
    }

    pub fn config(&self) -> &FunctionsConfig {
        &self.config
    }

    /// The transformer for `spec`, its function started (a local handler
    /// that cannot load fails here, naming the function and the fix).
    pub async fn transformer(&self, spec: &StreamSpec) -> Result<Option<Transformer>, TransformError> {
        let Some(lambda) = &spec.lambda() else { return Ok(None) };
        self.config.check(spec)?;
        let region = region_of(&lambda.arn).or_else(|| region_of(spec.msk_cluster_arn())).unwrap_or("us-east-1");
        let invoker = self.invoker(&lambda.arn, region).await?;
        let context = EventContext {
            delivery_stream_arn: format!(
                "arn:aws:firehose:{region}:{}:deliverystream/{}",
                spec.region_and_account().1,
                spec.name()
            ),
            source_msk_arn: (!spec.is_direct_put()).then(|| spec.msk_cluster_arn().to_owned()),
            region: region.to_owned(),
        };
        Ok(Some(Transformer {
            invoker,
            processor: LambdaProcessor::clone(lambda),
            context,
            timeout: self.config.timeout(),
            arn: Arc::from(lambda.arn.as_str()),
        }))
    }

    async fn invoker(&self, arn: &str, region: &str) -> Result<Arc<dyn Invoker>, TransformError> {
        let mut started = self.started.lock().await;
        if let Some(invoker) = started.get(arn) {
            return Ok(invoker.clone());
        }
        let invoker: Arc<dyn Invoker> = match self.config.local_command(arn) {
            Some(command) => Arc::new(
                runtime::RuntimeProcess::new(arn, command, region, self.config.timeout())
                    .await
                    .map_err(|source| TransformError::Serve { arn: arn.to_owned(), source })?,
            ),
            None => {
                let endpoint = self.config.endpoint.as_deref().expect("checked: an endpoint or a command");
                Arc::new(invoke::EndpointInvoker::new(endpoint, arn, region).await)
            }
        };
        invoker.start().await?;
        started.insert(arn.to_owned(), invoker.clone());
        Ok(invoker)
    }

    /// Stops every local runtime process.
    pub async fn stop(&self) {
        for invoker in std::mem::take(&mut *self.started.lock().await).into_values() {
            invoker.stop().await;
        }
    }
}

fn region_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// One stream's function and how to call it.
#[derive(Debug, Clone)]
pub struct Transformer {
    pub invoker: Arc<dyn Invoker>,
    pub processor: LambdaProcessor,
    pub context: EventContext,
    pub timeout: Duration,
    pub arn: Arc<str>,
}

/// A batch and what became of each of its records, in order.
pub struct Processed {
    pub batch: Vec<Pending>,
    pub outcomes: Vec<Outcome>,
}

impl Transformer {
    /// Invokes the function for `batch` (in requests within 6 MB), retrying
    /// failed invocations; never fails: what cannot be processed is an
    /// outcome.
    pub async fn process(self: Arc<Self>, batch: Vec<Pending>, stats: Arc<LambdaStats>) -> Processed {
        let mut outcomes = Vec::with_capacity(batch.len());
        for run in event::split(&batch) {
            outcomes.extend(self.invoke_with_retries(&batch[run], &stats).await);
        }
        for outcome in &outcomes {
            let counter = match outcome {
                Outcome::Ok { value, .. } => {
                    stats.ok_bytes.fetch_add(value.len() as u64, Ordering::Relaxed);
                    &stats.ok
                }
                Outcome::Dropped => &stats.dropped,
                Outcome::Failed { .. } => &stats.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Processed { batch, outcomes }
    }

    async fn invoke_with_retries(&self, records: &[Pending], stats: &LambdaStats) -> Vec<Outcome> {
        let ids: Vec<&str> = records.iter().map(|p| p.id.as_str()).collect();
        let attempts = self.processor.retries + 1;
        let mut backoff = Duration::from_millis(500);
        let mut last = None;
        for attempt in 1..=attempts {
            let invocation_id = uuid::Uuid::new_v4().to_string();
            let payload = event::event(&self.context, &invocation_id, records);
            let started = Instant::now();
            let result = self.invoker.invoke(payload, self.timeout).await;
            stats.record_invocation(started.elapsed(), result.is_ok());
            match result {
                Ok(body) => {
                    let (outcomes, problems) = event::read_response(&ids, &body, self.context.payload_field());
                    if !problems.is_empty() {
                        warn!(function = %self.arn, ?problems, "the function's response breaks Firehose's status model; those records go to processing-failed");
                    }
                    return outcomes;
                }
                Err(e) => {
                    warn!(function = %self.arn, attempt, of = attempts, error = %e, "invocation failed");
                    stats.set_last_error(format!("{e}"));
                    last = Some(e);
                }
            }
            if attempt < attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        let (code, message) = last.expect("at least one attempt").code();
        vec![Outcome::Failed { code, message, attempts }; records.len()]
    }
}
