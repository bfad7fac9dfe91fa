//! OTLP trace export: the standard `OTEL_EXPORTER_OTLP_*` and `OTEL_SERVICE_NAME` variables, the
//! sampling rate `CAVE_OTEL_SAMPLING_RATE`, and an exporter that never blocks a request.
//!
//! The spans come from `tracing` (target [`bkg_sql::telemetry::SPAN_TARGET`]) through
//! `tracing-opentelemetry`. The sampler is parent-based over a trace-id ratio read from
//! [`bkg_sql::telemetry::telemetry`] at every new trace, so an admin's change applies to the
//! next request. Finished spans go into a bounded queue ([`QUEUE_SPANS_MAX`]); when it is full
//! the span is dropped and counted (`bkg_otel_spans_dropped_total`). One thread drains it in
//! batches to the OTLP exporter (gRPC, or HTTP with protobuf bodies).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use bkg_sql::telemetry::{self, telemetry};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use tracing_subscriber::Layer;

/// Finished spans waiting for export; more are dropped (and counted).
pub const QUEUE_SPANS_MAX: usize = 8192;
/// Spans per export call.
const BATCH_SPANS_MAX: usize = 512;
/// A batch goes out at least this often.
const BATCH_INTERVAL: Duration = Duration::from_millis(500);
/// One export call's deadline.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Where and how traces go.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The URL spans are sent to (for HTTP including `/v1/traces`).
    pub endpoint: String,
    pub protocol: Protocol,
    pub service_name: String,
    pub rate: f64,
}

/// Reads the telemetry settings from the environment (see [`config_from`]).
pub fn config_from_env() -> Result<Option<OtlpConfig>, String> {
    config_from(|name| std::env::var(name).ok())
}

/// Reads the telemetry settings through `lookup`. `Ok(None)`: no endpoint, telemetry off. An
/// invalid `CAVE_OTEL_SAMPLING_RATE` or protocol is refused whether or not an endpoint is set.
pub fn config_from(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<OtlpConfig>, String> {
    let var = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let rate = match var("CAVE_OTEL_SAMPLING_RATE") {
        Some(v) => telemetry::parse_rate(&v).map_err(|e| format!("CAVE_OTEL_SAMPLING_RATE: {e}"))?,
        None => 1.0,
    };
    let protocol =
        match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL")).as_deref() {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL: \"{other}\" is not supported (use grpc or http/protobuf)"
                ));
            }
        };
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let endpoint = match (var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), var("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        (Some(e), _) => e,
        (None, Some(base)) if protocol == Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, Some(base)) => base,
        (None, None) => return Ok(None),
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(format!("OTEL_EXPORTER_OTLP_ENDPOINT: \"{endpoint}\" is not an http:// or https:// URL"));
    }
    let service_name = var("OTEL_SERVICE_NAME").unwrap_or_else(|| "bkg-db".into());
    Ok(Some(OtlpConfig { endpoint, protocol, service_name, rate }))
}

enum Msg {
    Span(Box<SpanData>),
    Flush(SyncSender<()>),
}

/// A bounded queue in front of one export thread.
#[derive(Debug)]
struct QueueProcessor {
    tx: SyncSender<Msg>,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        match self.tx.try_send(Msg::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                telemetry().spans_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (ack, done) = sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(EXPORT_TIMEOUT);
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.force_flush()
    }
}

/// Drains the queue into the exporter, a batch at a time.
fn export_loop(rx: Receiver<Msg>, cfg: OtlpConfig, resource: Resource) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        tracing::error!("telemetry: no runtime for the exporter; spans are not exported");
        return;
    };
    let built = rt.block_on(async {
        let b = opentelemetry_otlp::SpanExporter::builder();
        match cfg.protocol {
            Protocol::Grpc => b.with_tonic().with_endpoint(&cfg.endpoint).with_timeout(EXPORT_TIMEOUT).build(),
            Protocol::HttpProtobuf => b.with_http().with_endpoint(&cfg.endpoint).with_timeout(EXPORT_TIMEOUT).build(),
        }
    });
    let mut exporter = match built {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("telemetry: the OTLP exporter for {} could not be built: {e}", cfg.endpoint);
            return;
        }
    };
    exporter.set_resource(&resource);
    let mut batch: Vec<SpanData> = Vec::new();
    let mut due = Instant::now() + BATCH_INTERVAL;
    let export = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let spans = std::mem::take(batch);
        // The timeout's timer must be made inside the runtime, hence the async block.
        match rt.block_on(async { tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(spans)).await }) {
            Ok(Ok(())) => telemetry().spans_exported.fetch_add(n, Ordering::Relaxed),
            _ => telemetry().export_failures.fetch_add(n, Ordering::Relaxed),
        };
    };
    loop {
        match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(Msg::Span(s)) => {
                batch.push(*s);
                if batch.len() >= BATCH_SPANS_MAX {
                    export(&mut batch);
                }
            }
            Ok(Msg::Flush(ack)) => {
                export(&mut batch);
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                export(&mut batch);
                due = Instant::now() + BATCH_INTERVAL;
            }
            Err(RecvTimeoutError::Disconnected) => {
                export(&mut batch);
                return;
            }
        }
    }
}

/// Flushes the spans still queued when the server stops.
pub struct Guard {
    provider: SdkTracerProvider,
}

impl Guard {
    pub fn shutdown(self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// The `tracing` layer that exports this process's spans, and its guard.
pub fn layer<S>(cfg: &OtlpConfig) -> Result<(Box<dyn Layer<S> + Send + Sync>, Guard), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let (tx, rx) = sync_channel(QUEUE_SPANS_MAX);
    let worker_cfg = cfg.clone();
    let worker_resource = resource.clone();
    std::thread::Builder::new()
        .name("bkg-otlp-export".into())
        .spawn(move || export_loop(rx, worker_cfg, worker_resource))
        .map_err(|e| format!("telemetry: cannot start the export thread: {e}"))?;
    let provider = SdkTracerProvider::builder()
        // Sampling is decided at the doors (bkg_sql::telemetry::sample_door): a span that exists
        // is sampled.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .with_span_processor(QueueProcessor { tx })
        .build();
    let tracer = provider.tracer("bkg-db");
    // Our spans only, and only a door's span or one below it: a span made outside any request
    // (a background task) would start a trace no door sampled.
    let only_ours = tracing_subscriber::filter::dynamic_filter_fn(|m, cx| {
        m.is_span()
            && m.target() == telemetry::SPAN_TARGET
            && (telemetry::DOOR_SPANS.contains(&m.name()) || cx.lookup_current().is_some())
    })
    // Every other call site (the log events and spans of hyper, h2, tonic, DataFusion) is
    // "never" once, cached, instead of asking the filter at every hit.
    .with_callsite_filter(|m| {
        if m.is_span() && m.target() == telemetry::SPAN_TARGET {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    });
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(only_ours);
    telemetry().set_enabled(true);
    Ok((Box::new(layer), Guard { provider }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Option<OtlpConfig>, String> {
        let map: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        config_from(|k| map.get(k).cloned())
    }

    #[test]
    fn settings_are_checked_at_start() {
        for bad in ["1.5", "-0.1", "often", "NaN"] {
            let e = config(&[("CAVE_OTEL_SAMPLING_RATE", bad)]).unwrap_err();
            assert!(e.contains("CAVE_OTEL_SAMPLING_RATE"), "{e}");
        }
        assert_eq!(config(&[("CAVE_OTEL_SAMPLING_RATE", "0.25")]), Ok(None));
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/");
        let c = config(&[base, ("CAVE_OTEL_SAMPLING_RATE", "0.25")]).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!((c.protocol, c.rate, c.service_name.as_str()), (Protocol::HttpProtobuf, 0.25, "bkg-db"));
        let c = config(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_SERVICE_NAME", "x")]).unwrap().unwrap();
        assert_eq!((c.endpoint.as_str(), c.protocol, c.rate), ("http://127.0.0.1:4318/", Protocol::Grpc, 1.0));
        assert_eq!(c.service_name, "x");
        let traces = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom");
        assert_eq!(config(&[base, traces]).unwrap().unwrap().endpoint, "http://collector:4318/custom");
        assert!(config(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).is_err());
        assert!(config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]).is_err());
        assert_eq!(config(&[base, ("OTEL_SDK_DISABLED", "true")]), Ok(None));
    }
}
