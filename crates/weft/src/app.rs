//! What every command shares: configuration (`weft.toml`), the store, the tool registry and
//! the engine, built the same way for each command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;
use weft_engine::{Engine, EngineOptions};
use weft_store::SqlStore;
use weft_store::Store;
use weft_store::sqlite::Durability;
use weft_tools::{Registry, ToolsConfig};

/// An error in how weft was called or in a template: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// `weft.toml`. Every key has a default, so no file is needed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The store: a SQLite file path (default `.weft/weft.db`) or a `postgres://` URL.
    pub db: Option<String>,
    /// Most tool calls in flight at once (default 5).
    pub concurrency: Option<usize>,
    /// Most tasks running at once in the whole store, across every worker (default: no cap).
    pub max_concurrent_tasks: Option<u32>,
    /// `full` (default) or `relaxed`.
    pub durability: Option<String>,
    /// Folders searched for templates by name, besides `./templates`.
    pub templates: Vec<PathBuf>,
    pub http: weft_tools::config::HttpConfig,
    /// `[mcp.NAME]`: MCP servers whose tools become `mcp.NAME.TOOL`.
    pub mcp: BTreeMap<String, weft_tools::mcp::McpServerConfig>,
    /// `[llm.NAME]`: providers for `llm.chat`.
    pub llm: BTreeMap<String, weft_tools::llm::ProviderConfig>,
    /// `[artifacts]`: where images found in tool outputs go.
    pub artifacts: weft_tools::artifacts::ArtifactsConfig,
    /// `[skills]`: folders of `skill.yaml` + executable, each a `skill.NAME` tool.
    pub skills: weft_tools::skills::SkillsConfig,
    /// `[browser]`: headless Chromium for `browser.screenshot`.
    pub browser: weft_tools::browser::BrowserConfig,
    /// `[places]`: the provider behind `places.search` (Google Places or Overpass).
    pub places: weft_tools::builtin::places::PlacesConfig,
    /// `[telemetry]`: where traces go (needs a binary built with `--features otel`).
    pub telemetry: TelemetryConfig,
    /// `[eval]`: the processes `weft serve` and `weft worker` evaluate jq and Jinja in
    /// (how many, memory and time per evaluation).
    pub eval: weft_tools::eval::EvalConfig,
    /// The URL tools call weft back at with their task token (`WEFT_API_URL`); default: the
    /// address `weft serve` listens on. Set it for `weft worker` processes.
    pub api_url: Option<String>,
    /// `[sandbox]`: when present, the processes of the operator's own templates run confined
    /// too (writable paths, network, limits). Absent: they run with weft's rights.
    pub sandbox: Option<weft_tools::sandbox::SandboxConfig>,
    /// `[tenant_sandbox]`: how the processes of tenants' templates are confined (always).
    pub tenant_sandbox: weft_tools::sandbox::SandboxConfig,
}

/// `[telemetry]` in `weft.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP collector (`http://127.0.0.1:4318`; `/v1/traces` is added). Overridden by
    /// `--otlp-endpoint`.
    pub otlp_endpoint: Option<String>,
}

impl Config {
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Config> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("weft.toml"), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default());
            }
            Err(e) => return Err(usage(format!("cannot read {}: {e}", path.display()))),
        };
        toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
    }
}

/// Global options shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The store: a SQLite file (default ./.weft/weft.db) or postgres://user@host/db.
    #[arg(long, global = true, env = "WEFT_DB")]
    pub db: Option<String>,
    /// The configuration file (default ./weft.toml when it exists).
    #[arg(long, global = true, env = "WEFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// `full`: every commit survives power loss (default); `relaxed`: survives a crash of weft.
    #[arg(long, global = true, value_parser = ["full", "relaxed"])]
    pub durability: Option<String>,
    /// Log more (-v debug, -vv trace) to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines on stderr as `text` or `json` (one object per line, for a log pipeline).
    #[arg(
        long,
        global = true,
        env = "WEFT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: crate::logging::LogFormat,
    /// Send OpenTelemetry traces (one per run, a span per step attempt and tool call) to this
    /// OTLP/HTTP collector, e.g. http://127.0.0.1:4318. Needs a build with `--features otel`.
    #[arg(long, global = true, env = "WEFT_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

pub struct App {
    pub config: Config,
    pub global: Global,
    pub tools: Arc<Registry>,
    /// The memory tools' way to the store, filled when the store opens.
    pub memory: crate::memory::StoreMemory,
    /// Where the `artifacts` hook stores images (`weft serve` serves them).
    pub artifacts: weft_tools::artifacts::ArtifactStore,
    /// How tools' processes are confined, probed once when first asked.
    confinement: std::sync::OnceLock<weft_engine::policy::Confinement>,
    /// The process's one store, opened on first use ([`App::sql_store`]) and shared by the
    /// engine, the server's tables, audit, schedules and secrets.
    store: tokio::sync::OnceCell<Arc<SqlStore>>,
}

impl App {
    /// Builds what every command shares. `sandboxed`: `transform` and `render` run in
    /// evaluator processes under the `[eval]` limits (`weft serve` and `weft worker`, which
    /// run tenants' templates); otherwise in process.
    pub fn new(global: Global, sandboxed: bool) -> anyhow::Result<App> {
        let config = Config::load(global.config.as_deref())?;
        let tools_config = ToolsConfig {
            http: config.http.clone(),
            mcp: config.mcp.clone(),
            llm: config.llm.clone(),
            artifacts: config.artifacts.clone(),
            skills: config.skills.clone(),
            browser: config.browser.clone(),
            places: config.places.clone(),
        };
        let mut registry = Registry::with_builtins(&tools_config);
        let artifacts = weft_tools::config::register_configured(&mut registry, &tools_config)
            .map_err(|problems| {
                let where_ = global
                    .config
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "weft.toml".into());
                usage(format!("{where_}: {}", problems.join("\n")))
            })?;
        let memory = crate::memory::StoreMemory::default();
        weft_tools::memory::register(&mut registry, Arc::new(memory.clone()));
        if sandboxed {
            let program = std::env::current_exe()
                .context("cannot find this binary to start evaluator processes")?;
            weft_tools::eval::Evaluator::new(program, config.eval.clone()).install(&mut registry);
        }
        Ok(App {
            config,
            global,
            tools: Arc::new(registry),
            memory,
            artifacts,
            confinement: std::sync::OnceLock::new(),
            store: tokio::sync::OnceCell::new(),
        })
    }

    /// How the processes tools start are confined: tenants' always (or refused where bwrap
    /// does not work), the operator's when `[sandbox]` is present. A `[sandbox]` that cannot
    /// work here is an error rather than a silent downgrade.
    pub fn confinement(&self) -> anyhow::Result<weft_engine::policy::Confinement> {
        if let Some(c) = self.confinement.get() {
            return Ok(c.clone());
        }
        use weft_tools::sandbox::Sandbox;
        let config = self.config.tenant_sandbox.clone();
        let tenants =
            weft_engine::policy::TenantSandbox::lazy(move || Sandbox::probe(config.clone()));
        let operator = match &self.config.sandbox {
            Some(config) => Some(Arc::new(
                Sandbox::probe(config.clone()).map_err(|e| usage(format!("[sandbox]: {e}")))?,
            )),
            None => None,
        };
        let confinement = weft_engine::policy::Confinement { tenants, operator };
        Ok(self.confinement.get_or_init(|| confinement).clone())
    }

    /// Starts the MCP servers that `plan` uses, so its `mcp.*` tools are checked against their
    /// real names and schemas. Fails when one does not start. Returns whether the plan uses
    /// any (then the template must be loaded again to check it against their real tools).
    pub async fn prepare_tools(&self, plan: &weft_core::Plan) -> anyhow::Result<bool> {
        let names: Vec<&str> = plan.steps.iter().filter_map(|s| s.tool()).collect();
        if !self.tools.uses_sources(names.iter().copied()) {
            return Ok(false);
        }
        let failed = self.tools.prepare(names).await;
        if failed.is_empty() {
            return Ok(true);
        }
        let lines: Vec<String> = failed
            .into_iter()
            .map(|(prefix, e)| format!("{}*: {e}", prefix))
            .collect();
        Err(anyhow::anyhow!("cannot start tools:\n{}", lines.join("\n")))
    }

    /// The store's URL when it is PostgreSQL (`postgres://` or `postgresql://`).
    pub fn postgres_url(&self) -> Option<String> {
        let db = self.global.db.as_ref().or(self.config.db.as_ref())?;
        (db.starts_with("postgres://") || db.starts_with("postgresql://")).then(|| db.clone())
    }

    pub fn db_path(&self) -> PathBuf {
        let raw = self
            .global
            .db
            .clone()
            .or_else(|| self.config.db.clone())
            .unwrap_or_else(|| ".weft/weft.db".into());
        let raw = raw.strip_prefix("sqlite://").unwrap_or(&raw).to_string();
        let raw = raw.strip_prefix("sqlite:").unwrap_or(&raw).to_string();
        PathBuf::from(raw)
    }

    /// The store, opened once per process (the composition root): every later call hands out
    /// the same connections, so a process holds one SQLite writer and runs the migration
    /// check once.
    pub async fn sql_store(&self) -> anyhow::Result<Arc<SqlStore>> {
        let store = self
            .store
            .get_or_try_init(|| async {
                let store = self.open_store().await?;
                // The memory tools (`weft worker`, `weft run`, `weft serve`) use it too.
                self.memory.attach(store.clone());
                anyhow::Ok(store)
            })
            .await?;
        Ok(store.clone())
    }

    /// The store as the engine sees it.
    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(self.sql_store().await?)
    }

    async fn open_store(&self) -> anyhow::Result<Arc<SqlStore>> {
        if let Some(url) = self.postgres_url() {
            let store = SqlStore::postgres(&url)
                .await
                .context("cannot open the PostgreSQL store")?;
            return Ok(Arc::new(store));
        }
        let path = self.db_path();
        let durability = match self
            .global
            .durability
            .as_deref()
            .or(self.config.durability.as_deref())
        {
            None | Some("full") => Durability::Full,
            Some("relaxed") => Durability::Relaxed,
            Some(other) => {
                return Err(usage(format!(
                    "durability must be `full` or `relaxed`, not `{other}`"
                )));
            }
        };
        let store = SqlStore::sqlite(&path, durability)
            .await
            .with_context(|| format!("cannot open the store at {}", path.display()))?;
        Ok(Arc::new(store))
    }

    pub async fn engine(&self) -> anyhow::Result<Engine> {
        let mut engine = EngineOptions::new(self.store().await?, self.tools.clone());
        // `workflow:` steps and actions: a tenant's registered templates first (as under `weft
        // serve`), then ./templates, the configured folders and the built-ins. Any process
        // that commits a step's end may start the next step's child run.
        let folders = crate::folders::Folders::new(&self.config.templates, self.tools.clone());
        let registry = crate::commands::serve::server_store(self).await?;
        // Task tokens: tools call back to `api_url`, and what a task leaves behind is scrubbed
        // of the secrets its token may read, when this deployment has a secret key (none is
        // created here: without one there are no secrets to read).
        if let Some(url) = &self.config.api_url {
            engine = engine.api_url(url.trim_end_matches('/'));
        }
        let key_file = if self.postgres_url().is_some() {
            PathBuf::from(".weft/secret.key")
        } else {
            self.db_path()
                .parent()
                .map(|p| p.join("secret.key"))
                .unwrap_or_else(|| PathBuf::from("secret.key"))
        };
        let env_key = crate::guard::secret_key();
        if env_key.is_some() || key_file.exists() {
            let secret_box = weft_engine::secrets::SecretBox::load(env_key.as_deref(), &key_file)?;
            engine = engine.secret_access(registry.clone(), secret_box);
        }
        // The tool policy: what the operator granted each tenant's registered templates, and
        // how their processes (and with `[sandbox]` the operator's) are confined.
        Ok(engine
            .grants(registry.clone())
            .confinement(self.confinement()?)
            .templates(Arc::new(crate::folders::Registered::new(registry, folders)))
            .build())
    }

    pub fn concurrency(&self, flag: Option<usize>) -> usize {
        flag.or(self.config.concurrency).unwrap_or(5).max(1)
    }

    /// The global cap on running tasks: the flag, else `max_concurrent_tasks` in weft.toml.
    pub fn max_concurrent_tasks(&self, flag: Option<u32>) -> Option<u32> {
        flag.or(self.config.max_concurrent_tasks).map(|n| n.max(1))
    }
}
