//! The team's handler, run locally and unmodified: streamlab serves the
//! Lambda Runtime API (2018-06-01, the protocol AWS's runtime interface
//! clients speak; the role of AWS's runtime interface emulator) on loopback
//! and runs the handler's command as the runtime process, with
//! `AWS_LAMBDA_RUNTIME_API` and the standard Lambda environment.
//!
//! As on Lambda, one invocation runs at a time; a timed-out invocation resets
//! the process, and a process that exits (a crash, an init error) is started
//! again on the next invocation.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::invoke::{function_error, InvokeError, Invoker, StartError};

/// How long a handler has to initialise before start-up gives up.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of the process's output kept for error messages.
const TAIL_LINES: usize = 20;

/// What the runtime answered for one invocation.
type Reply = Result<Bytes, InvokeError>;

struct Invocation {
    request_id: String,
    event: Bytes,
    deadline_ms: i64,
    reply: oneshot::Sender<Reply>,
}

/// State the HTTP handlers share with the invoker.
struct Shared {
    arn: String,
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    /// The last `/runtime/init/error` of the current process.
    init_error: Mutex<Option<InvokeError>>,
    /// Set when the current process first asks for an invocation.
    ready: watch::Sender<bool>,
}

/// A runtime process and the Runtime API it talks to.
pub struct RuntimeProcess {
    arn: String,
    command: String,
    env: Vec<(String, String)>,
    shared: Arc<Shared>,
    invocations: mpsc::Sender<Invocation>,
    api: SocketAddr,
    process: tokio::sync::Mutex<Option<Running>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    stop: CancellationToken,
}

struct Running {
    pid: Option<u32>,
    exited: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for RuntimeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeProcess").field("arn", &self.arn).field("command", &self.command).finish()
    }
}

impl RuntimeProcess {
    /// Serves the Runtime API for `arn` on a free loopback port; the process
    /// starts on [`Invoker::start`] or the first invocation.
    pub async fn new(arn: &str, command: &str, region: &str, timeout: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let api = listener.local_addr()?;
        let (invocations, queue) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            arn: arn.to_owned(),
            queue: tokio::sync::Mutex::new(queue),
            waiting: Mutex::default(),
            init_error: Mutex::default(),
            ready: watch::channel(false).0,
        });
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, shared.clone(), stop.clone()));
        Ok(RuntimeProcess {
            arn: arn.to_owned(),
            command: command.to_owned(),
            env: lambda_environment(arn, command, region, api, timeout),
            shared,
            invocations,
            api,
            process: tokio::sync::Mutex::default(),
            tail: Arc::default(),
            stop,
        })
    }

    /// Starts the process unless it runs; returns its exit watch.
    async fn ensure_running(&self) -> std::io::Result<watch::Receiver<Option<String>>> {
        let mut process = self.process.lock().await;
        if let Some(running) = process.as_ref() {
            if running.exited.borrow().is_none() {
                return Ok(running.exited.clone());
            }
        }
        *self.shared.init_error.lock().unwrap() = None;
        self.shared.ready.send_replace(false);
        // Through the shell, so `cd dir && python -m awslambdaric app.handler`
        // works; the process group is what gets stopped.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        info!(function = %self.arn, command = %self.command, runtime_api = %self.api, "Lambda runtime process started");
        let name = function_name(&self.arn).to_owned();
        for output in [child.stdout.take().map(Output::Out), child.stderr.take().map(Output::Err)].into_iter().flatten()
        {
            tokio::spawn(forward(output, name.clone(), self.tail.clone()));
        }
        let (tx, exited) = watch::channel(None);
        let pid = child.id();
        tokio::spawn(watch_exit(child, tx));
        *process = Some(Running { pid, exited: exited.clone() });
        Ok(exited)
    }

    /// Kills the process (a timed-out invocation resets the sandbox).
    async fn kill(&self) {
        if let Some(mut running) = self.process.lock().await.take() {
            if let Some(pid) = running.pid {
                // The whole group: the command may have children of its own.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let _ = running.exited.wait_for(Option::is_some).await;
        }
    }

    fn output_tail(&self) -> String {
        let tail = self.tail.lock().unwrap();
        tail.iter().map(|line| format!("\n    {line}")).collect()
    }

    /// Why the process is gone, as the invocation's error.
    fn exit_error(&self, status: &str) -> InvokeError {
        self.shared.init_error.lock().unwrap().clone().unwrap_or_else(|| InvokeError::Function {
            error_type: "Runtime.ExitError".to_owned(),
            message: format!("RequestId: the runtime process exited ({status}){}", self.output_tail()),
        })
    }
}

#[async_trait]
impl Invoker for RuntimeProcess {
    async fn invoke(&self, payload: Bytes, timeout: Duration) -> Result<Bytes, InvokeError> {
        let mut exited = self
            .ensure_running()
            .await
            .map_err(|e| InvokeError::Unreachable(format!("cannot start `{}`: {e}", self.command)))?;
        let (reply, answer) = oneshot::channel();
        let request_id = uuid::Uuid::new_v4().to_string();
        let deadline_ms = chrono::Utc::now().timestamp_millis() + timeout.as_millis() as i64;
        let invocation = Invocation { request_id, event: payload, deadline_ms, reply };
        if self.invocations.send(invocation).await.is_err() {
            return Err(InvokeError::Unreachable("the Runtime API server stopped".to_owned()));
        }
        let exit = async {
            loop {
                if let Some(status) = exited.borrow_and_update().clone() {
                    return status;
                }
                if exited.changed().await.is_err() {
                    return "gone".to_owned();
                }
            }
        };
        let result = tokio::select! {
            answer = answer => answer.unwrap_or_else(|_| Err(InvokeError::Unreachable("the runtime dropped the invocation".to_owned()))),
            status = exit => Err(self.exit_error(&status)),
            () = tokio::time::sleep(timeout) => {
                warn!(function = %self.arn, ?timeout, "invocation timed out; restarting the runtime process");
                self.kill().await;
                Err(InvokeError::TimedOut(timeout))
            }
        };
        if result.is_err() {
            // An invocation the process never picked up must not be served to
            // the next process.
            while let Ok(stale) = self.shared.queue.try_lock().map(|mut q| q.try_recv()) {
                if stale.is_err() {
                    break;
                }
            }
            self.shared.waiting.lock().unwrap().clear();
        }
        result
    }

    async fn start(&self) -> Result<(), StartError> {
        let error = |reason: String| StartError {
            arn: self.arn.clone(),
            command: self.command.clone(),
            reason,
            output: self.output_tail(),
        };
        let mut exited = self.ensure_running().await.map_err(|e| error(format!("cannot run: {e}")))?;
        let mut ready = self.shared.ready.subscribe();
        let outcome = tokio::time::timeout(INIT_TIMEOUT, async {
            loop {
                if *ready.borrow_and_update() {
                    return Ok(());
                }
                if let Some(status) = exited.borrow_and_update().clone() {
                    return Err(match self.exit_error(&status) {
                        InvokeError::Function { error_type, message } => format!("failed: {error_type}: {message}"),
                        other => format!("failed: {other}"),
                    });
                }
                tokio::select! {
                    _ = ready.changed() => {}
                    _ = exited.changed() => {}
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(error(reason)),
            Err(_) => {
                self.kill().await;
                Err(error(format!("it did not ask the Runtime API for an invocation within {INIT_TIMEOUT:?}")))
            }
        }
    }

    async fn stop(&self) {
        self.kill().await;
        self.stop.cancel();
    }
}

/// The variables Lambda sets for a function (`firehose-lambda-conversion.md`
/// 2.1), for this ARN, with the handler taken as the command's last word.
fn lambda_environment(
    arn: &str,
    command: &str,
    region: &str,
    api: SocketAddr,
    timeout: Duration,
) -> Vec<(String, String)> {
    let name = function_name(arn);
    let version = arn.rsplit(':').next().filter(|q| q.chars().all(|c| c.is_ascii_digit())).unwrap_or("$LATEST");
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let stream = format!("{}/[{version}]{}", chrono::Utc::now().format("%Y/%m/%d"), uuid::Uuid::new_v4().simple());
    [
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("_HANDLER", command.split_whitespace().last().unwrap_or_default().to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", version.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_TIMEOUT", timeout.as_secs().to_string()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("LAMBDA_TASK_ROOT", cwd.clone()),
        ("LAMBDA_RUNTIME_DIR", cwd),
        ("TZ", ":UTC".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `my-fn` from `arn:aws:lambda:us-east-1:123456789012:function:my-fn[:qualifier]`
/// (or the name itself).
pub fn function_name(arn: &str) -> &str {
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] => name,
        _ => arn,
    }
}

enum Output {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
}

/// The handler's output, as the function's log (and kept for messages).
async fn forward(output: Output, function: String, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = match output {
        Output::Out(out) => BufReader::new(Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>).lines(),
        Output::Err(err) => BufReader::new(Box::new(err) as Box<dyn tokio::io::AsyncRead + Unpin + Send>).lines(),
    };
    while let Ok(Some(line)) = lines.next_line().await {
        info!(target: "streamlab::lambda", %function, "{line}");
        let mut tail = tail.lock().unwrap();
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Reports the process's exit.
async fn watch_exit(mut child: Child, exited: watch::Sender<Option<String>>) {
    let status = match child.wait().await {
        Ok(status) => status.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    };
    exited.send_replace(Some(status));
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("valid response")
}

/// The Runtime API's four routes.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let error_type =
        req.headers().get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches("/2018-06-01/runtime/").split('/').collect();
    match (method, parts.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(shared).await,
        (Method::POST, ["invocation", id, "response"]) => answer(shared, id, Ok(body)),
        (Method::POST, ["invocation", id, "error"]) => {
            let error = as_function_error(&body, error_type);
            answer(shared, id, Err(error))
        }
        (Method::POST, ["init", "error"]) => {
            let error = as_function_error(&body, error_type);
            warn!(function = %shared.arn, %error, "Lambda handler failed to initialise");
            *shared.init_error.lock().unwrap() = Some(error);
            respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => {
            respond(StatusCode::NOT_FOUND, r#"{"errorMessage":"not a Runtime API route","errorType":"InvalidRequest"}"#)
        }
    }
}

/// Long-polls for the next invocation.
async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    shared.ready.send_replace(true);
    let Some(invocation) = shared.queue.lock().await.recv().await else {
        return respond(StatusCode::INTERNAL_SERVER_ERROR, r#"{"errorMessage":"shutting down"}"#);
    };
    shared.waiting.lock().unwrap().insert(invocation.request_id.clone(), invocation.reply);
    let trace = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        chrono::Utc::now().timestamp(),
        &uuid::Uuid::new_v4().simple().to_string()[..24],
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &invocation.request_id)
        .header("lambda-runtime-deadline-ms", invocation.deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", &shared.arn)
        .header("lambda-runtime-trace-id", trace)
        .body(Full::new(invocation.event))
        .expect("valid response")
}

fn answer(shared: &Shared, request_id: &str, reply: Reply) -> Response<Full<Bytes>> {
    match shared.waiting.lock().unwrap().remove(request_id) {
        Some(waiter) => {
            let _ = waiter.send(reply);
            respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        None => respond(
            StatusCode::BAD_REQUEST,
            r#"{"errorMessage":"unknown or already answered request id","errorType":"InvalidRequestID"}"#,
        ),
    }
}

/// An error document from either client (`stackTrace` from Python, `trace`
/// from Node; neither sends the error-type header on invocation errors).
fn as_function_error(body: &[u8], header: Option<String>) -> InvokeError {
    match function_error(body) {
        Some(InvokeError::Function { error_type, message }) => {
            InvokeError::Function { error_type: header.unwrap_or(error_type), message }
        }
        _ => InvokeError::Function {
            error_type: header.unwrap_or_else(|| "Unhandled".to_owned()),
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_come_from_arns() {
        assert_eq!(function_name("arn:aws:lambda:us-east-1:123456789012:function:enrich"), "enrich");
        assert_eq!(function_name("arn:aws:lambda:us-east-1:123456789012:function:enrich:$LATEST"), "enrich");
        assert_eq!(function_name("enrich"), "enrich");
    }
}
