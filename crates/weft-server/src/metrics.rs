//! Prometheus metrics: counters and histograms fed by the event log, gauges read from the
//! store at scrape time, and request counts from a middleware.
//!
//! Deriving metrics from events (rather than instrumenting the engine) keeps the engine free
//! of any metrics library and counts runs advanced by workers in other processes too.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use weft_store::Event;

use crate::AppState;

/// The process's recorder: metrics are global, so every server in a process shares one.
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(
        "weft_runs_finished_total",
        "Runs that ended, by template and status."
    );
    metrics::describe_gauge!("weft_runs", "Runs in the store, by template and status.");
    metrics::describe_histogram!("weft_run_duration_seconds", "Run durations, start to end.");
    metrics::describe_histogram!(
        "weft_step_duration_seconds",
        "Step durations, by tool and status."
    );
    metrics::describe_counter!("weft_step_failures_total", "Steps that failed, by tool.");
    metrics::describe_counter!(
        "weft_task_retries_total",
        "Task attempts that were retried."
    );
    metrics::describe_counter!(
        "weft_cache_hits_total",
        "Task results taken from the cache."
    );
    metrics::describe_gauge!("weft_queue_depth", "Tasks waiting in the queue.");
    metrics::describe_gauge!(
        "weft_tasks_in_flight",
        "Tasks leased to a worker and running."
    );
    metrics::describe_gauge!("weft_sse_streams", "Open event streams.");
    metrics::describe_counter!(
        "weft_sse_lagged_disconnects_total",
        "Streams dropped for falling behind."
    );
    metrics::describe_counter!(
        "weft_http_requests_total",
        "HTTP requests, by method and status."
    );
}

/// Turns events into counters and durations. Keeps what it needs about runs and steps that
/// are in progress (their template, tool and start time), and forgets them when they end.
#[derive(Default)]
pub struct EventObserver {
    runs: HashMap<String, (String, i64)>,
    steps: HashMap<(String, String), (String, i64)>,
}

impl EventObserver {
    pub fn observe(&mut self, events: &[Event]) {
        if handle().is_none() {
            return;
        }
        for e in events {
            let step_key = || (e.run_id.clone(), e.step_id.clone().unwrap_or_default());
            match e.kind.as_str() {
                "run.started" | "run.resumed" => {
                    let template = e.data["template"].as_str().unwrap_or("unknown").to_string();
                    let template = match self.runs.get(&e.run_id) {
                        Some((t, _)) if template == "unknown" => t.clone(),
                        _ => template,
                    };
                    self.runs.insert(e.run_id.clone(), (template, e.ts));
                }
                "run.succeeded" | "run.failed" | "run.cancelled" => {
                    let status = e.kind.trim_start_matches("run.").to_string();
                    let (template, started) = self
                        .runs
                        .remove(&e.run_id)
                        .map(|(t, s)| (t, Some(s)))
                        .unwrap_or(("unknown".into(), None));
                    metrics::counter!("weft_runs_finished_total", "template" => template.clone(), "status" => status.clone())
                        .increment(1);
                    if let Some(started) = started {
                        metrics::histogram!("weft_run_duration_seconds", "template" => template, "status" => status)
                            .record((e.ts - started).max(0) as f64 / 1000.0);
                    }
                    self.steps.retain(|(run, _), _| run != &e.run_id);
                }
                "step.started" => {
                    let tool = e.data["tool"].as_str().unwrap_or("unknown").to_string();
                    self.steps.insert(step_key(), (tool, e.ts));
                }
                "step.succeeded" | "step.failed" | "step.cancelled" => {
                    let status = e.kind.trim_start_matches("step.").to_string();
                    let (tool, started) = self
                        .steps
                        .remove(&step_key())
                        .map(|(t, s)| (t, Some(s)))
                        .unwrap_or(("unknown".into(), None));
                    if status == "failed" {
                        metrics::counter!("weft_step_failures_total", "tool" => tool.clone())
                            .increment(1);
                    }
                    if let Some(started) = started {
                        metrics::histogram!("weft_step_duration_seconds", "tool" => tool, "status" => status)
                            .record((e.ts - started).max(0) as f64 / 1000.0);
                    }
                }
                "task.retrying" => metrics::counter!("weft_task_retries_total").increment(1),
                "task.cache_hit" => metrics::counter!("weft_cache_hits_total").increment(1),
                _ => {}
            }
        }
    }
}

/// Counts requests by method and status. The path is left out: it holds ids.
pub async fn track(request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    // The path only: a stream ticket travels in the query and must not reach a log.
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), "Request.");
    if handle().is_some() {
        metrics::counter!("weft_http_requests_total", "method" => method, "status" => response.status().as_u16().to_string())
            .increment(1);
    }
    response
}

/// Prometheus text exposition of every metric.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = handle() else {
        return (axum::http::StatusCode::OK, "").into_response();
    };
    if let Ok((queued, running)) = state.store.task_counts().await {
        metrics::gauge!("weft_queue_depth").set(queued as f64);
        metrics::gauge!("weft_tasks_in_flight").set(running as f64);
    }
    if let Ok(counts) = state.store.run_counts().await {
        // A (template, status) with no runs left is not in the answer: set it to 0, or the
        // gauge would keep its last value.
        static SEEN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
        if let Ok(mut seen) = SEEN.lock() {
            for (template, status) in seen.iter() {
                if !counts.iter().any(|(t, s, _)| t == template && s == status) {
                    metrics::gauge!("weft_runs", "template" => template.clone(), "status" => status.clone())
                        .set(0.0);
                }
            }
            for (template, status, _) in &counts {
                if !seen.iter().any(|(t, s)| t == template && s == status) {
                    seen.push((template.clone(), status.clone()));
                }
            }
        }
        for (template, status, n) in counts {
            metrics::gauge!("weft_runs", "template" => template, "status" => status).set(n as f64);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Keeps histograms from growing without bound.
pub async fn upkeep(shutdown: CancellationToken) {
    let Some(handle) = handle() else { return };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
        }
    }
}
