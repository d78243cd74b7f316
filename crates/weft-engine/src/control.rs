//! Creating, cancelling and resuming runs: each one transaction, acknowledged after commit.

use std::sync::Arc;

use serde_json::{Value, json};
use weft_core::Plan;
use weft_core::lifecycle::{EventKind, RunTransition, StepTransition};
use weft_core::plan::{Budget, StepKind};
use weft_store::{Run, RunStatus, RunUpdate, StepRow, StepStatus, TaskStatus};

use crate::lifecycle::event;
use crate::{Engine, Error, Result};

/// What it takes to start a run.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub tenant: String,
    pub plan: Arc<Plan>,
    /// Already resolved against the plan's inputs (`weft_core::inputs::resolve_inputs`).
    pub inputs: Value,
    pub idempotency_key: Option<String>,
    /// The folder the template came from (`command` runs there by default).
    pub base_dir: Option<String>,
}

/// What a run request may add to the template (`weft run --budget-...`, the API's `budget`).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Limits over the template's `budget:` (each one given replaces the template's).
    pub budget: Option<Budget>,
}

impl Engine {
    /// Records a new run and queues its first tasks, in one transaction. With an idempotency
    /// key already used for the same request, returns that run instead.
    pub async fn create_run(&self, new: NewRun) -> Result<Run> {
        self.create_run_with(new, RunOptions::default()).await
    }

    /// [`Engine::create_run`] with a request's own options. The tenant's runs-per-hour quota
    /// is counted in the same transaction that inserts the run, so it holds across processes.
    pub async fn create_run_with(&self, new: NewRun, options: RunOptions) -> Result<Run> {
        Ok(self.create_or_replay(new, options).await?.0)
    }

    /// [`Engine::create_run_with`], saying whether the run is new (`true`) or the replay of an
    /// earlier request with the same idempotency key (`false`), so a caller records its
    /// creation once.
    pub async fn create_or_replay(
        &self,
        mut new: NewRun,
        options: RunOptions,
    ) -> Result<(Run, bool)> {
        self.remember_plan(new.plan.clone());
        let request_digest = request_digest(&new, options.budget.as_ref());
        if let Some(budget) = &options.budget {
            // The run's own copy of the plan carries the budget it is held to; the shared,
            // remembered plan keeps the template's.
            let mut plan = (*new.plan).clone();
            plan.budget = plan.budget.overridden_by(budget);
            new.plan = Arc::new(plan);
        }
        let mut tx = self.begin().await?;
        if let Some(key) = &new.idempotency_key
            && let Some(existing) = tx.run_by_idempotency_key(&new.tenant, key).await?
        {
            if existing.request_digest.as_deref() != Some(&request_digest) {
                return Err(Error::IdempotencyConflict(key.clone()));
            }
            return Ok((existing, false));
        }
        Ok((self.admit_and_insert(tx, &new, request_digest).await?, true))
    }

    /// The end of every run creation: the tenant's runs-per-hour quota, counted in the
    /// transaction that inserts the run (so it holds across processes), the commit, a wake-up
    /// for the workers, and the run as stored.
    pub(crate) async fn admit_and_insert(
        &self,
        mut tx: Box<dyn weft_store::Tx>,
        new: &NewRun,
        request_digest: String,
    ) -> Result<Run> {
        if let Some(refusal) = tx.admit_run(&new.tenant).await? {
            return Err(Error::QuotaExceeded {
                max_runs_per_hour: refusal.max_runs_per_hour,
                retry_after_ms: refusal.retry_after_ms,
            });
        }
        let run = self
            .insert_run(&mut *tx, new, Some(request_digest), None)
            .await?;
        tx.commit().await?;
        self.wake();
        self.store()
            .run(&run.tenant, &run.id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run.id.clone()))
    }

    /// Records a new run (a top-level one, or a child with its `parent` link), its steps and
    /// `run.started`, and applies the orchestrator's first decisions; all in `tx`.
    pub(crate) async fn insert_run(
        &self,
        tx: &mut dyn weft_store::Tx,
        new: &NewRun,
        request_digest: Option<String>,
        parent: Option<weft_store::RunParent>,
    ) -> Result<Run> {
        let now = tx.now();
        let plan = &new.plan;
        let run = Run {
            id: format!("run_{}", ulid::Ulid::new().to_string().to_lowercase()),
            tenant: new.tenant.clone(),
            template: plan.name.clone(),
            version: plan.version.clone(),
            digest: plan.digest.clone(),
            source: plan.source.clone(),
            files: serde_json::to_value(&plan.files).unwrap_or(Value::Null),
            file: plan.file.clone(),
            base_dir: new.base_dir.clone(),
            inputs: new.inputs.clone(),
            status: RunStatus::Running,
            output: None,
            error: None,
            idempotency_key: new.idempotency_key.clone(),
            request_digest,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            updated_at: now,
            budget: Some(plan.budget).filter(|b| !b.is_empty()),
            parent,
        };
        tx.insert_run(&run).await?;
        let steps: Vec<StepRow> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // Approval and workflow steps show (and are counted) as those pseudo-tools.
                let tool = s.tool().or(match s.kind {
                    StepKind::Approval(_) => Some(weft_core::orchestrator::APPROVAL_TOOL),
                    StepKind::Workflow(_) => Some(weft_core::orchestrator::WORKFLOW_TOOL),
                    StepKind::Tool(_) => None,
                });
                StepRow::new(&run.id, &s.id, i as u32, tool)
            })
            .collect();
        tx.insert_steps(&steps).await?;
        let mut started = json!({"template": plan.name, "version": plan.version,
               "steps": plan.steps.iter().map(|s| &s.id).collect::<Vec<_>>()});
        if let Some(p) = &run.parent {
            started["parent"] = serde_json::to_value(p).unwrap_or(Value::Null);
        }
        tx.append_events(&[event(&run.id, EventKind::RunStarted, None, started)])
            .await?;
        self.orchestrate(tx, &run, plan, steps).await?;
        Ok(run)
    }

    /// Cancels a run: queued tasks never start, running ones are told to stop, waiting
    /// approvals are withdrawn, child runs of its `workflow:` steps are cancelled too, and the
    /// run ends `cancelled`. Cancelling an ended run changes nothing.
    pub async fn cancel_run(&self, tenant: &str, run_id: &str) -> Result<Run> {
        let mut tx = self.begin().await?;
        // Parents before children, as everywhere (see `lock_ancestors`).
        self.lock_ancestors(&mut *tx, tenant, run_id).await?;
        let run = tx
            .lock_run(run_id)
            .await?
            .filter(|r| r.tenant == tenant)
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        if !run.status.is_terminal() {
            self.cancel_in(&mut *tx, run).await?;
            tx.commit().await?;
            self.wake();
        }
        self.store()
            .run(tenant, run_id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))
    }

    /// Resumes a run: a failed or cancelled run re-runs only what did not succeed; a running
    /// run whose worker died gets that worker's tasks back (`dead_owners`).
    pub async fn resume_run(
        &self,
        tenant: &str,
        run_id: &str,
        dead_owners: &[String],
    ) -> Result<Run> {
        let mut tx = self.begin().await?;
        // Parents before children, as everywhere (see `lock_ancestors`).
        self.lock_ancestors(&mut *tx, tenant, run_id).await?;
        let run = tx
            .lock_run(run_id)
            .await?
            .filter(|r| r.tenant == tenant)
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        // The lifecycle says what a resume may reopen: never a success.
        let (resumed_status, resumed) = run.status.apply(RunTransition::Resume).map_err(|_| {
            Error::Invalid(format!(
                "run `{run_id}` already succeeded; there is nothing to resume"
            ))
        })?;
        let plan = self.plan_for(&run)?;
        let mut events = Vec::new();
        // Tasks held by a worker that is gone come back as their next attempt.
        self.reclaim_lost(&mut *tx, dead_owners, Some(&[run_id.to_string()]))
            .await?;
        let mut steps = tx.load_steps(run_id).await?;
        let mut rewaited = Vec::new();
        if run.status.resume_reopens() {
            for s in steps.iter_mut() {
                if matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped) {
                    continue;
                }
                let requeued = tx.requeue_unfinished(run_id, &s.step_id).await?;
                // An approval asks again; a workflow step starts its unfinished items' child
                // runs again. Neither ever waits in the queue.
                let kind = plan.step_index(&s.step_id).map(|i| &plan.steps[i].kind);
                let waits = matches!(kind, Some(StepKind::Approval(_) | StepKind::Workflow(_)));
                if waits && requeued > 0 {
                    rewaited.push(s.step_id.clone());
                }
                let results = tx.item_results(run_id, &s.step_id).await?;
                s.error = None;
                s.finished_at = None;
                if requeued > 0 || results.iter().any(|r| r.status == TaskStatus::Queued) {
                    crate::lifecycle::transition_step(s, StepTransition::Reopen);
                    s.items_done = results
                        .iter()
                        .filter(|r| r.status == TaskStatus::Succeeded)
                        .count() as u32;
                    s.items_failed = 0;
                } else {
                    crate::lifecycle::transition_step(s, StepTransition::Reset);
                    s.items_total = None;
                    s.items_done = 0;
                    s.items_failed = 0;
                }
                tx.update_step(s).await?;
            }
            tx.set_run_status(
                run_id,
                &RunUpdate {
                    status: resumed_status,
                    output: None,
                    error: None,
                },
            )
            .await?;
        }
        events.push(event(run_id, resumed, None, json!({})));
        tx.append_events(&events).await?;
        let run = tx.lock_run(run_id).await?.unwrap_or(run);
        if !rewaited.is_empty() {
            self.rewait(&mut *tx, &run, &plan, &mut steps, &rewaited)
                .await?;
        }
        self.orchestrate(&mut *tx, &run, &plan, steps).await?;
        tx.commit().await?;
        self.wake();
        self.store()
            .run(tenant, run_id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))
    }
}

/// What makes two creation requests the same request (for idempotency keys): the template's
/// digest, the inputs and the budget asked for.
pub(crate) fn request_digest(new: &NewRun, budget: Option<&Budget>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(new.plan.digest.as_bytes());
    h.update(new.inputs.to_string().as_bytes());
    if let Some(budget) = budget {
        h.update(serde_json::to_string(budget).unwrap_or_default().as_bytes());
    }
    hex::encode(h.finalize())
}
