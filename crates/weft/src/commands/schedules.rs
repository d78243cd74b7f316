//! `weft schedules add|list|pause|resume|delete`: the `default` tenant's schedules. `weft
//! serve` and `weft worker` fire them (each slot exactly once, however many run); this command
//! only writes and reads them.

use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use weft_engine::schedule::{CronSpec, new_schedule};
use weft_store::schedules::{Schedule, ScheduleStore};

use crate::app::{App, usage};
use crate::commands::print_json;

const TENANT: &str = "default";

#[derive(Debug, clap::Subcommand)]
pub enum SchedulesCommand {
    /// Runs TEMPLATE with these inputs on a cron: five fields (`0 6 * * MON`), or six with
    /// seconds first. The template is pinned as it is now.
    Add {
        /// A template file, or the name of a template in ./templates or the built-ins.
        template: String,
        /// When to run, e.g. "0 6 * * MON" (06:00 every Monday).
        #[arg(long)]
        cron: String,
        /// An input as key=value (converted to the input's type). Repeatable.
        #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        /// The time zone the cron line is read in (IANA name); UTC by default.
        #[arg(long)]
        tz: Option<String>,
        /// A name for the schedule (unique); the template's name by default.
        #[arg(long)]
        name: Option<String>,
    },
    /// Every schedule, with its next fire time.
    List,
    /// Stops firing until resumed.
    Pause { schedule: String },
    /// Fires again, from the next slot after now (slots while paused are not made up).
    Resume { schedule: String },
    /// Deletes a schedule (its runs stay).
    Delete { schedule: String },
}

/// The store as schedules see it: SQLite or PostgreSQL.
pub async fn store(app: &App) -> anyhow::Result<Arc<dyn ScheduleStore>> {
    Ok(app.sql_store().await?)
}

/// `2026-11-30T06:00:00Z` or `-`.
fn when(ms: Option<i64>) -> String {
    ms.map(weft_store::rfc3339).unwrap_or_else(|| "-".into())
}

fn parse_inputs(plan: &weft_core::Plan, raw: &[String]) -> anyhow::Result<Value> {
    weft_core::inputs::resolve_cli_inputs(plan, Map::new(), raw)
        .map_err(|errors| usage(errors.join("\n")))
}

/// A schedule as `list --json` shows it.
fn view(s: &Schedule) -> Value {
    json!({
        "id": s.id, "name": s.name, "template": s.template, "version": s.version,
        "cron": s.cron, "timezone": s.timezone, "inputs": s.inputs, "paused": s.paused,
        "next_fire_at": s.next_fire_at.map(weft_store::rfc3339),
        "last_fired_at": s.last_fired_at.map(weft_store::rfc3339),
        "last_error": s.last_error,
    })
}

async fn find(store: &dyn ScheduleStore, key: &str) -> anyhow::Result<Schedule> {
    store
        .schedule(TENANT, key)
        .await?
        .ok_or_else(|| usage(format!("no schedule `{key}` (see `weft schedules list`)")))
}

pub async fn schedules(app: &App, cmd: SchedulesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchedulesCommand::Add {
            template,
            cron,
            inputs,
            tz,
            name,
        } => {
            let spec = CronSpec::parse(&cron, tz.as_deref()).map_err(usage)?;
            let (plan, dir) = crate::commands::run::resolve_template(app, &template)?;
            let (plan, dir) = if app.prepare_tools(&plan).await? {
                crate::commands::run::resolve_template(app, &template)?
            } else {
                (plan, dir)
            };
            let inputs = parse_inputs(&plan, &inputs)?;
            let store = store(app).await?;
            let now = chrono::Utc::now().timestamp_millis();
            let schedule = new_schedule(
                TENANT,
                name.as_deref().unwrap_or(&plan.name),
                &cron,
                &spec,
                &plan,
                dir.map(|d| d.display().to_string()),
                inputs,
                now,
            );
            if !store.insert_schedule(&schedule).await? {
                return Err(usage(format!(
                    "a schedule named `{}` exists; pick another with --name or delete it",
                    schedule.name
                )));
            }
            crate::commands::audit::record(app, "schedule.created", "schedule", &schedule.id, "ok")
                .await;
            if app.global.json {
                print_json(&view(&schedule))?;
            } else {
                println!("{}", schedule.id);
                eprintln!(
                    "schedule {} runs {} on `{}` ({}); next at {}",
                    schedule.name,
                    schedule.template,
                    schedule.cron,
                    schedule.timezone,
                    when(schedule.next_fire_at)
                );
            }
        }
        SchedulesCommand::List => {
            let store = store(app).await?;
            let all = store.schedules(TENANT).await?;
            if app.global.json {
                print_json(&all.iter().map(view).collect::<Vec<_>>())?;
            } else if all.is_empty() {
                eprintln!(
                    "no schedules; add one with `weft schedules add --cron \"0 6 * * MON\" TEMPLATE`"
                );
            } else {
                println!(
                    "{:<28} {:<20} {:<20} {:<16} {:<8} NEXT",
                    "ID", "NAME", "TEMPLATE", "CRON", "STATE"
                );
                for s in &all {
                    println!(
                        "{:<28} {:<20} {:<20} {:<16} {:<8} {}",
                        s.id,
                        s.name,
                        s.template,
                        s.cron,
                        if s.paused { "paused" } else { "active" },
                        if s.paused {
                            "-".to_string()
                        } else {
                            format!("{} ({})", when(s.next_fire_at), s.timezone)
                        }
                    );
                }
            }
        }
        SchedulesCommand::Pause { schedule } => {
            let store = store(app).await?;
            let s = find(store.as_ref(), &schedule).await?;
            store.set_schedule_paused(TENANT, &s.id, true, None).await?;
            crate::commands::audit::record(app, "schedule.paused", "schedule", &s.id, "ok").await;
            eprintln!("schedule {} paused", s.name);
        }
        SchedulesCommand::Resume { schedule } => {
            let store = store(app).await?;
            let s = find(store.as_ref(), &schedule).await?;
            let spec = CronSpec::parse(&s.cron, Some(&s.timezone)).map_err(usage)?;
            let next = spec.next_after(chrono::Utc::now().timestamp_millis());
            store
                .set_schedule_paused(TENANT, &s.id, false, next)
                .await?;
            crate::commands::audit::record(app, "schedule.resumed", "schedule", &s.id, "ok").await;
            eprintln!("schedule {} resumed; next at {}", s.name, when(next));
        }
        SchedulesCommand::Delete { schedule } => {
            let store = store(app).await?;
            let s = find(store.as_ref(), &schedule).await?;
            store.delete_schedule(TENANT, &s.id).await?;
            crate::commands::audit::record(app, "schedule.deleted", "schedule", &s.id, "ok").await;
            eprintln!("schedule {} deleted", s.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
