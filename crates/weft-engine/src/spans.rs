//! Finished spans for a tracing backend: one per run, one per step attempt (a task attempt,
//! from its claim to the commit of its result) and one per tool call. The engine only
//! describes what happened; a process that wants traces installs a [`SpanSink`] once (the
//! binary's `otel` feature exports them over OTLP). Without a sink nothing is built.
//!
//! Spans carry ids, names, times and outcomes — never a run's inputs or a step's output. A
//! sink derives trace and span ids from the run id, step, item and attempt, so a run resumed
//! by another process stays one trace.

use std::sync::{Arc, OnceLock};

/// What a span describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The whole run, from its creation to its end.
    Run,
    /// One attempt of one task (a step, or one item of a `for_each` step): claim to commit.
    StepAttempt,
    /// The tool call inside a step attempt (with its post-processing hooks).
    ToolCall,
}

/// A span that has ended.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub kind: SpanKind,
    pub run_id: String,
    pub tenant: String,
    pub template: String,
    pub step_id: Option<String>,
    pub item: Option<u32>,
    pub attempt: Option<u32>,
    pub tool: Option<String>,
    /// Wall-clock start and end, in ms since the Unix epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    /// `None` when it went well; the error (a step's message, never its input) otherwise.
    pub error: Option<String>,
    /// `succeeded`, `failed`, `cancelled`, `retrying`...
    pub status: String,
}

/// Receives spans as they end. Must not block: export in the background.
pub trait SpanSink: Send + Sync {
    fn record(&self, span: SpanRecord);
}

static SINK: OnceLock<Arc<dyn SpanSink>> = OnceLock::new();

/// Installs the process's sink; the first one wins. Returns whether this one was installed.
pub fn install(sink: Arc<dyn SpanSink>) -> bool {
    SINK.set(sink).is_ok()
}

/// Whether spans are wanted (so callers skip building them otherwise).
pub(crate) fn enabled() -> bool {
    SINK.get().is_some()
}

pub(crate) fn record(span: SpanRecord) {
    if let Some(sink) = SINK.get() {
        sink.record(span);
    }
}
