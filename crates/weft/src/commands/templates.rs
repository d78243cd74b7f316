//! `weft templates list`: templates in ./templates, the configured folders and the built-ins.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::App;
use crate::commands::print_json;

/// Templates compiled into the binary: (name, file label, source). The seeds' templates live
/// in `templates/` at the repository root.
pub(crate) const BUILTINS: &[(&str, &str, &str)] = &[
    (
        "hello",
        "<builtin>/hello.yaml",
        include_str!("../../../../examples/hello.yaml"),
    ),
    (
        "state-discovery",
        "<builtin>/state-discovery.yaml",
        include_str!("../../../../templates/state-discovery.yaml"),
    ),
    (
        "web-research",
        "<builtin>/web-research.yaml",
        include_str!("../../../../templates/web-research.yaml"),
    ),
    (
        "screenshot-and-post",
        "<builtin>/screenshot-and-post.yaml",
        include_str!("../../../../templates/screenshot-and-post.yaml"),
    ),
    (
        "multi-scrape",
        "<builtin>/multi-scrape.yaml",
        include_str!("../../../../templates/multi-scrape.yaml"),
    ),
    (
        "deployment-check",
        "<builtin>/deployment-check.yaml",
        include_str!("../../../../templates/deployment-check.yaml"),
    ),
];

/// A built-in template by name: (file label, source).
pub fn builtin(name: &str) -> Option<(&'static str, &'static str)> {
    BUILTINS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, file, source)| (*file, *source))
}

#[derive(Debug, clap::Subcommand)]
pub enum TemplatesCommand {
    /// Every template weft can find, with its version and where it comes from.
    List,
}

pub fn templates(app: &App, cmd: TemplatesCommand) -> anyhow::Result<ExitCode> {
    let TemplatesCommand::List = cmd;
    let mut dirs = vec![PathBuf::from("templates")];
    dirs.extend(app.config.templates.iter().cloned());
    let mut rows = Vec::new();
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
            let row = match weft_core::load::load_file(&path, &*app.tools) {
                Ok(plan) => serde_json::json!({
                    "name": plan.name, "version": plan.version,
                    "description": plan.description, "source": path.display().to_string(),
                    "digest": plan.digest, "valid": true,
                }),
                Err(d) => serde_json::json!({
                    "name": path.file_stem().map(|s| s.to_string_lossy().to_string()),
                    "source": path.display().to_string(), "valid": false,
                    "problems": d.0.len(),
                }),
            };
            rows.push(row);
        }
    }
    for (name, file, source) in BUILTINS {
        if let Ok(plan) = weft_core::load::load_str(source, file, None, &*app.tools) {
            rows.push(serde_json::json!({
                "name": name, "version": plan.version, "description": plan.description,
                "source": "builtin", "digest": plan.digest, "valid": true,
            }));
        }
    }
    if app.global.json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<8} {:<28} DESCRIPTION",
        "NAME", "VERSION", "SOURCE"
    );
    for r in rows {
        let valid = r["valid"].as_bool().unwrap_or(false);
        println!(
            "{:<24} {:<8} {:<28} {}",
            r["name"].as_str().unwrap_or("?"),
            r["version"].as_str().unwrap_or("-"),
            r["source"].as_str().unwrap_or("?"),
            if valid {
                r["description"].as_str().unwrap_or("").to_string()
            } else {
                format!("INVALID ({} problems; run weft validate)", r["problems"])
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
