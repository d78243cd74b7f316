//! `weft runs approve` and `weft runs action`: deciding a run's approval step, and starting
//! one of a finished run's follow-up actions.

use std::process::ExitCode;

use serde_json::{Map, Value};
use weft_engine::Decide;

use crate::app::{App, usage};
use crate::commands::print_json;

const TENANT: &str = "default";

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    pub run: String,
    /// The approval step.
    pub step: String,
    /// The item of a `for_each` approval (each item is decided on its own).
    #[arg(long)]
    pub item: Option<u32>,
    /// Reject instead of approve: the step fails (its `continue_on_error` applies).
    #[arg(long)]
    pub reject: bool,
    /// A note kept with the decision (in the step's output and the run's events).
    #[arg(long)]
    pub comment: Option<String>,
    /// Who decides (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ActionArgs {
    pub run: String,
    /// The action, as the run's template names it under `actions:`.
    pub name: String,
    /// An input of the started template as key=value, on top of the action's `with`.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Only start it: print the new run's id and exit 0.
    #[arg(long)]
    pub detach: bool,
    #[arg(long)]
    pub concurrency: Option<usize>,
}

fn engine_error(e: weft_engine::Error) -> anyhow::Error {
    match e {
        weft_engine::Error::RunNotFound(_)
        | weft_engine::Error::NotFound(_)
        | weft_engine::Error::Conflict(_)
        | weft_engine::Error::Invalid(_) => usage(e.to_string()),
        other => anyhow::Error::new(other),
    }
}

pub async fn approve(app: &App, args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let engine = app.engine().await?;
    let by = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "cli".into());
    let decided = engine
        .decide_approval(
            TENANT,
            &args.run,
            &args.step,
            Decide {
                approve: !args.reject,
                by,
                comment: args.comment.clone(),
                item: args.item,
            },
        )
        .await
        .map_err(engine_error)?;
    let what = if decided.approved {
        "approval.approved"
    } else {
        "approval.rejected"
    };
    let object = match decided.item {
        Some(i) => format!("{}/{}[{i}]", decided.run_id, decided.step),
        None => format!("{}/{}", decided.run_id, decided.step),
    };
    crate::commands::audit::record(app, what, "approval", &object, "ok").await;
    if app.global.json {
        print_json(&decided)?;
    } else {
        let item = decided
            .item
            .map(|i| format!(" item {i}"))
            .unwrap_or_default();
        println!(
            "{} {}{item} of run {} ({} by {})",
            if decided.approved {
                "approved"
            } else {
                "rejected"
            },
            decided.step,
            decided.run_id,
            decided.at,
            decided.by
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn action(app: &App, args: ActionArgs) -> anyhow::Result<ExitCode> {
    let engine = app.engine().await?;
    // The started template's declared inputs type the `-i` values, when it is found here.
    let target = match engine.store().run(TENANT, &args.run).await? {
        Some(parent) => engine
            .plan_for(&parent)
            .ok()
            .and_then(|p| p.actions.get(&args.name).map(|a| a.template.clone()))
            .and_then(|t| {
                crate::folders::Folders::new(&app.config.templates, app.tools.clone())
                    .load(&t, None)
                    .ok()
            })
            .map(|(plan, _)| plan),
        None => None,
    };
    let mut given = Map::new();
    for raw in &args.inputs {
        let Some((key, value)) = raw.split_once('=') else {
            return Err(usage(format!("`-i {raw}`: inputs are written KEY=VALUE")));
        };
        let spec = target.as_ref().and_then(|p| p.inputs.get(key));
        let value = match spec {
            Some(spec) => weft_core::inputs::parse_cli_value(spec, key, value).map_err(usage)?,
            // Unknown here: JSON when it parses, text otherwise.
            None => serde_json::from_str::<Value>(value)
                .ok()
                .filter(|v| !v.is_string())
                .unwrap_or_else(|| Value::String(value.to_string())),
        };
        given.insert(key.to_string(), value);
    }
    let run = engine
        .start_action(TENANT, &args.run, &args.name, given)
        .await
        .map_err(engine_error)?;
    crate::commands::audit::record(app, "run.created", "run", &run.id, "ok").await;
    if args.detach {
        if app.global.json {
            print_json(&run)?;
        } else {
            println!("{}", run.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    crate::commands::run::drive(app, &engine, "default", &run.id, args.concurrency).await
}
