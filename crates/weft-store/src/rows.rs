//! One decoder per table: a row of either backend as the record the store hands out.

use serde_json::Value;
use weft_core::orchestrator::{RunStatus, StepStatus};

use crate::db::Row;
use crate::error::{Error, Result};
use crate::records::*;

/// A run's budget as stored (JSON text; none when no limit is set).
pub(crate) fn budget_text(budget: Option<&weft_core::plan::Budget>) -> Option<String> {
    budget
        .filter(|b| !b.is_empty())
        .and_then(|b| serde_json::to_string(b).ok())
}

fn parse_budget(text: Option<String>) -> Result<Option<weft_core::plan::Budget>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| Error::Corrupt(format!("run budget: {e}"))))
        .transpose()
}

pub(crate) fn run(r: &Row) -> Result<Run> {
    let status: String = r.get("status")?;
    Ok(Run {
        id: r.get("id")?,
        tenant: r.get("tenant")?,
        template: r.get("template")?,
        version: r.get("version")?,
        digest: r.get("digest")?,
        source: r.get("source")?,
        files: r.json("files", "run files")?.unwrap_or(Value::Null),
        file: r.get("file")?,
        base_dir: r.get("base_dir")?,
        inputs: r.json("inputs", "run inputs")?.unwrap_or(Value::Null),
        status: RunStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("run status `{status}`")))?,
        output: r.json("output", "run output")?,
        error: r.get("error")?,
        idempotency_key: r.get("idempotency_key")?,
        request_digest: r.get("request_digest")?,
        created_at: r.get("created_at")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
        updated_at: r.get("updated_at")?,
        budget: parse_budget(r.get("budget")?)?,
        parent: match r.get::<Option<String>>("parent_run_id")? {
            Some(run_id) => Some(RunParent {
                run_id,
                step: r.get("parent_step_id")?,
                item: r.opt_u32("parent_item")?,
                action: r.get("parent_action")?,
            }),
            None => None,
        },
    })
}

pub(crate) fn step(r: &Row) -> Result<StepRow> {
    let status: String = r.get("status")?;
    Ok(StepRow {
        run_id: r.get("run_id")?,
        step_id: r.get("step_id")?,
        idx: r.u32("idx")?,
        tool: r.get("tool")?,
        status: StepStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("step status `{status}`")))?,
        concurrency: r.opt_u32("concurrency")?,
        output: r.json("output", "step output")?,
        error: r.get("error")?,
        attempts: r.u32("attempts")?,
        items_total: r.opt_u32("items_total")?,
        items_done: r.u32("items_done")?,
        items_failed: r.u32("items_failed")?,
        cache_hits: r.u32("cache_hits")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
    })
}

pub(crate) fn task_status(r: &Row) -> Result<TaskStatus> {
    let status: String = r.get("status")?;
    TaskStatus::parse(&status).ok_or_else(|| Error::Corrupt(format!("task status `{status}`")))
}

pub(crate) fn task(r: &Row) -> Result<Task> {
    Ok(Task {
        id: r.get("id")?,
        run_id: r.get("run_id")?,
        tenant: r.get("tenant")?,
        step_id: r.get("step_id")?,
        item: r.opt_u32("item")?,
        tool: r.get("tool")?,
        input: r.json("input", "task input")?.unwrap_or(Value::Null),
        status: task_status(r)?,
        attempt: r.u32("attempt")?,
        max_attempts: r.u32("max_attempts")?,
        lease_losses: r.u32("lease_losses")?,
        lease_owner: r.get("lease_owner")?,
        lease_expires: r.get("lease_expires")?,
        output: r.json("output", "task output")?,
        error: r.get("error")?,
        cache_key: r.get("cache_key")?,
        cache_hit: r.get("cache_hit")?,
        llm_prompt_tokens: r.u64("llm_prompt_tokens")?,
        llm_completion_tokens: r.u64("llm_completion_tokens")?,
        cost_usd: r.get("cost_usd")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
    })
}

pub(crate) fn item_result(r: &Row) -> Result<ItemResult> {
    Ok(ItemResult {
        item: r.opt_u32("item")?.unwrap_or(0),
        status: task_status(r)?,
        output: r.json("output", "task output")?,
        error: r.get("error")?,
    })
}

pub(crate) fn event(r: &Row) -> Result<Event> {
    let kind: String = r.get("kind")?;
    Ok(Event {
        seq: r.get("seq")?,
        run_id: r.get("run_id")?,
        ts: r.get("ts")?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| Error::Corrupt(format!("event kind `{kind}`")))?,
        step_id: r.get("step_id")?,
        item: r.opt_u32("item")?,
        attempt: r.opt_u32("attempt")?,
        data: r.json("data", "event data")?.unwrap_or(Value::Null),
    })
}

/// The runs a run started, oldest first (read in and outside a transaction).
pub(crate) const CHILD_RUNS: &str =
    "SELECT * FROM runs WHERE parent_run_id = $1 ORDER BY created_at, id";
