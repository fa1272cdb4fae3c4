//! Traces: OTLP export to a local receiver, with the trace id of an incoming `traceparent`
//! carried through the hub into the agent process.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::harness::*;

/// A minimal OTLP/HTTP receiver: records every JSON body posted to /v1/traces.
async fn otlp_receiver() -> (std::net::SocketAddr, Arc<parking_lot::Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if path == "/v1/traces"
                                && let Ok(v) = serde_json::from_slice::<Value>(&body)
                            {
                                sink.lock().push(v);
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from_static(b"{}"),
                            )))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (addr, got)
}

fn spans(batches: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for b in batches {
        for rs in b["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for sp in ss["spans"].as_array().into_iter().flatten() {
                    let mut sp = sp.clone();
                    sp["resource"] = rs["resource"].clone();
                    out.push(sp);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_with_the_callers_trace_id() {
    let (addr, got) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{addr}");
    let b = TestBinary::serve(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("A2A_OTEL_EXPORT_INTERVAL", "100ms"),
            super::a2a::LOCAL_PEERS_ENV,
        ],
    )
    .await;
    let script = repo_dir()
        .join("tests/agents/trace.sh")
        .display()
        .to_string();
    let (s, v) = post(
        &b.rest("/agents"),
        json!({"id": "tracer", "capabilities": [{"name": "run"}],
        "executor": {"kind": "process", "command": [script]}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (s, v, _) = http(
        "POST",
        &b.rest("/agents/tracer/invoke"),
        Some(json!({"input": {}, "wait": true})),
        &[("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01"))],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let tp = v["result"]["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with(&format!("00-{trace_id}-")),
        "the agent process runs in the caller's trace: {tp}"
    );
    let request_id = v["requestId"].as_str().unwrap().to_string();
    let mut found = Vec::new();
    for _ in 0..100 {
        found = spans(&got.lock())
            .into_iter()
            .filter(|s| {
                s["traceId"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(trace_id))
            })
            .collect();
        let names: Vec<&str> = found.iter().filter_map(|s| s["name"].as_str()).collect();
        if names.contains(&"http.request") && names.contains(&"job") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = found.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(
        names.contains(&"http.request") && names.contains(&"job"),
        "spans in the trace: {names:?}"
    );
    // A remote A2A agent called by the job joins the same trace (traceparent header).
    let remote = super::a2a::RemoteAgent::start(&[]).await;
    let (s, v) = post(
        &b.rest("/agents"),
        json!({"id": "remote", "capabilities": [{"name": "echo"}],
        "executor": {"kind": "a2a", "url": remote.card_url()}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v, _) = http(
        "POST",
        &b.rest("/agents/remote/invoke"),
        Some(json!({"input": {"text": "traced"}, "wait": true})),
        &[("traceparent", &format!("00-{trace_id}-00f067aa0ba902b8-01"))],
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")), "{v}");
    let got_remote = remote.received().await;
    let tp = got_remote.last().unwrap()["traceparent"]
        .as_str()
        .unwrap_or("");
    assert!(
        tp.starts_with(&format!("00-{trace_id}-")),
        "the remote agent was called in the caller's trace: {tp:?}"
    );
    let job = found.iter().find(|s| s["name"] == "job").unwrap();
    let attrs = job["attributes"].to_string();
    assert!(
        attrs.contains(&request_id) && attrs.contains("tracer"),
        "{attrs}"
    );
    let service = job["resource"]["attributes"].to_string();
    assert!(
        service.contains("service.name") && service.contains("a2a-mcp"),
        "{service}"
    );
}
