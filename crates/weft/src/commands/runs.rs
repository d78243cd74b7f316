//! `weft runs list|show|resume|cancel`; `show`, `resume` and `cancel` take `--tenant` so the
//! operator can act on any tenant's run (the default is tenant `default`, the CLI's own).

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::Value;
use weft_store::{RunQuery, RunStatus, RunView};

use crate::app::{App, usage};
use crate::commands::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first.
    List {
        /// Only runs with this status.
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this template.
        #[arg(long)]
        template: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Runs of this tenant (`weft run --tenant NAME` or its API keys started them).
        #[arg(long, default_value = "default", value_name = "NAME")]
        tenant: String,
    },
    /// One run with its steps and output.
    Show {
        run: String,
        /// The tenant whose run it is (the operator acts for any tenant).
        #[arg(long, default_value = TENANT)]
        tenant: String,
    },
    /// Continue a run: re-run only what did not succeed, or take over from a worker that died.
    Resume {
        run: String,
        #[arg(long)]
        concurrency: Option<usize>,
        /// The tenant whose run it is (the operator acts for any tenant).
        #[arg(long, default_value = TENANT)]
        tenant: String,
    },
    /// Cancel a run: queued work never starts, running tools are stopped, waiting approvals
    /// are withdrawn and the runs of its `workflow:` steps are cancelled too.
    Cancel {
        run: String,
        /// The tenant whose run it is (the operator acts for any tenant).
        #[arg(long, default_value = TENANT)]
        tenant: String,
    },
    /// Approve (or `--reject`) a run's approval step; `--item N` for one item of a for_each.
    Approve(crate::commands::runs_follow::ApproveArgs),
    /// Start one of a finished run's follow-up `actions:` (a new run linked to it).
    Action(crate::commands::runs_follow::ActionArgs),
    /// Wait until a run ends (workers run it), then print what `weft run` prints; the exit
    /// code is `weft run`'s too.
    Wait { run: String },
}

const TENANT: &str = "default";

pub async fn runs(app: &App, cmd: RunsCommand) -> anyhow::Result<ExitCode> {
    let engine = app.engine().await?;
    let store = engine.store().clone();
    match cmd {
        RunsCommand::List {
            status,
            template,
            limit,
            tenant,
        } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
                    usage(format!(
                        "unknown status `{s}`: use queued, running, waiting, succeeded, failed or cancelled"
                    ))
                })?),
            };
            let runs = store
                .runs(&RunQuery {
                    tenant,
                    status,
                    template,
                    limit: limit.clamp(1, 1000),
                    ..RunQuery::default()
                })
                .await?;
            if app.global.json {
                print_json(&runs)?;
            } else {
                println!(
                    "{:<32} {:<20} {:<10} {:<24} {:>10}",
                    "ID", "TEMPLATE", "STATUS", "CREATED", "DURATION"
                );
                for r in runs {
                    let duration = r
                        .finished_at
                        .zip(r.started_at)
                        .map(|(f, s)| format!("{:.2}s", (f - s) as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:<32} {:<20} {:<10} {:<24} {:>10}",
                        r.id,
                        format!("{}@{}", r.template, r.version),
                        r.status.as_str(),
                        weft_store::rfc3339(r.created_at),
                        duration
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { run, tenant } => {
            let r = store
                .run(&tenant, &run)
                .await?
                .ok_or_else(|| usage(format!("no run `{run}`")))?;
            let steps = store.steps(&run).await?;
            let used = store.run_usage(&run).await?;
            if app.global.json {
                print_json(&RunView {
                    run: r,
                    steps,
                    usage: Some(used),
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("run       {}", r.id);
            println!("template  {}@{} ({})", r.template, r.version, r.file);
            println!("status    {}", r.status);
            println!("inputs    {}", r.inputs);
            println!("created   {}", weft_store::rfc3339(r.created_at));
            if let Some(f) = r.finished_at {
                println!("finished  {}", weft_store::rfc3339(f));
            }
            if let Some(p) = &r.parent {
                let how = match (&p.step, p.item, &p.action) {
                    (Some(step), Some(i), _) => format!("step {step} item {i}"),
                    (Some(step), None, _) => format!("step {step}"),
                    (None, _, Some(action)) => format!("action {action}"),
                    _ => String::new(),
                };
                println!("parent    {} ({how})", p.run_id);
            }
            for c in store.child_runs(&run).await? {
                let how = match (&c.parent, c.parent.as_ref().and_then(|p| p.item)) {
                    (Some(p), Some(i)) if p.step.is_some() => {
                        format!("step {} item {i}", p.step.as_deref().unwrap_or(""))
                    }
                    (Some(p), None) if p.step.is_some() => {
                        format!("step {}", p.step.as_deref().unwrap_or(""))
                    }
                    (Some(p), _) => format!("action {}", p.action.as_deref().unwrap_or("")),
                    _ => String::new(),
                };
                println!(
                    "child     {} {}@{} {} ({how})",
                    c.id, c.template, c.version, c.status
                );
            }
            for t in store.tasks(&run).await? {
                if t.status == weft_store::TaskStatus::Waiting
                    && t.tool == weft_core::orchestrator::APPROVAL_TOOL
                {
                    let item = t.item.map(|i| format!(" --item {i}")).unwrap_or_default();
                    println!(
                        "waiting   {}{item}: {}  (weft runs approve {run} {}{item} [--reject])",
                        t.step_id,
                        t.input["prompt"].as_str().unwrap_or("approve?"),
                        t.step_id
                    );
                }
            }
            println!("usage     {}", usage_line(&used));
            if let Some(b) = &r.budget {
                println!("budget    {}", budget_line(b));
            }
            println!();
            for s in &steps {
                let mut line = format!("  {:<10} {:<20}", s.status.as_str(), s.step_id);
                if let Some(total) = s.items_total {
                    line.push_str(&format!(" items {}/{}", s.items_done, total));
                    if s.items_failed > 0 {
                        line.push_str(&format!(" ({} failed)", s.items_failed));
                    }
                }
                if s.attempts > 1 {
                    line.push_str(&format!(" attempts {}", s.attempts));
                }
                if s.cache_hits > 0 {
                    line.push_str(&format!(" cache hits {}", s.cache_hits));
                }
                if let (Some(a), Some(b)) = (s.started_at, s.finished_at) {
                    line.push_str(&format!(" {}ms", b - a));
                }
                println!("{line}");
                if let Some(e) = &s.error {
                    println!("             error: {e}");
                }
            }
            if let Some(e) = &r.error {
                println!("\nerror: {e}");
            }
            match &r.output {
                Some(Value::String(text)) => println!("\n{}", text.trim_end()),
                Some(Value::Null) | None => {}
                Some(other) => println!("\n{}", serde_json::to_string_pretty(other)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Resume {
            run,
            concurrency,
            tenant,
        } => {
            let owners = store
                .tasks(&run)
                .await?
                .into_iter()
                .filter(|t| t.status == weft_store::TaskStatus::Running)
                .filter_map(|t| t.lease_owner)
                .collect::<std::collections::BTreeSet<_>>();
            let dead = weft_engine::dead_local_owners(owners);
            engine
                .resume_run(&tenant, &run, &dead)
                .await
                .map_err(|e| match e {
                    weft_engine::Error::RunNotFound(_) | weft_engine::Error::Invalid(_) => {
                        usage(e.to_string())
                    }
                    other => anyhow::Error::new(other),
                })?;
            crate::commands::audit::record_for(app, &tenant, "run.resumed", "run", &run, "ok")
                .await;
            // Also when the resume itself ended the run (everything came from the cache):
            // `drive` then just prints the result.
            crate::commands::run::drive(app, &engine, &tenant, &run, concurrency)
                .await
                .context("while driving the resumed run")
        }
        RunsCommand::Approve(args) => crate::commands::runs_follow::approve(app, args).await,
        RunsCommand::Action(args) => crate::commands::runs_follow::action(app, args).await,
        RunsCommand::Wait { run } => crate::commands::runs_wait::wait(app, &*store, &run).await,
        RunsCommand::Cancel { run, tenant } => {
            let r = engine
                .cancel_run(&tenant, &run)
                .await
                .map_err(|e| match e {
                    weft_engine::Error::RunNotFound(_) => usage(e.to_string()),
                    other => anyhow::Error::new(other),
                })?;
            crate::commands::audit::record_for(app, &tenant, "run.cancelled", "run", &r.id, "ok")
                .await;
            if app.global.json {
                print_json(&r)?;
            } else {
                println!("run {} is {}", r.id, r.status);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A run's usage on one line: `1,234 LLM tokens (1,000 prompt, 234 completion), $0.0012, 3
/// tool calls, 1 cache hit`.
pub fn usage_line(u: &weft_store::usage::RunUsage) -> String {
    format!(
        "{} LLM tokens ({} prompt, {} completion), ${:.6} estimated, {} tool calls, {} cache hits",
        u.llm_tokens(),
        u.llm_prompt_tokens,
        u.llm_completion_tokens,
        u.cost_usd,
        u.tool_calls,
        u.cache_hits
    )
}

fn budget_line(b: &weft_core::plan::Budget) -> String {
    let mut parts = Vec::new();
    if let Some(n) = b.max_llm_tokens {
        parts.push(format!("max {n} LLM tokens"));
    }
    if let Some(n) = b.max_cost_usd {
        parts.push(format!("max ${n}"));
    }
    if let Some(n) = b.max_tool_calls {
        parts.push(format!("max {n} tool calls"));
    }
    parts.join(", ")
}
