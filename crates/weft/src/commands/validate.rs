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

pub fn validate(app: &App, args: ValidateArgs) -> anyhow::Result<ExitCode> {
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
