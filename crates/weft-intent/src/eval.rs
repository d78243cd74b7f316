//! The offline matcher's evaluation: phrasings with the template and inputs a person would
//! expect, scored as template accuracy, exact-inputs accuracy and calibration (how often the
//! matcher is right when it is sure enough to run, and how often it asks).
//!
//! Two sets: `eval/phrasings.yaml`, the tuned set (the matcher was improved against it), and
//! `eval/heldout.yaml`, written from the templates alone by someone who had not seen the
//! matcher, frozen before the matcher changed, and never tuned against. The templates are the
//! workspace's built-ins plus `eval/templates/` (two the matcher's code has never been told
//! about). The `weft-intent-eval` binary prints the figures; `tests/eval.rs` holds them to the
//! targets.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use weft_core::Plan;
use weft_core::catalog::ToolCatalog;

use crate::Matcher;

/// One phrasing and what it should mean; `template: null` says the matcher should ask (the
/// sentence is ambiguous, or no template does it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub say: String,
    pub template: Option<String>,
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
    /// The question asked instead of running, if any.
    pub question: Option<String>,
}

/// Confidence bounds of the calibration table's buckets (lower bounds; the last runs to 1).
pub const BUCKETS: &[f64] = &[0.0, 0.3, crate::MIN_CONFIDENCE, 0.6, 0.75, 0.9];

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cases: usize,
    pub template_ok: usize,
    pub inputs_ok: usize,
    /// Answers the matcher would run on (no question), and how many of those were right
    /// (template and inputs as expected; a run on a sentence that should have asked is wrong).
    pub confident: usize,
    pub confident_right: usize,
    pub confident_template_right: usize,
    /// Sentences that got a question instead of a run.
    pub asked: usize,
    /// Per bucket of [`BUCKETS`]: cases, and how many had the right template.
    pub buckets: Vec<(usize, usize)>,
    pub misses: Vec<Miss>,
}

impl Report {
    pub fn template_accuracy(&self) -> f64 {
        self.template_ok as f64 / self.cases.max(1) as f64
    }
    pub fn inputs_accuracy(&self) -> f64 {
        self.inputs_ok as f64 / self.cases.max(1) as f64
    }
    /// Of the answers sure enough to run, the share with the right template and inputs.
    pub fn precision(&self) -> f64 {
        self.confident_right as f64 / self.confident.max(1) as f64
    }
    /// Of the answers sure enough to run, the share with the right template.
    pub fn template_precision(&self) -> f64 {
        self.confident_template_right as f64 / self.confident.max(1) as f64
    }
    pub fn ask_rate(&self) -> f64 {
        self.asked as f64 / self.cases.max(1) as f64
    }

    /// The figures on one line.
    pub fn summary(&self) -> String {
        format!(
            "phrasings: {}  template: {:.1}% ({}/{})  exact inputs: {:.1}% ({}/{})  \
             runs without asking: {} of which right {:.1}% (template right {:.1}%)  asked: {:.1}%",
            self.cases,
            100.0 * self.template_accuracy(),
            self.template_ok,
            self.cases,
            100.0 * self.inputs_accuracy(),
            self.inputs_ok,
            self.cases,
            self.confident,
            100.0 * self.precision(),
            100.0 * self.template_precision(),
            100.0 * self.ask_rate()
        )
    }

    /// The calibration table: confidence buckets against template accuracy.
    pub fn calibration(&self) -> String {
        let mut out = String::from("  confidence    phrasings  right template\n");
        for (idx, (n, ok)) in self.buckets.iter().enumerate() {
            let low = BUCKETS[idx];
            let high = BUCKETS.get(idx + 1).copied().unwrap_or(1.0);
            let share = if *n == 0 {
                "-".to_string()
            } else {
                format!("{:.1}%", 100.0 * *ok as f64 / *n as f64)
            };
            out.push_str(&format!("  {low:.2}-{high:.2}    {n:>9}  {share:>14}\n"));
        }
        out
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

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
}

/// The workspace's built-in templates: `templates/*.yaml` and `examples/hello.yaml`.
pub fn builtin_template_paths() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut paths = yaml_files(&root.join("templates"));
    paths.push(root.join("examples/hello.yaml"));
    paths
}

/// The templates the evaluation matches against: the built-ins and `eval/templates/`.
pub fn eval_template_paths() -> Vec<PathBuf> {
    let mut paths = builtin_template_paths();
    paths.extend(yaml_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/templates"),
    ));
    paths
}

/// Loads templates for matching only (tools are not checked).
pub fn load_plans(paths: &[PathBuf]) -> Result<Vec<Plan>, String> {
    paths
        .iter()
        .map(|p| weft_core::load::load_file(p, &AnyTool).map_err(|d| d.to_string()))
        .collect()
}

/// Loads one template from its text, for matching only (tools are not checked).
pub fn plan_from_str(source: &str) -> Result<Plan, String> {
    weft_core::load::load_str(source, "template.yaml", None, &AnyTool).map_err(|d| d.to_string())
}

/// The tuned evaluation set.
pub fn builtin_cases() -> Result<Vec<Case>, String> {
    serde_yaml_ng::from_str(include_str!("../eval/phrasings.yaml")).map_err(|e| e.to_string())
}

/// The held-out evaluation set.
pub fn heldout_cases() -> Result<Vec<Case>, String> {
    serde_yaml_ng::from_str(include_str!("../eval/heldout.yaml")).map_err(|e| e.to_string())
}

/// The second held-out set: written from the templates alone, after the matcher of
/// 2026-12-06 was tuned, by someone who saw neither its code nor any phrasing file.
pub fn heldout2_cases() -> Result<Vec<Case>, String> {
    serde_yaml_ng::from_str(include_str!("../eval/heldout2.yaml")).map_err(|e| e.to_string())
}

/// Scores the matcher on every case.
pub fn run(matcher: &Matcher, cases: &[Case]) -> Report {
    let mut report = Report {
        cases: cases.len(),
        buckets: vec![(0, 0); BUCKETS.len()],
        ..Report::default()
    };
    for case in cases {
        let answer = matcher.ask(&case.say);
        let runs = answer.is_confident();
        let template_ok = match &case.template {
            Some(t) => answer.template.as_deref() == Some(t.as_str()),
            None => !runs,
        };
        let inputs_ok = template_ok && (case.template.is_none() || answer.inputs == case.inputs);
        report.template_ok += usize::from(template_ok);
        report.inputs_ok += usize::from(inputs_ok);
        if runs {
            report.confident += 1;
            report.confident_right += usize::from(inputs_ok);
            report.confident_template_right += usize::from(template_ok);
        } else {
            report.asked += 1;
        }
        let bucket = BUCKETS
            .iter()
            .rposition(|low| answer.confidence >= *low)
            .unwrap_or(0);
        report.buckets[bucket].0 += 1;
        report.buckets[bucket].1 += usize::from(template_ok);
        if !inputs_ok {
            report.misses.push(Miss {
                case: case.clone(),
                template: answer.template,
                inputs: answer.inputs,
                confidence: answer.confidence,
                question: answer.question,
            });
        }
    }
    report
}
