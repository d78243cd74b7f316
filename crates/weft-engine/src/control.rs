//! Creating, cancelling and resuming runs: each one transaction, acknowledged after commit.

use std::sync::Arc;

use serde_json::{Value, json};
use weft_core::Plan;
use weft_core::plan::StepKind;
use weft_store::{Run, RunStatus, RunUpdate, StepRow, StepStatus, TaskStatus};

use crate::apply::{cancel_rest, event};
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

fn refuse_unsupported(plan: &Plan) -> Result<()> {
    for step in &plan.steps {
        let what = match &step.kind {
            StepKind::Approval(_) => Some("`approval:` steps"),
            StepKind::Workflow(_) => Some("`workflow:` steps"),
            StepKind::Tool(_) if step.token.is_some() => Some("`token:` settings"),
            StepKind::Tool(_) => None,
        };
        if let Some(what) = what {
            return Err(Error::Invalid(format!(
                "{}:{}:{}: WEFT-E013: step `{}` uses {what}, which validate but cannot run \
                 yet in this version of weft",
                plan.file, step.line, step.col, step.id
            )));
        }
    }
    Ok(())
}

impl Engine {
    /// Records a new run and queues its first tasks, in one transaction. With an idempotency
    /// key already used for the same request, returns that run instead.
    pub async fn create_run(&self, new: NewRun) -> Result<Run> {
        refuse_unsupported(&new.plan)?;
        self.remember_plan(new.plan.clone());
        let request_digest = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(new.plan.digest.as_bytes());
            h.update(new.inputs.to_string().as_bytes());
            hex::encode(h.finalize())
        };
        let mut tx = self.store().begin().await?;
        if let Some(key) = &new.idempotency_key
            && let Some(existing) = tx.run_by_idempotency_key(&new.tenant, key).await?
        {
            if existing.request_digest.as_deref() != Some(&request_digest) {
                return Err(Error::IdempotencyConflict(key.clone()));
            }
            return Ok(existing);
        }
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
            request_digest: Some(request_digest),
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            updated_at: now,
        };
        tx.insert_run(&run).await?;
        let steps: Vec<StepRow> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepRow::new(&run.id, &s.id, i as u32, s.tool()))
            .collect();
        tx.insert_steps(&steps).await?;
        tx.append_events(&[event(
            &run.id,
            "run.started",
            None,
            json!({"template": plan.name, "version": plan.version,
                   "steps": plan.steps.iter().map(|s| &s.id).collect::<Vec<_>>()}),
        )])
        .await?;
        self.orchestrate(&mut *tx, &run, plan, steps).await?;
        tx.commit().await?;
        self.wake();
        self.store()
            .run(&run.tenant, &run.id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run.id.clone()))
    }

    /// Cancels a run: queued tasks never start, running ones are told to stop, and the run
    /// ends `cancelled`. Cancelling an ended run changes nothing.
    pub async fn cancel_run(&self, tenant: &str, run_id: &str) -> Result<Run> {
        let mut tx = self.store().begin().await?;
        let run = tx
            .lock_run(run_id)
            .await?
            .filter(|r| r.tenant == tenant)
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        if !run.status.is_terminal() {
            let mut steps = tx.load_steps(run_id).await?;
            cancel_rest(&mut *tx, run_id, &mut steps).await?;
            tx.set_run_status(
                run_id,
                &RunUpdate {
                    status: RunStatus::Cancelled,
                    output: None,
                    error: Some("cancelled".into()),
                },
            )
            .await?;
            tx.append_events(&[event(run_id, "run.cancelled", None, json!({}))])
                .await?;
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
        let mut tx = self.store().begin().await?;
        let run = tx
            .lock_run(run_id)
            .await?
            .filter(|r| r.tenant == tenant)
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        if run.status == RunStatus::Succeeded {
            return Err(Error::Invalid(format!(
                "run `{run_id}` already succeeded; there is nothing to resume"
            )));
        }
        let plan = self.plan_for(&run)?;
        let mut events = Vec::new();
        // Tasks held by a worker that is gone come back as their next attempt.
        let stale = tx.stale_tasks(dead_owners, u32::MAX).await?;
        for t in stale.iter().filter(|t| t.run_id == run_id) {
            if tx.reclaim_task(t.id, t.attempt).await? {
                events.push(weft_store::NewEvent {
                    item: t.item,
                    attempt: Some(t.attempt + 1),
                    ..event(
                        run_id,
                        "task.retrying",
                        Some(&t.step_id),
                        json!({"reason": "lease_expired", "next_attempt": t.attempt + 1,
                               "error": "the worker holding this task stopped", "delay_ms": 0}),
                    )
                });
            }
        }
        let mut steps = tx.load_steps(run_id).await?;
        if run.status != RunStatus::Running {
            for s in steps.iter_mut() {
                if matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped) {
                    continue;
                }
                let requeued = tx.requeue_unfinished(run_id, &s.step_id).await?;
                let results = tx.item_results(run_id, &s.step_id).await?;
                s.error = None;
                s.finished_at = None;
                if requeued > 0 || results.iter().any(|r| r.status == TaskStatus::Queued) {
                    s.status = StepStatus::Running;
                    s.items_done = results
                        .iter()
                        .filter(|r| r.status == TaskStatus::Succeeded)
                        .count() as u32;
                    s.items_failed = 0;
                } else {
                    s.status = StepStatus::Pending;
                    s.items_total = None;
                    s.items_done = 0;
                    s.items_failed = 0;
                }
                tx.update_step(s).await?;
            }
            tx.set_run_status(
                run_id,
                &RunUpdate {
                    status: RunStatus::Running,
                    output: None,
                    error: None,
                },
            )
            .await?;
        }
        events.push(event(run_id, "run.resumed", None, json!({})));
        tx.append_events(&events).await?;
        let run = tx.lock_run(run_id).await?.unwrap_or(run);
        self.orchestrate(&mut *tx, &run, &plan, steps).await?;
        tx.commit().await?;
        self.wake();
        self.store()
            .run(tenant, run_id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))
    }
}
