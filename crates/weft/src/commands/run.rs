//! `weft run`: start a run and drive it to its end in this process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use weft_core::Plan;
use weft_engine::{Engine, NewRun, RunOptions, WorkerOptions};
use weft_store::RunStatus;

use crate::app::{App, usage};
use crate::commands::print_json;
use crate::progress;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A template file, or the name of a template in ./templates or the built-ins.
    pub template: String,
    /// An input as key=value; converted to the input's declared type (JSON for arrays and
    /// objects). Repeatable.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// A JSON file with an object of inputs (`-i` values win).
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Most tool calls in flight at once (default 5, or `concurrency` in weft.toml).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// The tenant the run belongs to (default `default`, whose runs the first admin key that
    /// `weft serve` writes sees in the web UI and API).
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub tenant: String,
    /// Makes a repeated `weft run` with the same key return the first run.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Only enqueue: print the run id and exit 0; `weft worker` processes run it and
    /// `weft runs wait RUN` waits for its end.
    #[arg(long)]
    pub detach: bool,
    /// Fail the run (`budget_exceeded`) once its LLM calls used more tokens than this
    /// (replaces the template's `budget.max_llm_tokens`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub budget_llm_tokens: Option<u64>,
    /// Fail the run once its estimated cost passes this many US dollars.
    #[arg(long, value_name = "USD", value_parser = parse_dollars)]
    pub budget_cost_usd: Option<f64>,
    /// Fail the run once it made more tool calls than this.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub budget_tool_calls: Option<u64>,
}

fn parse_dollars(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("a positive number of US dollars, e.g. 0.50".into()),
    }
}

impl RunArgs {
    /// The budget the flags ask for, over the template's.
    fn options(&self) -> RunOptions {
        let budget = weft_core::plan::Budget {
            max_llm_tokens: self.budget_llm_tokens,
            max_cost_usd: self.budget_cost_usd,
            max_tool_calls: self.budget_tool_calls,
        };
        RunOptions {
            budget: (!budget.is_empty()).then_some(budget),
        }
    }
}

/// Where a template named on the command line is.
pub enum Located {
    File(PathBuf),
    /// A built-in: (file label, source).
    Builtin(&'static str, &'static str),
}

/// Finds a template: a path, then `NAME(.yaml|.yml)` in ./templates and the configured
/// folders, then the built-ins by name, then a built-in by its path in weft's repository
/// (`examples/hello.yaml` from a folder that has no such file: the quickstart works anywhere).
pub fn locate(app: &App, name: &str) -> anyhow::Result<Located> {
    let path = Path::new(name);
    let mut candidates = vec![path.to_path_buf()];
    if !name.ends_with(".yaml") && !name.ends_with(".yml") {
        let mut dirs = vec![PathBuf::from("templates")];
        dirs.extend(app.config.templates.iter().cloned());
        for dir in dirs {
            candidates.push(dir.join(format!("{name}.yaml")));
            candidates.push(dir.join(format!("{name}.yml")));
        }
    }
    if let Some(found) = candidates.into_iter().find(|c| c.is_file()) {
        return Ok(Located::File(found));
    }
    if let Some((file, source)) = crate::commands::templates::builtin(name) {
        return Ok(Located::Builtin(file, source));
    }
    if let Some((builtin, file, source)) = crate::commands::templates::builtin_at_path(path) {
        // Said once, though `weft run` finds its template twice (before and after starting
        // the MCP servers it uses).
        static NOTED: std::sync::Once = std::sync::Once::new();
        NOTED.call_once(|| {
            eprintln!(
                "note: no file {name} here; using the built-in `{builtin}` (the same template; \
                 `weft templates show {builtin} --yaml` prints it)"
            );
        });
        return Ok(Located::Builtin(file, source));
    }
    Err(usage(format!(
        "no template `{name}`: not a file, not in ./templates, not a built-in (see `weft templates list`)"
    )))
}

/// Finds and loads a template (see [`locate`]); the folder it is in, for a file.
pub fn resolve_template(app: &App, name: &str) -> anyhow::Result<(Arc<Plan>, Option<PathBuf>)> {
    let located = locate(app, name)?;
    let plan = located.load(app).map_err(|d| usage(d.to_string()))?;
    let dir = match located {
        Located::File(candidate) => candidate
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
        Located::Builtin(..) => None,
    };
    Ok((Arc::new(plan), dir))
}

impl Located {
    /// Loads and checks the template against the tools `app` knows.
    pub fn load(&self, app: &App) -> Result<Plan, weft_core::diag::Diagnostics> {
        match self {
            Located::File(path) => weft_core::load::load_file(path, &*app.tools),
            Located::Builtin(file, source) => {
                weft_core::load::load_str(source, file, None, &*app.tools)
            }
        }
    }
}

fn collect_inputs(plan: &Plan, args: &RunArgs) -> anyhow::Result<Value> {
    let mut given = Map::new();
    if let Some(file) = &args.input_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => given.extend(map),
            Ok(_) => {
                return Err(usage(format!(
                    "{}: the input file must hold a JSON object",
                    file.display()
                )));
            }
            Err(e) => return Err(usage(format!("{}: {e}", file.display()))),
        }
    }
    weft_core::inputs::resolve_cli_inputs(plan, given, &args.inputs)
        .map_err(|errors| usage(errors.join("\n")))
}

pub async fn run(app: &App, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (plan, dir) = resolve_template(app, &args.template)?;
    // Start only the MCP servers this template uses, then check it against their real tools
    // (a template without any is loaded once).
    let (plan, dir) = if app.prepare_tools(&plan).await? {
        resolve_template(app, &args.template)?
    } else {
        (plan, dir)
    };
    let inputs = collect_inputs(&plan, &args)?;
    check_tenant(app, &args.tenant).await?;
    let engine = app.engine().await?;
    let run = engine
        .create_run_with(
            NewRun {
                tenant: args.tenant.clone(),
                plan: plan.clone(),
                inputs,
                idempotency_key: args.idempotency_key.clone(),
                base_dir: dir.map(|d| d.display().to_string()),
            },
            args.options(),
        )
        .await
        .map_err(|e| match e {
            weft_engine::Error::Invalid(m) => usage(m),
            e @ weft_engine::Error::QuotaExceeded { .. } => usage(e.to_string()),
            other => anyhow::Error::new(other),
        })?;
    crate::commands::audit::record(app, "run.created", "run", &run.id, "ok").await;
    if args.detach {
        if app.global.json {
            print_json(&run)?;
        } else {
            println!("{}", run.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if run.status.is_terminal() {
        // Every step ran inline in the creating transaction: no worker (no worker row, no
        // further commit); the progress view reads the finished run's events once.
        progress::watch(
            engine.store().as_ref(),
            &run.id,
            app.global.json,
            &CancellationToken::new(),
        )
        .await?;
        return report(app, engine.store().as_ref(), &args.tenant, &run.id).await;
    }
    drive(app, &engine, &args.tenant, &run.id, args.concurrency).await
}

/// A tenant other than `default` must exist (`weft tenants create NAME`); `default` always
/// may be used, as before any server made it.
pub async fn check_tenant(app: &App, tenant: &str) -> anyhow::Result<()> {
    if tenant == "default" {
        return Ok(());
    }
    let store = crate::commands::serve::server_store(app).await?;
    if store.tenants().await?.iter().any(|t| t.name == tenant) {
        return Ok(());
    }
    Err(usage(format!(
        "no tenant `{tenant}` (see `weft tenants list`; `weft tenants create {tenant}` makes it)"
    )))
}

/// Runs a worker for one run until the run ends, showing progress; prints the result.
pub async fn drive(
    app: &App,
    engine: &Engine,
    tenant: &str,
    run_id: &str,
    concurrency: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let worker = engine.worker(WorkerOptions {
        concurrency: app.concurrency(concurrency),
        only_runs: Some(vec![run_id.to_string()]),
        max_concurrent_tasks: app.max_concurrent_tasks(None),
        ..WorkerOptions::default()
    });
    let worker_task = tokio::spawn(worker.run(shutdown.clone()));
    let ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let watched =
        progress::watch(engine.store().as_ref(), run_id, app.global.json, &shutdown).await;
    shutdown.cancel();
    let _ = worker_task.await;
    watched?;
    report(app, engine.store().as_ref(), tenant, run_id).await
}

/// Prints a run's result as `weft run` does (`--json`: the run with its steps) and returns
/// its exit code: 0 succeeded, 1 failed or cancelled, 130 not ended yet.
pub async fn report(
    app: &App,
    store: &dyn weft_store::Store,
    tenant: &str,
    run_id: &str,
) -> anyhow::Result<ExitCode> {
    let run = store
        .run(tenant, run_id)
        .await?
        .context("the run disappeared from the store")?;
    if !run.status.is_terminal() {
        eprintln!(
            "interrupted: run {run_id} is still {}; continue it with `weft runs resume {run_id}`",
            run.status
        );
        return Ok(ExitCode::from(130));
    }
    if app.global.json {
        let steps = store.steps(run_id).await?;
        print_json(&weft_store::RunView {
            run: run.clone(),
            steps,
            usage: Some(store.run_usage(run_id).await?),
        })?;
    } else {
        match &run.output {
            Some(Value::String(text)) => println!("{}", text.trim_end()),
            Some(Value::Null) | None => {}
            Some(other) => println!("{}", serde_json::to_string_pretty(other)?),
        }
        // Why it failed was the progress view's last line (it replays the run's events).
    }
    Ok(match run.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
