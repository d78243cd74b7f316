//! Metrics and workflow log lines, taken from what the engine commits.
//!
//! Every transaction the engine begins (`Engine::begin`) carries a [`Seen`] as its
//! `weft_store::TxObserver`: the store tells it the runs, steps, claims, reclaims, cache
//! lookups, usage, tokens and events the transaction writes, and only once `commit` succeeds
//! does it count them and log them. A rolled-back or refused transaction (a fenced late result,
//! a lost race) therefore leaves no trace in `/metrics` or in the logs, and nothing in
//! `apply.rs` or `worker.rs` has to remember to count. Telemetry implements only the
//! observations it uses; it wraps neither the store nor its transactions, so a new table
//! method is no change here. The store times its own operations
//! (`weft_store::STORE_DURATION`). Metrics go through the `metrics` facade (a no-op until the
//! serving process installs an exporter); log lines go through `tracing`.
//!
//! Labels are bounded: template, step, tool, status, reason, operation — never a run id. Log
//! lines carry ids but never a run's inputs or a step's output.

use std::collections::HashMap;
use std::sync::Arc;

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
    /// Recorded by the store itself, by operation.
    pub const STORE_DURATION: &str = weft_store::STORE_DURATION;
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

/// The label of an end event: how the run, step or task ended (`run.failed` -> `failed`).
fn terminal(kind: EventKind) -> &'static str {
    match kind {
        EventKind::RunSucceeded | EventKind::StepSucceeded | EventKind::TaskSucceeded => {
            "succeeded"
        }
        EventKind::RunFailed | EventKind::StepFailed | EventKind::TaskFailed => "failed",
        EventKind::RunCancelled | EventKind::StepCancelled => "cancelled",
        EventKind::StepSkipped => "skipped",
        _ => "other",
    }
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

/// Begins a transaction of `store` that `Seen` observes (and, in crash tests, `faults` may
/// kill). `Engine::begin` is the one caller; `clippy.toml` refuses `Store::begin` elsewhere.
#[allow(clippy::disallowed_methods)]
pub(crate) async fn begin(
    store: &dyn Store,
    faults: Option<Arc<crate::faults::Crash>>,
) -> Result<Box<dyn Tx>> {
    if let Some(f) = &faults {
        f.begin()?;
    }
    let mut tx = store.begin().await?;
    tx.observe(Box::new(Seen {
        faults,
        ..Seen::default()
    }));
    Ok(tx)
}

/// What a transaction wrote that telemetry cares about, kept until it commits.
#[derive(Default)]
pub(crate) struct Seen {
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
    /// Crash tests only (`faults.rs`).
    faults: Option<Arc<crate::faults::Crash>>,
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

    fn note_tasks(&mut self, tasks: &[Task]) {
        for t in tasks {
            self.tools
                .insert((t.run_id.clone(), t.step_id.clone()), t.tool.clone());
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
        match e.kind {
            EventKind::RunStarted | EventKind::RunResumed => {
                let resumed = e.kind == EventKind::RunResumed;
                if !resumed {
                    metrics::counter!(names::RUNS_STARTED, "template" => template.clone())
                        .increment(1);
                }
                tracing::info!(run_id, template, resumed, "[WORKFLOW] start");
            }
            EventKind::RunSucceeded | EventKind::RunFailed | EventKind::RunCancelled => {
                let status = terminal(e.kind);
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
            EventKind::StepSucceeded
            | EventKind::StepFailed
            | EventKind::StepCancelled
            | EventKind::StepSkipped => {
                let status = terminal(e.kind);
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
            EventKind::TaskRetrying => {
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
            EventKind::TaskSucceeded | EventKind::TaskFailed => {
                if let Some(ms) = int("duration_ms") {
                    let tool = self.tool(run_id, e.step_id.as_deref()).to_string();
                    let outcome = terminal(e.kind);
                    metrics::histogram!(names::TOOL_DURATION, "tool" => tool, "outcome" => outcome)
                        .record(seconds(ms));
                }
            }
            _ => {}
        }
    }
}

impl TxObserver for Seen {
    fn run(&mut self, run: &Run) {
        let started = run.started_at.or(Some(run.created_at));
        self.runs
            .insert(run.id.clone(), (run.template.clone(), started));
        self.tenants.insert(run.id.clone(), run.tenant.clone());
    }
    fn steps(&mut self, steps: &[StepRow]) {
        self.note_steps(steps);
    }
    fn claimed(&mut self, tasks: &[Task]) {
        for t in tasks {
            self.claimed.push(t.tool.clone());
        }
        self.note_tasks(tasks);
    }
    fn stale(&mut self, tasks: &[Task]) {
        self.note_tasks(tasks);
    }
    fn reclaimed(&mut self) {
        self.reclaims += 1;
    }
    fn cache_lookup(&mut self, hit: bool) {
        match hit {
            true => self.cache_hits += 1,
            false => self.cache_misses += 1,
        }
    }
    fn events(&mut self, events: &[NewEvent]) {
        self.events.extend_from_slice(events);
    }
    fn usage(&mut self, usage: &[usage::TaskUsage]) {
        for u in usage {
            self.llm_tokens.push((
                u.run_id.clone(),
                u.llm_prompt_tokens,
                u.llm_completion_tokens,
            ));
        }
    }
    fn tokens_minted(&mut self, count: usize) {
        self.tokens_minted += count as u64;
    }
    fn before_commit(&mut self) -> Result<()> {
        match &self.faults {
            Some(f) => f.before_commit(),
            None => Ok(()),
        }
    }
    fn committed(self: Box<Self>, now: i64) -> Result<()> {
        if let Some(f) = &self.faults {
            f.after_commit()?;
        }
        self.emit(now);
        Ok(())
    }
}
