//! `weft serve`: the HTTP API, the web UI and the workers in one process.
//!
//! On first start without tenant `default` it creates it and writes its admin key to
//! `admin.key` beside the store (mode 0600), printing where the key is, never the key.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use weft_engine::{EngineOptions, WorkerOptions};
use weft_server::{Server, ServerOptions, SharedTemplate};
use weft_store::server::ServerStore;

use crate::app::{App, usage};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where to listen. Loopback by default; anything else exposes the API to the network.
    #[arg(long, default_value = "127.0.0.1:8420")]
    pub listen: SocketAddr,
    /// A folder of templates every tenant may run (besides ./templates and the built-ins).
    /// Repeatable.
    #[arg(long = "templates", value_name = "DIR")]
    pub templates: Vec<PathBuf>,
    /// Most tool calls in flight at once (default 5, or `concurrency` in weft.toml).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Most tasks running at once in the whole store, across every worker on every machine
    /// (default: no cap, or `max_concurrent_tasks` in weft.toml).
    #[arg(long, value_name = "N")]
    pub max_concurrent_tasks: Option<u32>,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// How long a client may take to send a request head (and a body may pause), and how long
    /// a kept-alive connection may sit idle.
    #[arg(long, default_value = "30s", value_parser = weft_core::duration::parse)]
    pub header_timeout: Duration,
    /// Connections open at once; past it a connection gets 503 and is closed.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// After SIGTERM/SIGINT, how long requests, streams and running calls get before the
    /// server stops anyway.
    #[arg(long, default_value = "10s", value_parser = weft_core::duration::parse)]
    pub grace: Duration,
    /// Also serve the full `/metrics` (every series) and `/healthz` on this address, with no
    /// credential: for a private interface. The API's `/metrics` shows the full series only
    /// with `WEFT_METRICS_TOKEN` as the bearer.
    #[arg(long, env = "WEFT_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The process's store as the server needs it (with tenants, keys, templates and memory),
/// SQLite or PostgreSQL: the same one [`App::sql_store`] opened for the engine.
pub async fn server_store(app: &App) -> anyhow::Result<Arc<dyn ServerStore>> {
    Ok(app.sql_store().await?)
}

/// Where `serve` keeps the first admin key: beside a SQLite file, in `.weft/` for PostgreSQL.
fn admin_key_path(app: &App) -> PathBuf {
    let dir = if app.postgres_url().is_some() {
        PathBuf::from(".weft")
    } else {
        app.db_path()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    dir.join("admin.key")
}

/// Templates every tenant may run: the folders' valid templates, then the built-ins.
pub(crate) fn shared_templates(app: &App, extra: &[PathBuf]) -> Vec<SharedTemplate> {
    let mut dirs = vec![PathBuf::from("templates")];
    dirs.extend(app.config.templates.iter().cloned());
    dirs.extend(extra.iter().cloned());
    let mut out: Vec<SharedTemplate> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            if extra.contains(&dir) {
                eprintln!("warning: cannot read the template folder {}", dir.display());
            }
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        paths.sort();
        for path in paths {
            match weft_core::load::load_file(&path, &*app.tools) {
                Ok(plan) if out.iter().all(|t| t.plan.name != plan.name) => {
                    out.push(SharedTemplate {
                        plan: Arc::new(plan),
                        base_dir: path
                            .canonicalize()
                            .ok()
                            .and_then(|p| p.parent().map(|d| d.display().to_string())),
                        askable: true,
                    })
                }
                Ok(_) => {}
                Err(d) => eprintln!("warning: skipping an invalid template:\n{d}"),
            }
        }
    }
    // Every built-in that loads with this configuration's tools (the seeds' templates too, so
    // `POST /v1/ask` and the MCP tools can reach them).
    for (name, file, source) in crate::commands::templates::BUILTINS {
        if out.iter().all(|t| t.plan.name != *name)
            && let Ok(plan) = weft_core::load::load_str(source, file, None, &*app.tools)
        {
            out.push(SharedTemplate {
                plan: Arc::new(plan),
                base_dir: None,
                askable: crate::commands::templates::askable(file),
            });
        }
    }
    out
}

/// Writes a secret to a new file only its owner can read.
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
}

/// Without a tenant `default` yet, creates it and puts its admin key in a file: the CLI's runs
/// belong to `default` (unless `--tenant` names another), so its key sees them in the UI, also
/// when `weft tenants create acme` ran before the first `weft serve`. Of several servers
/// starting at once on one PostgreSQL, only the one whose insert wins writes a key.
async fn bootstrap(app: &App, store: &dyn ServerStore) -> anyhow::Result<()> {
    if store.tenants().await?.iter().any(|t| t.name == "default")
        || !store.create_tenant("default").await?
    {
        return Ok(());
    }
    let (_, secret) = weft_server::auth::create_key(store, "default", "admin").await?;
    let path = admin_key_path(app);
    write_secret(&path, &secret)?;
    eprintln!(
        "created tenant `default`; its admin API key is in {} (readable by you only)",
        path.display()
    );
    Ok(())
}

pub async fn serve(app: &App, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = server_store(app).await?;
    bootstrap(app, store.as_ref()).await?;
    let confinement = app.confinement()?;
    let mut engine =
        EngineOptions::new(store.clone(), app.tools.clone()).confinement(confinement.clone());
    let options = ServerOptions {
        listen: args.listen,
        body_limit: args.body_limit,
        header_timeout_ms: u64::try_from(args.header_timeout.as_millis()).unwrap_or(u64::MAX),
        max_connections: args.max_connections,
        shutdown_grace_ms: u64::try_from(args.grace.as_millis()).unwrap_or(u64::MAX),
        metrics_token: std::env::var("WEFT_METRICS_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty()),
        llm_matcher: !app.config.llm.is_empty(),
        worker: WorkerOptions {
            concurrency: app.concurrency(args.concurrency),
            max_concurrent_tasks: app.max_concurrent_tasks(args.max_concurrent_tasks),
            ..WorkerOptions::default()
        },
        ..ServerOptions::default()
    };
    let shared = shared_templates(app, &args.templates);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "weft serving http://{addr} (store {}, {} shared template(s)); SIGTERM or Ctrl-C stops",
        weft_store::Store::describe(store.as_ref()),
        shared.len()
    );
    eprintln!("{}", describe_confinement(&confinement));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::commands::worker::stop_signal().await;
        eprintln!("stopping: no new requests or tasks; running ones get the grace period");
        stop.cancel();
    });
    let secret_box = crate::commands::secrets::secret_box(app)?;
    // Task tokens: tools call back to `api_url` (default: where this server listens), and
    // what a task leaves behind is scrubbed of the secrets it may read.
    if let Some(url) = &app.config.api_url {
        engine = engine.api_url(url.trim_end_matches('/'));
    }
    let engine = engine.secret_access(store.clone(), secret_box.clone());
    let exporter = match args.metrics_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| usage(format!("cannot listen on {at}: {e}")))?;
            eprintln!("metrics on http://{}/metrics", listener.local_addr()?);
            Some(tokio::spawn(weft_server::metrics::serve_exporter(
                listener,
                store.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let server = Server::new(store, engine, options, shared)
        .with_secret_box(secret_box)
        .with_artifacts(app.artifacts.clone());
    server.run(listener, shutdown).await?;
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    Ok(ExitCode::SUCCESS)
}

/// What `weft serve` says at start about the processes tools start.
pub(crate) fn describe_confinement(c: &weft_engine::policy::Confinement) -> String {
    let tenants = match &c.tenants.get() {
        Ok(sandbox) => format!(
            "tenants' templates: only tools the operator granted (`weft tenants update NAME \
             --allow-tools ...`), confined with bwrap ({})",
            sandbox.describe()
        ),
        Err(why) => format!(
            "tenants' templates: no process tools at all, this machine cannot confine them \
             ({why})"
        ),
    };
    let operator = match &c.operator {
        Some(sandbox) => format!("confined by [sandbox] ({})", sandbox.describe()),
        None => "run with this process's rights (add [sandbox] to weft.toml to confine them)"
            .to_string(),
    };
    format!("processes: {tenants}; the operator's templates: {operator}")
}
