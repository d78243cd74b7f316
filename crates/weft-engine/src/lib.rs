//! The engine: turns runs into tasks, leases them to tool calls, and records what happened.
//!
//! [`Engine`] is a cheap-to-clone handle. [`Engine::create_run`], [`Engine::cancel_run`] and
//! [`Engine::resume_run`] are single transactions; [`Worker`] is the long-running part that
//! claims tasks, calls tools with retries and timeouts, and commits their results in batches
//! (group commit: one transaction, one fsync, for every result that finished meanwhile).
//!
//! Architecture Invariant: weft-engine knows no HTTP, no SQL dialect and no CLI. It talks to
//! the store only through `weft_store::{Store, Tx}` and to tools only through `weft_tools::Tool`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use weft_core::Plan;
use weft_store::server::ToolGrants;
use weft_store::{Run, Store};
use weft_tools::Registry;

mod apply;
mod completion;
mod control;
pub mod faults;
pub mod intent;
mod leases;
mod lifecycle;
pub mod policy;
pub mod schedule;
pub mod scrub;
pub mod secrets;
pub mod spans;
pub mod telemetry;
pub mod tokens;
mod waits;
mod worker;

pub use control::{NewRun, RunOptions};
pub use leases::{MAX_LEASE_LOSSES, dead_local_owners, worker_id};
pub use waits::{ApprovalDecision, Decide, TemplateSource};
pub use worker::{Worker, WorkerOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] weft_store::Error),
    #[error("run `{0}` not found")]
    RunNotFound(String),
    /// The request cannot be carried out as asked (bad inputs, unsupported step kinds...).
    #[error("{0}")]
    Invalid(String),
    /// The same idempotency key was used with another request.
    #[error("idempotency key `{0}` was already used for a different request")]
    IdempotencyConflict(String),
    /// Something the request names (a step, an action, a template) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the run's state (deciding a step that does not wait...).
    #[error("{0}")]
    Conflict(String),
    /// The tenant's runs-per-hour quota is used up; a run may be created again after
    /// `retry_after_ms`.
    #[error(
        "the tenant's quota of {max_runs_per_hour} runs per hour is used up; try again in {} s",
        (retry_after_ms + 999) / 1000
    )]
    QuotaExceeded {
        max_runs_per_hour: u32,
        retry_after_ms: i64,
    },
    #[error("the stored template of run `{run}` no longer loads: {message}")]
    Plan { run: String, message: String },
}

impl Error {
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_transient())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The shared handle to the engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    tools: Arc<Registry>,
    /// Plans by digest: a run's plan is re-loaded from its stored source once per process.
    plans: Mutex<HashMap<String, Arc<Plan>>>,
    /// Runs' immutable parts (template source, folder) by id, for the calls of their tasks.
    runs: Mutex<HashMap<String, Arc<Run>>>,
    /// Wakes workers when there may be new work (a run created, resumed or cancelled).
    wake: Notify,
    /// Where `workflow:` steps and actions find templates, and a count of child runs started.
    subruns: waits::Subruns,
    /// The base URL tools call back to with their task token (`tokens.rs`): from the options,
    /// or set once by a server to where it listens.
    api_url: OnceLock<String>,
    /// Where the tenant secrets a task may read come from, to scrub them (`tokens.rs`).
    secrets: Option<tokens::SecretAccess>,
    /// Where the tools granted to tenants are read (`policy.rs`).
    grants: Option<Arc<dyn ToolGrants>>,
    /// How the processes of tools are confined (`policy.rs`).
    confinement: policy::Confinement,
    /// Crash tests only (`faults.rs`).
    faults: Option<Arc<faults::Crash>>,
}

/// What an engine is built from: the process's one store and its tools, then what else this
/// process has, then [`EngineOptions::build`]. Nothing changes once built, so the engine holds
/// no locks for its settings. A process opens its store once and builds its engine from it
/// (`weft`'s `App::engine`, `weft serve`, `weft mcp`).
pub struct EngineOptions {
    store: Arc<dyn Store>,
    tools: Arc<Registry>,
    api_url: Option<String>,
    secrets: Option<tokens::SecretAccess>,
    grants: Option<Arc<dyn ToolGrants>>,
    confinement: policy::Confinement,
    templates: Option<Arc<dyn TemplateSource>>,
    faults: Option<Arc<faults::Crash>>,
}

impl EngineOptions {
    pub fn new(store: Arc<dyn Store>, tools: Arc<Registry>) -> Self {
        EngineOptions {
            store,
            tools,
            api_url: None,
            secrets: None,
            grants: None,
            confinement: Default::default(),
            templates: None,
            faults: None,
        }
    }

    pub fn tools(&self) -> &Arc<Registry> {
        &self.tools
    }

    /// The base URL of the API that serves task callbacks (`http://127.0.0.1:8420`), handed
    /// to tools with their task token. Unset, a server fills in where it listens.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// Lets the engine read the tenant secrets a task may read, so it can scrub their values
    /// from the task's output, error and progress.
    pub fn secret_access(
        mut self,
        store: Arc<dyn weft_store::secrets::SecretStore>,
        secret_box: secrets::SecretBox,
    ) -> Self {
        self.secrets = Some(tokens::SecretAccess { store, secret_box });
        self
    }

    /// Where the tools granted to each tenant are read. Without it, a tenant's registered
    /// template starts no process at all.
    pub fn grants(mut self, grants: Arc<dyn ToolGrants>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// How the processes tools start are confined (see [`policy::Confinement`]).
    pub fn confinement(mut self, confinement: policy::Confinement) -> Self {
        self.confinement = confinement;
        self
    }

    /// Where `workflow:` steps and actions find templates. Without it, they fail.
    pub fn templates(mut self, source: Arc<dyn TemplateSource>) -> Self {
        self.templates = Some(source);
        self
    }

    /// Commits go through `crash` (see `faults.rs`). For tests only.
    pub fn faults(mut self, crash: Arc<faults::Crash>) -> Self {
        self.faults = Some(crash);
        self
    }

    pub fn build(self) -> Engine {
        let api_url = OnceLock::new();
        if let Some(url) = self.api_url {
            let _ = api_url.set(url);
        }
        Engine {
            inner: Arc::new(Inner {
                store: self.store,
                tools: self.tools,
                plans: Mutex::new(HashMap::new()),
                runs: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                subruns: waits::Subruns::new(self.templates),
                api_url,
                secrets: self.secrets,
                grants: self.grants,
                confinement: self.confinement,
                faults: self.faults,
            }),
        }
    }
}

impl Engine {
    /// An engine with nothing but a store and tools: `EngineOptions::new(store, tools).build()`.
    pub fn new(store: Arc<dyn Store>, tools: Arc<Registry>) -> Self {
        EngineOptions::new(store, tools).build()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Begins a write transaction whose commit is counted and logged (`telemetry`). Every
    /// transaction of the engine begins here, never at `store().begin()`.
    pub async fn begin(&self) -> weft_store::Result<Box<dyn weft_store::Tx>> {
        telemetry::begin(&*self.inner.store, self.inner.faults.clone()).await
    }

    pub fn tools(&self) -> &Arc<Registry> {
        &self.inner.tools
    }

    /// The base URL tools call back to with their task token, if there is one.
    pub fn api_url(&self) -> Option<String> {
        self.inner.api_url.get().cloned()
    }

    /// A server's address for task callbacks (`http://127.0.0.1:8420`), used only when the
    /// options named none. It is known only once the server listens; it never changes after.
    pub fn listening_at(&self, url: impl Into<String>) {
        let _ = self.inner.api_url.set(url.into());
    }

    pub(crate) fn secret_access(&self) -> Option<tokens::SecretAccess> {
        self.inner.secrets.clone()
    }

    /// Tells workers in this process to look for work now.
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
        self.inner.wake.notify_one();
    }

    /// The plan a run was started with, re-loaded from the stored source.
    pub fn plan_for(&self, run: &Run) -> Result<Arc<Plan>> {
        if let Ok(plans) = self.inner.plans.lock()
            && let Some(plan) = plans.get(&run.digest)
        {
            return Ok(plan.clone());
        }
        let files = match &run.files {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            _ => Default::default(),
        };
        let plan = weft_core::load::load_stored(&run.source, &run.file, &files, &*self.inner.tools)
            .map_err(|d| Error::Plan {
                run: run.id.clone(),
                message: d.to_string(),
            })?;
        let plan = Arc::new(plan);
        if let Ok(mut plans) = self.inner.plans.lock() {
            plans.insert(run.digest.clone(), plan.clone());
        }
        Ok(plan)
    }

    /// A run's record for calling one of its tasks: read once per run, not once per task
    /// (the parts a call uses — template, digest, folder — never change).
    pub(crate) async fn run_for_call(
        &self,
        tenant: &str,
        run_id: &str,
    ) -> Result<Option<Arc<Run>>> {
        if let Ok(runs) = self.inner.runs.lock()
            && let Some(run) = runs.get(run_id)
        {
            return Ok(Some(run.clone()));
        }
        let Some(run) = self.store().run(tenant, run_id).await? else {
            return Ok(None);
        };
        let run = Arc::new(run);
        if let Ok(mut runs) = self.inner.runs.lock() {
            if runs.len() >= 1024 {
                runs.clear();
            }
            runs.insert(run_id.to_string(), run.clone());
        }
        Ok(Some(run))
    }

    /// Remembers a plan that was just loaded, so the run does not load it a second time.
    pub fn remember_plan(&self, plan: Arc<Plan>) {
        if let Ok(mut plans) = self.inner.plans.lock() {
            plans.insert(plan.digest.clone(), plan);
        }
    }
}

/// The idempotency key a tool call carries: stable across attempts of the same step item.
pub fn idempotency_key(tenant: &str, run_id: &str, step_id: &str, item: Option<u32>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(run_id.as_bytes());
    h.update([0]);
    h.update(step_id.as_bytes());
    h.update([0]);
    if let Some(i) = item {
        h.update(i.to_be_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The wall clock in milliseconds since the Unix epoch (what steps' times are recorded in).
pub(crate) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A retry's wait, in whole milliseconds.
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
