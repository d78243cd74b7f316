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
    (
        "state-discovery-filter",
        "<builtin>/actions/state-discovery-filter.yaml",
        include_str!("../../../../templates/actions/state-discovery-filter.yaml"),
    ),
    (
        "state-discovery-enrich",
        "<builtin>/actions/state-discovery-enrich.yaml",
        include_str!("../../../../templates/actions/state-discovery-enrich.yaml"),
    ),
    (
        "state-discovery-outreach",
        "<builtin>/actions/state-discovery-outreach.yaml",
        include_str!("../../../../templates/actions/state-discovery-outreach.yaml"),
    ),
];

/// Whether `weft ask` may choose a built-in: the templates in `templates/actions/` follow a
/// run (its `actions:`), they are not something a sentence starts.
pub fn askable(file: &str) -> bool {
    !file.starts_with("<builtin>/actions/")
}

/// A built-in template by name: (file label, source).
pub fn builtin(name: &str) -> Option<(&'static str, &'static str)> {
    BUILTINS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, file, source)| (*file, *source))
}

/// A built-in by the path its file has in weft's repository (`examples/hello.yaml`,
/// `./templates/state-discovery.yaml`): (name, file label, source).
pub fn builtin_at_path(
    path: &std::path::Path,
) -> Option<(&'static str, &'static str, &'static str)> {
    let parts: Vec<_> = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let [folder, file] = parts.as_slice() else {
        return None;
    };
    let name = file.strip_suffix(".yaml")?;
    let expected = if name == "hello" {
        "examples"
    } else {
        "templates"
    };
    (*folder == expected)
        .then(|| BUILTINS.iter().find(|(n, _, _)| *n == name))
        .flatten()
        .map(|(n, f, s)| (*n, *f, *s))
}

#[derive(Debug, clap::Subcommand)]
pub enum TemplatesCommand {
    /// Every template weft can find, with its version and where it comes from.
    List,
    /// One template: version, digest, inputs, steps and actions (`--yaml`: its source).
    Show {
        /// NAME or NAME@VERSION (a name in ./templates, the configured folders or the
        /// built-ins), or a file.
        name: String,
        /// Print the template's YAML source only.
        #[arg(long)]
        yaml: bool,
    },
}

pub fn templates(app: &App, cmd: TemplatesCommand) -> anyhow::Result<ExitCode> {
    if let TemplatesCommand::Show { name, yaml } = cmd {
        return show(app, &name, yaml);
    }
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

fn show(app: &App, spec: &str, yaml: bool) -> anyhow::Result<ExitCode> {
    let (plan, source) = if spec.ends_with(".yaml") || spec.ends_with(".yml") {
        let (plan, _) = crate::commands::run::resolve_template(app, spec)?;
        (plan, spec.to_string())
    } else {
        let (name, version) = match spec.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        let folders = crate::folders::Folders::new(&app.config.templates, app.tools.clone());
        let (plan, _) = folders.load(name, version).map_err(crate::app::usage)?;
        let file = plan.file.clone();
        (plan, file)
    };
    if yaml {
        print!("{}", plan.source);
        return Ok(ExitCode::SUCCESS);
    }
    let inputs: Vec<serde_json::Value> = plan
        .inputs
        .iter()
        .map(|(n, i)| {
            serde_json::json!({"name": n, "type": i.ty, "required": i.required,
                "default": i.default, "description": i.description})
        })
        .collect();
    let steps: Vec<serde_json::Value> = plan
        .steps
        .iter()
        .map(|s| {
            let kind = match &s.kind {
                weft_core::plan::StepKind::Tool(t) => format!("tool {t}"),
                weft_core::plan::StepKind::Approval(_) => "approval".into(),
                weft_core::plan::StepKind::Workflow(_) => "workflow".into(),
            };
            serde_json::json!({"id": s.id, "kind": kind,
                "needs": s.needs.iter().map(|&n| plan.steps[n].id.clone()).collect::<Vec<_>>(),
                "for_each": s.for_each.is_some()})
        })
        .collect();
    if app.global.json {
        print_json(&serde_json::json!({
            "name": plan.name, "version": plan.version, "digest": plan.digest,
            "description": plan.description, "source": source, "inputs": inputs,
            "steps": steps,
            "actions": plan.actions.iter().map(|(n, a)| serde_json::json!({
                "name": n, "template": a.template, "description": a.description})).collect::<Vec<_>>(),
            "yaml": plan.source,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("template  {}@{}", plan.name, plan.version);
    println!("digest    {}", plan.digest);
    println!("source    {source}");
    if let Some(d) = &plan.description {
        println!("about     {}", d.trim());
    }
    println!("\ninputs");
    for i in &inputs {
        println!(
            "  {:<16} {:<8} {}{}",
            i["name"].as_str().unwrap_or(""),
            i["type"].as_str().unwrap_or(""),
            if i["required"] == true {
                "required"
            } else {
                "optional"
            },
            i["description"]
                .as_str()
                .map(|d| format!(" · {d}"))
                .unwrap_or_default()
        );
    }
    println!("\nsteps");
    for s in &steps {
        let needs = s["needs"].as_array().map(Vec::len).unwrap_or(0);
        println!(
            "  {:<20} {}{}{}",
            s["id"].as_str().unwrap_or(""),
            s["kind"].as_str().unwrap_or(""),
            if s["for_each"] == true {
                " (for_each)"
            } else {
                ""
            },
            if needs > 0 {
                format!(
                    " needs {}",
                    s["needs"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                )
            } else {
                String::new()
            }
        );
    }
    if !plan.actions.is_empty() {
        println!("\nactions");
        for (n, a) in &plan.actions {
            println!(
                "  {n:<20} -> {}{}",
                a.template,
                a.description
                    .as_deref()
                    .map(|d| format!(" · {d}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
