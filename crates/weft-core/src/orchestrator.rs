//! The pure orchestrator: (plan, step states) -> what to do next.
//!
//! It reads nothing and writes nothing. The engine calls [`advance`] inside the transaction
//! that records a result, applies the decisions (queue tasks, skip or fail steps, end the run)
//! in that same transaction, and calls it again until it has nothing more to say. Because it is
//! a function of recorded state only, any worker can advance any run, and a replay after a crash
//! decides exactly what the first attempt decided.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::ToolCatalog;
use crate::expr::{self, Scope};
use crate::plan::{Plan, StepKind, Strategy};

/// A run's status, as the API and `--json` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

/// A step's status, as the API and `--json` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    Waiting,
}

macro_rules! status_strings {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($ty::$variant),)* _ => None }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_strings!(RunStatus {
    Queued => "queued", Running => "running", Waiting => "waiting",
    Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled",
});
status_strings!(StepStatus {
    Pending => "pending", Running => "running", Succeeded => "succeeded", Failed => "failed",
    Skipped => "skipped", Cancelled => "cancelled", Waiting => "waiting",
});

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl StepStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Skipped
                | StepStatus::Cancelled
        )
    }
}

/// What the orchestrator needs to know about one step; borrowed from the recorded rows, so
/// a large fan-out's output is never copied just to decide what comes next.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState<'a> {
    pub status: StepStatus,
    pub output: &'a Value,
    pub error: Option<&'a str>,
    pub attempts: u32,
}

static NULL: Value = Value::Null;

impl Default for StepState<'_> {
    fn default() -> Self {
        StepState {
            status: StepStatus::Pending,
            output: &NULL,
            error: None,
            attempts: 0,
        }
    }
}

impl<'a> StepState<'a> {
    /// A step state whose output is `null`.
    pub fn without_output(status: StepStatus, error: Option<&'a str>, attempts: u32) -> Self {
        StepState {
            status,
            output: &NULL,
            error,
            attempts,
        }
    }
}

/// The run a decision is made for.
#[derive(Debug, Clone, Copy)]
pub struct RunInfo<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    /// The resolved inputs (an object; optional inputs not given are `null`).
    pub inputs: &'a Value,
}

/// One unit of work for the queue: a plain step has one, a `for_each` step one per item.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub item: Option<u32>,
    pub tool: String,
    pub input: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The step's `if` was false.
    Skip { step: usize },
    /// Start the step with these tasks; `inline` ones run in the orchestrator's transaction.
    Start {
        step: usize,
        tasks: Vec<TaskSpec>,
        inline: bool,
    },
    /// The step is done without any task (a `for_each` over an empty list).
    Complete { step: usize, output: Value },
    /// The step cannot start (an expression failed, an unsupported step kind).
    Fail { step: usize, error: String },
}

/// How the run ends, once it does.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    Failed(String),
}

/// Decides what to do next. `states` is aligned with `plan.steps`.
pub fn advance(
    plan: &Plan,
    run: RunInfo<'_>,
    states: &[StepState<'_>],
    catalog: &dyn ToolCatalog,
) -> (Vec<Decision>, Option<Outcome>) {
    // A failed step without `continue_on_error` ends the run: nothing new starts.
    if let Some((idx, state)) = states
        .iter()
        .enumerate()
        .find(|(i, s)| s.status == StepStatus::Failed && !plan.steps[*i].continue_on_error)
    {
        let error = state.error.unwrap_or("failed");
        return (
            Vec::new(),
            Some(Outcome::Failed(format!(
                "step `{}` failed: {error}",
                plan.steps[idx].id
            ))),
        );
    }

    let mut decisions = Vec::new();
    let scopes = Scopes::new(plan, run, states);
    for (idx, step) in plan.steps.iter().enumerate() {
        if states[idx].status != StepStatus::Pending {
            continue;
        }
        let ready = step.needs.iter().all(|&n| {
            matches!(
                states[n].status,
                StepStatus::Succeeded | StepStatus::Skipped | StepStatus::Failed
            )
        });
        if !ready {
            continue;
        }
        decisions.push(decide(plan, idx, &scopes.for_step(Some(idx)), catalog));
    }
    if !decisions.is_empty() {
        return (decisions, None);
    }
    if states.iter().all(|s| s.status.is_terminal()) {
        return (Vec::new(), Some(finish(plan, states, &scopes)));
    }
    (Vec::new(), None)
}

fn decide(plan: &Plan, idx: usize, scope: &Scope, catalog: &dyn ToolCatalog) -> Decision {
    let step = &plan.steps[idx];
    let fail = |error: String| Decision::Fail { step: idx, error };
    if let Some(cond) = &step.condition {
        match expr::eval_condition(cond, scope) {
            Ok(true) => {}
            Ok(false) => return Decision::Skip { step: idx },
            Err(e) => return fail(format!("`if` could not be evaluated: {e}")),
        }
    }
    // An approval's task carries its rendered settings; a workflow's the child's template and
    // rendered inputs. Neither is ever leased: the engine holds them as waiting tasks.
    let (tool, with) = match &step.kind {
        StepKind::Tool(name) => (name.as_str(), step.with.clone()),
        StepKind::Approval(spec) => match approval_with(spec) {
            Ok(with) => (APPROVAL_TOOL, with),
            Err(e) => return fail(e),
        },
        StepKind::Workflow(spec) => match workflow_with(spec, &step.with) {
            Ok(with) => (WORKFLOW_TOOL, with),
            Err(e) => return fail(e),
        },
    };
    let tool = &tool.to_string();
    let wants_scope = matches!(step.kind, StepKind::Tool(_)) && catalog.wants_scope(tool);
    let render_with = |scope: &Scope| -> Result<Value, expr::Error> {
        if !wants_scope {
            return expr::render(&with, scope).and_then(stored);
        }
        // The tool renders `template` itself, with the whole scope.
        let mut out = Map::new();
        if let Value::Object(map) = &step.with {
            for (k, v) in map {
                let value = if k == "template" {
                    v.clone()
                } else {
                    expr::render(v, scope).and_then(stored)?
                };
                out.insert(k.clone(), value);
            }
        }
        let scope_value = serde_json::to_value(scope.as_value()).unwrap_or(Value::Null);
        out.insert("scope".into(), scope_value);
        Ok(Value::Object(out))
    };
    let inline = step.strategy == Strategy::Sync;
    let Some(for_each) = &step.for_each else {
        return match render_with(scope) {
            Ok(input) => Decision::Start {
                step: idx,
                tasks: vec![TaskSpec {
                    item: None,
                    tool: tool.clone(),
                    input,
                }],
                inline,
            },
            Err(e) => fail(format!("`with` could not be rendered: {e}")),
        };
    };
    let items = match expr::render(&for_each.items, scope) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            return fail(format!(
                "`for_each` must give a list, it gave {}",
                type_name(&other)
            ));
        }
        Err(e) => return fail(format!("`for_each` could not be evaluated: {e}")),
    };
    if items.is_empty() {
        return Decision::Complete {
            step: idx,
            output: Value::Array(Vec::new()),
        };
    }
    let mut tasks = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_scope = scope.with_item(&for_each.as_name, item, i);
        match render_with(&item_scope) {
            Ok(input) => tasks.push(TaskSpec {
                item: Some(i as u32),
                tool: tool.clone(),
                input,
            }),
            Err(e) => return fail(format!("`with` could not be rendered for item {i}: {e}")),
        }
    }
    Decision::Start {
        step: idx,
        tasks,
        inline,
    }
}

/// A rendered value weft is about to store, refused when it nests too deep to read back. (A
/// render step's `scope` is not checked: it is made of values that were.)
fn stored(value: Value) -> Result<Value, expr::Error> {
    match crate::limits::check_json_depth(&value, "the value") {
        Ok(()) => Ok(value),
        Err(message) => Err(expr::Error {
            expr: String::new(),
            message,
        }),
    }
}

/// The task tool name of an `approval:` step's waits.
pub const APPROVAL_TOOL: &str = "approval";
/// The task tool name of a `workflow:` step's waits for its child runs.
pub const WORKFLOW_TOOL: &str = "workflow";

/// What to do when an approval times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    Approve,
    Reject,
}

/// An `approval:` step's settings, read from its (rendered) task input.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalSettings {
    pub prompt: Option<String>,
    pub timeout: Option<std::time::Duration>,
    pub on_timeout: OnTimeout,
}

/// `approval: "Ship it?"` or `approval: {prompt, timeout, on_timeout}` as one object.
fn approval_with(spec: &Value) -> Result<Value, String> {
    let map = match spec {
        Value::String(prompt) => {
            let mut m = Map::new();
            m.insert("prompt".into(), Value::String(prompt.clone()));
            m
        }
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        other => {
            return Err(format!(
                "`approval` must be a prompt or a mapping, not {}",
                type_name(other)
            ));
        }
    };
    approval_settings(&Value::Object(map.clone()))?;
    Ok(Value::Object(map))
}

/// Reads an approval's settings; the message names what is wrong.
pub fn approval_settings(with: &Value) -> Result<ApprovalSettings, String> {
    let empty = Map::new();
    let map = with.as_object().unwrap_or(&empty);
    for key in map.keys() {
        if !["prompt", "timeout", "on_timeout"].contains(&key.as_str()) {
            return Err(format!(
                "`approval` has no setting `{key}`; use prompt, timeout and on_timeout"
            ));
        }
    }
    let prompt = match map.get("prompt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let timeout = match map.get("timeout") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if expr::is_template(t) => None,
        Some(Value::String(t)) => {
            Some(crate::duration::parse(t).map_err(|e| format!("`approval.timeout`: {e}"))?)
        }
        Some(other) => {
            return Err(format!(
                "`approval.timeout` must be a duration such as `30m`, not {}",
                type_name(other)
            ));
        }
    };
    let on_timeout = match map.get("on_timeout").and_then(Value::as_str) {
        None => OnTimeout::Reject,
        Some("reject") => OnTimeout::Reject,
        Some("approve") => OnTimeout::Approve,
        Some(other) => {
            return Err(format!(
                "`approval.on_timeout` is `approve` or `reject`, not `{other}`"
            ));
        }
    };
    Ok(ApprovalSettings {
        prompt,
        timeout,
        on_timeout,
    })
}

/// `workflow: NAME` (inputs in the step's `with`) or `workflow: {template, version, with}`,
/// as `{template, version, with}`.
fn workflow_with(spec: &Value, step_with: &Value) -> Result<Value, String> {
    let mut out = Map::new();
    match spec {
        Value::String(name) => {
            let (name, version) = match name.split_once('@') {
                Some((n, v)) => (n, Some(v)),
                None => (name.as_str(), None),
            };
            out.insert("template".into(), Value::String(name.into()));
            if let Some(v) = version {
                out.insert("version".into(), Value::String(v.into()));
            }
        }
        Value::Object(map) => {
            for key in map.keys() {
                if !["template", "version", "with"].contains(&key.as_str()) {
                    return Err(format!(
                        "`workflow` has no setting `{key}`; use template, version and with"
                    ));
                }
            }
            match map.get("template") {
                Some(Value::String(_)) => {}
                _ => return Err("`workflow` needs a `template` (a template name)".into()),
            }
            out.extend(map.clone());
        }
        other => {
            return Err(format!(
                "`workflow` must be a template name or a mapping, not {}",
                type_name(other)
            ));
        }
    }
    if !out.contains_key("with") {
        out.insert("with".into(), step_with.clone());
    }
    if out.get("with").is_some_and(Value::is_null) {
        out.insert("with".into(), Value::Object(Map::new()));
    }
    Ok(Value::Object(out))
}

/// Renders an action's `with` after a run, in the scope `output:` has (`input`, `steps`,
/// `prev` = the last step, `run`).
pub fn render_action(
    plan: &Plan,
    run: RunInfo<'_>,
    states: &[StepState<'_>],
    with: &Value,
) -> Result<Value, expr::Error> {
    let scopes = Scopes::new(plan, run, states);
    expr::render(with, &scopes.for_step(Some(plan.steps.len())))
}

/// One step as `weft plan` shows it before a run.
#[derive(Debug, Clone, Serialize)]
pub struct StepPreview {
    pub id: String,
    /// `tool NAME`, `approval` or `workflow`.
    pub kind: String,
    pub needs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The `if:` evaluated, when it depends only on inputs: `false` means the step will be
    /// skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<bool>,
    /// The `for_each` list, resolved when it depends only on inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<Value>,
    /// The step's input (`with`, or the approval / workflow settings) with every value that
    /// depends only on the run's inputs resolved; the rest as written.
    pub with: Value,
}

/// The steps of a plan with what can be known before the run: values that depend only on
/// `input` are resolved, values that need a step's output (or an item) stay as written.
pub fn preview(plan: &Plan, inputs: &Value) -> Vec<StepPreview> {
    let scope = Scope::from_value(JValue::from_pairs([
        ("input", JValue::from(Serde(inputs))),
        (
            "run",
            JValue::from_pairs([("id", "(not started)"), ("tenant", "default")]),
        ),
    ]));
    // Only what reads nothing but `input` and `run` is known now; anything else (a step's
    // output, a `for_each` item, `item_index`) stays as written rather than rendering as null.
    let known = |names: Option<std::collections::HashSet<String>>| {
        names.is_some_and(|n| n.iter().all(|n| n == "input" || n == "run"))
    };
    fn resolve(v: &Value, scope: &Scope, known: &dyn Fn(&Value) -> bool) -> Value {
        match v {
            Value::String(_) if !known(v) => v.clone(),
            Value::String(_) => expr::render(v, scope).unwrap_or_else(|_| v.clone()),
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| resolve(i, scope, known)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolve(v, scope, known)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let known_value = |v: &Value| known(expr::names_read(v));
    plan.steps
        .iter()
        .map(|step| {
            let (kind, with) = match &step.kind {
                StepKind::Tool(name) => (format!("tool {name}"), step.with.clone()),
                StepKind::Approval(spec) => (
                    "approval".to_string(),
                    approval_with(spec).unwrap_or_else(|_| spec.clone()),
                ),
                StepKind::Workflow(spec) => (
                    "workflow".to_string(),
                    workflow_with(spec, &step.with).unwrap_or_else(|_| spec.clone()),
                ),
            };
            StepPreview {
                id: step.id.clone(),
                kind,
                needs: step
                    .needs
                    .iter()
                    .map(|&n| plan.steps[n].id.clone())
                    .collect(),
                condition: step.condition.clone(),
                runs: step
                    .condition
                    .as_ref()
                    .filter(|c| known(expr::condition_names(c)))
                    .and_then(|c| expr::eval_condition(c, &scope).ok()),
                for_each: step
                    .for_each
                    .as_ref()
                    .map(|f| resolve(&f.items, &scope, &known_value)),
                with: resolve(&with, &scope, &known_value),
            }
        })
        .collect()
}

fn finish(plan: &Plan, states: &[StepState<'_>], scopes: &Scopes) -> Outcome {
    if let Some(template) = &plan.output {
        let scope = scopes.for_step(Some(plan.steps.len()));
        return match expr::render(template, &scope).and_then(stored) {
            Ok(v) => Outcome::Succeeded(v),
            Err(e) => Outcome::Failed(format!("`output` could not be rendered: {e}")),
        };
    }
    let last = states
        .iter()
        .rev()
        .find(|s| s.status == StepStatus::Succeeded);
    Outcome::Succeeded(last.map(|s| s.output.clone()).unwrap_or(Value::Null))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

use minijinja::value::{Serde, Value as JValue};

/// One step as expressions see it. `result`/`success` alias `output`/`ok` (the seeds'
/// spelling) and share the converted value rather than copying it.
fn step_value(state: &StepState<'_>) -> JValue {
    let ok = state.status == StepStatus::Succeeded;
    let output = JValue::from(Serde(state.output));
    JValue::from_pairs([
        ("output", output.clone()),
        ("result", output),
        ("status", JValue::from(state.status.as_str())),
        ("ok", JValue::from(ok)),
        ("success", JValue::from(ok)),
        ("error", JValue::from(state.error.map(str::to_string))),
        ("attempts", JValue::from(state.attempts)),
    ])
}

/// The expression scopes of one decision round, with every step's value converted once.
struct Scopes {
    steps: Vec<JValue>,
    steps_map: JValue,
    input: JValue,
    run: JValue,
}

impl Scopes {
    fn new(plan: &Plan, run: RunInfo<'_>, states: &[StepState<'_>]) -> Self {
        let steps: Vec<JValue> = states.iter().map(step_value).collect();
        let steps_map = JValue::from_pairs(
            plan.steps
                .iter()
                .zip(&steps)
                .map(|(s, v)| (s.id.clone(), v.clone())),
        );
        Scopes {
            steps,
            steps_map,
            input: JValue::from(Serde(run.inputs)),
            run: JValue::from_pairs([("id", run.id), ("tenant", run.tenant)]),
        }
    }

    /// The scope of step `for_step` (its `prev` is the step written before it);
    /// `Some(plan.steps.len())` gives the scope of `output:` (`prev` = the last step).
    fn for_step(&self, for_step: Option<usize>) -> Scope {
        let prev = match for_step {
            Some(i) if i > 0 => self.steps.get(i - 1).cloned().unwrap_or(JValue::from(())),
            _ => JValue::from(()),
        };
        Scope::from_value(JValue::from_pairs([
            ("input", self.input.clone()),
            ("steps", self.steps_map.clone()),
            ("prev", prev),
            ("run", self.run.clone()),
        ]))
    }
}
