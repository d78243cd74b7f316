//! The offline matcher's evaluation: phrasings with the template and inputs a person would
//! expect, scored as template accuracy and exact-inputs accuracy.
//!
//! `eval/phrasings.yaml` is the set; the `weft-intent-eval` binary prints the figures and
//! `tests/eval.rs` holds them to the targets.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use weft_core::Plan;
use weft_core::catalog::ToolCatalog;

use crate::Matcher;

/// One phrasing and what it should mean.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub say: String,
    pub template: String,
    #[serde(default)]
    pub inputs: Map<String, Value>,
}

/// A case the matcher got wrong.
#[derive(Debug, Clone)]
pub struct Miss {
    pub case: Case,
    pub template: Option<String>,
    pub inputs: Map<String, Value>,
    pub confidence: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cases: usize,
    pub template_ok: usize,
    pub inputs_ok: usize,
    pub misses: Vec<Miss>,
}

impl Report {
    pub fn template_accuracy(&self) -> f64 {
        self.template_ok as f64 / self.cases.max(1) as f64
    }
    pub fn inputs_accuracy(&self) -> f64 {
        self.inputs_ok as f64 / self.cases.max(1) as f64
    }
}

/// Loading for matching needs the templates' inputs and examples, not their tools: every
/// tool name is accepted.
struct AnyTool;

impl ToolCatalog for AnyTool {
    fn contains(&self, _name: &str) -> bool {
        true
    }
    fn input_schema(&self, _name: &str) -> Option<Value> {
        None
    }
}

/// The workspace's built-in templates: `templates/*.yaml` and `examples/hello.yaml`.
pub fn builtin_template_paths() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join("templates"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths.push(root.join("examples/hello.yaml"));
    paths
}

/// Loads templates for matching only (tools are not checked).
pub fn load_plans(paths: &[PathBuf]) -> Result<Vec<Plan>, String> {
    paths
        .iter()
        .map(|p| weft_core::load::load_file(p, &AnyTool).map_err(|d| d.to_string()))
        .collect()
}

/// The evaluation set shipped with the crate.
pub fn builtin_cases() -> Result<Vec<Case>, String> {
    serde_yaml_ng::from_str(include_str!("../eval/phrasings.yaml")).map_err(|e| e.to_string())
}

/// Scores the matcher on every case.
pub fn run(matcher: &Matcher, cases: &[Case]) -> Report {
    let mut report = Report {
        cases: cases.len(),
        ..Report::default()
    };
    for case in cases {
        let answer = matcher.ask(&case.say);
        let template_ok = answer.template.as_deref() == Some(case.template.as_str());
        let inputs_ok = template_ok && answer.inputs == case.inputs;
        report.template_ok += usize::from(template_ok);
        report.inputs_ok += usize::from(inputs_ok);
        if !inputs_ok {
            report.misses.push(Miss {
                case: case.clone(),
                template: answer.template,
                inputs: answer.inputs,
                confidence: answer.confidence,
            });
        }
    }
    report
}
