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
    // Each template is loaded once; when templates use MCP servers, those servers are started
    // and the templates loaded again, so their tool names and schemas are checked too.
    let mut loaded: Vec<_> = found.iter().map(|located| located.load(app)).collect();
    let used: Vec<String> = loaded
        .iter()
        .flatten()
        .flat_map(|plan| {
            plan.steps
                .iter()
                .filter_map(|s| s.tool().map(str::to_string))
        })
        .collect();
    if app.tools.uses_sources(used.iter().map(String::as_str)) {
        for (prefix, error) in app.tools.prepare(used.iter().map(String::as_str)).await {
            eprintln!("warning: {prefix}* not checked: {error}");
        }
        loaded = found.iter().map(|located| located.load(app)).collect();
    }
    let mut ok = 0;
    for result in loaded {
        match result {
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
