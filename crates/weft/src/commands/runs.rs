//! `weft runs list|show|resume|cancel`.

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
    },
    /// One run with its steps and output.
    Show { run: String },
    /// Continue a run: re-run only what did not succeed, or take over from a worker that died.
    Resume {
        run: String,
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Cancel a run: queued work never starts, running tools are stopped.
    Cancel { run: String },
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
                    tenant: TENANT.into(),
                    status,
                    template,
                    before: None,
                    limit: limit.clamp(1, 1000),
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
        RunsCommand::Show { run } => {
            let r = store
                .run(TENANT, &run)
                .await?
                .ok_or_else(|| usage(format!("no run `{run}`")))?;
            let steps = store.steps(&run).await?;
            if app.global.json {
                print_json(&RunView { run: r, steps })?;
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
        RunsCommand::Resume { run, concurrency } => {
            let owners = store
                .tasks(&run)
                .await?
                .into_iter()
                .filter(|t| t.status == weft_store::TaskStatus::Running)
                .filter_map(|t| t.lease_owner)
                .collect::<std::collections::BTreeSet<_>>();
            let dead = weft_engine::dead_local_owners(owners);
            engine
                .resume_run(TENANT, &run, &dead)
                .await
                .map_err(|e| match e {
                    weft_engine::Error::RunNotFound(_) | weft_engine::Error::Invalid(_) => {
                        usage(e.to_string())
                    }
                    other => anyhow::Error::new(other),
                })?;
            crate::commands::audit::record(app, "run.resumed", "run", &run, "ok").await;
            // Also when the resume itself ended the run (everything came from the cache):
            // `drive` then just prints the result.
            crate::commands::run::drive(app, &engine, &run, concurrency)
                .await
                .context("while driving the resumed run")
        }
        RunsCommand::Wait { run } => crate::commands::runs_wait::wait(app, &*store, &run).await,
        RunsCommand::Cancel { run } => {
            let r = engine.cancel_run(TENANT, &run).await.map_err(|e| match e {
                weft_engine::Error::RunNotFound(_) => usage(e.to_string()),
                other => anyhow::Error::new(other),
            })?;
            crate::commands::audit::record(app, "run.cancelled", "run", &r.id, "ok").await;
            if app.global.json {
                print_json(&r)?;
            } else {
                println!("run {} is {}", r.id, r.status);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
