//! `a2a-mcp bench`: the production checklist's load test, as a built-in load generator.
//!
//! C concurrent clients, each a real MCP Streamable HTTP client (`initialize` handshake, its
//! own session) plus one WebSocket connection to `/stream`. Each iteration calls
//! `invoke_agent` on the agent (default `echo`), subscribes to the returned request on the
//! WebSocket and waits for its terminal event. Latency is measured from sending the invoke
//! to receiving the terminal event. At the end it reports invocations/s, latency
//! percentiles, errors and the server's resident memory (from the ops port).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::Exit;
use super::mcp_client::McpHttp;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// MCP endpoint of the server under test; repeat it for several replicas (clients are
    /// spread over them round-robin).
    #[arg(long, default_value = "http://127.0.0.1:8787/mcp")]
    pub url: Vec<String>,
    /// Operations endpoint (for the server's memory figures); empty to skip.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub ops_url: String,
    /// Bearer token of the operations endpoint, when the server sets A2A_OPS_TOKEN.
    #[arg(long, env = "A2A_OPS_TOKEN", hide_env_values = true)]
    pub ops_token: Option<String>,
    /// Concurrent clients.
    #[arg(short = 'c', long, default_value_t = 10)]
    pub concurrency: usize,
    /// How long to measure (after the warm-up).
    #[arg(short = 'd', long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Warm-up before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Agent to invoke.
    #[arg(long, default_value = "echo")]
    pub agent: String,
    /// Chunks each echo streams.
    #[arg(long, default_value_t = 3)]
    pub chunks: u32,
    /// Bearer token (API key or stream token).
    #[arg(long)]
    pub token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Totals {
    ok: AtomicU64,
    errors: AtomicU64,
}

pub async fn run(args: BenchArgs) -> Exit {
    if args.concurrency == 0 {
        return Exit::Usage("--concurrency must be at least 1".into());
    }
    if args.url.is_empty() {
        return Exit::Usage("--url: give at least one MCP endpoint".into());
    }
    let totals = Arc::new(Totals::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let first_error = Arc::new(parking_lot::Mutex::new(None::<String>));
    let mut handles = Vec::new();
    for i in 0..args.concurrency {
        let args = args.clone();
        let totals = totals.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let first_error = first_error.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            if let Err(e) = client(i, &args, &totals, &measuring, &stop, &mut lat).await {
                first_error.lock().get_or_insert(e);
                totals.errors.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    tokio::time::sleep(args.warmup).await;
    let ok0 = totals.ok.load(Ordering::Relaxed);
    let err0 = totals.errors.load(Ordering::Relaxed);
    measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    measuring.store(false, Ordering::SeqCst);
    let elapsed = started.elapsed();
    let ok = totals.ok.load(Ordering::Relaxed) - ok0;
    let errors = totals.errors.load(Ordering::Relaxed) - err0;
    stop.store(true, Ordering::SeqCst);
    let mut lat: Vec<u64> = Vec::new();
    for h in handles {
        if let Ok(l) = h.await {
            lat.extend(l);
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let idx = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[idx] as f64 / 1000.0
    };
    let avg = if lat.is_empty() {
        0.0
    } else {
        lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
    };
    let rss = server_rss(&args.ops_url, args.ops_token.as_deref()).await;
    let report = json!({
        "concurrency": args.concurrency,
        "durationSeconds": elapsed.as_secs_f64(),
        "invocations": ok,
        "invocationsPerSecond": ok as f64 / elapsed.as_secs_f64(),
        "errors": errors,
        "latencyMs": {
            "avg": avg, "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99),
            "max": lat.last().map_or(0.0, |m| *m as f64 / 1000.0),
        },
        "serverRssBytes": rss,
        "firstError": first_error.lock().clone(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "a2a-mcp bench: {} clients, {:.1}s, agent {}, {} endpoint(s)",
            args.concurrency,
            elapsed.as_secs_f64(),
            args.agent,
            args.url.len()
        );
        println!(
            "  invocations   {ok} ({:.0}/s), errors {errors}",
            ok as f64 / elapsed.as_secs_f64()
        );
        println!(
            "  invoke→final  avg {avg:.2} ms  p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2} ms",
            pct(0.5),
            pct(0.95),
            pct(0.99),
            lat.last().map_or(0.0, |m| *m as f64 / 1000.0)
        );
        match rss {
            Some(b) => println!("  server RSS    {:.1} MiB", b as f64 / 1048576.0),
            None => println!("  server RSS    unknown (ops endpoint not reachable)"),
        }
        if let Some(e) = first_error.lock().clone() {
            println!("  first error   {e}");
        }
    }
    if errors > 0 || ok == 0 {
        Exit::Failed(String::new())
    } else {
        Exit::Ok
    }
}

async fn client(
    n: usize,
    args: &BenchArgs,
    totals: &Totals,
    measuring: &AtomicBool,
    stop: &AtomicBool,
    lat: &mut Vec<u64>,
) -> Result<(), String> {
    let mcp = McpHttp::new(&args.url[n % args.url.len()], args.token.clone())?;
    let mut init_answer = None;
    mcp.send(
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "a2a-mcp-bench", "version": env!("CARGO_PKG_VERSION")}
        }}),
        |m| init_answer = Some(m),
    )
    .await?;
    if init_answer.is_none_or(|m| m.get("result").is_none()) {
        return Err("initialize failed".into());
    }
    mcp.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        |_| {},
    )
    .await?;
    let mut ws = None;
    let mut id: u64 = 1;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let t0 = Instant::now();
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "invoke_agent",
            "arguments": {
                "agentId": args.agent,
                "input": {
                    "messages": [{"role": "user", "content": format!("bench client {n} call {id}: the quick brown fox jumps over the lazy dog")}],
                    "chunks": args.chunks,
                }
            }
        }});
        let mut answer = None;
        let sent = mcp.send(&call, |m| {
            if m.get("id").is_some() {
                answer = Some(m);
            }
        });
        let outcome = match sent.await {
            Ok(_) => match answer {
                Some(a) => follow(&a, &mut ws, args).await,
                None => Err("no answer to tools/call".to_string()),
            },
            Err(e) => Err(e),
        };
        let counted = measuring.load(Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                if counted {
                    totals.ok.fetch_add(1, Ordering::Relaxed);
                    lat.push(t0.elapsed().as_micros() as u64);
                }
            }
            Err(e) => {
                if counted {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!("bench error: {e}");
                ws = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    mcp.close().await;
    Ok(())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Subscribes to the invoked request on the client's WebSocket and waits for its end.
async fn follow(answer: &Value, ws: &mut Option<Ws>, args: &BenchArgs) -> Result<(), String> {
    let sc = answer
        .pointer("/result/structuredContent")
        .ok_or_else(|| format!("tools/call failed: {answer}"))?;
    if answer.pointer("/result/isError") == Some(&Value::Bool(true)) {
        return Err(format!("invoke_agent failed: {answer}"));
    }
    let request_id = sc
        .get("requestId")
        .and_then(Value::as_str)
        .ok_or("no requestId")?
        .to_string();
    if ws.is_none() {
        let stream_url = sc
            .get("streamUrl")
            .and_then(Value::as_str)
            .ok_or("the server returned no streamUrl (ENABLE_STREAMING=false?)")?;
        let base = stream_url.split('?').next().unwrap_or(stream_url);
        let url = match &args.token {
            Some(t) => format!("{base}?token={t}"),
            None => base.to_string(),
        };
        let (s, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| format!("WebSocket {url}: {e}"))?;
        *ws = Some(s);
    }
    let Some(s) = ws.as_mut() else {
        return Err("no WebSocket".into());
    };
    s.send(Message::text(
        json!({"type": "subscribe", "requestId": request_id}).to_string(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), s.next())
            .await
            .map_err(|_| "no terminal event within 30 s".to_string())?
            .ok_or("the WebSocket closed")?
            .map_err(|e| e.to_string())?;
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
        if v.get("requestId").and_then(Value::as_str) != Some(request_id.as_str()) {
            continue;
        }
        match v.get("type").and_then(Value::as_str) {
            Some("final") => return Ok(()),
            Some("error") | Some("canceled") => return Err(format!("request ended with {v}")),
            _ => {}
        }
    }
}

async fn server_rss(ops_url: &str, token: Option<&str>) -> Option<i64> {
    if ops_url.is_empty() {
        return None;
    }
    let url: http::Uri = format!("{}/api/agent?action=status", ops_url.trim_end_matches('/'))
        .parse()
        .ok()?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut req = http::Request::get(url);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(http_body_util::Empty::new()).ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .ok()?
        .ok()?;
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let v: Value = serde_json::from_slice(&body).ok()?;
    v.pointer("/memory/residentBytes").and_then(Value::as_i64)
}
