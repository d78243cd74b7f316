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
    let tool = match &step.kind {
        StepKind::Tool(name) => name,
        StepKind::Approval(_) => {
            return fail("approval steps are not supported yet (WEFT-E013)".into());
        }
        StepKind::Workflow(_) => {
            return fail("workflow steps are not supported yet (WEFT-E013)".into());
        }
    };
    let wants_scope = catalog.wants_scope(tool);
    let render_with = |scope: &Scope| -> Result<Value, expr::Error> {
        if !wants_scope {
            return expr::render(&step.with, scope);
        }
        // The tool renders `template` itself, with the whole scope.
        let mut out = Map::new();
        if let Value::Object(map) = &step.with {
            for (k, v) in map {
                let value = if k == "template" {
                    v.clone()
                } else {
                    expr::render(v, scope)?
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

fn finish(plan: &Plan, states: &[StepState<'_>], scopes: &Scopes) -> Outcome {
    if let Some(template) = &plan.output {
        let scope = scopes.for_step(Some(plan.steps.len()));
        return match expr::render(template, &scope) {
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
