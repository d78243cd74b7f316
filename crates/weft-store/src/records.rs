//! The rows the store keeps, as plain data.

use serde::Serialize;
use serde_json::Value;

use weft_core::orchestrator::{RunStatus, StepStatus};

/// Timestamps are kept as milliseconds and shown as RFC 3339.
fn ts<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

fn opt_ts<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// One run of one template version.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Run {
    pub id: String,
    pub tenant: String,
    pub template: String,
    pub version: String,
    pub digest: String,
    #[serde(skip)]
    pub source: String,
    /// Included files' text by path (JSON object).
    #[serde(skip)]
    pub files: Value,
    /// Where the template came from (a path or `<builtin>`).
    pub file: String,
    #[serde(skip)]
    pub base_dir: Option<String>,
    pub inputs: Value,
    pub status: RunStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip)]
    pub request_digest: Option<String>,
    #[serde(serialize_with = "ts")]
    pub created_at: i64,
    #[serde(serialize_with = "opt_ts")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "opt_ts")]
    pub finished_at: Option<i64>,
    #[serde(serialize_with = "ts")]
    pub updated_at: i64,
    /// What the run may spend (the template's `budget:` with the request's over it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<weft_core::plan::Budget>,
    /// The run that started this one (a `workflow:` step or an action), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<RunParent>,
}

/// Where a child run comes from: the parent run and the `workflow:` step (and item) that
/// waits for it, or the name of the action it was started as.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct RunParent {
    pub run_id: String,
    /// The parent's `workflow:` step that waits for this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    /// The parent template's action this run was started as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A run's status change.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUpdate {
    pub status: RunStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
}

/// One step of one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepRow {
    pub run_id: String,
    #[serde(rename = "id")]
    pub step_id: String,
    pub idx: u32,
    pub tool: Option<String>,
    pub status: StepStatus,
    /// At most this many of the step's tasks hold a lease at once.
    pub concurrency: Option<u32>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub attempts: u32,
    /// For fan-out steps: how many items, and how many are done / failed.
    pub items_total: Option<u32>,
    pub items_done: u32,
    pub items_failed: u32,
    pub cache_hits: u32,
    #[serde(serialize_with = "opt_ts")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "opt_ts")]
    pub finished_at: Option<i64>,
}

impl StepRow {
    pub fn new(run_id: &str, step_id: &str, idx: u32, tool: Option<&str>) -> Self {
        StepRow {
            run_id: run_id.to_string(),
            step_id: step_id.to_string(),
            idx,
            tool: tool.map(str::to_string),
            status: StepStatus::Pending,
            concurrency: None,
            output: None,
            error: None,
            attempts: 0,
            items_total: None,
            items_done: 0,
            items_failed: 0,
            cache_hits: 0,
            started_at: None,
            finished_at: None,
        }
    }
}

pub use weft_core::lifecycle::{EventKind, TaskStatus};

/// A task to queue (or, with `done`, one already finished: a cache hit or an inline result).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub run_id: String,
    pub tenant: String,
    pub step_id: String,
    pub item: Option<u32>,
    pub tool: String,
    pub input: Value,
    pub max_attempts: u32,
    pub not_before: i64,
    pub cache_key: Option<String>,
    /// Already finished: (status, output, error, cache_hit).
    pub done: Option<(TaskStatus, Value, Option<String>, bool)>,
}

/// A task as leased to a worker.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Task {
    pub id: i64,
    pub run_id: String,
    pub tenant: String,
    pub step_id: String,
    pub item: Option<u32>,
    pub tool: String,
    pub input: Value,
    pub status: TaskStatus,
    pub attempt: u32,
    pub max_attempts: u32,
    /// Attempts cut short by a lost worker (its lease lapsed): they do not count against
    /// `max_attempts`.
    pub lease_losses: u32,
    pub lease_owner: Option<String>,
    pub lease_expires: Option<i64>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cache_key: Option<String>,
    pub cache_hit: bool,
    /// LLM usage summed over the task's attempts (see `usage`).
    pub llm_prompt_tokens: u64,
    pub llm_completion_tokens: u64,
    pub cost_usd: f64,
    #[serde(serialize_with = "opt_ts")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "opt_ts")]
    pub finished_at: Option<i64>,
}

/// The end of one attempt, fenced by (task, attempt, owner).
#[derive(Debug, Clone)]
pub struct TaskFinish<'a> {
    pub task_id: i64,
    pub attempt: u32,
    pub owner: &'a str,
    pub status: TaskStatus,
    pub output: Option<&'a Value>,
    pub error: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    pub item: u32,
    pub status: TaskStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
}

/// An event to append to a run's log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub run_id: String,
    pub kind: EventKind,
    pub step_id: Option<String>,
    pub item: Option<u32>,
    pub attempt: Option<u32>,
    pub data: Value,
}

/// An event as stored: `seq` orders all events and is the SSE `id:`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub run_id: String,
    #[serde(serialize_with = "ts")]
    pub ts: i64,
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    pub data: Value,
}
