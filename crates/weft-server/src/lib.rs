//! `weft serve`: the HTTP API, live progress over Server-Sent Events, tenants with API keys,
//! Prometheus metrics and the web UI, in one process with the workers.
//!
//! # Layout
//! - [`Server`] is the long-running part: `ServerOptions` -> [`Server::new`] ->
//!   [`Server::run`]. It owns the event [`events::Hub`] (one tail of the event log fanned out
//!   to every stream), the in-process worker and the listener.
//! - `api/` holds the `/v1` handlers and their JSON shapes; every route is registered in
//!   [`Server::routes`] through `utoipa-axum`, so `/openapi.json` is generated from the same
//!   list that serves requests, and tests can enumerate it.
//! - [`problem`] turns every error into RFC 9457 problem details with a stable code.
//! - [`auth`] makes and checks API keys and stream tickets (hashes only in the store).
//! - `ui.rs` serves the embedded web UI and the `<weft-run>` widget script.
//!
//! Architecture Invariant: the server holds no workflow logic. Runs start, stop and resume
//! through `weft_engine::Engine`; the server only authenticates, validates and shows. Every
//! store query it makes names the caller's tenant, so another tenant's records answer 404.

// Handlers return `Result<_, Problem>`; a problem is built once per failed request, so its size
// on the error path costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_core::Plan;
use weft_engine::secrets::SecretBox;
use weft_engine::{Engine, EngineOptions, WorkerOptions};
use weft_store::server::ServerStore;

pub mod api;
pub mod auth;
pub mod events;
mod listen;
pub mod markdown;
pub mod mcp;
pub mod metrics;
pub mod problem;
mod ui;

pub use events::Hub;

/// Settings of one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerOptions {
    /// Where to listen; loopback by default.
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long a client may take to send a request's head, and how long a kept-alive
    /// connection may sit idle before its next one, in milliseconds. A body that pauses this
    /// long between chunks is cut off too.
    pub header_timeout_ms: u64,
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// After the stop signal, how long open connections (streams included) get to finish,
    /// in milliseconds, before they are closed.
    pub shutdown_grace_ms: u64,
    /// The operator's credential for the full `/metrics` (series by template and step).
    /// Without it `/metrics` shows only series that name no template, step or tenant.
    #[serde(skip_serializing)]
    pub metrics_token: Option<String>,
    /// The largest page a list returns.
    pub max_page: u32,
    /// Events buffered per stream subscriber; a subscriber that falls this far behind is
    /// disconnected (it reconnects with `Last-Event-ID` and misses nothing).
    pub sse_buffer: usize,
    /// How often an idle stream sends a heartbeat comment, in milliseconds.
    pub heartbeat_ms: u64,
    /// How often the event tail looks for new events, in milliseconds.
    pub tail_poll_ms: u64,
    /// Run workers in this process.
    pub workers: bool,
    /// Fire due schedules from this process (each slot fires once, however many do).
    pub scheduler: bool,
    /// `POST /v1/ask` and the MCP `ask` tool let the model choose (`llm.chat`, checked
    /// against the registry) before the offline matcher; set when an `[llm.NAME]` exists.
    pub llm_matcher: bool,
    pub worker: WorkerOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8420)),
            body_limit: 1024 * 1024,
            header_timeout_ms: 30_000,
            max_connections: 1024,
            shutdown_grace_ms: 10_000,
            metrics_token: None,
            max_page: 200,
            sse_buffer: 256,
            heartbeat_ms: 15_000,
            tail_poll_ms: 50,
            workers: true,
            scheduler: true,
            llm_matcher: false,
            worker: WorkerOptions::default(),
        }
    }
}

/// A template the server loaded at start (from `--templates` folders or the built-ins). Every
/// tenant can run it; a tenant's own registered template of the same name comes first.
#[derive(Debug, Clone)]
pub struct SharedTemplate {
    pub plan: Arc<Plan>,
    pub base_dir: Option<String>,
    /// Whether `POST /v1/ask` and the MCP `ask` tool may choose it: not the built-ins that
    /// only follow a run as its `actions:`.
    pub askable: bool,
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ServerStore>,
    pub engine: Engine,
    pub hub: Hub,
    pub options: Arc<ServerOptions>,
    pub shared: Arc<HashMap<String, SharedTemplate>>,
    /// Registered templates' plans by digest, so each loads once per process.
    pub plans: Arc<Mutex<HashMap<String, Arc<Plan>>>>,
    /// Seals tenant secrets; without it the secrets API answers 503.
    pub secret_box: Option<SecretBox>,
    /// Where the `artifacts` hook put images; without it every artifact is a 404.
    pub artifacts: Option<weft_tools::artifacts::ArtifactStore>,
}

pub struct Server {
    state: AppState,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "weft", description = "A durable workflow engine for AI-agent tool chains."),
    modifiers(&BearerAuth),
    tags((name = "runs"), (name = "templates"), (name = "secrets"), (name = "audit"), (name = "schedules"),
        (name = "task"), (name = "usage"), (name = "service"))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wft_ak_...")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "task_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wft_tt_...")
                    .build(),
            ),
        );
    }
}

impl Server {
    /// Builds the engine from `engine`, adding what the server provides: `workflow:` steps
    /// and actions find templates where `POST /v1/runs` does, and the tool policy reads each
    /// tenant's grants where the API writes them.
    pub fn new(
        store: Arc<dyn ServerStore>,
        engine: EngineOptions,
        options: ServerOptions,
        shared: Vec<SharedTemplate>,
    ) -> Self {
        // Before anything counts: the engine's metrics are no-ops until a recorder exists.
        metrics::install();
        let hub = Hub::new(options.sse_buffer);
        let shared: Arc<HashMap<String, SharedTemplate>> = Arc::new(
            shared
                .into_iter()
                .map(|t| (t.plan.name.clone(), t))
                .collect(),
        );
        let plans: Arc<Mutex<HashMap<String, Arc<Plan>>>> = Arc::default();
        let templates = Arc::new(api::templates::Registry {
            store: store.clone(),
            shared: shared.clone(),
            plans: plans.clone(),
            tools: engine.tools().clone(),
        });
        let engine = engine.templates(templates).grants(store.clone()).build();
        Server {
            state: AppState {
                store,
                engine,
                hub,
                options: Arc::new(options),
                shared,
                plans,
                secret_box: None,
                artifacts: None,
            },
        }
    }

    /// Lets tenants keep secrets, sealed with this key.
    pub fn with_secret_box(mut self, secret_box: SecretBox) -> Self {
        self.state.secret_box = Some(secret_box);
        self
    }

    /// Serves the artifacts the tools' `artifacts` hook stored there.
    pub fn with_artifacts(mut self, store: weft_tools::artifacts::ArtifactStore) -> Self {
        self.state.artifacts = Some(store);
        self
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Every API route, with its OpenAPI description. Tests enumerate this list.
    pub fn routes(&self) -> OpenApiRouter<AppState> {
        use api::{artifacts, ask, audit, runs, schedules, secrets, templates};
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(runs::create_run, runs::list_runs))
            .routes(routes!(runs::get_run))
            .routes(routes!(runs::cancel_run))
            .routes(routes!(runs::resume_run))
            .routes(routes!(runs::create_stream_ticket))
            .routes(routes!(api::steps::get_step))
            .routes(routes!(api::steps::get_item))
            .routes(routes!(api::steps::get_history))
            .routes(routes!(api::follow::decide_approval))
            .routes(routes!(api::follow::start_action))
            .routes(routes!(ask::ask))
            .routes(routes!(
                schedules::create_schedule,
                schedules::list_schedules
            ))
            .routes(routes!(schedules::get_schedule, schedules::delete_schedule))
            .routes(routes!(schedules::pause_schedule))
            .routes(routes!(schedules::resume_schedule))
            .routes(routes!(events::stream_events))
            .routes(routes!(
                templates::register_template,
                templates::list_templates
            ))
            .routes(routes!(templates::get_template))
            .routes(routes!(secrets::list_secrets))
            .routes(routes!(secrets::put_secret, secrets::delete_secret))
            .routes(routes!(audit::list_audit))
            .routes(routes!(artifacts::get_artifact))
            .routes(routes!(artifacts::list_run_artifacts))
            .routes(routes!(api::task::read_secret))
            .routes(routes!(api::task::report_progress))
            .routes(routes!(api::task::store_artifact))
            .routes(routes!(api::task::read_memory, api::task::write_memory))
            .routes(routes!(api::task::renew_token))
            .routes(routes!(api::tenant::get_tenant))
            .routes(routes!(api::usage::get_usage))
            .routes(routes!(api::healthz))
            .routes(routes!(metrics::render))
    }

    /// The OpenAPI document of [`Server::routes`].
    pub fn openapi(&self) -> utoipa::openapi::OpenApi {
        let mut doc = self.routes().split_for_parts().1;
        problem::document_problems(&mut doc);
        doc
    }

    /// The whole application: API, `/openapi.json`, UI, limits and problem fallbacks.
    pub fn router(&self) -> Router {
        let (api, mut doc) = self.routes().split_for_parts();
        problem::document_problems(&mut doc);
        let doc = Arc::new(doc);
        api.route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(mcp::router(self.state.clone(), CancellationToken::new()))
        .merge(ui::routes())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        // Every body, whoever reads it (extractors, `/mcp`, streams), stops at the limit and
        // may not stall; the problem layer outside them turns their plain errors into problems.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            Duration::from_millis(self.state.options.header_timeout_ms.max(1)),
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            self.state.options.body_limit,
        ))
        .layer(axum::middleware::from_fn(problem::plain_errors_as_problems))
        .layer(DefaultBodyLimit::max(self.state.options.body_limit))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` fires, with the event tail, the metrics upkeep
    /// and (unless disabled) a worker running beside it.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        // Tools call back to the address this server really listens on, unless configured.
        if let Ok(addr) = listener.local_addr() {
            self.state.engine.listening_at(format!("http://{addr}"));
        }
        let mut tasks = tokio::task::JoinSet::new();
        let poll = Duration::from_millis(self.state.options.tail_poll_ms.max(1));
        tasks.spawn(
            self.state
                .hub
                .clone()
                .tail(self.state.store.clone(), poll, shutdown.clone()),
        );
        tasks.spawn(metrics::upkeep(shutdown.clone()));
        if self.state.options.workers {
            let worker = self.state.engine.worker(WorkerOptions {
                only_runs: None,
                ..self.state.options.worker.clone()
            });
            let stop = shutdown.clone();
            tasks.spawn(async move {
                if let Err(error) = worker.run(stop).await {
                    tracing::error!(%error, "Worker stopped.");
                }
            });
        }
        if self.state.options.scheduler {
            let scheduler = weft_engine::schedule::Scheduler::new(
                self.state.engine.clone(),
                self.state.store.clone(),
                weft_engine::schedule::SchedulerOptions::default(),
            );
            tasks.spawn(scheduler.run(shutdown.clone()));
        }
        let app = self.router();
        let grace = Duration::from_millis(self.state.options.shutdown_grace_ms);
        // The grace counts from the stop signal, for the connections and the tasks together.
        let stop_began = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                tokio::time::Instant::now()
            }
        });
        let served = listen::serve(
            listener,
            app,
            listen::Limits {
                header_timeout: Duration::from_millis(self.state.options.header_timeout_ms.max(1)),
                max_connections: self.state.options.max_connections.max(1),
                grace,
            },
            shutdown.clone(),
        )
        .await;
        shutdown.cancel();
        let began = stop_began
            .await
            .unwrap_or_else(|_| tokio::time::Instant::now());
        // The worker, the scheduler and the tail stop within the same grace; a task that has
        // not stopped by then is abandoned, not waited for.
        let drained = tokio::time::timeout_at(began + grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(?grace, "Stopping without waiting longer for running work.");
            tasks.abort_all();
        }
        served
    }
}
