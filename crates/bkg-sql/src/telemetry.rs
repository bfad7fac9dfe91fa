//! Telemetry shared by every layer: the span target, the sampling rate an admin can change while
//! the server runs, the exporter's counters, and W3C `traceparent` parsing for the doors.
//!
//! Spans are `tracing` spans with the target [`SPAN_TARGET`] at DEBUG level: the log output
//! (INFO by default) does not enable them, so with no OTLP endpoint configured a span costs a
//! cached "disabled" check. The binary adds the OpenTelemetry layer only when an endpoint is
//! set. Sampling is decided at the front door ([`sample_door`]): an unsampled request makes no
//! span at all, and the layer makes other spans only inside a door's span.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span meant for export.
pub const SPAN_TARGET: &str = "bkg_span";

/// The longest statement text a span carries (bytes; longer text is cut at a character).
pub const STATEMENT_TEXT_BYTES_MAX: usize = 2048;

/// Process-wide telemetry state (one exporter per process, like the `tracing` subscriber).
#[derive(Debug)]
pub struct Telemetry {
    rate_bits: AtomicU64,
    enabled: AtomicBool,
    pub spans_exported: AtomicU64,
    pub spans_dropped: AtomicU64,
    pub export_failures: AtomicU64,
}

static TELEMETRY: Telemetry = Telemetry {
    rate_bits: AtomicU64::new(0x3FF0_0000_0000_0000), // 1.0
    enabled: AtomicBool::new(false),
    spans_exported: AtomicU64::new(0),
    spans_dropped: AtomicU64::new(0),
    export_failures: AtomicU64::new(0),
};

/// The process's telemetry state.
pub fn telemetry() -> &'static Telemetry {
    &TELEMETRY
}

impl Telemetry {
    /// The share of new traces sampled, 0.0–1.0.
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }

    /// Sets the rate; refuses a value outside 0.0–1.0.
    pub fn set_rate(&self, rate: f64) -> Result<(), String> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("the sampling rate must be between 0.0 and 1.0, not {rate}"));
        }
        self.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }
}

/// Parses `CAVE_OTEL_SAMPLING_RATE` (or a rate sent by an admin): a number from 0.0 to 1.0.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.trim().parse().map_err(|_| format!("\"{text}\" is not a number from 0.0 to 1.0"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{rate} is not between 0.0 and 1.0"));
    }
    Ok(rate)
}

/// The caller's trace context from a W3C `traceparent` value (`00-<trace id>-<span id>-<flags>`),
/// when it is well formed.
pub fn parent_from_traceparent(value: &str) -> Option<opentelemetry::Context> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let [version, trace, span, flags] = parts.as_slice() else { return None };
    if version.len() != 2 || *version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok().filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span).ok().filter(|s| *s != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(flags & 1), true, TraceState::default());
    Some(opentelemetry::Context::new().with_remote_span_context(sc))
}

/// The names of the spans that start a trace at a front door ([`sample_door`] decides whether
/// they are made at all). Every other span is made only below one of them.
pub const DOOR_SPANS: [&str; 4] = ["pg.statement", "http.request", "rpc", "realtime.join"];

/// Whether a request arriving at a front door is traced, decided once, before any span exists:
/// `None` when telemetry is off or the request is not sampled (then no span of it is made, so an
/// unsampled request costs this call and nothing else), otherwise `Some` with the caller's
/// context to adopt, if it sent a `traceparent`. Parent-based: a caller's sampled flag is
/// followed whatever the rate; without one, a share [`Telemetry::rate`] of requests is traced.
pub fn sample_door(traceparent: Option<&str>) -> Option<Option<opentelemetry::Context>> {
    let t = telemetry();
    if !t.enabled() {
        return None;
    }
    if let Some(cx) = traceparent.and_then(parent_from_traceparent) {
        return cx.span().span_context().is_sampled().then_some(Some(cx));
    }
    let rate = t.rate();
    let sampled = rate >= 1.0 || (rate > 0.0 && rand::random::<f64>() < rate);
    sampled.then_some(None)
}

/// A door's span when [`sample_door`] says the request is traced (`make` builds it), else a
/// disabled span that costs nothing.
pub fn door_span(traceparent: Option<&str>, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let Some(parent) = sample_door(traceparent) else { return tracing::Span::none() };
    let span = make();
    if let Some(cx) = parent {
        let _ = span.set_parent(cx);
    }
    span
}

/// The trace id of the current span, when it is being exported (for audit events).
pub fn current_trace_id() -> Option<String> {
    if !telemetry().enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Awaits the future `$fut` makes inside `$span`, or plainly when the span is disabled (telemetry
/// off, or the request not sampled). Wrapping moves the future into `Instrumented`: for a
/// statement's future, kilobytes of state copied per statement, which cost pgwire about 10 % of
/// its select-only throughput with telemetry off. `$fut` is written twice so that it is built
/// where it is awaited.
#[macro_export]
macro_rules! in_span {
    ($span:expr, $fut:expr) => {{
        let span: tracing::Span = $span;
        if span.is_disabled() { $fut.await } else { tracing::Instrument::instrument($fut, span).await }
    }};
}

/// Statement text for a span attribute: at most [`STATEMENT_TEXT_BYTES_MAX`] bytes.
pub fn statement_text(sql: &str) -> &str {
    if sql.len() <= STATEMENT_TEXT_BYTES_MAX {
        return sql;
    }
    let mut cut = STATEMENT_TEXT_BYTES_MAX;
    while !sql.is_char_boundary(cut) {
        cut -= 1;
    }
    &sql[..cut]
}

/// Marks `span` failed with a SQLSTATE (`db.response.status_code`) and a message.
pub fn record_error(span: &tracing::Span, sqlstate: &str, message: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message);
    span.record("db.response.status_code", sqlstate);
}

/// A stream whose every poll runs inside `span` (a query's rows are made as they are pulled).
pub struct InSpan<S> {
    pub span: tracing::Span,
    pub inner: S,
}

impl<S: futures::Stream + Unpin> futures::Stream for InSpan<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        std::pin::Pin::new(&mut this.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test for the process-wide state (tests of one process may run at once).
    #[test]
    fn the_door_decides_parent_based() {
        let t = telemetry();
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        t.set_enabled(false);
        assert!(sample_door(Some(sampled)).is_none(), "telemetry off traces nothing");
        t.set_enabled(true);
        t.set_rate(0.0).unwrap();
        assert!(sample_door(None).is_none());
        assert!(matches!(sample_door(Some(sampled)), Some(Some(_))), "a sampled caller is followed at rate 0");
        assert!(sample_door(Some("garbage")).is_none(), "a malformed traceparent counts as none");
        t.set_rate(1.0).unwrap();
        assert!(matches!(sample_door(None), Some(None)));
        assert!(sample_door(Some(unsampled)).is_none(), "an unsampled caller is followed at rate 1");
        t.set_rate(0.25).unwrap();
        let traced = (0..4000).filter(|_| sample_door(None).is_some()).count();
        assert!((800..1200).contains(&traced), "{traced} of 4000 at 0.25");
        t.set_rate(0.0).unwrap();
        let _ = door_span(None, || panic!("no span is made when not sampled"));
        t.set_rate(1.0).unwrap();
        t.set_enabled(false);
    }

    #[test]
    fn the_span_target_is_the_literal_attribute_macros_use() {
        // `#[tracing::instrument(target = "bkg_span")]` in bkg-storage spells it out.
        assert_eq!(SPAN_TARGET, "bkg_span");
    }

    #[test]
    fn rates_and_traceparents() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert_eq!(parse_rate(" 1 "), Ok(1.0));
        assert!(parse_rate("1.5").is_err() && parse_rate("-0.1").is_err() && parse_rate("often").is_err());
        assert!(parse_rate("NaN").is_err());
        let cx = parent_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parent_from_traceparent(bad).is_none(), "{bad}");
        }
        assert_eq!(statement_text(&"é".repeat(2000)).len(), 2048);
    }
}
