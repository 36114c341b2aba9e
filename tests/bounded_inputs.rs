//! Bounded inputs on a stack's endpoints: durations that would overflow or
//! run the clock for millennia are refused with 400 and the stack keeps
//! answering; a body over the cap is refused with 413 before it is read,
//! so a 300 MB upload does not grow the process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use chrono::{TimeZone, Utc};
use streamlab::stack::control::ControlServer;
use streamlab::stack::{Stack, StackOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a request head (and `body`, if any) on a fresh connection and
/// returns the status line's code and the response text.
async fn request(url: &str, head: &str, body: &[u8]) -> Result<(u16, String)> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body).await?;
    let mut answer = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer)).await??;
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, text))
}

async fn post_json(url: &str, path: &str, json: &str) -> Result<(u16, String)> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        json.len()
    );
    request(url, &head, json.as_bytes()).await
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_refuses_absurd_durations_and_huge_bodies_and_keeps_answering() -> Result<()> {
    common::init_logging();
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let stack =
        Arc::new(Stack::start(StackOptions::new(["fixtures/streams/orders-to-s3.json"]).manual_clock(start)).await?);
    let control = ControlServer::start(stack.clone(), Vec::new()).await?;
    let outcome = check(&stack, control.url()).await;
    drop(control);
    stack.shutdown().await?;
    outcome
}

async fn check(stack: &Stack, url: &str) -> Result<()> {
    let before = stack.clock().now_millis();
    for by in [r#"{"by": 18446744073709551615}"#, r#"{"by": "99999999h"}"#, r#"{"by": "11years"}"#] {
        let (code, text) = post_json(url, "/v1/clock/advance", by).await?;
        ensure!(code == 400, "{by}: {text}");
        ensure!(text.contains("longer than the 10 years"), "{by}: the answer names the bound: {text}");
        ensure!(stack.clock().now_millis() == before, "{by}: a refused advance moves nothing");
    }
    let (code, text) = post_json(url, "/v1/settle", r#"{"timeout": "400000d"}"#).await?;
    ensure!(code == 400 && text.contains("timeout"), "{text}");

    // A 300 MB body is refused on its Content-Length, before it is read.
    let rss = rss_kib();
    let head = "POST /v1/clock/advance HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 314572800\r\n\r\n";
    let (code, text) = request(url, head, b"").await?;
    ensure!(code == 413, "{text}");
    ensure!(text.contains("over 1048576 bytes"), "{text}");
    let grown = rss_kib().saturating_sub(rss);
    ensure!(grown < 16 * 1024, "the process grew by {grown} KiB");

    // The stack still answers, and a sane advance works.
    let (code, text) = post_json(url, "/v1/clock/advance", r#"{"by": "5m"}"#).await?;
    ensure!(code == 200, "{text}");
    ensure!(stack.clock().now_millis() == before + 300_000, "{text}");
    Ok(())
}
