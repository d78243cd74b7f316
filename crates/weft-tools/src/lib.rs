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

pub mod artifacts;
pub mod browser;
pub mod builtin;
pub mod config;
pub mod eval;
pub mod llm;
pub mod mcp;
pub mod memory;
pub mod policy;
mod process;
pub mod sandbox;
pub mod skills;

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

/// What one attempt spent that costs money: LLM tokens and their estimated price. Tools add to
/// it through [`Context::usage`]; the engine records it with the attempt (even a failed one:
/// the tokens were spent) and checks the run's budget against it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub llm_prompt_tokens: u64,
    pub llm_completion_tokens: u64,
    /// US dollars, from the provider's price table; 0 when no price is configured.
    pub cost_usd: f64,
}

impl Usage {
    pub fn is_empty(&self) -> bool {
        self.llm_prompt_tokens == 0 && self.llm_completion_tokens == 0 && self.cost_usd == 0.0
    }
}

/// Where a tool reports its [`Usage`]: shared by the clones of one attempt's [`Context`], so a
/// tool that calls a model several times (a repair attempt, a matcher) adds each exchange as
/// it happens and nothing is lost when the attempt fails afterwards.
#[derive(Debug, Clone, Default)]
pub struct UsageMeter(Arc<std::sync::Mutex<Usage>>);

impl UsageMeter {
    /// Adds one LLM exchange.
    pub fn add_llm(&self, prompt_tokens: u64, completion_tokens: u64, cost_usd: Option<f64>) {
        if let Ok(mut u) = self.0.lock() {
            u.llm_prompt_tokens += prompt_tokens;
            u.llm_completion_tokens += completion_tokens;
            u.cost_usd += cost_usd.unwrap_or(0.0);
        }
    }
    /// What was reported so far.
    pub fn total(&self) -> Usage {
        self.0.lock().map(|u| *u).unwrap_or_default()
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
    /// Where the tool reports LLM tokens and cost (see [`UsageMeter`]).
    pub usage: UsageMeter,
    /// This attempt's task token, for calling weft back (`command` and skills get it as
    /// `WEFT_TASK_TOKEN`, `http` as a bearer header for hosts marked `send_task_token`, MCP
    /// calls in `_meta`). Never log it or put it in an output.
    pub task_token: Option<TaskToken>,
    /// The confinement of every process this call starts; `None`: they run with weft's own
    /// rights (the operator's templates, unless `[sandbox]` says otherwise). The engine sets
    /// it from the tool policy (a tenant's template is always confined).
    pub sandbox: Option<Arc<sandbox::Sandbox>>,
}

/// An attempt's task token and where the API that accepts it listens. Its `Debug` hides the
/// token, so a context can be logged without leaking it.
#[derive(Clone)]
pub struct TaskToken {
    secret: String,
    api_url: Option<String>,
}

impl TaskToken {
    pub fn new(secret: String, api_url: Option<String>) -> Self {
        TaskToken { secret, api_url }
    }
    /// The token text (`wft_tt_...`), to hand to the tool's callee and nowhere else.
    pub fn secret(&self) -> &str {
        &self.secret
    }
    /// The base URL of weft's API (`http://127.0.0.1:8420`), when one serves callbacks.
    pub fn api_url(&self) -> Option<&str> {
        self.api_url.as_deref()
    }
}

impl std::fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskToken")
            .field("secret", &"[hidden]")
            .field("api_url", &self.api_url)
            .finish()
    }
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
            usage: UsageMeter::default(),
            task_token: None,
            sandbox: None,
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
    /// Whether a call starts a host process (`command`, skills, stdio MCP servers). A tenant's
    /// own templates may use such a tool only when the operator grants it (see [`policy`]).
    fn starts_processes(&self) -> bool {
        false
    }
    /// The synchronous form of `call` for pure tools.
    fn call_pure(&self, _input: &Value) -> Option<Result<Value>> {
        None
    }
    /// Checks of a step's literal `with:` fields beyond the schema, at validation: each
    /// problem as (JSON pointer, message). See `weft_core::catalog::ToolCatalog::check_input`.
    fn check_input(&self, _literal: &Value) -> Vec<(String, String)> {
        Vec::new()
    }
    async fn call(&self, input: Value, ctx: &Context) -> Result<Value>;
}

/// Where tools come from that are only known once something starts: an MCP server lists its
/// tools after it is running. A source answers for every name under its `prefix`; before it
/// starts it accepts any such name (so a stored run's plan still loads) and hands out proxies
/// that start it on their first call.
#[async_trait]
pub trait ToolSource: Send + Sync {
    /// E.g. `mcp.files.`: the names this source answers for.
    fn prefix(&self) -> &str;
    /// Whether the tool list is known (the source started).
    fn is_started(&self) -> bool;
    /// The tool called `name` (with the prefix); before start, a proxy for any name.
    fn get(&self, name: &str) -> Option<Arc<dyn Tool>>;
    /// The tools known now: empty before start.
    fn tools(&self) -> Vec<Arc<dyn Tool>>;
    /// Starts the source and learns its tools; a no-op once started.
    async fn start(&self) -> Result<()>;
}

/// A step after a tool: it may rewrite the tool's output before the output is recorded (the
/// `artifacts` hook moves images to the artifact store).
#[async_trait]
pub trait Hook: Send + Sync {
    fn name(&self) -> &str;
    async fn process(&self, output: Value, ctx: &Context) -> Result<Value>;
}

/// A tool followed by the hooks whose pattern matches its name.
struct Hooked {
    tool: Arc<dyn Tool>,
    hooks: Vec<Arc<dyn Hook>>,
}

#[async_trait]
impl Tool for Hooked {
    fn name(&self) -> &str {
        self.tool.name()
    }
    fn description(&self) -> &str {
        self.tool.description()
    }
    fn input_schema(&self) -> Option<Value> {
        self.tool.input_schema()
    }
    fn version(&self) -> &str {
        self.tool.version()
    }
    fn is_pure(&self) -> bool {
        self.tool.is_pure()
    }
    fn wants_scope(&self) -> bool {
        self.tool.wants_scope()
    }
    fn starts_processes(&self) -> bool {
        self.tool.starts_processes()
    }
    fn call_pure(&self, input: &Value) -> Option<Result<Value>> {
        self.tool.call_pure(input)
    }
    fn check_input(&self, literal: &Value) -> Vec<(String, String)> {
        self.tool.check_input(literal)
    }
    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        let mut output = self.tool.call(input, ctx).await?;
        for hook in &self.hooks {
            output = hook.process(output, ctx).await?;
        }
        Ok(output)
    }
}

/// Whether `name` matches `pattern`: exact, or a prefix ending in `*` (`mcp.*`, `browser.*`).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The tools a process knows, by name. Filled explicitly at start-up.
#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    sources: Vec<Arc<dyn ToolSource>>,
    hooks: Vec<(String, Arc<dyn Hook>)>,
    /// Hooks by name, for steps' `post:`.
    named_hooks: BTreeMap<String, Arc<dyn Hook>>,
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

    /// Adds a lazily started source of tools (an MCP server).
    pub fn insert_source(&mut self, source: Arc<dyn ToolSource>) {
        self.sources.push(source);
    }

    /// Runs `hook` on the output of every tool whose name matches `pattern` (see
    /// [`name_matches`]).
    pub fn add_hook(&mut self, pattern: impl Into<String>, hook: Arc<dyn Hook>) {
        self.hooks.push((pattern.into(), hook));
    }

    fn source_for(&self, name: &str) -> Option<&Arc<dyn ToolSource>> {
        self.sources.iter().find(|s| name.starts_with(s.prefix()))
    }

    fn hooked(&self, tool: Arc<dyn Tool>) -> Arc<dyn Tool> {
        self.hooked_with(tool, Vec::new())
    }

    /// `tool` followed by the hooks of its name's patterns, then by `extra` (a step's `post:`)
    /// less any already there.
    fn hooked_with(&self, tool: Arc<dyn Tool>, extra: Vec<Arc<dyn Hook>>) -> Arc<dyn Tool> {
        let mut hooks: Vec<Arc<dyn Hook>> = self
            .hooks
            .iter()
            .filter(|(pattern, _)| name_matches(pattern, tool.name()))
            .map(|(_, hook)| hook.clone())
            .collect();
        for hook in extra {
            if !hooks.iter().any(|h| h.name() == hook.name()) {
                hooks.push(hook);
            }
        }
        if hooks.is_empty() {
            tool
        } else {
            Arc::new(Hooked { tool, hooks })
        }
    }

    /// Makes `hook` available by its name to steps that list it in `post:`.
    pub fn register_hook(&mut self, hook: Arc<dyn Hook>) {
        self.named_hooks.insert(hook.name().to_string(), hook);
    }

    /// The hook a step's `post:` names.
    pub fn hook(&self, name: &str) -> Option<Arc<dyn Hook>> {
        self.named_hooks.get(name).cloned()
    }

    /// The tool called `name` with its pattern hooks, followed by the hooks a step lists in
    /// `post:` (each run once even when a pattern already applies it). `Err` names a hook this
    /// process does not have.
    pub fn get_with_post(
        &self,
        name: &str,
        post: &[String],
    ) -> std::result::Result<Option<Arc<dyn Tool>>, String> {
        let mut extra = Vec::with_capacity(post.len());
        for hook in post {
            match self.hook(hook) {
                Some(h) => extra.push(h),
                None => {
                    return Err(format!(
                        "post-processing hook `{hook}` is not available in this process"
                    ));
                }
            }
        }
        let tool = match self.tools.get(name) {
            Some(tool) => tool.clone(),
            None => match self.source_for(name).and_then(|s| s.get(name)) {
                Some(tool) => tool,
                None => return Ok(None),
            },
        };
        Ok(Some(self.hooked_with(tool, extra)))
    }

    /// The tool called `name`, with its hooks.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        let tool = match self.tools.get(name) {
            Some(tool) => tool.clone(),
            None => self.source_for(name)?.get(name)?,
        };
        Some(self.hooked(tool))
    }

    /// The built-in and explicitly inserted tools (not those of sources).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.values()
    }

    /// Every tool known now: inserted ones and those of started sources, by name.
    pub fn all(&self) -> Vec<Arc<dyn Tool>> {
        let mut all: Vec<Arc<dyn Tool>> = self.tools.values().cloned().collect();
        for source in &self.sources {
            all.extend(source.tools());
        }
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// The prefixes of the sources (e.g. `mcp.files.`), started or not.
    pub fn source_prefixes(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|s| s.prefix().to_string())
            .collect()
    }

    /// Starts the sources that answer for any of `names` (a run starts only the MCP servers
    /// its template uses). Returns each source that failed to start, with why.
    pub async fn prepare<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, Error)> {
        let mut wanted: Vec<&Arc<dyn ToolSource>> = Vec::new();
        for name in names {
            if let Some(source) = self.source_for(name)
                && !wanted.iter().any(|w| Arc::ptr_eq(w, source))
            {
                wanted.push(source);
            }
        }
        self.start(wanted).await
    }

    /// Whether any of `names` comes from a source (an MCP server): a template using one must
    /// be checked again once the source has started and its real tools are known.
    pub fn uses_sources<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> bool {
        names.into_iter().any(|n| self.source_for(n).is_some())
    }

    /// Starts every source (for `weft tools list`).
    pub async fn prepare_all(&self) -> Vec<(String, Error)> {
        self.start(self.sources.iter().collect()).await
    }

    async fn start(&self, sources: Vec<&Arc<dyn ToolSource>>) -> Vec<(String, Error)> {
        let results = futures::future::join_all(sources.iter().map(|s| s.start())).await;
        sources
            .iter()
            .zip(results)
            .filter_map(|(s, r)| r.err().map(|e| (s.prefix().to_string(), e)))
            .collect()
    }
}

impl weft_core::catalog::ToolCatalog for Registry {
    fn contains(&self, name: &str) -> bool {
        if self.tools.contains_key(name) {
            return true;
        }
        match self.source_for(name) {
            // Before start any name passes, so a stored run's plan still loads; `weft run` and
            // `weft validate` start the sources their templates use first.
            Some(source) => !source.is_started() || source.get(name).is_some(),
            None => false,
        }
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
    fn check_input(&self, name: &str, literal: &Value) -> Vec<(String, String)> {
        self.get(name)
            .map(|t| t.check_input(literal))
            .unwrap_or_default()
    }
    fn names(&self) -> Vec<String> {
        self.all().iter().map(|t| t.name().to_string()).collect()
    }
}
