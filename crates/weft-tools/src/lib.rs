//! Tools: the one trait every tool implements, the registry the binary fills at start-up, and
//! the built-in tools.
//!
//! A tool sees only its input and a [`Context`]; it knows no store, no run state and no other
//! tool. The engine owns retries, timeouts and leases; a tool just does one attempt and says
//! whether its failure is worth retrying ([`Error::is_transient`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub mod builtin;
pub mod config;

pub use config::ToolsConfig;

/// Why one attempt of a tool failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The input does not fit the tool; retrying cannot help.
    #[error("invalid input: {0}")]
    Input(String),
    /// The tool ran and failed in a way that may pass on another attempt (network, 5xx, a
    /// non-zero exit).
    #[error("{0}")]
    Failed(String),
    /// The tool ran and failed for good (4xx, a refused target, a jq error).
    #[error("{0}")]
    Permanent(String),
    /// The attempt was cancelled (run cancelled, lease lost, timeout).
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Failed(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Progress a tool reports while it runs (`i` of `n`, and a note).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    pub done: u64,
    pub total: Option<u64>,
    pub message: Option<String>,
}

/// Where a tool's progress goes. Cheap to clone; sending never blocks (updates are dropped
/// when the receiver is behind: progress is advisory).
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<tokio::sync::mpsc::Sender<ProgressUpdate>>);

impl Progress {
    pub fn new(sender: tokio::sync::mpsc::Sender<ProgressUpdate>) -> Self {
        Progress(Some(sender))
    }
    pub fn report(&self, update: ProgressUpdate) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(update);
        }
    }
}

/// Everything a tool may know about the attempt it is running.
#[derive(Debug, Clone)]
pub struct Context {
    pub run_id: String,
    pub tenant: String,
    pub step_id: String,
    /// The item's index for a `for_each` step.
    pub item_index: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Stable across attempts: a tool that dedupes on it has effectively-once side effects.
    pub idempotency_key: String,
    /// Fired when the run is cancelled, the lease is lost or the attempt timed out.
    pub cancel: CancellationToken,
    pub progress: Progress,
    /// The folder of the template the step comes from (the default `cwd` of `command`).
    pub base_dir: Option<PathBuf>,
}

impl Context {
    /// A context for calling a tool outside a run (tests, `weft tools call`).
    pub fn for_test() -> Self {
        Context {
            run_id: "run_test".into(),
            tenant: "default".into(),
            step_id: "step".into(),
            item_index: None,
            attempt: 1,
            idempotency_key: "run_test/step".into(),
            cancel: CancellationToken::new(),
            progress: Progress::default(),
            base_dir: None,
        }
    }
}

/// One tool. Only `name`, `description` and `call` are required.
#[async_trait]
pub trait Tool: Send + Sync {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// JSON Schema of the `with:` input; validation checks literal inputs against it.
    fn input_schema(&self) -> Option<Value> {
        None
    }
    /// Part of the cache key: bump it when the same input would give another output.
    fn version(&self) -> &str {
        "1"
    }
    /// Pure tools are deterministic, cheap and do no I/O; the orchestrator runs them inline
    /// through [`Tool::call_pure`] unless the step says `strategy: queue`.
    fn is_pure(&self) -> bool {
        false
    }
    /// Whether the tool wants the step's whole expression scope as `input.scope`, with its
    /// `template` key left unrendered (the `render` tool).
    fn wants_scope(&self) -> bool {
        false
    }
    /// The synchronous form of `call` for pure tools.
    fn call_pure(&self, _input: &Value) -> Option<Result<Value>> {
        None
    }
    async fn call(&self, input: Value, ctx: &Context) -> Result<Value>;
}

/// The tools a process knows, by name. Filled explicitly at start-up.
#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// The built-in tools, configured.
    pub fn with_builtins(config: &ToolsConfig) -> Self {
        let mut registry = Registry::new();
        builtin::register_all(&mut registry, config);
        registry
    }

    pub fn insert(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.name().to_string(), tool);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.values()
    }
}

impl weft_core::catalog::ToolCatalog for Registry {
    fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }
    fn input_schema(&self, name: &str) -> Option<Value> {
        self.get(name).and_then(|t| t.input_schema())
    }
    fn is_pure(&self, name: &str) -> bool {
        self.get(name).is_some_and(|t| t.is_pure())
    }
    fn wants_scope(&self, name: &str) -> bool {
        self.get(name).is_some_and(|t| t.wants_scope())
    }
    fn names(&self) -> Vec<String> {
        self.tools.keys().cloned().collect()
    }
}
