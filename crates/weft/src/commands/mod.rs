//! The command tree and the dispatch to one module per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{App, Global};

mod ask;
mod audit;
mod keys;
mod mcp;
mod migrate;
mod plan;
mod run;
mod runs;
mod runs_follow;
mod runs_wait;
mod schedules;
mod secrets;
pub(crate) mod serve;
mod status;
pub(crate) mod templates;
mod tenants;
mod tools;
mod usage;
mod validate;
mod worker;

/// weft — a durable workflow engine for AI-agent tool chains.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say what you want in a sentence: weft picks a template and its inputs, then runs it
    /// (`--dry-run`: only show the choice and the plan).
    Ask(ask::AskArgs),
    /// Run a template (a file, or a name from ./templates or the built-ins) to its end.
    Run(run::RunArgs),
    /// Show a template's step graph and each step's input as far as it is known before a
    /// run (values that depend only on the inputs are resolved; the rest shown as written).
    Plan(plan::PlanArgs),
    /// Check templates without running them; every problem as FILE:LINE:COL: CODE: message.
    Validate(validate::ValidateArgs),
    /// Run tasks of every run in the store until stopped (SIGTERM finishes or hands back
    /// running tasks); start several, on several machines, against one PostgreSQL.
    Worker(worker::WorkerArgs),
    /// List, inspect, resume and cancel runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// The templates weft can find.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// The tools templates can call (starts configured MCP servers to list theirs).
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// Serve the HTTP API, live progress (SSE) and the web UI, with workers, in one process.
    Serve(serve::ServeArgs),
    /// Create and list tenants.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Create, list and revoke a tenant's API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// What an operator asks first: store reachable, schema current, workers holding leases,
    /// queue depth and the oldest due task. Exit 1 when something is wrong.
    #[command(visible_alias = "doctor")]
    Status,
    /// Set, list and delete the `default` tenant's secrets (stored encrypted).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// The `default` tenant's audit trail: who did what, when, and how it ended.
    Audit(audit::AuditArgs),
    /// weft as an MCP server on stdio: a tool per template, plus `ask`, `run_status` and
    /// `run_output` (over HTTP, `weft serve` answers at `/mcp`).
    Mcp(mcp::McpArgs),
    /// Run templates on a cron: add, list (with the next fire time), pause, resume, delete.
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// Bring the store's schema up to this binary's version (before starting upgraded workers).
    Migrate,
    /// Metering: runs, tool calls, cache hits, LLM tokens and estimated cost, grouped by
    /// day, template or run.
    Usage(usage::UsageArgs),
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // The processes that run tenants' templates evaluate jq and Jinja in bounded children.
    let sandboxed = matches!(cli.command, Command::Serve(_) | Command::Worker(_));
    let app = App::new(cli.global, sandboxed)?;
    match cli.command {
        Command::Ask(args) => ask::ask(&app, args).await,
        Command::Run(args) => run::run(&app, args).await,
        Command::Plan(args) => plan::plan(&app, args).await,
        Command::Validate(args) => validate::validate(&app, args).await,
        Command::Runs(cmd) => runs::runs(&app, cmd).await,
        Command::Worker(args) => worker::worker(&app, args).await,
        Command::Templates(cmd) => templates::templates(&app, cmd),
        Command::Tools(cmd) => tools::tools(&app, cmd).await,
        Command::Serve(args) => serve::serve(&app, args).await,
        Command::Tenants(cmd) => tenants::tenants(&app, cmd).await,
        Command::Keys(cmd) => keys::keys(&app, cmd).await,
        Command::Status => status::status(&app).await,
        Command::Secrets(cmd) => secrets::secrets(&app, cmd).await,
        Command::Audit(args) => audit::audit(&app, args).await,
        Command::Mcp(args) => mcp::mcp(&app, args).await,
        Command::Schedules(cmd) => schedules::schedules(&app, cmd).await,
        Command::Migrate => migrate::migrate(&app).await,
        Command::Usage(args) => usage::usage_report(&app, args).await,
    }
}

/// Prints JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
