//! `weft mcp`: weft as an MCP server on stdin/stdout, for an agent that starts it as a child
//! process. One tool per template (./templates, the configured folders, `--templates`, the
//! built-ins), plus `ask`, `run_status` and `run_output`; runs belong to tenant `default` and
//! are worked on by this process (and by any `weft worker` on the same store).
//!
//! stdout carries only the protocol: every message of weft's own goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use rmcp::ServiceExt as _;
use tokio_util::sync::CancellationToken;
use weft_engine::{EngineOptions, WorkerOptions};
use weft_server::mcp::WeftMcp;
use weft_server::{Server, ServerOptions};

use crate::app::App;

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// A folder of templates to offer as tools (besides ./templates and the built-ins).
    /// Repeatable.
    #[arg(long = "templates", value_name = "DIR")]
    pub templates: Vec<PathBuf>,
    /// Most tool calls in flight at once (default 5, or `concurrency` in weft.toml).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Do not run the template's steps in this process; leave them to `weft worker`s.
    #[arg(long)]
    pub no_worker: bool,
}

pub async fn mcp(app: &App, args: McpArgs) -> anyhow::Result<ExitCode> {
    let store = crate::commands::serve::server_store(app).await?;
    let engine =
        EngineOptions::new(store.clone(), app.tools.clone()).confinement(app.confinement()?);
    let shared = crate::commands::serve::shared_templates(app, &args.templates);
    let options = ServerOptions {
        llm_matcher: !app.config.llm.is_empty(),
        ..ServerOptions::default()
    };
    let server = Server::new(store, engine, options, shared);
    let state = server.state().clone();
    let engine = state.engine.clone();
    let shutdown = CancellationToken::new();
    let worker = (!args.no_worker).then(|| {
        let worker = engine.worker(WorkerOptions {
            concurrency: app.concurrency(args.concurrency),
            ..WorkerOptions::default()
        });
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = worker.run(stop).await {
                tracing::error!(%error, "Worker stopped.");
            }
        })
    });
    eprintln!("weft mcp on stdio (tenant `default`); the client closing stdin stops it");
    let service = WeftMcp::stdio(state, "default")
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("the MCP client did not start a session: {e}"))?;
    let ended = service.waiting().await;
    shutdown.cancel();
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    ended.map_err(|e| anyhow::anyhow!("the MCP session failed: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
