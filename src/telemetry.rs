//! Logs and traces.
//!
//! Logs always go to stderr (stdout belongs to MCP in `stdio` mode): JSON lines in production
//! (or `A2A_LOG_FORMAT=json`), human-readable text otherwise; the level or filter comes from
//! `LOG_LEVEL`.
//!
//! Traces (cargo feature `otel`, on by default): when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! spans are exported over OTLP/HTTP (protobuf, or JSON with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) with the service name, version and environment
//! as resource attributes. W3C trace context (`traceparent`) is taken from incoming requests
//! ([`extract`]), carried with each invocation, and handed to executors that call out
//! (process agents get `TRACEPARENT`), so one trace covers caller, hub and agent.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[derive(Default)]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes pending spans (call inside the runtime, before exit).
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("trace export shutdown: {e}");
        }
    }
}

/// Installs logging only (no runtime needed). Safe to call more than once.
pub fn init(config: &Config) {
    let _ = install(config, false);
}

/// Installs logging and, when configured, trace export. Must run inside the Tokio runtime.
pub fn init_with_traces(config: &Config) -> Telemetry {
    install(config, true)
}

fn filter(config: &Config) -> EnvFilter {
    EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"))
}

fn install(config: &Config, traces: bool) -> Telemetry {
    let json = config.log_format == LogFormat::Json;
    let fmt_json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
    });
    let fmt_text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .compact()
            .with_writer(std::io::stderr)
    });
    let registry = tracing_subscriber::registry()
        .with(filter(config))
        .with(fmt_json)
        .with(fmt_text);
    #[cfg(feature = "otel")]
    {
        let (layer, provider) = match (traces, &config.otel_endpoint) {
            (true, Some(endpoint)) => match otel::provider(config, endpoint) {
                Ok(provider) => {
                    use opentelemetry::trace::TracerProvider;
                    let tracer = provider.tracer("a2a-mcp");
                    (
                        Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                        Some(provider),
                    )
                }
                Err(e) => {
                    eprintln!("trace export disabled: {e}");
                    (None, None)
                }
            },
            _ => (None, None),
        };
        let _ = registry.with(layer).try_init();
        Telemetry { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = traces;
        let _ = registry.try_init();
        Telemetry::default()
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::KeyValue;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracerProvider};

    use crate::config::Config;

    pub fn provider(config: &Config, endpoint: &str) -> Result<SdkTracerProvider, String> {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let protocol = match config.otel_protocol.as_str() {
            "http/json" => Protocol::HttpJson,
            _ => Protocol::HttpBinary,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_protocol(protocol)
            .build()
            .map_err(|e| format!("cannot build the OTLP exporter for {endpoint}: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(config.otel_export_interval)
            .build();
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .with_batch_config(batch)
            .build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(config.otel_service_name.clone())
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new(
                    "deployment.environment",
                    if config.is_production() {
                        "production"
                    } else {
                        "development"
                    },
                ),
            ])
            .build();
        Ok(SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build())
    }
}

/// Makes the W3C trace context in `headers` (if any) the parent of `span`.
pub fn extract(span: &tracing::Span, headers: &http::HeaderMap) {
    #[cfg(feature = "otel")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        struct Headers<'a>(&'a http::HeaderMap);
        impl opentelemetry::propagation::Extractor for Headers<'_> {
            fn get(&self, key: &str) -> Option<&str> {
                self.0.get(key).and_then(|v| v.to_str().ok())
            }
            fn keys(&self) -> Vec<&str> {
                self.0.keys().map(|k| k.as_str()).collect()
            }
        }
        if headers.contains_key("traceparent") {
            let cx =
                opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
            let _ = span.set_parent(cx);
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (span, headers);
    }
}

/// The W3C `traceparent` of `span`, when it belongs to a sampled trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            )
        })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}

/// Makes a `traceparent` string the parent of `span`.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(traceparent) {
        h.insert("traceparent", v);
        extract(span, &h);
    }
}
