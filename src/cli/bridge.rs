//! `a2a-mcp stdio --remote URL`: bridges a desktop client's stdio to a running server's `/mcp`.
//!
//! Each line from stdin is one JSON-RPC message; it is POSTed to the server (with the session
//! id and negotiated version of the legacy handshake, or the `Mcp-*` headers of a 2026-07-28
//! request) and every message of the answer is written to stdout as one line, as it arrives,
//! so progress notifications stream live. Requests are handled concurrently. A transport
//! failure for a request becomes a JSON-RPC error answer with that request's id. Exits on
//! stdin EOF (ending the remote session). Nothing but protocol messages goes to stdout.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::Exit;
use super::mcp_client::McpHttp;

pub async fn run(url: String, token: Option<String>) -> Exit {
    let client = match McpHttp::new(&url, token) {
        Ok(c) => Arc::new(c),
        Err(e) => return Exit::Usage(format!("a2a-mcp stdio --remote: {e}")),
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                break;
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tasks = tokio::task::JoinSet::new();
    // The handshake must finish before anything else is sent on a legacy session.
    let mut pending_initialize: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("reading stdin failed: {e}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = out_tx.send(
                    json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("parse error: {e}")}})
                        .to_string(),
                );
                continue;
            }
        };
        if let Some(h) = pending_initialize.take() {
            let _ = h.await;
        }
        let is_initialize = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let client = client.clone();
        let out = out_tx.clone();
        let fut = async move {
            let id = msg.get("id").cloned();
            let result = client
                .send(&msg, |answer| {
                    let _ = out.send(answer.to_string());
                })
                .await;
            if let (Err(e), Some(id)) = (result, id) {
                let _ = out.send(
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": format!("bridge: {e}")}})
                        .to_string(),
                );
            }
        };
        if is_initialize {
            pending_initialize = Some(tokio::spawn(fut));
        } else {
            tasks.spawn(fut);
        }
    }
    if let Some(h) = pending_initialize.take() {
        let _ = h.await;
    }
    while tasks.join_next().await.is_some() {}
    client.close().await;
    drop(out_tx);
    let _ = writer.await;
    Exit::Ok
}
