//! The contract every backend keeps: [`Store`] for reads and [`Tx`] for one write transaction.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::records::*;
use crate::status::{QueueStatus, SchemaStatus};
use crate::{schedules, tokens, usage, workers};
use weft_core::orchestrator::RunStatus;

/// The histogram of the store's operation latencies, by operation (`begin`, `commit`, `claim`,
/// `lock_run` and the reads that serve pages and streams).
pub const STORE_DURATION: &str = "weft_store_operation_duration_seconds";

/// Which runs a list shows.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub tenant: String,
    pub status: Option<RunStatus>,
    pub template: Option<String>,
    /// Only runs created before this one (for paging, newest first).
    pub before: Option<(i64, String)>,
    /// Only runs created at or after this time (ms).
    pub since: Option<i64>,
    /// Only runs created before this time (ms).
    pub until: Option<i64>,
    /// Only runs whose id starts with this text or whose inputs contain it (any case).
    pub search: Option<String>,
    /// Only runs no other run started (no `workflow:` step's run, no action).
    pub roots_only: bool,
    /// Only the runs this run started.
    pub parent: Option<String>,
    pub limit: u32,
}

/// A backend. Reads outside a transaction see committed state only.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Starts a write transaction. SQLite serialises writers; PostgreSQL locks rows.
    async fn begin(&self) -> Result<Box<dyn Tx>>;

    /// A run by id, only if it belongs to `tenant`.
    async fn run(&self, tenant: &str, id: &str) -> Result<Option<Run>>;
    /// Runs, newest first.
    async fn runs(&self, query: &RunQuery) -> Result<Vec<Run>>;
    /// A run's steps in plan order.
    async fn steps(&self, run_id: &str) -> Result<Vec<StepRow>>;
    /// A run's tasks (items in order), for `runs show`.
    async fn tasks(&self, run_id: &str) -> Result<Vec<Task>>;
    /// The runs a run started (its `workflow:` steps' runs and its actions), oldest first.
    async fn child_runs(&self, run_id: &str) -> Result<Vec<Run>>;
    /// A run's events with `seq > after`, oldest first.
    async fn events(&self, run_id: &str, after: i64, limit: u32) -> Result<Vec<Event>>;
    /// The store's clock, in milliseconds since the Unix epoch. Leases use this clock only.
    async fn now(&self) -> Result<i64>;
    /// Returns when another process may have queued work, or after `timeout` at the latest.
    /// Workers call it between turns. The default suits a store that only one process
    /// writes to: it waits out the timeout (in-process wake-ups go through the engine).
    async fn wait_for_work(&self, timeout: std::time::Duration) {
        tokio::time::sleep(timeout).await;
    }
    /// The queue as an operator sees it: depth, the oldest due task, leases per owner. One
    /// read for `weft status` and the metrics upkeep; cheap enough to run every few seconds.
    async fn queue_status(&self) -> Result<QueueStatus>;
    /// A run's usage so far: tokens, cost, tool calls, cache hits (summed over its tasks).
    async fn run_usage(&self, run_id: &str) -> Result<usage::RunUsage>;
    /// A tenant's usage grouped by day, template or run (`/v1/usage`, `weft usage`).
    async fn usage(&self, query: &usage::UsageQuery) -> Result<Vec<usage::UsageRow>>;
    /// A tenant's quotas (none set: no limits).
    async fn tenant_quota(&self, tenant: &str) -> Result<usage::TenantQuota>;
    /// Replaces a tenant's quotas.
    async fn set_tenant_quota(&self, tenant: &str, quota: &usage::TenantQuota) -> Result<()>;
    /// The migrations the store has applied against the ones this build carries.
    async fn schema_status(&self) -> Result<SchemaStatus>;
    /// A short name for messages (`sqlite:.weft/weft.db`).
    fn describe(&self) -> String;
    /// Registers a worker process; its start and heartbeat are the store's clock now.
    async fn register_worker(&self, worker: &workers::WorkerInfo) -> Result<()>;
    /// Stamps a worker's heartbeat with the store's clock; `false` when its row is gone.
    async fn heartbeat_worker(&self, id: &str) -> Result<bool>;
    /// Removes a worker's row (it stopped cleanly).
    async fn deregister_worker(&self, id: &str) -> Result<()>;
    /// Every registered worker, with the store's clock (see `WorkerRow::is_alive`).
    async fn workers(&self) -> Result<workers::WorkersStatus>;
    /// Whether the store can write now: commits a small probe. [`crate::Error::CannotWrite`]
    /// when it cannot (disk full, an I/O error, read-only), or when a real commit failed so
    /// a moment ago (see `health.rs`); reads may work all the while.
    async fn check_writable(&self) -> Result<()>;
}

// One write transaction, one trait per table (in the spirit of restate's storage API): code
// that touches only the queue can take `&mut dyn TaskQueue`, and a `&mut dyn Tx` coerces to
// any of them. `SqlStore`'s transaction (`tx.rs`) is the one implementation.

/// The `runs` table inside a transaction.
#[async_trait]
pub trait RunTable: Send {
    async fn insert_run(&mut self, run: &Run) -> Result<()>;
    async fn run_by_idempotency_key(&mut self, tenant: &str, key: &str) -> Result<Option<Run>>;
    /// Reads a run and keeps it locked against other writers until commit.
    async fn lock_run(&mut self, run_id: &str) -> Result<Option<Run>>;
    /// Sets status (and output/error when given); stamps started_at/finished_at.
    async fn set_run_status(&mut self, run_id: &str, update: &RunUpdate) -> Result<()>;
    /// The runs a run started, oldest first.
    async fn child_runs(&mut self, run_id: &str) -> Result<Vec<Run>>;
}

/// The `steps` table inside a transaction.
#[async_trait]
pub trait StepTable: Send {
    async fn insert_steps(&mut self, steps: &[StepRow]) -> Result<()>;
    async fn load_steps(&mut self, run_id: &str) -> Result<Vec<StepRow>>;
    async fn update_step(&mut self, step: &StepRow) -> Result<()>;
    /// Adds to a fan-out step's done/failed counters.
    async fn count_items(
        &mut self,
        run_id: &str,
        step_id: &str,
        done: i64,
        failed: i64,
    ) -> Result<()>;
}

/// The task queue: the `tasks` that workers lease.
#[async_trait]
pub trait TaskQueue: Send {
    async fn insert_tasks(&mut self, tasks: &[NewTask]) -> Result<()>;
    /// Leases up to `limit` ready tasks to `owner` until `now + lease_ms`, honouring each
    /// step's concurrency, each tenant's `max_concurrent_tasks` and, when given, `max_running`
    /// (most tasks running in the whole store) — counted against every worker's leases, so
    /// the caps hold across processes; only tasks of `only_runs` when given.
    async fn claim(
        &mut self,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        only_runs: Option<&[String]>,
        max_running: Option<u32>,
    ) -> Result<Vec<Task>>;
    /// Ends an attempt. Refused (returns `false`) unless the task is still `running` under
    /// this attempt and owner: a superseded attempt cannot commit.
    async fn finish_task(&mut self, fin: &TaskFinish<'_>) -> Result<bool>;
    /// [`TaskQueue::finish_task`] for many attempts at once, fenced the same way; one answer
    /// per finish, in order (PostgreSQL does it in one statement).
    async fn finish_tasks(&mut self, fins: &[TaskFinish<'_>]) -> Result<Vec<bool>>;
    /// Puts a running attempt back in the queue as attempt+1 after `not_before`. Fenced like
    /// `finish_task`.
    async fn retry_task(
        &mut self,
        task_id: i64,
        attempt: u32,
        owner: &str,
        not_before: i64,
        error: &str,
    ) -> Result<bool>;
    /// The results of a step's tasks in item order: (item, status, output, error).
    async fn item_results(&mut self, run_id: &str, step_id: &str) -> Result<Vec<ItemResult>>;
    /// Cancels the queued, running and waiting tasks of a run (or one step of it); returns
    /// how many.
    async fn cancel_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<u64>;
    /// Running tasks whose lease has expired (or whose owner is in `dead_owners`).
    async fn stale_tasks(&mut self, dead_owners: &[String], limit: u32) -> Result<Vec<Task>>;
    /// Takes a task from a lost owner back: status queued, attempt+1. Returns false if it was
    /// no longer running under that attempt.
    async fn reclaim_task(&mut self, task_id: i64, attempt: u32) -> Result<bool>;
    /// Puts failed/cancelled tasks of a run back in the queue (resume); returns how many.
    async fn requeue_unfinished(&mut self, run_id: &str, step_id: &str) -> Result<u64>;
    /// Extends the leases of `owner`'s running tasks; returns the ids still running under it.
    async fn renew_leases(&mut self, owner: &str, lease_ms: i64) -> Result<Vec<i64>>;
    /// When the earliest queued task that is not ready yet (`not_before` after now) becomes
    /// ready. Tasks already due but held back by a concurrency cap are not "waiting": naming
    /// them would make a worker spin.
    async fn next_ready_at(&mut self, only_runs: Option<&[String]>) -> Result<Option<i64>>;
}

/// Waiting tasks: the items of `approval:` and `workflow:` steps, never leased.
#[async_trait]
pub trait WaitTable: Send {
    /// Turns the step's queued (and waiting) tasks into waiting ones (status `waiting`, never
    /// leased) that time out at `until` (never when `None`); returns how many.
    async fn set_waiting(&mut self, run_id: &str, step_id: &str, until: Option<i64>)
    -> Result<u64>;
    /// Ends a waiting task. Refused (returns `false`) unless it is still `waiting`: a decision
    /// is taken once.
    async fn finish_waiting(
        &mut self,
        task_id: i64,
        status: TaskStatus,
        output: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool>;
    /// A run's waiting tasks (of one step when given), by step then item.
    async fn waiting_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<Vec<Task>>;
    /// Waiting tasks whose wait has timed out (`not_before <= now`), oldest first.
    async fn due_waits(&mut self, limit: u32) -> Result<Vec<Task>>;
}

/// The event log.
#[async_trait]
pub trait EventLog: Send {
    async fn append_events(&mut self, events: &[NewEvent]) -> Result<()>;
}

/// The step cache.
#[async_trait]
pub trait CacheTable: Send {
    async fn cache_get(&mut self, key: &str) -> Result<Option<Value>>;
    async fn cache_put(
        &mut self,
        key: &str,
        tenant: &str,
        output: &Value,
        expires_at: i64,
    ) -> Result<()>;
}

/// Metering and quotas.
#[async_trait]
pub trait UsageTable: Send {
    /// Adds what attempts reported (LLM tokens, cost) to their tasks. Called only for
    /// attempts that reported something, so the queue's common path pays nothing.
    async fn record_usage(&mut self, usage: &[usage::TaskUsage]) -> Result<()>;
    /// A run's usage including this transaction's writes (for the budget check).
    async fn run_usage(&mut self, run_id: &str) -> Result<usage::RunUsage>;
    /// Whether `tenant` may create another run now under its runs-per-hour quota, counting
    /// the runs it created in the last hour. Creations of one tenant are serialised, so the
    /// quota holds across processes when the run is inserted in this same transaction.
    async fn admit_run(&mut self, tenant: &str) -> Result<Option<usage::QuotaRefusal>>;
}

/// Task tokens, written in the transaction that claims their attempts.
#[async_trait]
pub trait TokenTable: Send {
    /// Records freshly minted task tokens (hashes only), issued at [`Tx::now`]. A token is
    /// revoked by the store in the transaction that takes its attempt out of `running`.
    async fn insert_task_tokens(&mut self, tokens: &[tokens::NewTaskToken]) -> Result<()>;
}

/// Schedules' firing slots.
#[async_trait]
pub trait ScheduleTable: Send {
    /// Fires a schedule's slot: moves its `next_fire_at` from `claim.expected_next` to
    /// `claim.next`, only if it still holds `expected_next` and is not paused. `false` means
    /// another scheduler took the slot (or the schedule changed): create nothing.
    async fn claim_schedule_slot(&mut self, claim: &schedules::SlotClaim) -> Result<bool>;
}

/// One write transaction over every table. Dropping it without [`Tx::commit`] rolls it back.
#[async_trait]
pub trait Tx:
    RunTable
    + StepTable
    + TaskQueue
    + WaitTable
    + EventLog
    + CacheTable
    + UsageTable
    + TokenTable
    + ScheduleTable
{
    /// The store's clock when the transaction began (ms since the epoch).
    fn now(&self) -> i64;
    /// Reports what this transaction does to `observer` (see [`TxObserver`]).
    fn observe(&mut self, observer: Box<dyn TxObserver>);
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// Told what a transaction did, at the few points a watcher counts (the engine's telemetry
/// and its crash tests' failpoint). Every method has a no-op default, so a watcher names only
/// what it observes and a new table method needs no change here. Each is called after its
/// statement succeeded; [`TxObserver::committed`] only once the commit did, so a watcher that
/// counts there sees nothing of a rolled-back or refused transaction.
pub trait TxObserver: Send {
    /// A run the transaction inserted or locked.
    fn run(&mut self, _run: &Run) {}
    /// Steps it inserted or loaded.
    fn steps(&mut self, _steps: &[StepRow]) {}
    /// Tasks it claimed.
    fn claimed(&mut self, _tasks: &[Task]) {}
    /// Running tasks it found stale (their lease lapsed or their owner died).
    fn stale(&mut self, _tasks: &[Task]) {}
    /// It took one of them back.
    fn reclaimed(&mut self) {}
    /// A step cache lookup, found or not.
    fn cache_lookup(&mut self, _hit: bool) {}
    fn events(&mut self, _events: &[NewEvent]) {}
    fn usage(&mut self, _usage: &[usage::TaskUsage]) {}
    fn tokens_minted(&mut self, _count: usize) {}
    /// Just before `COMMIT`; an error rolls the transaction back and is what `commit` returns.
    fn before_commit(&mut self) -> Result<()> {
        Ok(())
    }
    /// After `COMMIT` succeeded, with [`Tx::now`]. An error is what `commit` returns (the
    /// work is stored all the same).
    fn committed(self: Box<Self>, _now: i64) -> Result<()> {
        Ok(())
    }
}

/// A JSON-friendly view of a run with its steps, as `--json` and the API print it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: Run,
    pub steps: Vec<StepRow>,
    /// Tokens, cost, tool calls and cache hits summed over the run's tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<usage::RunUsage>,
}
