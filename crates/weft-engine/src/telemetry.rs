//! Metrics and workflow log lines, taken from what the engine commits.
//!
//! The engine's store handle is wrapped in [`Observed`]: every transaction it begins notes the
//! runs, steps and events it writes, and only once `commit` succeeds does it count them and log
//! them. A rolled-back or refused transaction (a fenced late result, a lost race) therefore
//! leaves no trace in `/metrics` or in the logs, and nothing in `apply.rs` or `worker.rs` has to
//! remember to count. Metrics go through the `metrics` facade (a no-op until the serving
//! process installs an exporter); log lines go through `tracing`.
//!
//! Labels are bounded: template, step, tool, status, reason, operation — never a run id. Log
//! lines carry ids but never a run's inputs or a step's output.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use weft_store::*;

/// Metric names, in one place so tests, dashboards and alert rules agree.
pub mod names {
    pub const RUNS_STARTED: &str = "weft_runs_started_total";
    pub const RUNS_FINISHED: &str = "weft_runs_finished_total";
    pub const RUN_DURATION: &str = "weft_run_duration_seconds";
    pub const STEPS_FINISHED: &str = "weft_steps_finished_total";
    pub const STEP_DURATION: &str = "weft_step_duration_seconds";
    pub const STEP_FAILURES: &str = "weft_step_failures_total";
    pub const TASK_CLAIMS: &str = "weft_task_claims_total";
    pub const TASK_RETRIES: &str = "weft_task_retries_total";
    pub const TOOL_DURATION: &str = "weft_tool_call_duration_seconds";
    pub const LEASE_RECLAIMS: &str = "weft_lease_reclaims_total";
    pub const CACHE_HITS: &str = "weft_cache_hits_total";
    pub const CACHE_MISSES: &str = "weft_cache_misses_total";
    pub const STORE_DURATION: &str = "weft_store_operation_duration_seconds";
    pub const LLM_TOKENS: &str = "weft_llm_tokens_total";
    pub const TOKENS_MINTED: &str = "weft_task_tokens_minted_total";
    /// Counted by the task callback API (weft-server), described here with the rest.
    pub const TOKEN_REFUSALS: &str = "weft_task_token_refusals_total";
}

/// Describes the engine's metrics to the installed recorder (call once it is installed).
pub fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(names::RUNS_STARTED, "Runs started, by template.");
    describe_counter!(
        names::RUNS_FINISHED,
        "Runs that ended, by template and status (succeeded, failed, cancelled)."
    );
    describe_histogram!(
        names::RUN_DURATION,
        metrics::Unit::Seconds,
        "Run durations, start to end, by template and status."
    );
    describe_counter!(
        names::STEPS_FINISHED,
        "Steps that ended, by template, step and status."
    );
    describe_histogram!(
        names::STEP_DURATION,
        metrics::Unit::Seconds,
        "Step durations, by template, step and status."
    );
    describe_counter!(
        names::STEP_FAILURES,
        "Steps that failed (after their retries), by template and step."
    );
    describe_counter!(
        names::TASK_CLAIMS,
        "Task attempts leased to a worker, by tool."
    );
    describe_counter!(
        names::TASK_RETRIES,
        "Task attempts put back in the queue, by tool and reason (error, timeout, lease_expired, shutdown)."
    );
    describe_histogram!(
        names::TOOL_DURATION,
        metrics::Unit::Seconds,
        "Tool call durations per attempt, by tool and outcome."
    );
    describe_counter!(
        names::LEASE_RECLAIMS,
        "Tasks taken back from a worker whose lease expired (or that died)."
    );
    describe_counter!(names::CACHE_HITS, "Step cache lookups that found a result.");
    describe_counter!(
        names::CACHE_MISSES,
        "Step cache lookups that found nothing."
    );
    describe_counter!(
        names::LLM_TOKENS,
        "LLM tokens the run's tools reported, by template and kind (prompt, completion)."
    );
    describe_counter!(
        names::TOKENS_MINTED,
        "Task tokens minted (one per attempt that gets a credential)."
    );
    describe_counter!(
        names::TOKEN_REFUSALS,
        "Requests to the task callback API refused (missing, malformed, unknown, expired, revoked, superseded or out-of-scope token)."
    );
    describe_histogram!(
        names::STORE_DURATION,
        metrics::Unit::Seconds,
        "Store operation latency, by operation (begin, commit, claim, reads)."
    );
}

/// The status an end event names, as a label (`run.failed` -> `failed`).
fn terminal(kind: &str) -> &'static str {
    match kind.rsplit('.').next() {
        Some("succeeded") => "succeeded",
        Some("failed") => "failed",
        Some("cancelled") => "cancelled",
        Some("skipped") => "skipped",
        _ => "other",
    }
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

fn timed(operation: &'static str, started: Instant) {
    metrics::histogram!(names::STORE_DURATION, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
}

/// A store whose transactions report what they committed.
pub(crate) struct Observed {
    inner: Arc<dyn Store>,
    /// Crash tests only (`faults.rs`).
    faults: Option<Arc<crate::faults::Crash>>,
}

impl Observed {
    pub(crate) fn wrap(
        inner: Arc<dyn Store>,
        faults: Option<Arc<crate::faults::Crash>>,
    ) -> Arc<dyn Store> {
        Arc::new(Observed { inner, faults })
    }
}

#[async_trait]
impl Store for Observed {
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        if let Some(f) = &self.faults {
            f.begin()?;
        }
        let started = Instant::now();
        let tx = self.inner.begin().await;
        timed("begin", started);
        Ok(Box::new(ObservedTx {
            inner: tx?,
            seen: Seen::default(),
            faults: self.faults.clone(),
        }))
    }
    async fn run(&self, tenant: &str, id: &str) -> Result<Option<Run>> {
        let started = Instant::now();
        let out = self.inner.run(tenant, id).await;
        timed("read_run", started);
        out
    }
    async fn runs(&self, query: &RunQuery) -> Result<Vec<Run>> {
        let started = Instant::now();
        let out = self.inner.runs(query).await;
        timed("list_runs", started);
        out
    }
    async fn steps(&self, run_id: &str) -> Result<Vec<StepRow>> {
        let started = Instant::now();
        let out = self.inner.steps(run_id).await;
        timed("read_steps", started);
        out
    }
    async fn tasks(&self, run_id: &str) -> Result<Vec<Task>> {
        self.inner.tasks(run_id).await
    }
    async fn child_runs(&self, run_id: &str) -> Result<Vec<Run>> {
        self.inner.child_runs(run_id).await
    }
    async fn events(&self, run_id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        let started = Instant::now();
        let out = self.inner.events(run_id, after, limit).await;
        timed("read_events", started);
        out
    }
    async fn now(&self) -> Result<i64> {
        self.inner.now().await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        self.inner.wait_for_work(timeout).await
    }
    async fn queue_status(&self) -> Result<QueueStatus> {
        let started = Instant::now();
        let out = self.inner.queue_status().await;
        timed("queue_status", started);
        out
    }
    async fn schema_status(&self) -> Result<SchemaStatus> {
        self.inner.schema_status().await
    }
    async fn run_usage(&self, run_id: &str) -> Result<usage::RunUsage> {
        self.inner.run_usage(run_id).await
    }
    async fn usage(&self, query: &usage::UsageQuery) -> Result<Vec<usage::UsageRow>> {
        let started = Instant::now();
        let out = self.inner.usage(query).await;
        timed("usage", started);
        out
    }
    async fn tenant_quota(&self, tenant: &str) -> Result<usage::TenantQuota> {
        self.inner.tenant_quota(tenant).await
    }
    async fn set_tenant_quota(&self, tenant: &str, quota: &usage::TenantQuota) -> Result<()> {
        self.inner.set_tenant_quota(tenant, quota).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn register_worker(&self, worker: &weft_store::workers::WorkerInfo) -> Result<()> {
        self.inner.register_worker(worker).await
    }
    async fn heartbeat_worker(&self, id: &str) -> Result<bool> {
        self.inner.heartbeat_worker(id).await
    }
    async fn deregister_worker(&self, id: &str) -> Result<()> {
        self.inner.deregister_worker(id).await
    }
    async fn workers(&self) -> Result<weft_store::workers::WorkersStatus> {
        self.inner.workers().await
    }
}

/// What a transaction wrote that telemetry cares about, kept until it commits.
#[derive(Default)]
struct Seen {
    /// Run id -> (template, when it started): from the runs the transaction inserted or locked.
    runs: HashMap<String, (String, Option<i64>)>,
    /// Run id -> tenant, for the run's trace span.
    tenants: HashMap<String, String>,
    /// (run id, step id) -> tool.
    tools: HashMap<(String, String), String>,
    events: Vec<NewEvent>,
    claimed: Vec<String>,
    reclaims: u64,
    tokens_minted: u64,
    cache_hits: u64,
    cache_misses: u64,
    /// (run id, prompt tokens, completion tokens) recorded for tasks.
    llm_tokens: Vec<(String, u64, u64)>,
}

impl Seen {
    fn note_steps(&mut self, steps: &[StepRow]) {
        for s in steps {
            if let Some(tool) = &s.tool {
                self.tools
                    .insert((s.run_id.clone(), s.step_id.clone()), tool.clone());
            }
        }
    }

    fn template(&self, run_id: &str) -> &str {
        self.runs
            .get(run_id)
            .map(|(t, _)| t.as_str())
            .unwrap_or("unknown")
    }

    fn tool(&self, run_id: &str, step_id: Option<&str>) -> &str {
        step_id
            .and_then(|s| self.tools.get(&(run_id.to_string(), s.to_string())))
            .map(String::as_str)
            .unwrap_or("unknown")
    }

    /// Counts and logs everything the transaction committed.
    fn emit(self, now: i64) {
        for tool in &self.claimed {
            metrics::counter!(names::TASK_CLAIMS, "tool" => tool.clone()).increment(1);
        }
        if self.reclaims > 0 {
            metrics::counter!(names::LEASE_RECLAIMS).increment(self.reclaims);
        }
        if self.tokens_minted > 0 {
            metrics::counter!(names::TOKENS_MINTED).increment(self.tokens_minted);
        }
        if self.cache_hits > 0 {
            metrics::counter!(names::CACHE_HITS).increment(self.cache_hits);
        }
        if self.cache_misses > 0 {
            metrics::counter!(names::CACHE_MISSES).increment(self.cache_misses);
        }
        for (run_id, prompt, completion) in &self.llm_tokens {
            let template = self.template(run_id).to_string();
            for (kind, n) in [("prompt", *prompt), ("completion", *completion)] {
                if n > 0 {
                    metrics::counter!(names::LLM_TOKENS, "template" => template.clone(), "kind" => kind)
                        .increment(n);
                }
            }
        }
        for e in &self.events {
            self.emit_event(e, now);
        }
    }

    fn emit_event(&self, e: &NewEvent, now: i64) {
        let run_id = e.run_id.as_str();
        let template = self.template(run_id).to_string();
        let step = e.step_id.as_deref().unwrap_or("");
        let int = |key: &str| e.data.get(key).and_then(Value::as_i64);
        match e.kind.as_str() {
            "run.started" | "run.resumed" => {
                let resumed = e.kind == "run.resumed";
                if !resumed {
                    metrics::counter!(names::RUNS_STARTED, "template" => template.clone())
                        .increment(1);
                }
                tracing::info!(run_id, template, resumed, "[WORKFLOW] start");
            }
            "run.succeeded" | "run.failed" | "run.cancelled" => {
                let status = terminal(&e.kind);
                let started = self.runs.get(run_id).and_then(|(_, s)| *s);
                metrics::counter!(names::RUNS_FINISHED, "template" => template.clone(), "status" => status)
                    .increment(1);
                let duration_ms = started.map(|s| (now - s).max(0));
                if let Some(ms) = duration_ms {
                    metrics::histogram!(names::RUN_DURATION, "template" => template.clone(), "status" => status)
                        .record(seconds(ms));
                }
                if let Some(start_ms) = started
                    && crate::spans::enabled()
                {
                    crate::spans::record(crate::spans::SpanRecord {
                        kind: crate::spans::SpanKind::Run,
                        run_id: run_id.to_string(),
                        tenant: self.tenants.get(run_id).cloned().unwrap_or_default(),
                        template: template.clone(),
                        step_id: None,
                        item: None,
                        attempt: None,
                        tool: None,
                        start_ms,
                        end_ms: now.max(start_ms),
                        error: e
                            .data
                            .get("error")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        status: status.to_string(),
                    });
                }
                let duration_ms = duration_ms.unwrap_or(-1);
                match status {
                    "succeeded" => {
                        tracing::info!(run_id, template, status, duration_ms, "[WORKFLOW] complete")
                    }
                    // The error is the step's message, not its input: an operator needs it.
                    _ => {
                        let error = e.data.get("error").and_then(Value::as_str).unwrap_or("");
                        tracing::warn!(
                            run_id,
                            template,
                            status,
                            duration_ms,
                            error,
                            "[WORKFLOW] fail"
                        )
                    }
                }
            }
            "step.succeeded" | "step.failed" | "step.cancelled" | "step.skipped" => {
                let status = terminal(&e.kind);
                let attempt = int("attempts").unwrap_or(0);
                let duration_ms = int("duration_ms");
                let tool = self.tool(run_id, e.step_id.as_deref()).to_string();
                metrics::counter!(names::STEPS_FINISHED, "template" => template.clone(), "step" => step.to_string(), "status" => status)
                    .increment(1);
                if status == "failed" {
                    metrics::counter!(names::STEP_FAILURES, "template" => template.clone(), "step" => step.to_string())
                        .increment(1);
                }
                if let Some(ms) = duration_ms {
                    metrics::histogram!(names::STEP_DURATION, "template" => template.clone(), "step" => step.to_string(), "status" => status)
                        .record(seconds(ms));
                }
                let duration_ms = duration_ms.unwrap_or(-1);
                let cache_hits = int("cache_hits").unwrap_or(0);
                if status == "failed" {
                    let error = e.data.get("error").and_then(Value::as_str).unwrap_or("");
                    tracing::warn!(
                        run_id,
                        template,
                        step,
                        tool,
                        status,
                        attempt,
                        duration_ms,
                        error,
                        "[WORKFLOW] step"
                    );
                } else {
                    tracing::info!(
                        run_id,
                        template,
                        step,
                        tool,
                        status,
                        attempt,
                        duration_ms,
                        cache_hits,
                        "[WORKFLOW] step"
                    );
                }
            }
            "task.retrying" => {
                let tool = self.tool(run_id, e.step_id.as_deref()).to_string();
                let reason: &'static str = match e.data.get("reason").and_then(Value::as_str) {
                    Some("error") => "error",
                    Some("timeout") => "timeout",
                    Some("lease_expired") => "lease_expired",
                    Some("shutdown") => "shutdown",
                    _ => "other",
                };
                metrics::counter!(names::TASK_RETRIES, "tool" => tool.clone(), "reason" => reason)
                    .increment(1);
                let attempt = e.attempt.unwrap_or(0);
                let item = e.item.map(i64::from).unwrap_or(-1);
                tracing::info!(
                    run_id,
                    template,
                    step,
                    tool,
                    attempt,
                    item,
                    reason,
                    "Task retrying."
                );
            }
            "task.succeeded" | "task.failed" => {
                if let Some(ms) = int("duration_ms") {
                    let tool = self.tool(run_id, e.step_id.as_deref()).to_string();
                    let outcome = terminal(&e.kind);
                    metrics::histogram!(names::TOOL_DURATION, "tool" => tool, "outcome" => outcome)
                        .record(seconds(ms));
                }
            }
            _ => {}
        }
    }
}

struct ObservedTx {
    inner: Box<dyn Tx>,
    seen: Seen,
    faults: Option<Arc<crate::faults::Crash>>,
}

#[async_trait]
impl Tx for ObservedTx {
    fn now(&self) -> i64 {
        self.inner.now()
    }
    async fn insert_run(&mut self, run: &Run) -> Result<()> {
        self.inner.insert_run(run).await?;
        let started = run.started_at.or(Some(run.created_at));
        self.seen
            .runs
            .insert(run.id.clone(), (run.template.clone(), started));
        self.seen.tenants.insert(run.id.clone(), run.tenant.clone());
        Ok(())
    }
    async fn run_by_idempotency_key(&mut self, tenant: &str, key: &str) -> Result<Option<Run>> {
        self.inner.run_by_idempotency_key(tenant, key).await
    }
    async fn lock_run(&mut self, run_id: &str) -> Result<Option<Run>> {
        let started = Instant::now();
        let run = self.inner.lock_run(run_id).await?;
        timed("lock_run", started);
        if let Some(run) = &run {
            let since = run.started_at.or(Some(run.created_at));
            self.seen
                .runs
                .insert(run.id.clone(), (run.template.clone(), since));
            self.seen.tenants.insert(run.id.clone(), run.tenant.clone());
        }
        Ok(run)
    }
    async fn set_run_status(&mut self, run_id: &str, update: &RunUpdate) -> Result<()> {
        self.inner.set_run_status(run_id, update).await
    }
    async fn insert_steps(&mut self, steps: &[StepRow]) -> Result<()> {
        self.inner.insert_steps(steps).await?;
        self.seen.note_steps(steps);
        Ok(())
    }
    async fn load_steps(&mut self, run_id: &str) -> Result<Vec<StepRow>> {
        let steps = self.inner.load_steps(run_id).await?;
        self.seen.note_steps(&steps);
        Ok(steps)
    }
    async fn update_step(&mut self, step: &StepRow) -> Result<()> {
        self.inner.update_step(step).await
    }
    async fn count_items(
        &mut self,
        run_id: &str,
        step_id: &str,
        done: i64,
        failed: i64,
    ) -> Result<()> {
        self.inner.count_items(run_id, step_id, done, failed).await
    }
    async fn insert_tasks(&mut self, tasks: &[NewTask]) -> Result<()> {
        self.inner.insert_tasks(tasks).await
    }
    async fn claim(
        &mut self,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        only_runs: Option<&[String]>,
        max_running: Option<u32>,
    ) -> Result<Vec<Task>> {
        let started = Instant::now();
        let tasks = self
            .inner
            .claim(owner, limit, lease_ms, only_runs, max_running)
            .await?;
        timed("claim", started);
        for t in &tasks {
            self.seen.claimed.push(t.tool.clone());
            self.seen
                .tools
                .insert((t.run_id.clone(), t.step_id.clone()), t.tool.clone());
        }
        Ok(tasks)
    }
    async fn finish_task(&mut self, fin: &TaskFinish<'_>) -> Result<bool> {
        self.inner.finish_task(fin).await
    }
    async fn finish_tasks(&mut self, fins: &[TaskFinish<'_>]) -> Result<Vec<bool>> {
        self.inner.finish_tasks(fins).await
    }
    async fn retry_task(
        &mut self,
        task_id: i64,
        attempt: u32,
        owner: &str,
        not_before: i64,
        error: &str,
    ) -> Result<bool> {
        self.inner
            .retry_task(task_id, attempt, owner, not_before, error)
            .await
    }
    async fn item_results(&mut self, run_id: &str, step_id: &str) -> Result<Vec<ItemResult>> {
        self.inner.item_results(run_id, step_id).await
    }
    async fn cancel_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<u64> {
        self.inner.cancel_tasks(run_id, step_id).await
    }
    async fn stale_tasks(&mut self, dead_owners: &[String], limit: u32) -> Result<Vec<Task>> {
        let tasks = self.inner.stale_tasks(dead_owners, limit).await?;
        for t in &tasks {
            self.seen
                .tools
                .insert((t.run_id.clone(), t.step_id.clone()), t.tool.clone());
        }
        Ok(tasks)
    }
    async fn reclaim_task(&mut self, task_id: i64, attempt: u32) -> Result<bool> {
        let taken = self.inner.reclaim_task(task_id, attempt).await?;
        if taken {
            self.seen.reclaims += 1;
        }
        Ok(taken)
    }
    async fn requeue_unfinished(&mut self, run_id: &str, step_id: &str) -> Result<u64> {
        self.inner.requeue_unfinished(run_id, step_id).await
    }
    async fn set_waiting(
        &mut self,
        run_id: &str,
        step_id: &str,
        until: Option<i64>,
    ) -> Result<u64> {
        self.inner.set_waiting(run_id, step_id, until).await
    }
    async fn finish_waiting(
        &mut self,
        task_id: i64,
        status: TaskStatus,
        output: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool> {
        self.inner
            .finish_waiting(task_id, status, output, error)
            .await
    }
    async fn waiting_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<Vec<Task>> {
        self.inner.waiting_tasks(run_id, step_id).await
    }
    async fn due_waits(&mut self, limit: u32) -> Result<Vec<Task>> {
        self.inner.due_waits(limit).await
    }
    async fn child_runs(&mut self, run_id: &str) -> Result<Vec<Run>> {
        self.inner.child_runs(run_id).await
    }
    async fn renew_leases(&mut self, owner: &str, lease_ms: i64) -> Result<Vec<i64>> {
        self.inner.renew_leases(owner, lease_ms).await
    }
    async fn next_ready_at(&mut self, only_runs: Option<&[String]>) -> Result<Option<i64>> {
        self.inner.next_ready_at(only_runs).await
    }
    async fn cache_get(&mut self, key: &str) -> Result<Option<Value>> {
        let hit = self.inner.cache_get(key).await?;
        match hit {
            Some(_) => self.seen.cache_hits += 1,
            None => self.seen.cache_misses += 1,
        }
        Ok(hit)
    }
    async fn cache_put(
        &mut self,
        key: &str,
        tenant: &str,
        output: &Value,
        expires_at: i64,
    ) -> Result<()> {
        self.inner.cache_put(key, tenant, output, expires_at).await
    }
    async fn append_events(&mut self, events: &[NewEvent]) -> Result<()> {
        self.inner.append_events(events).await?;
        self.seen.events.extend_from_slice(events);
        Ok(())
    }
    async fn record_usage(&mut self, usage: &[usage::TaskUsage]) -> Result<()> {
        self.inner.record_usage(usage).await?;
        for u in usage {
            self.seen.llm_tokens.push((
                u.run_id.clone(),
                u.llm_prompt_tokens,
                u.llm_completion_tokens,
            ));
        }
        Ok(())
    }
    async fn run_usage(&mut self, run_id: &str) -> Result<usage::RunUsage> {
        self.inner.run_usage(run_id).await
    }
    async fn admit_run(&mut self, tenant: &str) -> Result<Option<usage::QuotaRefusal>> {
        self.inner.admit_run(tenant).await
    }
    async fn insert_task_tokens(
        &mut self,
        tokens: &[weft_store::tokens::NewTaskToken],
    ) -> Result<()> {
        self.inner.insert_task_tokens(tokens).await?;
        self.seen.tokens_minted += tokens.len() as u64;
        Ok(())
    }
    async fn claim_schedule_slot(
        &mut self,
        claim: &weft_store::schedules::SlotClaim,
    ) -> Result<bool> {
        self.inner.claim_schedule_slot(claim).await
    }
    async fn commit(self: Box<Self>) -> Result<()> {
        let ObservedTx {
            inner,
            seen,
            faults,
        } = *self;
        if let Some(f) = &faults {
            f.before_commit()?;
        }
        let now = inner.now();
        let started = Instant::now();
        inner.commit().await?;
        timed("commit", started);
        if let Some(f) = &faults {
            f.after_commit()?;
        }
        seen.emit(now);
        Ok(())
    }
}
