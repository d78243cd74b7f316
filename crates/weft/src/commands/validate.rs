//! `weft validate`: every problem in every file, then a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::App;
use crate::commands::print_json;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Template files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub async fn validate(app: &App, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    // Start the MCP servers the templates use, so their tool names and schemas are checked.
    let mut used = Vec::new();
    for file in &args.files {
        if let Ok(plan) = weft_core::load::load_file(file, &*app.tools) {
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
    let mut all = Vec::new();
    let mut ok = 0;
    for file in &args.files {
        match weft_core::load::load_file(file, &*app.tools) {
            Ok(_) => ok += 1,
            Err(diags) => all.extend(diags.0),
        }
    }
    if app.global.json {
        print_json(&serde_json::json!({
            "ok": all.is_empty(),
            "files": args.files.len(),
            "problems": all.iter().map(|d| serde_json::json!({
                "file": d.file, "line": d.line, "col": d.col,
                "code": d.code.as_str(), "message": d.message,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for d in &all {
            println!("{d}");
        }
        eprintln!(
            "{ok} of {} templates valid, {} problems",
            args.files.len(),
            all.len()
        );
    }
    Ok(if all.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
