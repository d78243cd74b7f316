//! Prometheus metrics: the exporter, the gauges read from the store, and request counts.
//!
//! Counters and histograms of runs, steps, retries, cache and leases come from the engine
//! (`weft_engine::telemetry`), counted where a transition commits, so every process exports
//! what it did and Prometheus sums the processes. This module installs the process-wide
//! recorder, sets the gauges that describe shared state (queue depth, oldest due task, runs by
//! status, leases per worker) from one store query per scrape, and renders the text format.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use weft_store::Store;

use crate::AppState;

/// Installs the process's recorder (once; later calls return the same handle). Metrics are
/// global, so every server and worker in a process shares it. `None` when another recorder
/// was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
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

fn handle() -> Option<&'static PrometheusHandle> {
    install()
}

fn describe() {
    weft_engine::telemetry::describe();
    metrics::describe_gauge!("weft_runs", "Runs in the store, by template and status.");
    metrics::describe_gauge!(
        "weft_queue_depth",
        "Tasks waiting in the queue (due or waiting out a retry backoff)."
    );
    metrics::describe_gauge!(
        "weft_queue_due_tasks",
        "Queued tasks whose start time has passed."
    );
    metrics::describe_gauge!(
        "weft_queue_oldest_task_age_seconds",
        metrics::Unit::Seconds,
        "How long the oldest due queued task has waited (0 with an empty queue)."
    );
    metrics::describe_gauge!(
        "weft_tasks_in_flight",
        "Tasks leased to a worker and running, in every process."
    );
    metrics::describe_gauge!(
        "weft_lease_holders",
        "Worker processes that hold at least one lease."
    );
    metrics::describe_gauge!(
        "weft_workers_alive",
        "Worker processes (weft worker, serve, run) whose heartbeat row is fresh (within two leases)."
    );
    metrics::describe_gauge!("weft_sse_streams", "Open event streams (SSE subscribers).");
    metrics::describe_counter!(
        "weft_sse_lagged_disconnects_total",
        "Streams dropped for falling behind."
    );
    metrics::describe_counter!(
        "weft_stream_tickets_total",
        "Stream tickets, by result (minted, accepted, refused)."
    );
    metrics::describe_counter!(
        "weft_auth_failures_total",
        "Requests refused for a missing, malformed, unknown or revoked API key."
    );
    metrics::describe_counter!(
        "weft_http_requests_total",
        "HTTP requests, by method and status."
    );
}

/// Sets the gauges that describe the shared queue, from one store query.
pub async fn refresh_queue_gauges(store: &dyn Store) {
    match store.queue_status().await {
        Ok(q) => {
            metrics::gauge!("weft_queue_depth").set(q.queued as f64);
            metrics::gauge!("weft_queue_due_tasks").set(q.due as f64);
            metrics::gauge!("weft_queue_oldest_task_age_seconds")
                .set(q.oldest_age_ms() as f64 / 1000.0);
            metrics::gauge!("weft_tasks_in_flight").set(q.running as f64);
            let live = q.leases.iter().filter(|l| l.expires_at >= q.now).count();
            metrics::gauge!("weft_lease_holders").set(live as f64);
        }
        Err(error) => tracing::warn!(%error, "Cannot read the queue for metrics."),
    }
    match store.workers().await {
        Ok(w) => metrics::gauge!("weft_workers_alive").set(w.alive().count() as f64),
        Err(error) => tracing::warn!(%error, "Cannot read the workers for metrics."),
    }
}

/// The exporter alone, for a process without the API (`weft worker --metrics-listen`):
/// `/metrics` and `/healthz`.
pub fn exporter(store: Arc<dyn Store>) -> Router {
    install();
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let store = store.clone();
                async move {
                    refresh_queue_gauges(store.as_ref()).await;
                    text()
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
}

/// Serves [`exporter`] on `listener` until `shutdown`.
pub async fn serve_exporter(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let upkeep = tokio::spawn(upkeep(shutdown.clone()));
    let served = axum::serve(listener, exporter(store))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    let _ = upkeep.await;
    served
}

fn text() -> Response {
    let body = handle().map(|h| h.render()).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
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

/// Prometheus text exposition. With the operator's metrics token (`WEFT_METRICS_TOKEN`) as
/// the bearer, every metric; without one, only the series that name no template or step: the
/// names a tenant chose are not public.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, body = crate::problem::Problem)))]
pub async fn render(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let full = match (&state.options.metrics_token, crate::auth::bearer(&parts)) {
        (None, _) | (Some(_), None) => false,
        (Some(token), Some(given)) => {
            // Compared as hashes: equal lengths, no early exit on the first differing byte.
            if crate::auth::hash_secret(given) != crate::auth::hash_secret(token) {
                return crate::problem::Problem::new(
                    crate::problem::Kind::Unauthorized,
                    "not the metrics token; send `Authorization: Bearer $WEFT_METRICS_TOKEN`, \
                     or no credential for the public series",
                )
                .into_response();
            }
            true
        }
    };
    if handle().is_none() {
        return (axum::http::StatusCode::OK, "").into_response();
    }
    refresh_queue_gauges(state.store.as_ref()).await;
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
    if full { text() } else { public_text() }
}

/// [`text`] without the series labelled by a template or a step.
fn public_text() -> Response {
    let body = handle().map(|h| h.render()).unwrap_or_default();
    let body: String = body
        .lines()
        .filter(|line| !names_a_tenants_choice(line))
        .flat_map(|line| [line, "\n"])
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Whether a sample line carries a label whose value a tenant chose.
fn names_a_tenants_choice(line: &str) -> bool {
    let Some((_, labels)) = line.split_once('{') else {
        return false;
    };
    ["template=", "step=", "tenant="]
        .iter()
        .any(|label| labels.starts_with(label) || labels.contains(&format!(",{label}")))
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
