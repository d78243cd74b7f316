//! `weft plan FILE -i ...`: the step graph of a template and each step's input as far as it is
//! known before a run. Values that depend only on the inputs are resolved; values that need a
//! step's output or a `for_each` item are shown as written.

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use crate::app::{App, usage};
use crate::commands::print_json;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// A template file, or the name of a template in ./templates or the built-ins.
    pub template: String,
    /// An input as key=value, converted to the input's declared type. Repeatable.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
}

pub async fn plan(app: &App, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (plan, _) = crate::commands::run::resolve_template(app, &args.template)?;
    let (given, malformed) = weft_core::inputs::parse_cli_inputs(&plan, Map::new(), &args.inputs);
    if !malformed.is_empty() {
        return Err(usage(malformed.join("\n")));
    }
    // Missing inputs are not an error here: what depends on them stays as written.
    let (inputs, missing) = match weft_core::inputs::resolve_inputs(&plan, &given) {
        Ok(v) => (v, Vec::new()),
        Err(problems) => {
            let mut partial = Map::new();
            for (name, spec) in &plan.inputs {
                if let Some(v) = given.get(name).or(spec.default.as_ref()) {
                    partial.insert(name.clone(), v.clone());
                }
            }
            (Value::Object(partial), problems)
        }
    };
    let steps = weft_core::orchestrator::preview(&plan, &inputs);
    // Each step's level in the graph: steps on one level may run at the same time.
    let mut level = vec![0usize; plan.steps.len()];
    for (i, step) in plan.steps.iter().enumerate() {
        level[i] = step.needs.iter().map(|&n| level[n] + 1).max().unwrap_or(0);
    }
    if app.global.json {
        let steps: Vec<Value> = steps
            .iter()
            .zip(&level)
            .map(|(s, l)| {
                let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                v["level"] = json!(l);
                v
            })
            .collect();
        print_json(&json!({
            "template": plan.name, "version": plan.version, "digest": plan.digest,
            "inputs": inputs, "missing_inputs": missing, "steps": steps,
            "actions": plan.actions.iter()
                .map(|(n, a)| json!({"name": n, "template": a.template, "description": a.description}))
                .collect::<Vec<_>>(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "plan {}@{} · {} steps · digest {}",
        plan.name,
        plan.version,
        plan.steps.len(),
        &plan.digest[..plan.digest.len().min(12)]
    );
    println!("inputs {inputs}");
    for m in &missing {
        println!("  (not given: {m})");
    }
    println!();
    for (s, l) in steps.iter().zip(&level) {
        let mut line = format!("{l:>2}  {:<20} {}", s.id, s.kind);
        if !s.needs.is_empty() {
            line.push_str(&format!("   needs {}", s.needs.join(", ")));
        }
        println!("{line}");
        if let Some(c) = &s.condition {
            match s.runs {
                Some(true) => println!("      if: {c}   (true: runs)"),
                Some(false) => println!("      if: {c}   (false: skipped)"),
                None => println!("      if: {c}"),
            }
        }
        if let Some(items) = &s.for_each {
            let n = items
                .as_array()
                .map(|a| format!(" ({} items)", a.len()))
                .unwrap_or_default();
            println!("      for_each{n}: {items}");
        }
        if !s.with.is_null() {
            print_with(&s.with);
        }
    }
    if !plan.actions.is_empty() {
        println!();
        for (name, a) in &plan.actions {
            println!(
                "action {name} -> {}{}",
                a.template,
                a.description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A step's input, one field a line; a program or template (anything multi-line, and every
/// `jq` or `template` field) as an indented block to read, not a JSON string full of `\n`.
fn print_with(with: &Value) {
    let Value::Object(fields) = with else {
        println!("      with: {with}");
        return;
    };
    println!("      with:");
    for (key, value) in fields {
        match value {
            Value::String(text) if text.contains('\n') || key == "jq" || key == "template" => {
                println!("        {key}: |");
                for line in text.trim_end().lines() {
                    match line.trim_end() {
                        "" => println!(),
                        line => println!("          {line}"),
                    }
                }
            }
            other => println!("        {key}: {other}"),
        }
    }
}
