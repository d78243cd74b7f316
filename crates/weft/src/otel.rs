//! OpenTelemetry traces (cargo feature `otel`, `--otlp-endpoint URL` or `[telemetry]
//! otlp_endpoint`): the engine's finished spans (`weft_engine::spans`) go to an OTLP/HTTP
//! collector as protobuf, batched on a background thread.
//!
//! One trace per run: its trace id and the run span's id are derived from the run id, and a
//! step attempt's span id from (run, step, item, attempt), so every process that works on a
//! run — the one that starts it, the workers that take its tasks, the one that resumes it —
//! adds to the same trace, and a tool call's span is a child of its step attempt's. Spans are
//! built whole (ids, times, attributes) and handed to the SDK's batch processor, which is why
//! this does not go through a `Tracer`: the SDK picks its own ids.
//!
//! Attributes: `weft.run.id`, `weft.template`, `weft.tenant`, and on steps and tool calls
//! `weft.step`, `weft.item`, `weft.attempt`, `weft.tool`, `weft.status`. Never inputs or
//! outputs.

/// Keeps the exporter alive; dropping it flushes what is buffered and stops the exporter.
pub struct Guard {
    #[cfg(feature = "otel")]
    sink: std::sync::Arc<sdk::Sink>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        self.sink.shutdown();
    }
}

/// The traces endpoint for a collector's base URL (`http://host:4318` ->
/// `http://host:4318/v1/traces`); a URL that already ends in `/v1/traces` is kept.
#[cfg(feature = "otel")]
fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// Starts exporting spans to the OTLP/HTTP collector at `endpoint`.
#[cfg(feature = "otel")]
pub fn init(endpoint: &str) -> Result<Guard, String> {
    let sink = std::sync::Arc::new(sdk::Sink::new(&traces_url(endpoint))?);
    weft_engine::spans::install(sink.clone());
    Ok(Guard { sink })
}

/// Without the `otel` feature there is no exporter: say so rather than ignore the endpoint.
#[cfg(not(feature = "otel"))]
pub fn init(endpoint: &str) -> Result<Guard, String> {
    Err(format!(
        "cannot send traces to {endpoint}: this weft binary was built without the `otel` \
         feature; build it with `cargo build --release -p weft --features otel`, or drop \
         --otlp-endpoint / [telemetry] otlp_endpoint"
    ))
}

#[cfg(feature = "otel")]
mod sdk {
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanData, SpanProcessor as _};
    use sha2::{Digest, Sha256};
    use weft_engine::spans::{SpanKind, SpanRecord, SpanSink};

    #[derive(Debug)]
    pub struct Sink {
        processor: BatchSpanProcessor,
        scope: InstrumentationScope,
    }

    impl Sink {
        pub fn new(url: &str) -> Result<Sink, String> {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("cannot export traces to {url}: {e}"))?;
            let mut processor = BatchSpanProcessor::builder(exporter).build();
            processor.set_resource(&Resource::builder().with_service_name("weft").build());
            Ok(Sink {
                processor,
                scope: InstrumentationScope::builder("weft")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            })
        }

        pub fn shutdown(&self) {
            if let Err(error) = self.processor.shutdown() {
                tracing::warn!(%error, "Could not flush traces.");
            }
        }
    }

    fn digest(parts: &[&str]) -> [u8; 32] {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }

    fn trace_id(run_id: &str) -> TraceId {
        let d = digest(&["weft.trace", run_id]);
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        TraceId::from_bytes(b)
    }

    fn span_id(parts: &[&str]) -> SpanId {
        let d = digest(parts);
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        SpanId::from_bytes(b)
    }

    fn run_span(run_id: &str) -> SpanId {
        span_id(&["weft.run", run_id])
    }

    fn attempt_span(s: &SpanRecord) -> SpanId {
        let item = s.item.map(|i| i.to_string()).unwrap_or_default();
        let attempt = s.attempt.unwrap_or(0).to_string();
        let step = s.step_id.as_deref().unwrap_or("");
        span_id(&["weft.step", &s.run_id, step, &item, &attempt])
    }

    fn time(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
    }

    impl SpanSink for Sink {
        fn record(&self, s: SpanRecord) {
            let (id, parent, name) = match s.kind {
                SpanKind::Run => (
                    run_span(&s.run_id),
                    SpanId::INVALID,
                    format!("run {}", s.template),
                ),
                SpanKind::StepAttempt => (
                    attempt_span(&s),
                    run_span(&s.run_id),
                    format!("step {}", s.step_id.as_deref().unwrap_or("")),
                ),
                SpanKind::ToolCall => {
                    let attempt = attempt_span(&s);
                    (
                        span_id(&["weft.tool", &attempt.to_string()]),
                        attempt,
                        format!("tool {}", s.tool.as_deref().unwrap_or("")),
                    )
                }
            };
            let mut attributes = vec![
                KeyValue::new("weft.run.id", s.run_id.clone()),
                KeyValue::new("weft.template", s.template.clone()),
                KeyValue::new("weft.tenant", s.tenant.clone()),
                KeyValue::new("weft.status", s.status.clone()),
            ];
            if let Some(step) = &s.step_id {
                attributes.push(KeyValue::new("weft.step", step.clone()));
            }
            if let Some(item) = s.item {
                attributes.push(KeyValue::new("weft.item", i64::from(item)));
            }
            if let Some(attempt) = s.attempt {
                attributes.push(KeyValue::new("weft.attempt", i64::from(attempt)));
            }
            if let Some(tool) = &s.tool {
                attributes.push(KeyValue::new("weft.tool", tool.clone()));
            }
            let status = match &s.error {
                None => Status::Ok,
                Some(error) => Status::error(error.clone()),
            };
            self.processor.on_end(SpanData {
                span_context: SpanContext::new(
                    trace_id(&s.run_id),
                    id,
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::default(),
                ),
                parent_span_id: parent,
                parent_span_is_remote: false,
                span_kind: if s.kind == SpanKind::ToolCall {
                    OtelKind::Client
                } else {
                    OtelKind::Internal
                },
                name: Cow::Owned(name),
                start_time: time(s.start_ms),
                end_time: time(s.end_ms),
                attributes,
                dropped_attributes_count: 0,
                events: Default::default(),
                links: Default::default(),
                status,
                instrumentation_scope: self.scope.clone(),
            });
        }
    }
}
