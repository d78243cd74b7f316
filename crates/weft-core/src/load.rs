//! YAML -> [`Plan`]: parsing with positions, then every static check, all problems at once.
//!
//! The stages: [`yaml`] reads the text into a tree where every key and value knows its
//! line:col; [`template`], [`step`] and [`settings`] read that tree into drafts, reporting
//! shape problems; [`graph`] resolves `needs`; [`refs`] checks every expression's names against
//! the graph and the inputs; [`schema`] checks literal tool input. Only a template with no
//! problem at all becomes a [`Plan`].

mod graph;
mod read;
mod refs;
mod schema;
mod settings;
mod step;
pub(crate) mod suggest;
mod template;
mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalog::ToolCatalog;
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::{ForEach, Plan, Step, StepKind, Strategy};
use read::Report;
use refs::{Checker, Site};
use suggest::did_you_mean;
pub(crate) use template::type_name;

/// Loads and validates a template file. `template_file` paths resolve against its folder.
pub fn load_file(path: &Path, catalog: &dyn ToolCatalog) -> Result<Plan, Diagnostics> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            line: 1,
            col: 1,
            code: Code::YamlSyntax,
            message: format!("cannot read the template: {e}"),
        }])
    })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    load_str(&source, &file, Some(base_dir), catalog)
}

/// Loads and validates template text. `file` is the name printed in diagnostics; `base_dir`
/// is where `template_file` paths resolve (none: `template_file` is an error).
pub fn load_str(
    source: &str,
    file: &str,
    base_dir: Option<&Path>,
    catalog: &dyn ToolCatalog,
) -> Result<Plan, Diagnostics> {
    load(source, file, Files::new(Origin::Dir(base_dir)), catalog)
}

/// Re-loads a plan from what a run stored: its source and the included files' text.
pub fn load_stored(
    source: &str,
    file: &str,
    files: &BTreeMap<String, String>,
    catalog: &dyn ToolCatalog,
) -> Result<Plan, Diagnostics> {
    load(source, file, Files::new(Origin::Stored(files)), catalog)
}

/// Where `template_file` text comes from.
enum Origin<'f> {
    Dir(Option<&'f Path>),
    Stored(&'f BTreeMap<String, String>),
}

/// The included files: where to read them, and what was read (which goes into the plan).
pub(crate) struct Files<'f> {
    origin: Origin<'f>,
    loaded: BTreeMap<String, String>,
}

impl<'f> Files<'f> {
    fn new(origin: Origin<'f>) -> Files<'f> {
        Files {
            origin,
            loaded: BTreeMap::new(),
        }
    }

    /// The text of an included file; the error completes "`template_file` ...".
    pub(crate) fn read(&mut self, path: &str) -> Result<String, String> {
        if let Some(text) = self.loaded.get(path) {
            return Ok(text.clone());
        }
        let text = match &self.origin {
            Origin::Stored(files) => files
                .get(path)
                .cloned()
                .ok_or_else(|| format!("`{path}` is not among the run's stored files"))?,
            Origin::Dir(None) => {
                return Err(format!(
                    "`{path}` cannot be read: this template has no folder (write `template` inline)"
                ));
            }
            Origin::Dir(Some(dir)) => {
                if Path::new(path).is_absolute() {
                    return Err(format!(
                        "`{path}` must be relative to the template's folder"
                    ));
                }
                let full = dir.join(path);
                std::fs::read_to_string(&full)
                    .map_err(|e| format!("`{path}` cannot be read ({}: {e})", full.display()))?
            }
        };
        self.loaded.insert(path.to_owned(), text.clone());
        Ok(text)
    }
}

fn load(
    source: &str,
    file: &str,
    mut files: Files<'_>,
    catalog: &dyn ToolCatalog,
) -> Result<Plan, Diagnostics> {
    let mut report = Report::new(file);
    let root = match yaml::parse(source) {
        Ok(root) => root,
        Err(e) => {
            report.at(e.pos, Code::YamlSyntax, e.message);
            return Err(Diagnostics(report.diags));
        }
    };
    let t = template::read(&mut report, &root, &mut files);
    let graph = graph::build(&mut report, &t.steps);

    check_tools(&mut report, &t.steps, catalog);
    check_expressions(&mut report, source, &t, &graph);

    if !report.diags.is_empty() {
        let mut diags = report.diags;
        diags.sort_by_key(|d| (d.line, d.col));
        return Err(Diagnostics(diags));
    }

    let steps = t
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let (id, _) = d.id.clone()?;
            let kind = d.kind.clone()?;
            let resolved = d.settings.resolve(&t.defaults);
            let strategy = match (&kind, resolved.strategy) {
                (StepKind::Tool(_), Some((s, _))) => s,
                // A hook does I/O (the artifacts hook writes to a store): not inline.
                (StepKind::Tool(tool), None) if catalog.is_pure(tool) && d.post.is_empty() => {
                    Strategy::Sync
                }
                _ => Strategy::Queue,
            };
            Some(Step {
                id,
                kind,
                with: d.with.clone(),
                needs: graph.needs[i].clone(),
                prev: graph.prev[i],
                condition: d.condition.as_ref().map(|(c, _)| c.clone()),
                for_each: d.for_each.map(|items| ForEach {
                    items: items.to_json(),
                    as_name: d.as_name.clone(),
                    concurrency: d.concurrency,
                }),
                retry: resolved.retry,
                timeout: resolved.timeout,
                cache_ttl: resolved.cache_ttl,
                continue_on_error: resolved.continue_on_error,
                strategy,
                token: resolved.token,
                post: d.post.clone(),
                line: d.node.pos.line,
                col: d.node.pos.col,
            })
        })
        .collect();

    let digest = digest(source, &files.loaded);
    Ok(Plan {
        name: t.name,
        version: t.version,
        description: t.description,
        intent_examples: t.intent_examples,
        inputs: t.inputs,
        steps,
        output: t.output.map(yaml::Node::to_json),
        actions: t.actions,
        source: source.to_owned(),
        files: files.loaded,
        digest,
        file: file.to_owned(),
        budget: t.budget,
    })
}

/// SHA-256 over the source, then each included file as NUL, path, NUL, text, in path order.
fn digest(source: &str, files: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    for (path, text) in files {
        hasher.update([0]);
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn check_tools(report: &mut Report, steps: &[step::Draft<'_>], catalog: &dyn ToolCatalog) {
    let names = catalog.names();
    for step in steps {
        let (Some(StepKind::Tool(tool)), Some(node)) = (&step.kind, step.tool_node) else {
            continue;
        };
        if !catalog.contains(tool) {
            report.at(
                node.pos,
                Code::UnknownTool,
                format!(
                    "no tool is named `{tool}`{}",
                    did_you_mean(tool, names.iter().map(String::as_str))
                ),
            );
            continue;
        }
        if let Some(why) = catalog.refusal(tool) {
            report.at(node.pos, Code::ToolNotAllowed, why);
            continue;
        }
        if let Some(schema) = catalog.input_schema(tool) {
            schema::check(report, step, tool, &schema);
        }
        schema::tool_checks(report, step, tool, catalog);
    }
}

fn check_expressions(
    report: &mut Report,
    source: &str,
    t: &template::Template<'_>,
    graph: &graph::Graph,
) {
    let mut checker = Checker {
        report,
        source,
        inputs: &t.inputs,
        steps: &t.steps,
        graph,
    };
    for (idx, step) in t.steps.iter().enumerate() {
        let extra = render_vars(step);
        let site = Site::Step { idx, extra: &extra };
        if let Some(items) = step.for_each {
            checker.node(items, Site::ForEach { idx });
        }
        if let Some((text, node)) = &step.condition {
            checker.condition(text, node, site);
        }
        if let Some(with) = step.with_node {
            checker.node(with, site);
        }
        if let Some((path, node)) = &step.included
            && let Some(text) = step.with.get("template").and_then(Value::as_str)
        {
            checker.included(text, path, node, site);
        }
    }
    if let Some(output) = t.output {
        checker.node(output, Site::Run);
    }
    for with in &t.action_withs {
        checker.node(with, Site::Run);
    }
}

/// `render` merges its literal `vars` into its template's scope, so their names are in scope.
fn render_vars(step: &step::Draft<'_>) -> Vec<String> {
    if step.kind != Some(StepKind::Tool("render".to_owned())) {
        return Vec::new();
    }
    match step.with.get("vars") {
        Some(Value::Object(vars)) => vars.keys().cloned().collect(),
        _ => Vec::new(),
    }
}
