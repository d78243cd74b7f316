//! Steps that wait, and runs that follow runs.
//!
//! An `approval:` step's items and a `workflow:` step's items are tasks with status `waiting`:
//! no worker ever leases them, so they hold no slot and survive any restart as plain state. An
//! approval ends when someone decides (`Engine::decide_approval`) or its timeout passes
//! (`expire_waits`, from the worker loop); a workflow item ends when its child run ends
//! (`tell_parent`, in the child's final transaction). Either way the end is recorded through
//! `apply_completions` like a tool's result, so fan-out counting, `continue_on_error` and the
//! next decisions work as for any step. Actions (`start_action`) start a run of another
//! template from a finished run, linked to it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value, json};
use weft_core::Plan;
use weft_core::lifecycle::{EventKind, RunTransition, StepTransition};
use weft_core::orchestrator::{self, APPROVAL_TOOL, OnTimeout, RunInfo};
use weft_core::plan::{Step, StepKind};
use weft_store::{
    NewEvent, Run, RunParent, RunStatus, RunUpdate, StepRow, StepStatus, Task, TaskStatus, Tx,
};

use crate::completion::{Completion, Failure};
use crate::lifecycle::{cancel_rest, event, state_of};
use crate::{Engine, Error, NewRun, Result};

/// The "owner" a completion of a waiting task carries: no worker leases it.
pub(crate) const NO_LEASE: &str = "";

/// How deep runs may start runs (`workflow:` steps inside children's templates).
const MAX_DEPTH: usize = 8;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A task's result when it ended at once: (status, output, error, cache hit).
type Done = Option<(TaskStatus, Value, Option<String>, bool)>;

/// Where `workflow:` steps and actions find the templates they start: the CLI's folders and
/// built-ins, or the server's registry.
#[async_trait]
pub trait TemplateSource: Send + Sync {
    /// The template `name` (at `version`, or the newest) as `tenant` sees it, with the folder
    /// its runs work in; `Err` says why there is none.
    async fn find(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> std::result::Result<(Arc<Plan>, Option<String>), String>;
}

pub(crate) struct Subruns {
    templates: Option<Arc<dyn TemplateSource>>,
    /// Child runs started by this process; a worker limited to some runs looks for their
    /// children again when it changes.
    started: AtomicU64,
}

impl Subruns {
    pub(crate) fn new(templates: Option<Arc<dyn TemplateSource>>) -> Self {
        Subruns {
            templates,
            started: AtomicU64::new(0),
        }
    }
}

/// Whether a step's tasks wait instead of queueing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waits {
    No,
    Approval,
    Child,
}

impl Waits {
    pub(crate) fn of(step: &Step) -> Waits {
        match step.kind {
            StepKind::Tool(_) => Waits::No,
            StepKind::Approval(_) => Waits::Approval,
            StepKind::Workflow(_) => Waits::Child,
        }
    }
}

/// A person's decision on an approval.
#[derive(Debug, Clone)]
pub struct Decide {
    pub approve: bool,
    /// Who decides (an API key's name, a user); recorded in the step's output and events.
    pub by: String,
    pub comment: Option<String>,
    /// The item of a `for_each` approval; may be left out when only one item waits.
    pub item: Option<u32>,
}

/// A recorded decision, as the CLI and API return it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalDecision {
    pub run_id: String,
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    pub approved: bool,
    pub by: String,
    pub comment: Option<String>,
    pub at: String,
}

fn waiting_completion(t: &Task, result: std::result::Result<Value, String>) -> Completion {
    Completion {
        cache_key: None,
        result: result.map_err(|message| Failure {
            message,
            transient: false,
            reason: "error",
        }),
        ..Completion::of(t, NO_LEASE.to_string())
    }
}

fn decision_output(approved: bool, by: &str, comment: Option<&str>, at: i64) -> Value {
    json!({"approved": approved, "by": by, "comment": comment, "at": weft_store::rfc3339(at)})
}

fn rejection(by: &str, comment: Option<&str>) -> String {
    match comment {
        Some(c) if !c.is_empty() => format!("rejected by {by}: {c}"),
        _ => format!("rejected by {by}"),
    }
}

/// Makes a started step's tasks wait: an approval's until its timeout (the step is then
/// `waiting`, with one `approval.requested` per item); a workflow step's until its children end.
pub(crate) async fn hold(
    tx: &mut dyn Tx,
    spec: &Step,
    s: &mut StepRow,
    items: &[(Option<u32>, &Value)],
    events: &mut Vec<NewEvent>,
) -> Result<()> {
    match Waits::of(spec) {
        Waits::No => {}
        Waits::Child => {
            tx.set_waiting(&s.run_id, &s.step_id, None).await?;
        }
        Waits::Approval => {
            let settings = items
                .first()
                .and_then(|(_, input)| orchestrator::approval_settings(input).ok());
            let timeout = settings.as_ref().and_then(|a| a.timeout);
            let until = timeout.map(|d| tx.now() + crate::millis(d));
            tx.set_waiting(&s.run_id, &s.step_id, until).await?;
            crate::lifecycle::transition_step(s, StepTransition::Wait);
            for (item, input) in items {
                events.push(NewEvent {
                    item: *item,
                    ..event(
                        &s.run_id,
                        EventKind::ApprovalRequested,
                        Some(&s.step_id),
                        json!({"prompt": input.get("prompt"),
                               "timeout_at": until.map(weft_store::rfc3339),
                               "on_timeout": settings.as_ref().map(|a| a.on_timeout)}),
                    )
                });
            }
        }
    }
    Ok(())
}

/// Keeps a live run's status in step with its steps: `waiting` while a step waits for a
/// decision, `running` otherwise.
pub(crate) async fn mark_waiting(tx: &mut dyn Tx, run: &Run, steps: &[StepRow]) -> Result<()> {
    if run.status.is_terminal() {
        return Ok(());
    }
    let waiting: Vec<&str> = steps
        .iter()
        .filter(|s| s.status == StepStatus::Waiting)
        .map(|s| s.step_id.as_str())
        .collect();
    let t = if waiting.is_empty() {
        RunTransition::Continue
    } else {
        RunTransition::Wait
    };
    let Some(current) = tx.lock_run(&run.id).await?.map(|r| r.status) else {
        return Ok(());
    };
    if current == t.target().0 || current.is_terminal() {
        return Ok(());
    }
    let (status, kind) = crate::lifecycle::transition_run(&run.id, current, t);
    tx.set_run_status(
        &run.id,
        &RunUpdate {
            status,
            output: None,
            error: None,
        },
    )
    .await?;
    let data = match t {
        RunTransition::Wait => json!({"steps": waiting}),
        _ => json!({}),
    };
    tx.append_events(&[event(&run.id, kind, None, data)])
        .await?;
    Ok(())
}

impl Engine {
    fn template_source(&self) -> Option<Arc<dyn TemplateSource>> {
        self.inner.subruns.templates.clone()
    }

    /// How many child runs this process has started (a worker limited to some runs looks for
    /// new children when it changes).
    pub(crate) fn children_started(&self) -> u64 {
        self.inner.subruns.started.load(Ordering::Relaxed)
    }

    /// `runs` and every run they started, transitively, through `workflow:` steps.
    pub(crate) async fn family(&self, runs: &[String]) -> Result<Vec<String>> {
        let mut all: Vec<String> = runs.to_vec();
        let mut i = 0;
        while i < all.len() && all.len() < 10_000 {
            for child in self.store().child_runs(&all[i]).await? {
                if child.parent.as_ref().is_some_and(|p| p.step.is_some())
                    && !all.contains(&child.id)
                {
                    all.push(child.id);
                }
            }
            i += 1;
        }
        Ok(all)
    }

    /// Starts the child run of one `workflow:` item, in `tx`. Returns the item's result when
    /// it is already known: the template or its inputs are wrong, or the child ended at once.
    pub(crate) fn start_child<'a>(
        &'a self,
        tx: &'a mut dyn Tx,
        parent: &'a Run,
        step_id: &'a str,
        item: Option<u32>,
        input: &'a Value,
    ) -> BoxFuture<'a, Result<Done>> {
        Box::pin(async move {
            let failed =
                |message: String| Some((TaskStatus::Failed, Value::Null, Some(message), false));
            let name = input.get("template").and_then(Value::as_str).unwrap_or("");
            let version = match input.get("version") {
                Some(Value::String(v)) => Some(v.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let mut depth = 1;
            let mut up = parent.parent.clone();
            while let Some(p) = up {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Ok(failed(format!(
                        "runs may start runs at most {MAX_DEPTH} deep; `{name}` would be deeper"
                    )));
                }
                up = tx.lock_run(&p.run_id).await?.and_then(|r| r.parent);
            }
            let Some(source) = self.template_source() else {
                return Ok(failed(
                    "this process has no template registry to start `workflow:` steps from".into(),
                ));
            };
            let (plan, base_dir) = match source.find(&parent.tenant, name, version.as_deref()).await
            {
                Ok(found) => found,
                Err(e) => return Ok(failed(e)),
            };
            let given = input
                .get("with")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let inputs = match weft_core::inputs::resolve_inputs(&plan, &given) {
                Ok(v) => v,
                Err(problems) => {
                    return Ok(failed(format!(
                        "the inputs of `{name}` are not valid: {}",
                        problems.join("; ")
                    )));
                }
            };
            self.remember_plan(plan.clone());
            let new = NewRun {
                tenant: parent.tenant.clone(),
                plan,
                inputs,
                idempotency_key: None,
                base_dir: base_dir.or_else(|| parent.base_dir.clone()),
            };
            let link = RunParent {
                run_id: parent.id.clone(),
                step: Some(step_id.to_string()),
                item,
                action: None,
            };
            let child = self.insert_run(tx, &new, None, Some(link)).await?;
            self.inner.subruns.started.fetch_add(1, Ordering::Relaxed);
            tx.append_events(&[NewEvent {
                item,
                ..event(
                    &parent.id,
                    EventKind::WorkflowStarted,
                    Some(step_id),
                    json!({"child_run": child.id, "template": child.template,
                           "version": child.version}),
                )
            }])
            .await?;
            let Some(child) = tx.lock_run(&child.id).await? else {
                return Ok(None);
            };
            Ok(match child.status {
                RunStatus::Succeeded => Some((
                    TaskStatus::Succeeded,
                    child.output.unwrap_or_default(),
                    None,
                    false,
                )),
                RunStatus::Failed | RunStatus::Cancelled => failed(child_failure(
                    &child.id,
                    child.status,
                    child.error.as_deref(),
                )),
                _ => None,
            })
        })
    }

    /// A child run ended: its parent's waiting item gets its output (or fails), in `tx`.
    pub(crate) fn tell_parent<'a>(
        &'a self,
        tx: &'a mut dyn Tx,
        child: &'a Run,
        result: std::result::Result<Value, (RunStatus, String)>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(RunParent {
                run_id,
                step: Some(step),
                item,
                ..
            }) = &child.parent
            else {
                return Ok(());
            };
            let waiting = tx.waiting_tasks(run_id, Some(step)).await?;
            let Some(task) = waiting.iter().find(|t| t.item == *item) else {
                // The parent moved on (cancelled, or failed elsewhere).
                return Ok(());
            };
            let result = result.map_err(|(status, e)| child_failure(&child.id, status, Some(&e)));
            let mut no_jitter = || 0.0;
            self.apply_completions(tx, vec![waiting_completion(task, result)], &mut no_jitter)
                .await?;
            Ok(())
        })
    }

    /// Cancels a live run in `tx`, with its `workflow:` children; tells its own parent.
    pub(crate) fn cancel_in<'a>(
        &'a self,
        tx: &'a mut dyn Tx,
        run: Run,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut steps = tx.load_steps(&run.id).await?;
            cancel_rest(tx, &run.id, &mut steps).await?;
            let (status, kind) =
                crate::lifecycle::transition_run(&run.id, run.status, RunTransition::Cancel);
            tx.set_run_status(
                &run.id,
                &RunUpdate {
                    status,
                    output: None,
                    error: Some("cancelled".into()),
                },
            )
            .await?;
            tx.append_events(&[event(&run.id, kind, None, json!({}))])
                .await?;
            for child in tx.child_runs(&run.id).await? {
                let of_step = child.parent.as_ref().is_some_and(|p| p.step.is_some());
                if of_step && !child.status.is_terminal() {
                    self.cancel_in(tx, child).await?;
                }
            }
            self.tell_parent(tx, &run, Err((RunStatus::Cancelled, "cancelled".into())))
                .await
        })
    }

    /// On resume: the unfinished items of approval and workflow steps wait again (an approval
    /// asks again; a workflow item starts a new child run). `steps` is re-read afterwards.
    pub(crate) async fn rewait(
        &self,
        tx: &mut dyn Tx,
        run: &Run,
        plan: &Plan,
        steps: &mut Vec<StepRow>,
        step_ids: &[String],
    ) -> Result<()> {
        let mut batch = Vec::new();
        let mut events = Vec::new();
        for step_id in step_ids {
            let (Some(idx), Some(s)) = (
                plan.step_index(step_id),
                steps.iter_mut().find(|s| &s.step_id == step_id),
            ) else {
                continue;
            };
            tx.set_waiting(&run.id, step_id, None).await?;
            let tasks = tx.waiting_tasks(&run.id, Some(step_id)).await?;
            let items: Vec<(Option<u32>, &Value)> =
                tasks.iter().map(|t| (t.item, &t.input)).collect();
            hold(tx, &plan.steps[idx], s, &items, &mut events).await?;
            tx.update_step(s).await?;
            if Waits::of(&plan.steps[idx]) == Waits::Child {
                for t in &tasks {
                    if let Some((status, output, error, _)) =
                        self.start_child(tx, run, step_id, t.item, &t.input).await?
                    {
                        let result = match status {
                            TaskStatus::Succeeded => Ok(output),
                            _ => Err(error.unwrap_or_default()),
                        };
                        batch.push(waiting_completion(t, result));
                    }
                }
            }
        }
        tx.append_events(&events).await?;
        if !batch.is_empty() {
            let mut no_jitter = || 0.0;
            self.apply_completions(tx, batch, &mut no_jitter).await?;
        }
        *steps = tx.load_steps(&run.id).await?;
        Ok(())
    }

    /// Approves or rejects an approval step (one item of a `for_each` one), in one
    /// transaction. An approval becomes the step's (item's) output `{approved, by, comment,
    /// at}`; a rejection fails it, so `continue_on_error` applies.
    pub async fn decide_approval(
        &self,
        tenant: &str,
        run_id: &str,
        step_id: &str,
        decide: Decide,
    ) -> Result<ApprovalDecision> {
        let mut tx = self.begin().await?;
        // Parents before children, as everywhere (see `lock_ancestors`).
        self.lock_ancestors(&mut *tx, tenant, run_id).await?;
        let run = tx
            .lock_run(run_id)
            .await?
            .filter(|r| r.tenant == tenant)
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        let plan = self.plan_for(&run)?;
        let idx = plan
            .step_index(step_id)
            .ok_or_else(|| Error::NotFound(format!("run `{run_id}` has no step `{step_id}`")))?;
        if Waits::of(&plan.steps[idx]) != Waits::Approval {
            return Err(Error::Conflict(format!(
                "step `{step_id}` is not an approval step"
            )));
        }
        if run.status.is_terminal() {
            return Err(Error::Conflict(format!(
                "run `{run_id}` has ended ({}); there is nothing to decide",
                run.status
            )));
        }
        let waiting = tx.waiting_tasks(run_id, Some(step_id)).await?;
        let task = match decide.item {
            Some(i) => waiting.iter().find(|t| t.item == Some(i)).ok_or_else(|| {
                Error::Conflict(format!(
                    "item {i} of step `{step_id}` is not waiting for a decision"
                ))
            })?,
            None => match waiting.as_slice() {
                [] => {
                    return Err(Error::Conflict(format!(
                        "step `{step_id}` is not waiting for a decision"
                    )));
                }
                [one] => one,
                many => {
                    return Err(Error::Conflict(format!(
                        "step `{step_id}` waits for {} items' decisions; say which item",
                        many.len()
                    )));
                }
            },
        };
        let at = tx.now();
        let comment = decide.comment.as_deref().filter(|c| !c.is_empty());
        let result = if decide.approve {
            Ok(decision_output(true, &decide.by, comment, at))
        } else {
            Err(rejection(&decide.by, comment))
        };
        tx.append_events(&[NewEvent {
            item: task.item,
            ..event(
                run_id,
                EventKind::ApprovalDecided,
                Some(step_id),
                json!({"approved": decide.approve, "by": decide.by, "comment": comment}),
            )
        }])
        .await?;
        let completion = waiting_completion(task, result);
        let mut no_jitter = || 0.0;
        self.apply_completions(&mut *tx, vec![completion], &mut no_jitter)
            .await?;
        tx.commit().await?;
        self.wake();
        Ok(ApprovalDecision {
            run_id: run_id.to_string(),
            step: step_id.to_string(),
            item: task.item,
            approved: decide.approve,
            by: decide.by,
            comment: comment.map(str::to_string),
            at: weft_store::rfc3339(at),
        })
    }

    /// Decides the approvals whose timeout has passed, as each one's `on_timeout` says
    /// (reject unless it says approve).
    pub(crate) async fn expire_waits(
        &self,
        tx: &mut dyn Tx,
        only_runs: Option<&[String]>,
    ) -> Result<()> {
        let mut due = tx.due_waits(100).await?;
        due.retain(|t| t.tool == APPROVAL_TOOL && only_runs.is_none_or(|r| r.contains(&t.run_id)));
        if due.is_empty() {
            return Ok(());
        }
        // Runs locked in id order (as `apply_completions` does); then only what still waits
        // once the lock is held, so two workers never both decide (or record) one timeout.
        due.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        let mut still = std::collections::HashSet::new();
        let mut locked: Option<String> = None;
        for t in &due {
            if locked.as_deref() != Some(t.run_id.as_str()) {
                self.lock_ancestors(tx, &t.tenant, &t.run_id).await?;
                tx.lock_run(&t.run_id).await?;
                for w in tx.waiting_tasks(&t.run_id, None).await? {
                    still.insert(w.id);
                }
                locked = Some(t.run_id.clone());
            }
        }
        let mut batch = Vec::new();
        let mut events = Vec::new();
        let at = tx.now();
        for t in due {
            if !still.contains(&t.id) {
                continue;
            }
            let settings = orchestrator::approval_settings(&t.input).ok();
            let approve = settings
                .as_ref()
                .is_some_and(|a| a.on_timeout == OnTimeout::Approve);
            let comment = match settings.and_then(|a| a.timeout) {
                Some(d) => format!("no decision within {}", weft_core::duration::format(d)),
                None => "no decision in time".to_string(),
            };
            events.push(NewEvent {
                item: t.item,
                ..event(
                    &t.run_id,
                    EventKind::ApprovalDecided,
                    Some(&t.step_id),
                    json!({"approved": approve, "by": "timeout", "comment": comment}),
                )
            });
            let result = if approve {
                Ok(decision_output(true, "timeout", Some(&comment), at))
            } else {
                Err(rejection("timeout", Some(&comment)))
            };
            batch.push(waiting_completion(&t, result));
        }
        if batch.is_empty() {
            return Ok(());
        }
        tx.append_events(&events).await?;
        let mut no_jitter = || 0.0;
        self.apply_completions(tx, batch, &mut no_jitter).await?;
        Ok(())
    }

    /// Starts one of a finished run's `actions:` as a new run linked to it. The action's
    /// `with` is rendered in the scope `output:` has; `inputs` are added on top.
    pub async fn start_action(
        &self,
        tenant: &str,
        run_id: &str,
        name: &str,
        inputs: Map<String, Value>,
    ) -> Result<Run> {
        let parent = self
            .store()
            .run(tenant, run_id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        let plan = self.plan_for(&parent)?;
        let Some(action) = plan.actions.get(name) else {
            let known: Vec<&str> = plan.actions.keys().map(String::as_str).collect();
            return Err(Error::NotFound(if known.is_empty() {
                format!("template `{}` has no actions", plan.name)
            } else {
                format!(
                    "template `{}` has no action `{name}`; its actions: {}",
                    plan.name,
                    known.join(", ")
                )
            }));
        };
        if parent.status != RunStatus::Succeeded {
            return Err(Error::Conflict(format!(
                "run `{run_id}` is {}; actions follow a run that succeeded",
                parent.status
            )));
        }
        let steps = self.store().steps(run_id).await?;
        let states: Vec<_> = steps.iter().map(state_of).collect();
        let info = RunInfo {
            id: &parent.id,
            tenant: &parent.tenant,
            inputs: &parent.inputs,
        };
        let mut given = match orchestrator::render_action(&plan, info, &states, &action.with) {
            Ok(Value::Object(map)) => map,
            Ok(Value::Null) => Map::new(),
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "the `with` of action `{name}` must give a mapping of inputs"
                )));
            }
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "the `with` of action `{name}` could not be rendered: {e}"
                )));
            }
        };
        given.extend(inputs);
        let source = self.template_source().ok_or_else(|| {
            Error::Invalid("this process has no template registry to start actions from".into())
        })?;
        let (child_plan, base_dir) = source
            .find(tenant, &action.template, None)
            .await
            .map_err(Error::NotFound)?;
        let inputs = weft_core::inputs::resolve_inputs(&child_plan, &given).map_err(|p| {
            Error::Invalid(format!(
                "action `{name}` starts `{}` with inputs that are not valid: {}",
                action.template,
                p.join("; ")
            ))
        })?;
        self.remember_plan(child_plan.clone());
        let new = NewRun {
            tenant: tenant.to_string(),
            plan: child_plan,
            inputs,
            idempotency_key: None,
            base_dir: base_dir.or_else(|| parent.base_dir.clone()),
        };
        let link = RunParent {
            run_id: run_id.to_string(),
            step: None,
            item: None,
            action: Some(name.to_string()),
        };
        let mut tx = self.begin().await?;
        let run = self.insert_run(&mut *tx, &new, None, Some(link)).await?;
        tx.append_events(&[event(
            run_id,
            EventKind::ActionStarted,
            None,
            json!({"action": name, "run": run.id, "template": run.template}),
        )])
        .await?;
        tx.commit().await?;
        self.wake();
        self.store()
            .run(tenant, &run.id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run.id.clone()))
    }
}

fn child_failure(child: &str, status: RunStatus, error: Option<&str>) -> String {
    match status {
        RunStatus::Cancelled => format!("child run {child} was cancelled"),
        _ => format!(
            "child run {child} failed: {}",
            error.unwrap_or("no error recorded")
        ),
    }
}
