//! What the parts of the engine hand each other: the end of one attempt ([`Completion`]) and
//! why it failed ([`Failure`]). The worker produces them from tool calls, `waits.rs` from
//! decisions and child runs, `leases.rs` from lost workers; `apply.rs` records them.

use serde_json::Value;
use weft_store::Task;

/// The end of one attempt, as a worker reports it.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub task_id: i64,
    pub run_id: String,
    pub step_id: String,
    pub item: Option<u32>,
    pub attempt: u32,
    pub max_attempts: u32,
    /// Attempts of this task cut short by a lost worker: they are not tries of the step.
    pub lease_losses: u32,
    pub owner: String,
    pub cache_key: Option<String>,
    pub tenant: String,
    pub duration_ms: i64,
    /// What the attempt reported spending (LLM tokens, cost), recorded even when it failed.
    pub usage: weft_tools::Usage,
    pub result: std::result::Result<Value, Failure>,
}

impl Completion {
    /// The end of `task`'s current attempt under `owner`, with a result still to fill in.
    pub fn of(task: &Task, owner: String) -> Completion {
        Completion {
            task_id: task.id,
            run_id: task.run_id.clone(),
            step_id: task.step_id.clone(),
            item: task.item,
            attempt: task.attempt,
            max_attempts: task.max_attempts,
            lease_losses: task.lease_losses,
            owner,
            cache_key: task.cache_key.clone(),
            tenant: task.tenant.clone(),
            duration_ms: 0,
            usage: weft_tools::Usage::default(),
            result: Ok(Value::Null),
        }
    }

    /// Whether the step's retry policy allows another try after this one. Attempts a lost
    /// worker cut short are not counted: only the step's own failures spend its retries.
    pub fn may_retry(&self) -> bool {
        self.attempt.saturating_sub(self.lease_losses) < self.max_attempts
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub message: String,
    pub transient: bool,
    /// The reason recorded with a retry (`error`, `timeout`, `lease_expired`).
    pub reason: &'static str,
}
