//! Every Prometheus metric the process exports, in one place, all under the `a2a_` prefix.
//!
//! Metrics are process-wide (one registry), created on first use. Names are stable: they are
//! referenced by the alert rules and the dashboard and documented in `docs/METRICS.md`.
//! Gauges that mirror hub state (queue length, running jobs, agents) are refreshed from the
//! hub when `/metrics` is scraped, so they cannot drift.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn reg<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    // Registration only fails on a duplicate name, which the unit test below rules out.
    let _ = REGISTRY.register(Box::new(c.clone()));
    c
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn counter(name: &str, help: &str) -> IntCounter {
    reg(IntCounter::new(name, help).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    reg(IntGauge::new(name, help).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    reg(
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(
        Opts::new(
            "a2a_build_info",
            "Build information; the value is always 1.",
        ),
        &["version"],
    )
    .unwrap_or_else(|e| panic!("a2a_build_info: {e}")))
});

pub static START_TIME: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_process_start_time_seconds",
        "Unix time at which the process started.",
    )
});

pub static REQUESTS_CREATED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_requests_created_total",
        "Requests accepted (durably recorded), by agent.",
        &["agent"],
    )
});

pub static REQUESTS_FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_requests_finished_total",
        "Requests that reached a terminal state, by agent and status (done, error, canceled).",
        &["agent", "status"],
    )
});

pub static REQUESTS_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_requests_rejected_total",
        "Invocations refused before being recorded, by reason (error code).",
        &["reason"],
    )
});

pub static REQUEST_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "a2a_request_duration_seconds",
        "Time from invocation accepted to terminal event, by agent and status.",
        &["agent", "status"],
        LATENCY_BUCKETS.to_vec(),
    )
});

pub static QUEUE_LENGTH: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("a2a_queue_length", "Requests waiting for a free slot."));

pub static RUNNING_JOBS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("a2a_running_jobs", "Requests currently running."));

pub static AGENTS_TOTAL: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("a2a_agents", "Registered agents."));

pub static AGENTS_ENABLED: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("a2a_agents_enabled", "Registered agents that are enabled."));

pub static STREAM_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_stream_events_total",
        "Stream events persisted and published, by type.",
        &["type"],
    )
});

pub static WS_CLIENTS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_websocket_clients",
        "Open WebSocket connections on /stream.",
    )
});

pub static WS_SUBSCRIPTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_websocket_subscriptions",
        "Active request subscriptions (channels) across WebSocket connections.",
    )
});

pub static SSE_CLIENTS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_sse_clients",
        "Open SSE event streams on /api/v1/requests/{id}/events.",
    )
});

pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_http_requests_total",
        "HTTP requests served, by listener (api, ops), route group and status class.",
        &["listener", "route", "code"],
    )
});

pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "a2a_http_request_duration_seconds",
        "Time to produce HTTP response headers, by listener and route group.",
        &["listener", "route"],
        LATENCY_BUCKETS.to_vec(),
    )
});

pub static MCP_TOOL_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_mcp_tool_calls_total",
        "MCP tools/call requests, by tool and outcome (ok, error).",
        &["tool", "outcome"],
    )
});

pub static STORE_COMMIT_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "a2a_store_commit_seconds",
        "Duration of one durable store commit (one group of writes).",
        &["backend"],
        vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ],
    )
});

pub static STORE_COMMIT_OPS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "a2a_store_commit_ops",
        "Writes merged into one commit (group commit batch size).",
        &["backend"],
        vec![
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 8192.0,
        ],
    )
});

pub static STORE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_store_errors_total",
        "Failed store operations, by backend.",
        &["backend"],
    )
});

pub static HEALTH_CHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_health_checks_total",
        "Answers of /healthz and /readyz, by probe and outcome (ok, fail).",
        &["probe", "outcome"],
    )
});

pub static SWEPT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_retention_deleted_total",
        "Records removed by the retention sweeper, by kind (request, idempotency_key, session, permission_request, audit).",
        &["kind"],
    )
});

pub static PROCESS_RESIDENT: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_process_resident_memory_bytes",
        "Resident set size of the process.",
    )
});

pub static MEMORY_LIMIT: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_memory_limit_bytes",
        "Memory limit of the process's cgroup (container limit, systemd MemoryMax=); 0 when unlimited.",
    )
});

pub static PROCESS_CPU: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    reg(prometheus::Gauge::new(
        "a2a_process_cpu_seconds",
        "User and system CPU time consumed by the process.",
    )
    .unwrap_or_else(|e| panic!("a2a_process_cpu_seconds: {e}")))
});

pub static PROCESS_OPEN_FDS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_process_open_fds",
        "Open file descriptors of the process.",
    )
});

pub static UPTIME: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    reg(
        prometheus::Gauge::new("a2a_uptime_seconds", "Seconds since the process started.")
            .unwrap_or_else(|e| panic!("a2a_uptime_seconds: {e}")),
    )
});

pub static RATE_LIMIT_HITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_rate_limit_hits_total",
        "Requests refused by a rate limit, by surface (mcp, rest, a2a, stream) and key label.",
        &["surface", "key"],
    )
});

pub static AUTH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_auth_failures_total",
        "Refused credentials or permissions, by surface and reason (missing, invalid, expired, forbidden).",
        &["surface", "reason"],
    )
});

pub static HTTP_REFUSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_http_refusals_total",
        "Requests refused by the request admission before authentication, by listener and reason (host, origin, content_type, loopback_only).",
        &["listener", "reason"],
    )
});

pub static CONNECTIONS_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(
        Opts::new(
            "a2a_connections_open",
            "Open client connections, by listener (api, ops); upgraded WebSocket connections included.",
        ),
        &["listener"],
    )
    .unwrap_or_else(|e| panic!("a2a_connections_open: {e}")))
});

pub static CONNECTIONS_CLOSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_connections_closed_total",
        "Connections the server closed on its own, by listener and reason (per_ip_cap, head_timeout, tls_handshake, idle).",
        &["listener", "reason"],
    )
});

pub static BACKUP_LAST_SUCCESS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_backup_last_success_timestamp_seconds",
        "Unix time of the last successful backup (0 = none since start).",
    )
});

pub static BACKUP_DURATION: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    reg(prometheus::Gauge::new(
        "a2a_backup_last_duration_seconds",
        "Duration of the last successful backup.",
    )
    .unwrap_or_else(|e| panic!("a2a_backup_last_duration_seconds: {e}")))
});

pub static BACKUP_SIZE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_backup_last_size_bytes",
        "Size of the last successful backup file.",
    )
});

pub static BACKUP_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_backup_failures_total",
        "Failed backups, by trigger (schedule, api, cli).",
        &["trigger"],
    )
});

pub static PUSH_DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_push_notifications_total",
        "A2A push notification deliveries, by outcome (delivered, retried, failed).",
        &["outcome"],
    )
});

pub static A2A_RPC_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_a2a_rpc_calls_total",
        "A2A JSON-RPC calls served, by method (1.0 name) and outcome (ok, error).",
        &["method", "outcome"],
    )
});

pub static CLUSTER_RELAYED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_cluster_relay_messages_total",
        "Messages between replicas through Redis, by outcome (sent, send_failed, received).",
        &["outcome"],
    )
});

pub static CLUSTER_REDIS_UP: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_cluster_redis_up",
        "1 while the Redis relay subscription is up (multi-replica with Redis).",
    )
});

pub static CLUSTER_TAKEOVERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "a2a_cluster_takeovers_total",
        "Requests this replica took over: from a replica whose lease ran out (requeued, failed), or queued on a busier one (stolen).",
        &["outcome"],
    )
});

pub static CLUSTER_LEASES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "a2a_cluster_leases",
        "Active requests leased to this replica (at the last renewal).",
    )
});

pub static PROCESS_LEFTOVERS_KILLED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "a2a_agent_processes_killed_total",
        "Processes a process agent left behind (children, setsid daemons) killed at the end of their request.",
    )
});

pub static PROCESS_REAPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "a2a_agent_processes_reaped_total",
        "Exited orphans the hub adopted (as subreaper or PID 1) and reaped, so no zombie stays.",
    )
});

/// Forces every metric into existence so `/metrics` lists them from the first scrape.
pub fn init() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    START_TIME.set(crate::model::now_ms() / 1000);
    LazyLock::force(&REQUESTS_CREATED);
    LazyLock::force(&REQUESTS_FINISHED);
    LazyLock::force(&REQUESTS_REJECTED);
    LazyLock::force(&REQUEST_DURATION);
    LazyLock::force(&QUEUE_LENGTH);
    LazyLock::force(&RUNNING_JOBS);
    LazyLock::force(&AGENTS_TOTAL);
    LazyLock::force(&AGENTS_ENABLED);
    LazyLock::force(&STREAM_EVENTS);
    LazyLock::force(&WS_CLIENTS);
    LazyLock::force(&WS_SUBSCRIPTIONS);
    LazyLock::force(&SSE_CLIENTS);
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_DURATION);
    LazyLock::force(&MCP_TOOL_CALLS);
    LazyLock::force(&STORE_COMMIT_SECONDS);
    LazyLock::force(&STORE_COMMIT_OPS);
    LazyLock::force(&STORE_ERRORS);
    LazyLock::force(&HEALTH_CHECKS);
    LazyLock::force(&SWEPT);
    LazyLock::force(&PROCESS_RESIDENT);
    LazyLock::force(&MEMORY_LIMIT);
    LazyLock::force(&PROCESS_CPU);
    LazyLock::force(&PROCESS_OPEN_FDS);
    LazyLock::force(&UPTIME);
    LazyLock::force(&RATE_LIMIT_HITS);
    LazyLock::force(&AUTH_FAILURES);
    LazyLock::force(&HTTP_REFUSALS);
    LazyLock::force(&CONNECTIONS_OPEN);
    LazyLock::force(&CONNECTIONS_CLOSED);
    LazyLock::force(&BACKUP_LAST_SUCCESS);
    LazyLock::force(&BACKUP_DURATION);
    LazyLock::force(&BACKUP_SIZE);
    LazyLock::force(&BACKUP_FAILURES);
    LazyLock::force(&PUSH_DELIVERIES);
    LazyLock::force(&A2A_RPC_CALLS);
    LazyLock::force(&CLUSTER_RELAYED);
    LazyLock::force(&CLUSTER_REDIS_UP);
    LazyLock::force(&CLUSTER_TAKEOVERS);
    LazyLock::force(&CLUSTER_LEASES);
    LazyLock::force(&PROCESS_LEFTOVERS_KILLED);
    LazyLock::force(&PROCESS_REAPED);
    // Labelled families show up once they have a child; create the common ones at zero so
    // alert rules and dashboards find every series from the first scrape.
    for status in ["done", "error", "canceled"] {
        REQUESTS_FINISHED.with_label_values(&["echo", status]);
    }
    REQUESTS_CREATED.with_label_values(&["echo"]);
    for kind in ["start", "chunk", "final", "error", "canceled"] {
        STREAM_EVENTS.with_label_values(&[kind]);
    }
    STORE_ERRORS.with_label_values(&["redb"]);
    for probe in ["healthz", "readyz"] {
        for outcome in ["ok", "fail"] {
            HEALTH_CHECKS.with_label_values(&[probe, outcome]);
        }
    }
    for kind in [
        "request",
        "idempotency_key",
        "session",
        "permission_request",
        "audit",
    ] {
        SWEPT.with_label_values(&[kind]);
    }
    for surface in ["mcp", "rest", "a2a", "stream"] {
        for reason in ["missing", "invalid", "expired", "forbidden"] {
            AUTH_FAILURES.with_label_values(&[surface, reason]);
        }
    }
    for surface in ["mcp", "rest", "a2a", "stream"] {
        RATE_LIMIT_HITS.with_label_values(&[surface, "anonymous"]);
    }
    for listener in ["api", "ops"] {
        CONNECTIONS_OPEN.with_label_values(&[listener]);
        for reason in ["host", "origin", "content_type", "loopback_only"] {
            HTTP_REFUSALS.with_label_values(&[listener, reason]);
        }
        for reason in ["per_ip_cap", "head_timeout", "tls_handshake", "idle"] {
            CONNECTIONS_CLOSED.with_label_values(&[listener, reason]);
        }
    }
    for trigger in ["schedule", "api", "cli"] {
        BACKUP_FAILURES.with_label_values(&[trigger]);
    }
    for outcome in ["delivered", "retried", "failed"] {
        PUSH_DELIVERIES.with_label_values(&[outcome]);
    }
}

/// Reads RSS, CPU time and open fds of this process from /proc (Linux).
pub fn refresh_process() {
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(rss_pages) = statm.split_whitespace().nth(1)
        && let Ok(pages) = rss_pages.parse::<i64>()
    {
        PROCESS_RESIDENT.set(pages * page_size());
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..])
    {
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the command name.
        if let (Some(u), Some(s)) = (fields.get(11), fields.get(12))
            && let (Ok(u), Ok(s)) = (u.parse::<f64>(), s.parse::<f64>())
        {
            PROCESS_CPU.set((u + s) / clock_ticks());
        }
    }
    MEMORY_LIMIT.set(cgroup_memory_limit().unwrap_or(0));
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        PROCESS_OPEN_FDS.set(dir.count() as i64);
    }
    let start = START_TIME.get();
    UPTIME.set((crate::model::now_ms() as f64 / 1000.0 - start as f64).max(0.0));
}

/// The tightest memory limit on the way from this process's cgroup up to the root, cgroup v2
/// (`memory.max`) or v1 (`memory.limit_in_bytes`); `None` when nothing limits it. Inside a
/// container the cgroup path may name a host path that is not mounted: missing levels are
/// skipped, and the container's own limit is found at its mount root.
fn cgroup_memory_limit() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut limit: Option<i64> = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, file) = if id == "0" && controllers.is_empty() {
            (root.to_path_buf(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        let mut dir = std::path::PathBuf::from(path.trim_start_matches('/'));
        loop {
            if let Ok(v) = std::fs::read_to_string(base.join(&dir).join(file))
                && let Some(v) = parse_memory_limit(&v)
            {
                limit = Some(limit.map_or(v, |l| l.min(v)));
            }
            if !dir.pop() {
                break;
            }
        }
    }
    limit
}

/// `max` (v2) and the v1 "unlimited" value (close to i64::MAX) mean no limit.
fn parse_memory_limit(text: &str) -> Option<i64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < (1u64 << 62)).then_some(v as i64)
}

fn page_size() -> i64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096)
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as f64)
        .unwrap_or(100.0)
}

/// Resident set size in bytes, for `bench` and `/api/agent?action=status`.
pub fn resident_bytes() -> i64 {
    refresh_process();
    PROCESS_RESIDENT.get()
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_registers_once_with_the_prefix() {
        super::init();
        let text = super::render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap_or("");
            assert!(name.starts_with("a2a_"), "{name}");
        }
        assert!(text.contains("a2a_build_info"));
        assert!(text.contains("a2a_queue_length"));
        assert!(text.contains("a2a_memory_limit_bytes"));
    }

    #[test]
    fn memory_limits_parse() {
        assert_eq!(super::parse_memory_limit("536870912\n"), Some(536_870_912));
        assert_eq!(super::parse_memory_limit("max\n"), None);
        assert_eq!(super::parse_memory_limit("9223372036854771712"), None);
        assert_eq!(super::parse_memory_limit(""), None);
        // Whatever this machine's cgroups say, reading them must not fail or go negative.
        assert!(super::cgroup_memory_limit().unwrap_or(0) >= 0);
    }
}
