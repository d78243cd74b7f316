//! Applying decisions and results inside one transaction.
//!
//! Everything here runs between `Store::begin` and `Tx::commit`: a batch of finished attempts
//! is recorded, the steps they belong to are settled, the orchestrator is asked what comes
//! next, and the next tasks (or the run's end) are written — all or nothing.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use weft_core::Plan;
use weft_core::lifecycle::{EventKind, RunTransition, StepTransition::*};
use weft_core::orchestrator::{self, Decision, Outcome, RunInfo, StepState};
use weft_core::plan::Budget;
use weft_store::usage::TaskUsage;
use weft_store::{
    NewEvent, NewTask, Run, RunStatus, RunUpdate, StepRow, StepStatus, TaskFinish, TaskStatus, Tx,
};

use crate::completion::Completion;
use crate::lifecycle::{
    cancel_rest, end_step, event, finish_step, state_of, transition_run, transition_step,
};
use crate::{Engine, Result};

fn task_event(c: &Completion, kind: EventKind, data: Value) -> NewEvent {
    NewEvent {
        run_id: c.run_id.clone(),
        kind,
        step_id: Some(c.step_id.clone()),
        item: c.item,
        attempt: Some(c.attempt),
        data,
    }
}

/// Canonical JSON (object keys sorted), for cache keys.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// key = hash(tool, tool version, canonical input, tenant).
pub(crate) fn cache_key(tool: &str, version: &str, input: &Value, tenant: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut text = String::new();
    canonical(input, &mut text);
    let mut h = Sha256::new();
    for part in [tool, version, &text, tenant] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

impl Engine {
    /// Records a batch of finished attempts and advances their runs. Returns the runs that
    /// reached a terminal state.
    pub(crate) async fn apply_completions(
        &self,
        tx: &mut dyn Tx,
        batch: Vec<Completion>,
        random01: &mut (dyn FnMut() -> f64 + Send),
    ) -> Result<Vec<String>> {
        // Runs are locked in id order, so two workers never wait on each other in a cycle.
        let mut by_run: std::collections::BTreeMap<String, Vec<Completion>> =
            std::collections::BTreeMap::new();
        for c in batch {
            by_run.entry(c.run_id.clone()).or_default().push(c);
        }
        let mut ended = Vec::new();
        for (run_id, completions) in by_run {
            if let Some(c) = completions.first() {
                self.lock_ancestors(tx, &c.tenant, &run_id).await?;
            }
            let Some(run) = tx.lock_run(&run_id).await? else {
                continue;
            };
            let plan = self.plan_for(&run)?;
            // Spent is spent: usage is recorded whatever becomes of the attempt's result.
            let spent: Vec<TaskUsage> = completions
                .iter()
                .filter(|c| !c.usage.is_empty())
                .map(|c| TaskUsage {
                    task_id: c.task_id,
                    run_id: c.run_id.clone(),
                    llm_prompt_tokens: c.usage.llm_prompt_tokens,
                    llm_completion_tokens: c.usage.llm_completion_tokens,
                    cost_usd: c.usage.cost_usd,
                })
                .collect();
            let spent_any = !spent.is_empty();
            if spent_any {
                tx.record_usage(&spent).await?;
            }
            let mut steps = tx.load_steps(&run_id).await?;
            let mut events = Vec::new();
            let mut settled = false;
            let mut progressed: HashMap<usize, ()> = HashMap::new();
            let mut dirty = vec![false; steps.len()];
            let batched = finish_leading(tx, &run, &steps, &completions).await?;
            for c in completions {
                let Some(sidx) = steps.iter().position(|s| s.step_id == c.step_id) else {
                    continue;
                };
                let run_live = matches!(run.status, RunStatus::Running | RunStatus::Waiting);
                match &c.result {
                    Err(f) if f.transient && c.may_retry() && run_live => {
                        let policy = &plan.steps[sidx].retry;
                        let delay = policy.delay(c.attempt, random01());
                        let at = tx.now() + crate::millis(delay);
                        if tx
                            .retry_task(c.task_id, c.attempt, &c.owner, at, &f.message)
                            .await?
                        {
                            events.push(task_event(
                                &c,
                                EventKind::TaskRetrying,
                                json!({"error": f.message, "reason": f.reason,
                                       "delay_ms": crate::millis(delay),
                                       "next_attempt": c.attempt + 1}),
                            ));
                        }
                        continue;
                    }
                    _ => {}
                }
                let (status, output, error) = match &c.result {
                    Ok(v) => (TaskStatus::Succeeded, Some(v), None),
                    Err(f) => (TaskStatus::Failed, None, Some(f.message.as_str())),
                };
                let fin = TaskFinish {
                    task_id: c.task_id,
                    attempt: c.attempt,
                    owner: &c.owner,
                    status,
                    output,
                    error,
                };
                let finished = if c.owner == crate::waits::NO_LEASE {
                    // A waiting task (an approval's decision, a child run's end).
                    tx.finish_waiting(c.task_id, status, output, error).await?
                } else if let Some(done) = batched.get(&c.task_id) {
                    *done
                } else {
                    tx.finish_task(&fin).await?
                };
                if !finished {
                    tracing::debug!(
                        task = c.task_id,
                        attempt = c.attempt,
                        "Late result refused."
                    );
                    continue;
                }
                match &c.result {
                    Ok(v) => {
                        let succeeded = task_event(
                            &c,
                            EventKind::TaskSucceeded,
                            json!({"duration_ms": c.duration_ms}),
                        );
                        if self.planted(crate::faults::Plant::DoubleCommit) {
                            events.push(succeeded.clone());
                        }
                        events.push(succeeded);
                        if let (Some(key), Some(ttl)) = (&c.cache_key, plan.steps[sidx].cache_ttl) {
                            let expires = tx.now() + crate::millis(ttl);
                            tx.cache_put(key, &c.tenant, v, expires).await?;
                        }
                    }
                    Err(f) => events.push(task_event(
                        &c,
                        EventKind::TaskFailed,
                        json!({"error": f.message, "reason": f.reason,
                               "duration_ms": c.duration_ms, "attempts": c.attempt}),
                    )),
                }
                if !run_live {
                    continue;
                }
                let step = &mut steps[sidx];
                dirty[sidx] = true;
                step.attempts = step.attempts.max(c.attempt);
                if step.items_total.is_none() {
                    match &c.result {
                        Ok(v) => end_step(&mut events, step, Succeed, Some(v.clone()), None),
                        Err(f) => end_step(&mut events, step, Fail, None, Some(f.message.clone())),
                    }
                    settled = true;
                    continue;
                }
                match &c.result {
                    Ok(_) => step.items_done += 1,
                    Err(_) => step.items_failed += 1,
                }
                progressed.insert(sidx, ());
                let continue_on_error = plan.steps[sidx].continue_on_error;
                if let (Err(f), false) = (&c.result, continue_on_error) {
                    let message = format!("item {} failed: {}", c.item.unwrap_or(0), f.message);
                    tx.cancel_tasks(&run_id, Some(&step.step_id)).await?;
                    end_step(&mut events, step, Fail, None, Some(message));
                    settled = true;
                } else if step.items_done + step.items_failed >= step.items_total.unwrap_or(0)
                    && matches!(step.status, StepStatus::Running | StepStatus::Waiting)
                {
                    settle_fan_out(tx, step, &mut events).await?;
                    settled = true;
                }
            }
            for sidx in progressed.keys() {
                let s = &steps[*sidx];
                if s.status.is_terminal() {
                    // Its end event already carries the item count.
                    continue;
                }
                events.push(event(
                    &run_id,
                    EventKind::StepProgress,
                    Some(&s.step_id),
                    json!({"done": s.items_done, "failed": s.items_failed,
                           "total": s.items_total}),
                ));
            }
            for (s, _) in steps.iter().zip(&dirty).filter(|(_, d)| **d) {
                tx.update_step(s).await?;
            }
            tx.append_events(&events).await?;
            // Only what this batch could have changed is checked: tokens and cost move only
            // with reported usage, so a long fan-out without LLM calls pays no sum per turn.
            if matches!(run.status, RunStatus::Running | RunStatus::Waiting)
                && let Some(budget) = &run.budget
                && (spent_any || budget.max_tool_calls.is_some())
                && self.over_budget(tx, &run, budget, &mut steps).await?
            {
                ended.push(run_id);
                continue;
            }
            if settled && self.orchestrate(tx, &run, &plan, steps).await? {
                ended.push(run_id);
            }
        }
        Ok(ended)
    }

    /// Locks the runs above `run_id` (its parent, the parent's parent...), the top one first.
    /// Every path that locks a parent and its child does it in this order (cancelling a run
    /// locks it, then cancels its children; a child's end tells its parent), so a child ending
    /// while its parent is being cancelled never waits in a cycle. Parent links never change,
    /// so they are read from the engine's run cache.
    pub(crate) async fn lock_ancestors(
        &self,
        tx: &mut dyn Tx,
        tenant: &str,
        run_id: &str,
    ) -> Result<()> {
        let mut above = Vec::new();
        let mut at = run_id.to_string();
        while let Some(run) = self.run_for_call(tenant, &at).await?
            && let Some(parent) = &run.parent
            && above.len() < 64
        {
            above.push(parent.run_id.clone());
            at = parent.run_id.clone();
        }
        for id in above.iter().rev() {
            tx.lock_run(id).await?;
        }
        Ok(())
    }

    /// Asks the orchestrator what comes next until it has nothing more to say, applying each
    /// answer. Returns true when the run reached a terminal state.
    pub(crate) async fn orchestrate(
        &self,
        tx: &mut dyn Tx,
        run: &Run,
        plan: &Arc<Plan>,
        mut steps: Vec<StepRow>,
    ) -> Result<bool> {
        let tools = self.tools();
        loop {
            let states: Vec<StepState> = steps.iter().map(state_of).collect();
            let info = RunInfo {
                id: &run.id,
                tenant: &run.tenant,
                inputs: &run.inputs,
            };
            let (decisions, outcome) = orchestrator::advance(plan, info, &states, &**tools);
            if decisions.is_empty() {
                if let Some(outcome) = outcome {
                    self.end_run(tx, run, &mut steps, outcome).await?;
                    return Ok(true);
                }
                crate::waits::mark_waiting(tx, run, &steps).await?;
                return Ok(false);
            }
            let mut events = Vec::new();
            let mut new_tasks = Vec::new();
            let mut dirty = vec![false; steps.len()];
            // Started steps whose tasks wait (approvals, child runs) rather than queue.
            let mut waiting = Vec::new();
            for decision in decisions {
                let (Decision::Skip { step }
                | Decision::Fail { step, .. }
                | Decision::Complete { step, .. }
                | Decision::Start { step, .. }) = &decision;
                dirty[*step] = true;
                match decision {
                    Decision::Skip { step } => {
                        let s = &mut steps[step];
                        if let Some(kind) = finish_step(s, Skip, None, None) {
                            events.push(event(&run.id, kind, Some(&s.step_id), json!({})));
                        }
                    }
                    Decision::Fail { step, error } => {
                        let s = &mut steps[step];
                        end_step(&mut events, s, Fail, None, Some(error));
                    }
                    Decision::Complete { step, output } => {
                        let s = &mut steps[step];
                        s.items_total = Some(0);
                        s.started_at = Some(tx.now());
                        end_step(&mut events, s, Succeed, Some(output), None);
                    }
                    Decision::Start {
                        step,
                        tasks,
                        inline,
                    } => {
                        let spec = &plan.steps[step];
                        let s = &mut steps[step];
                        let started = transition_step(s, Start);
                        s.started_at = Some(tx.now());
                        s.concurrency = spec
                            .for_each
                            .as_ref()
                            .and_then(|f| f.concurrency)
                            .map(|c| c.get());
                        let fan_out = spec.for_each.is_some();
                        if fan_out {
                            s.items_total = Some(tasks.len() as u32);
                        }
                        if let Some(kind) = started {
                            events.push(event(
                                &run.id,
                                kind,
                                Some(&s.step_id),
                                json!({"tool": spec.tool(), "items": s.items_total,
                                       "inline": inline}),
                            ));
                        }
                        // One lookup per step, not per item.
                        let tool = spec.tool().and_then(|name| tools.get(name));
                        let waits = crate::waits::Waits::of(spec);
                        // This step's tasks are `new_tasks[first..]` once the loop has run.
                        let first = new_tasks.len();
                        let mut done_now = 0u32;
                        let mut failed_now = 0u32;
                        let mut first_error = None;
                        for t in tasks {
                            let mut new = NewTask {
                                run_id: run.id.clone(),
                                tenant: run.tenant.clone(),
                                step_id: s.step_id.clone(),
                                item: t.item,
                                tool: t.tool.clone(),
                                input: t.input,
                                max_attempts: spec.retry.max_attempts.get(),
                                not_before: tx.now(),
                                cache_key: None,
                                done: None,
                            };
                            if let (Some(_), Some(tool)) = (spec.cache_ttl, tool.as_ref()) {
                                // A step's `post:` hooks change what is stored: they are part
                                // of the key (none: the key is as it always was).
                                let version = if spec.post.is_empty() {
                                    tool.version().to_string()
                                } else {
                                    format!("{}+post:{}", tool.version(), spec.post.join(","))
                                };
                                let key = cache_key(&t.tool, &version, &new.input, &run.tenant);
                                if let Some(hit) = tx.cache_get(&key).await? {
                                    new.done = Some((TaskStatus::Succeeded, hit, None, true));
                                    s.cache_hits += 1;
                                    events.push(NewEvent {
                                        item: t.item,
                                        ..event(
                                            &run.id,
                                            EventKind::TaskCacheHit,
                                            Some(&s.step_id),
                                            json!({"key": key}),
                                        )
                                    });
                                }
                                new.cache_key = Some(key);
                            }
                            if waits == crate::waits::Waits::Child {
                                new.done = self
                                    .start_child(tx, run, &s.step_id, t.item, &new.input)
                                    .await?;
                            }
                            if new.done.is_none() && inline {
                                new.done = inline_result(tool.as_deref(), &t.tool, &new.input);
                            }
                            if let Some((status, _, error, _)) = &new.done {
                                if *status == TaskStatus::Succeeded {
                                    done_now += 1;
                                } else {
                                    failed_now += 1;
                                    if first_error.is_none() {
                                        first_error = error.clone().map(|e| (t.item, e));
                                    }
                                }
                            }
                            new_tasks.push(new);
                        }
                        s.attempts = 1;
                        let n_tasks = (new_tasks.len() - first) as u32;
                        if waits != crate::waits::Waits::No && done_now + failed_now < n_tasks {
                            waiting.push(step);
                        }
                        // Items answered now (inline or from the cache) count at once, also
                        // when others are queued: the step settles when the counts reach
                        // its total.
                        if fan_out {
                            s.items_done = done_now;
                            s.items_failed = failed_now;
                        }
                        if done_now + failed_now == n_tasks {
                            // Everything was answered now (inline or from the cache).
                            let outputs: Vec<Value> = new_tasks[first..]
                                .iter()
                                .map(|t| t.done.as_ref().map(|d| d.1.clone()).unwrap_or_default())
                                .collect();
                            match first_error {
                                Some((item, e)) => {
                                    let e = match item {
                                        Some(i) if fan_out => format!("item {i} failed: {e}"),
                                        _ => e,
                                    };
                                    let out = fan_out.then(|| Value::Array(outputs));
                                    end_step(&mut events, s, Fail, out, Some(e));
                                }
                                None => {
                                    let out = if fan_out {
                                        Value::Array(outputs)
                                    } else {
                                        outputs.into_iter().next().unwrap_or_default()
                                    };
                                    end_step(&mut events, s, Succeed, Some(out), None);
                                }
                            }
                        }
                    }
                }
            }
            tx.insert_tasks(&new_tasks).await?;
            for step in waiting {
                let items: Vec<(Option<u32>, &Value)> = new_tasks
                    .iter()
                    .filter(|t| t.step_id == steps[step].step_id && t.done.is_none())
                    .map(|t| (t.item, &t.input))
                    .collect();
                crate::waits::hold(tx, &plan.steps[step], &mut steps[step], &items, &mut events)
                    .await?;
            }
            for (s, _) in steps.iter().zip(&dirty).filter(|(_, d)| **d) {
                tx.update_step(s).await?;
            }
            tx.append_events(&events).await?;
        }
    }

    /// Checks a run's usage against its budget, in the transaction that recorded the
    /// attempts. Crossed: a `run.budget_exceeded` event records the usage, and the run fails
    /// (error `budget_exceeded: ...`) like any failed run, its queued and running tasks
    /// cancelled; workers holding them stop at their next lease check, which the wake-up
    /// brings forward in this process. Returns whether the run ended.
    async fn over_budget(
        &self,
        tx: &mut dyn Tx,
        run: &Run,
        budget: &Budget,
        steps: &mut [StepRow],
    ) -> Result<bool> {
        let used = tx.run_usage(&run.id).await?;
        let Some(why) = budget.exceeded(used.llm_tokens(), used.cost_usd, used.tool_calls) else {
            return Ok(false);
        };
        tx.append_events(&[event(
            &run.id,
            EventKind::RunBudgetExceeded,
            None,
            json!({"reason": "budget_exceeded", "message": why, "budget": budget,
                   "usage": {"llm_prompt_tokens": used.llm_prompt_tokens,
                             "llm_completion_tokens": used.llm_completion_tokens,
                             "cost_usd": used.cost_usd, "tool_calls": used.tool_calls}}),
        )])
        .await?;
        let error = format!("budget_exceeded: {why}");
        self.end_run(tx, run, steps, Outcome::Failed(error)).await?;
        self.wake();
        Ok(true)
    }

    async fn end_run(
        &self,
        tx: &mut dyn Tx,
        run: &Run,
        steps: &mut [StepRow],
        outcome: Outcome,
    ) -> Result<()> {
        let (t, output, error) = match outcome {
            Outcome::Succeeded(output) => (RunTransition::Succeed, Some(output), None),
            Outcome::Failed(error) => (RunTransition::Fail, None, Some(error)),
        };
        let (status, kind) = transition_run(&run.id, run.status, t);
        let data = match &error {
            Some(error) => json!({"error": error}),
            None => json!({}),
        };
        let update = RunUpdate {
            status,
            output,
            error,
        };
        if update.status == RunStatus::Failed {
            cancel_rest(tx, &run.id, steps).await?;
        }
        tx.set_run_status(&run.id, &update).await?;
        tx.append_events(&[event(&run.id, kind, None, data)])
            .await?;
        let result = match update.status {
            RunStatus::Succeeded => Ok(update.output.unwrap_or_default()),
            status => Err((status, update.error.unwrap_or_default())),
        };
        self.tell_parent(tx, run, result).await?;
        Ok(())
    }
}

/// Ends, in one store call, the attempts at the head of a run's batch that will simply be
/// recorded (retried ones aside): up to and including the first failure, because a failure
/// may cancel its step's other tasks, and those must then be refused as before. Returns each batched task's answer;
/// the rest go through `finish_task` one by one in the loop.
async fn finish_leading(
    tx: &mut dyn Tx,
    run: &Run,
    steps: &[StepRow],
    completions: &[Completion],
) -> Result<HashMap<i64, bool>> {
    let run_live = matches!(run.status, RunStatus::Running | RunStatus::Waiting);
    let mut fins = Vec::new();
    for c in completions {
        if c.owner == crate::waits::NO_LEASE || !steps.iter().any(|s| s.step_id == c.step_id) {
            continue;
        }
        let (status, output, error) = match &c.result {
            // Retried in the loop, not ended.
            Err(f) if f.transient && c.may_retry() && run_live => continue,
            Ok(v) => (TaskStatus::Succeeded, Some(v), None),
            Err(f) => (TaskStatus::Failed, None, Some(f.message.as_str())),
        };
        fins.push(TaskFinish {
            task_id: c.task_id,
            attempt: c.attempt,
            owner: &c.owner,
            status,
            output,
            error,
        });
        if c.result.is_err() {
            break;
        }
    }
    if fins.len() < 2 {
        return Ok(HashMap::new());
    }
    let done = tx.finish_tasks(&fins).await?;
    Ok(fins.iter().map(|f| f.task_id).zip(done).collect())
}

/// Ends a fan-out whose items have all ended: its output is every item's, in order; it fails
/// with the first item that did not succeed.
async fn settle_fan_out(
    tx: &mut dyn Tx,
    step: &mut StepRow,
    events: &mut Vec<NewEvent>,
) -> Result<()> {
    let results = tx.item_results(&step.run_id, &step.step_id).await?;
    let mut outputs = Vec::with_capacity(results.len());
    let mut first_error = None;
    for r in results {
        if r.status != TaskStatus::Succeeded && first_error.is_none() {
            first_error = Some(format!(
                "item {} failed: {}",
                r.item,
                r.error.as_deref().unwrap_or("cancelled")
            ));
        }
        outputs.push(r.output.unwrap_or(Value::Null));
    }
    let t = if first_error.is_some() { Fail } else { Succeed };
    end_step(events, step, t, Some(Value::Array(outputs)), first_error);
    Ok(())
}

/// A pure tool's answer, computed inside the transaction. `None` when the tool evaluates out
/// of process (a server's sandboxed `transform` and `render`, see `weft_tools::eval`): its task
/// is queued like any other. An output too deep to read back fails the task.
fn inline_result(
    tool: Option<&dyn weft_tools::Tool>,
    name: &str,
    input: &Value,
) -> Option<(TaskStatus, Value, Option<String>, bool)> {
    let result = match tool.map(|tool| tool.call_pure(input)) {
        Some(Some(r)) => r
            .map_err(|e| e.to_string())
            .and_then(|v| weft_core::limits::check_json_depth(&v, "the step's output").map(|()| v)),
        Some(None) => return None,
        None => Err(format!("tool `{name}` cannot run inline")),
    };
    Some(match result {
        Ok(v) => (TaskStatus::Succeeded, v, None, false),
        Err(e) => (TaskStatus::Failed, Value::Null, Some(e), false),
    })
}
