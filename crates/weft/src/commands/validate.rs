//! `weft validate`: every problem in every template, then a summary.

use std::process::ExitCode;

use crate::app::App;
use crate::commands::print_json;
use crate::commands::run::locate;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Template files, or names of templates in ./templates, the configured folders or the
    /// built-ins (as `weft run` and `weft plan` take them).
    #[arg(required = true)]
    pub templates: Vec<String>,
}

pub async fn validate(app: &App, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for name in &args.templates {
        match locate(app, name) {
            Ok(located) => found.push(located),
            // A name that is nowhere is reported with the rest, not instead of them.
            Err(e) => missing.push(e.to_string()),
        }
    }
    // Start the MCP servers the templates use, so their tool names and schemas are checked.
    let mut used = Vec::new();
    for located in &found {
        if let Ok(plan) = located.load(app) {
            used.extend(
                plan.steps
                    .iter()
                    .filter_map(|s| s.tool().map(str::to_string)),
            );
        }
    }
    for (prefix, error) in app.tools.prepare(used.iter().map(String::as_str)).await {
        eprintln!("warning: {prefix}* not checked: {error}");
    }
    let mut ok = 0;
    for located in &found {
        match located.load(app) {
            Ok(_) => ok += 1,
            Err(diags) => all.extend(diags.0),
        }
    }
    if app.global.json {
        print_json(&serde_json::json!({
            "ok": all.is_empty() && missing.is_empty(),
            "missing": missing,
            "files": args.templates.len(),
            "problems": all.iter().map(|d| serde_json::json!({
                "file": d.file, "line": d.line, "col": d.col,
                "code": d.code.as_str(), "message": d.message,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for d in &all {
            println!("{d}");
        }
        for m in &missing {
            eprintln!("error: {m}");
        }
        eprintln!(
            "{ok} of {} templates valid, {} problems",
            args.templates.len(),
            all.len() + missing.len()
        );
    }
    Ok(if all.is_empty() && missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
