//! `weft ask "Find all HVAC businesses in Colorado"`: a sentence to a template and its inputs
//! (the offline matcher in `weft-intent`), then the plan (`--dry-run`) or the run itself.
//!
//! When the matcher is unsure or an input is missing it asks instead of guessing: the
//! question and the candidates go out and nothing runs (exit 2).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use weft_core::Plan;
use weft_engine::NewRun;
use weft_engine::intent::{Candidate, Decision, correct, decide};
use weft_intent::Answer;

use crate::app::{App, usage};
use crate::commands::print_json;

#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// What you want, in a sentence.
    pub sentence: String,
    /// Show the chosen template, its inputs and its plan; do not run.
    #[arg(long)]
    pub dry_run: bool,
    /// Correct or add an input the matcher read, as KEY=VALUE (converted to the input's
    /// type). Repeatable; `--dry-run` shows what the matcher read.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Match with the offline matcher even when an `llm` provider is configured.
    #[arg(long)]
    pub offline: bool,
    /// Most tool calls in flight at once (default 5, or `concurrency` in weft.toml).
    #[arg(long)]
    pub concurrency: Option<usize>,
}

/// Every template weft can find by name: ./templates, the configured folders, the built-ins
/// (a name found earlier wins, as in `weft run NAME`). Templates that do not load are left out.
pub fn known_templates(app: &App) -> Vec<(Plan, Option<PathBuf>)> {
    let mut plans: Vec<(Plan, Option<PathBuf>)> = Vec::new();
    let mut dirs = vec![PathBuf::from("templates")];
    dirs.extend(app.config.templates.iter().cloned());
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        paths.sort();
        for path in paths {
            if let Ok(plan) = weft_core::load::load_file(&path, &*app.tools)
                && !plans.iter().any(|(p, _)| p.name == plan.name)
            {
                let base = path
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.to_path_buf()));
                plans.push((plan, base));
            }
        }
    }
    for (name, file, source) in crate::commands::templates::BUILTINS {
        if plans.iter().any(|(p, _)| p.name == *name) || !crate::commands::templates::askable(file)
        {
            continue;
        }
        if let Ok(plan) = weft_core::load::load_str(source, file, None, &*app.tools) {
            plans.push((plan, None));
        }
    }
    plans
}

pub async fn ask(app: &App, args: AskArgs) -> anyhow::Result<ExitCode> {
    let candidates: Vec<Candidate> = known_templates(app)
        .into_iter()
        .map(|(plan, base)| Candidate {
            plan: Arc::new(plan),
            base_dir: base.map(|d| d.display().to_string()),
        })
        .collect();
    // With an `llm` provider configured the model chooses, checked against these templates.
    let decision = decide(
        &app.tools,
        &candidates,
        &args.sentence,
        !args.offline && !app.config.llm.is_empty(),
    )
    .await;
    let decision = if args.inputs.is_empty() {
        decision
    } else {
        let corrections = corrections(&candidates, &decision, &args.inputs)?;
        correct(&candidates, decision, corrections)
    };
    if let Some(reason) = &decision.llm_fallback {
        eprintln!("note: the model's answer was not used ({reason}); matched offline");
    }
    let (Some(idx), Some(inputs), true) = (
        decision.chosen,
        decision.resolved.clone(),
        decision.is_confident(),
    ) else {
        show_answer(app, &decision, None)?;
        return Ok(ExitCode::from(2));
    };
    let Candidate { plan, base_dir } = &candidates[idx];
    let answer = &decision;
    if args.dry_run {
        show_answer(app, answer, Some((plan.as_ref(), &inputs)))?;
        return Ok(ExitCode::SUCCESS);
    }
    // In `--json` mode stdout is kept for the run's document; the choice goes to stderr.
    if app.global.json {
        eprintln!("{}", serde_json::to_string(answer)?);
    } else {
        eprintln!("{}", describe(&answer.answer));
    }
    app.prepare_tools(plan.as_ref()).await?;
    let engine = app.engine().await?;
    let run = engine
        .create_run(NewRun {
            tenant: "default".into(),
            plan: plan.clone(),
            inputs,
            idempotency_key: None,
            base_dir: base_dir.clone(),
        })
        .await
        .map_err(|e| match e {
            weft_engine::Error::Invalid(m) => usage(m),
            other => anyhow::Error::new(other),
        })?;
    crate::commands::run::drive(app, &engine, "default", &run.id, args.concurrency).await
}

/// `-i KEY=VALUE` corrections, converted to the chosen template's input types.
fn corrections(
    candidates: &[Candidate],
    decision: &Decision,
    raw: &[String],
) -> anyhow::Result<Map<String, Value>> {
    let plan = decision
        .answer
        .template
        .as_deref()
        .and_then(|name| candidates.iter().find(|c| c.plan.name == name))
        .map(|c| c.plan.clone());
    let mut out = Map::new();
    for item in raw {
        let Some((key, value)) = item.split_once('=') else {
            return Err(usage(format!("`-i {item}`: inputs are written KEY=VALUE")));
        };
        let value = match plan.as_ref().and_then(|p| p.inputs.get(key)) {
            Some(spec) => weft_core::inputs::parse_cli_value(spec, key, value).map_err(usage)?,
            // Unknown names are reported (with suggestions) when the inputs are checked.
            None => Value::String(value.to_string()),
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// "state-discovery (confidence 0.97) niche=HVAC state=Colorado; also: web-research 0.31".
fn describe(answer: &Answer) -> String {
    let inputs = answer
        .inputs
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let also = answer
        .alternatives
        .iter()
        .map(|a| format!("{} {:.2}", a.template, a.confidence))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} (confidence {:.2}) {inputs}{}",
        answer.template.as_deref().unwrap_or("no template"),
        answer.confidence,
        if also.is_empty() {
            String::new()
        } else {
            format!("\n  also: {also}")
        }
    )
}

/// Prints the answer: JSON (with the plan on a dry run) or text with the question.
fn show_answer(
    app: &App,
    decision: &Decision,
    plan: Option<(&Plan, &Value)>,
) -> anyhow::Result<()> {
    let answer = &decision.answer;
    if app.global.json {
        let mut doc = serde_json::to_value(decision)?;
        if let (Some((plan, inputs)), Value::Object(map)) = (plan, &mut doc) {
            map.insert("plan".into(), plan_json(plan, inputs));
        }
        return print_json(&doc);
    }
    println!("{}", describe(answer));
    if let Some(question) = &answer.question {
        println!("{question}");
        if let (Some(_), Some(first)) = (&answer.template, answer.missing.first()) {
            println!("(say it again with -i {first}=VALUE)");
        }
    }
    if let Some((plan, inputs)) = plan {
        println!("\ninputs (correct or add one with -i NAME=VALUE):");
        if let Value::Object(all) = inputs {
            for (name, value) in all {
                let from = if answer.inputs.contains_key(name) {
                    "read from the sentence"
                } else if value.is_null() {
                    "not given"
                } else {
                    "default"
                };
                println!("  {name:<18} {:<28} {from}", short_value(value));
            }
        }
        println!(
            "\n{}@{} with {}",
            plan.name,
            plan.version,
            serde_json::to_string(inputs)?
        );
        for (idx, step) in plan.steps.iter().enumerate() {
            let what = match step.tool() {
                Some(tool) => tool.to_string(),
                None => "(control step)".into(),
            };
            let needs = step
                .needs
                .iter()
                .map(|n| plan.steps[*n].id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let mut notes = Vec::new();
            if !needs.is_empty() {
                notes.push(format!("after {needs}"));
            }
            if let Some(fe) = &step.for_each {
                notes.push(match fe.concurrency {
                    Some(c) => format!("for each {} ({c} at a time)", fe.as_name),
                    None => format!("for each {}", fe.as_name),
                });
            }
            if let Some(c) = &step.condition {
                notes.push(format!("if {c}"));
            }
            if let Some(ttl) = step.cache_ttl {
                notes.push(format!("cached {}s", ttl.as_secs()));
            }
            println!(
                "  {}. {:<12} {:<16} {}",
                idx + 1,
                step.id,
                what,
                notes.join("; ")
            );
        }
    }
    Ok(())
}

fn short_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn plan_json(plan: &Plan, inputs: &Value) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("id".into(), json!(s.id));
            m.insert("tool".into(), json!(s.tool()));
            m.insert(
                "needs".into(),
                json!(s.needs.iter().map(|n| &plan.steps[*n].id).collect::<Vec<_>>()),
            );
            if let Some(fe) = &s.for_each {
                m.insert(
                    "for_each".into(),
                    json!({"items": fe.items, "as": fe.as_name, "concurrency": fe.concurrency.map(|c| c.get())}),
                );
            }
            if let Some(c) = &s.condition {
                m.insert("if".into(), json!(c));
            }
            m.insert("with".into(), s.with.clone());
            Value::Object(m)
        })
        .collect();
    json!({"template": plan.name, "version": plan.version, "digest": plan.digest, "inputs": inputs, "steps": steps})
}
