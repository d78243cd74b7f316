//! The one [`Tx`]: each statement written once for both backends; the few that differ call
//! `sqlite.rs` or `postgres.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use weft_core::orchestrator::RunStatus;

use crate::api::*;
use crate::db::{Arg, Conn, Target, args, json_text, opt_json, placeholders, timed};
use crate::error::Result;
use crate::health::WriteHealth;
use crate::records::*;
use crate::rows::{self, budget_text};
use crate::schedules::SlotClaim;
use crate::tokens::NewTaskToken;
use crate::{postgres, sqlite, usage};

pub(crate) struct SqlTx {
    conn: Conn,
    /// Told when the commit fails because the store cannot write.
    health: Arc<WriteHealth>,
    now: i64,
    /// PostgreSQL: written at commit, under the runs' event locks (see `postgres.rs`).
    events: Vec<NewEvent>,
    /// PostgreSQL: whether this transaction queued a task, so its commit must wake other
    /// workers.
    queued_work: bool,
    /// Told what the transaction does (`Tx::observe`); none for most callers.
    observer: Option<Box<dyn TxObserver>>,
}

impl SqlTx {
    pub(crate) fn new(conn: Conn, now: i64, health: Arc<WriteHealth>) -> Self {
        SqlTx {
            conn,
            health,
            now,
            events: Vec::new(),
            queued_work: false,
            observer: None,
        }
    }

    /// Adds reported usage to its tasks (one `unnest` statement on PostgreSQL).
    async fn record_usage_rows(&mut self, usage: &[usage::TaskUsage]) -> Result<()> {
        if let Conn::Postgres(tx) = &mut self.conn {
            return postgres::record_usage(tx, usage).await;
        }
        for u in usage {
            let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
            self.t()
                .execute(
                    "UPDATE tasks SET llm_prompt_tokens = llm_prompt_tokens + $1, \
                     llm_completion_tokens = llm_completion_tokens + $2, \
                     cost_usd = cost_usd + $3 WHERE id = $4",
                    args![
                        clamp(u.llm_prompt_tokens),
                        clamp(u.llm_completion_tokens),
                        u.cost_usd,
                        u.task_id
                    ],
                )
                .await?;
        }
        Ok(())
    }

    /// Tells the observer, if there is one.
    fn tell(&mut self, what: impl FnOnce(&mut dyn TxObserver)) {
        if let Some(o) = &mut self.observer {
            what(o.as_mut());
        }
    }

    fn t(&mut self) -> Target<'_> {
        self.conn.target()
    }
}

#[async_trait]
impl RunTable for SqlTx {
    async fn insert_run(&mut self, run: &Run) -> Result<()> {
        let parent = run.parent.as_ref();
        self.t()
            .execute(
                "INSERT INTO runs (id, tenant, template, version, digest, source, files, file, \
                 base_dir, inputs, status, output, error, idempotency_key, request_digest, \
                 created_at, started_at, finished_at, updated_at, parent_run_id, parent_step_id, \
                 parent_item, parent_action, budget) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                  $18, $19, $20, $21, $22, $23, $24)",
                args![
                    &run.id,
                    &run.tenant,
                    &run.template,
                    &run.version,
                    &run.digest,
                    &run.source,
                    json_text(&run.files),
                    &run.file,
                    &run.base_dir,
                    json_text(&run.inputs),
                    run.status.as_str(),
                    opt_json(run.output.as_ref()),
                    &run.error,
                    &run.idempotency_key,
                    &run.request_digest,
                    run.created_at,
                    run.started_at,
                    run.finished_at,
                    run.updated_at,
                    parent.map(|p| &p.run_id),
                    parent.and_then(|p| p.step.as_ref()),
                    parent.and_then(|p| p.item),
                    parent.and_then(|p| p.action.as_ref()),
                    budget_text(run.budget.as_ref()),
                ],
            )
            .await?;
        self.tell(|o| o.run(run));
        Ok(())
    }

    async fn run_by_idempotency_key(&mut self, tenant: &str, key: &str) -> Result<Option<Run>> {
        if let Conn::Postgres(tx) = &mut self.conn {
            // Serialises creators of the same key: the second one waits here until the first
            // commits, then finds its run instead of inserting a duplicate. (SQLite's
            // `BEGIN IMMEDIATE` already serialises every writer.)
            let key = format!("{tenant}\u{1f}{key}");
            postgres::lock(tx, postgres::LOCK_IDEMPOTENCY, &key).await?;
        }
        self.t()
            .optional(
                "SELECT * FROM runs WHERE tenant = $1 AND idempotency_key = $2",
                args![tenant, key],
                rows::run,
            )
            .await
    }

    async fn lock_run(&mut self, run_id: &str) -> Result<Option<Run>> {
        // SQLite: BEGIN IMMEDIATE already holds the database's write lock.
        let run = timed(
            "lock_run",
            self.t().optional(
                "SELECT * FROM runs WHERE id = $1 {pg:FOR UPDATE}",
                args![run_id],
                rows::run,
            ),
        )
        .await?;
        if let Some(run) = &run {
            self.tell(|o| o.run(run));
        }
        Ok(run)
    }

    async fn set_run_status(&mut self, run_id: &str, u: &RunUpdate) -> Result<()> {
        let now = self.now;
        self.t()
            .execute(
                "UPDATE runs SET status = $1, output = COALESCE($2, output), error = $3, \
                 started_at = CASE WHEN $1 = 'running' AND started_at IS NULL THEN $4 \
                   ELSE started_at END, \
                 finished_at = CASE WHEN $5 THEN $4 ELSE NULL END, updated_at = $4 WHERE id = $6",
                args![
                    u.status.as_str(),
                    opt_json(u.output.as_ref()),
                    &u.error,
                    now,
                    u.status.is_terminal(),
                    run_id
                ],
            )
            .await?;
        if u.status == RunStatus::Running {
            // A resumed run may have tasks ready to go.
            self.queued_work = true;
        }
        Ok(())
    }

    async fn child_runs(&mut self, run_id: &str) -> Result<Vec<Run>> {
        self.t()
            .all(rows::CHILD_RUNS, args![run_id], rows::run)
            .await
    }
}

#[async_trait]
impl StepTable for SqlTx {
    async fn insert_steps(&mut self, steps: &[StepRow]) -> Result<()> {
        for s in steps {
            self.t()
                .execute(
                    "INSERT INTO steps (run_id, step_id, idx, tool, status, concurrency, output, \
                     error, attempts, items_total, items_done, items_failed, cache_hits, \
                     started_at, finished_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    args![
                        &s.run_id,
                        &s.step_id,
                        s.idx,
                        &s.tool,
                        s.status.as_str(),
                        s.concurrency,
                        opt_json(s.output.as_ref()),
                        &s.error,
                        s.attempts,
                        s.items_total,
                        s.items_done,
                        s.items_failed,
                        s.cache_hits,
                        s.started_at,
                        s.finished_at,
                    ],
                )
                .await?;
        }
        self.tell(|o| o.steps(steps));
        Ok(())
    }

    async fn load_steps(&mut self, run_id: &str) -> Result<Vec<StepRow>> {
        let steps = self
            .t()
            .all(
                "SELECT * FROM steps WHERE run_id = $1 ORDER BY idx",
                args![run_id],
                rows::step,
            )
            .await?;
        self.tell(|o| o.steps(&steps));
        Ok(steps)
    }

    async fn update_step(&mut self, s: &StepRow) -> Result<()> {
        self.t()
            .execute(
                "UPDATE steps SET status = $1, concurrency = $2, output = $3, error = $4, \
                 attempts = $5, items_total = $6, items_done = $7, items_failed = $8, \
                 cache_hits = $9, started_at = $10, finished_at = $11 \
                 WHERE run_id = $12 AND step_id = $13",
                args![
                    s.status.as_str(),
                    s.concurrency,
                    opt_json(s.output.as_ref()),
                    &s.error,
                    s.attempts,
                    s.items_total,
                    s.items_done,
                    s.items_failed,
                    s.cache_hits,
                    s.started_at,
                    s.finished_at,
                    &s.run_id,
                    &s.step_id,
                ],
            )
            .await?;
        Ok(())
    }

    async fn count_items(
        &mut self,
        run_id: &str,
        step_id: &str,
        done: i64,
        failed: i64,
    ) -> Result<()> {
        self.t()
            .execute(
                "UPDATE steps SET items_done = items_done + $1, items_failed = items_failed + $2 \
                 WHERE run_id = $3 AND step_id = $4",
                args![done, failed, run_id, step_id],
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl TaskQueue for SqlTx {
    async fn insert_tasks(&mut self, tasks: &[NewTask]) -> Result<()> {
        let now = self.now;
        match &mut self.conn {
            Conn::Sqlite(tx) => sqlite::insert_tasks(tx, now, tasks).await,
            Conn::Postgres(tx) => {
                self.queued_work |= postgres::insert_tasks(tx, now, tasks).await?;
                Ok(())
            }
        }
    }

    async fn claim(
        &mut self,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        only_runs: Option<&[String]>,
        max_running: Option<u32>,
    ) -> Result<Vec<Task>> {
        let now = self.now;
        let tasks = timed("claim", async {
            match &mut self.conn {
                Conn::Sqlite(tx) => {
                    sqlite::claim(tx, now, owner, limit, lease_ms, only_runs, max_running).await
                }
                Conn::Postgres(tx) => {
                    postgres::claim(tx, now, owner, limit, lease_ms, only_runs, max_running).await
                }
            }
        })
        .await?;
        self.tell(|o| o.claimed(&tasks));
        Ok(tasks)
    }

    async fn finish_task(&mut self, f: &TaskFinish<'_>) -> Result<bool> {
        let now = self.now;
        let done = self
            .t()
            .execute(
                "UPDATE tasks SET status = $1, output = $2, error = $3, finished_at = $4, \
                 lease_owner = NULL, lease_expires = NULL \
                 WHERE id = $5 AND attempt = $6 AND lease_owner = $7 AND status = 'running'",
                args![
                    f.status.as_str(),
                    opt_json(f.output),
                    f.error,
                    now,
                    f.task_id,
                    f.attempt,
                    f.owner
                ],
            )
            .await?;
        Ok(done == 1)
    }

    async fn finish_tasks(&mut self, fins: &[TaskFinish<'_>]) -> Result<Vec<bool>> {
        let now = self.now;
        if fins.len() > 1
            && let Conn::Postgres(tx) = &mut self.conn
        {
            return postgres::finish_tasks(tx, now, fins).await;
        }
        let mut done = Vec::with_capacity(fins.len());
        for f in fins {
            done.push(self.finish_task(f).await?);
        }
        Ok(done)
    }

    async fn retry_task(
        &mut self,
        task_id: i64,
        attempt: u32,
        owner: &str,
        not_before: i64,
        error: &str,
    ) -> Result<bool> {
        let done = self
            .t()
            .execute(
                "UPDATE tasks SET status = 'queued', attempt = attempt + 1, not_before = $1, \
                 error = $2, lease_owner = NULL, lease_expires = NULL \
                 WHERE id = $3 AND attempt = $4 AND lease_owner = $5 AND status = 'running'",
                args![not_before, error, task_id, attempt, owner],
            )
            .await?;
        self.queued_work |= done == 1;
        Ok(done == 1)
    }

    async fn item_results(&mut self, run_id: &str, step_id: &str) -> Result<Vec<ItemResult>> {
        self.t()
            .all(
                "SELECT item, status, output, error FROM tasks WHERE run_id = $1 \
                 AND step_id = $2 ORDER BY item",
                args![run_id, step_id],
                rows::item_result,
            )
            .await
    }

    async fn cancel_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<u64> {
        let now = self.now;
        self.t()
            .execute(
                "UPDATE tasks SET status = 'cancelled', finished_at = $1, lease_owner = NULL, \
                 lease_expires = NULL WHERE run_id = $2 AND ($3 IS NULL OR step_id = $3) \
                 AND status IN ('queued', 'running', 'waiting')",
                args![now, run_id, step_id],
            )
            .await
    }

    async fn stale_tasks(&mut self, dead_owners: &[String], limit: u32) -> Result<Vec<Task>> {
        // Only running tasks matter: SQLite reads them through their partial index, never the
        // table. Leases are judged by the database clock now.
        let mut sql = String::from(
            "SELECT * FROM tasks {sqlite:INDEXED BY tasks_running} \
             WHERE status = 'running' AND (lease_expires < {now}",
        );
        if !dead_owners.is_empty() {
            sql.push_str(&format!(
                " OR lease_owner IN ({})",
                placeholders(2, dead_owners.len())
            ));
        }
        sql.push_str(") ORDER BY id LIMIT $1");
        let mut values = vec![Arg::from(limit)];
        values.extend(dead_owners.iter().map(Arg::from));
        let tasks = self.t().all(sql, &values, rows::task).await?;
        self.tell(|o| o.stale(&tasks));
        Ok(tasks)
    }

    async fn reclaim_task(&mut self, task_id: i64, attempt: u32) -> Result<bool> {
        let now = self.now;
        let done = self
            .t()
            .execute(
                "UPDATE tasks SET status = 'queued', attempt = attempt + 1, \
                 lease_losses = lease_losses + 1, not_before = $1, error = 'lease expired', \
                 lease_owner = NULL, lease_expires = NULL \
                 WHERE id = $2 AND attempt = $3 AND status = 'running'",
                args![now, task_id, attempt],
            )
            .await?;
        if done == 1 {
            self.queued_work = true;
            self.tell(|o| o.reclaimed());
        }
        Ok(done == 1)
    }

    async fn requeue_unfinished(&mut self, run_id: &str, step_id: &str) -> Result<u64> {
        let now = self.now;
        let done = self
            .t()
            .execute(
                "UPDATE tasks SET status = 'queued', attempt = 1, lease_losses = 0, \
                 not_before = $1, error = NULL, finished_at = NULL, lease_owner = NULL, \
                 lease_expires = NULL \
                 WHERE run_id = $2 AND step_id = $3 AND status IN ('failed', 'cancelled')",
                args![now, run_id, step_id],
            )
            .await?;
        self.queued_work |= done > 0;
        Ok(done)
    }

    async fn renew_leases(&mut self, owner: &str, lease_ms: i64) -> Result<Vec<i64>> {
        self.t()
            .all(
                "UPDATE tasks SET lease_expires = {now} + $1 \
                 WHERE lease_owner = $2 AND status = 'running' RETURNING id",
                args![lease_ms, owner],
                |r| r.get("id"),
            )
            .await
    }

    async fn next_ready_at(&mut self, only_runs: Option<&[String]>) -> Result<Option<i64>> {
        // SQLite is pinned to the index on queued tasks' `not_before`: with a run filter, it
        // would otherwise pick the per-run index and scan every task of the run, on every turn.
        let mut sql = String::from(
            "SELECT MIN(not_before) AS at FROM tasks {sqlite:INDEXED BY tasks_queued} \
             WHERE status = 'queued' AND not_before > $1",
        );
        let mut values = vec![Arg::from(self.now)];
        if let Some(runs) = only_runs {
            if runs.is_empty() {
                return Ok(None);
            }
            sql.push_str(&format!(" AND run_id IN ({})", placeholders(2, runs.len())));
            values.extend(runs.iter().map(Arg::from));
        }
        self.t().fetch_one(sql, &values).await?.get("at")
    }
}

#[async_trait]
impl WaitTable for SqlTx {
    async fn set_waiting(
        &mut self,
        run_id: &str,
        step_id: &str,
        until: Option<i64>,
    ) -> Result<u64> {
        self.t()
            .execute(
                "UPDATE tasks SET status = 'waiting', not_before = $1, lease_owner = NULL, \
                 lease_expires = NULL WHERE run_id = $2 AND step_id = $3 \
                 AND status IN ('queued', 'waiting')",
                args![until.unwrap_or(i64::MAX), run_id, step_id],
            )
            .await
    }

    async fn finish_waiting(
        &mut self,
        task_id: i64,
        status: TaskStatus,
        output: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool> {
        let now = self.now;
        let done = self
            .t()
            .execute(
                "UPDATE tasks SET status = $1, output = $2, error = $3, finished_at = $4, \
                 started_at = COALESCE(started_at, created_at) \
                 WHERE id = $5 AND status = 'waiting'",
                args![status.as_str(), opt_json(output), error, now, task_id],
            )
            .await?;
        Ok(done == 1)
    }

    async fn waiting_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<Vec<Task>> {
        self.t()
            .all(
                "SELECT * FROM tasks WHERE run_id = $1 AND ($2 IS NULL OR step_id = $2) \
                 AND status = 'waiting' ORDER BY step_id, item, id",
                args![run_id, step_id],
                rows::task,
            )
            .await
    }

    async fn due_waits(&mut self, limit: u32) -> Result<Vec<Task>> {
        self.t()
            .all(
                "SELECT * FROM tasks {sqlite:INDEXED BY tasks_waiting} WHERE status = 'waiting' \
                 AND not_before <= {now} ORDER BY not_before LIMIT $1",
                args![limit],
                rows::task,
            )
            .await
    }
}

#[async_trait]
impl EventLog for SqlTx {
    async fn append_events(&mut self, events: &[NewEvent]) -> Result<()> {
        let now = self.now;
        match &mut self.conn {
            Conn::Sqlite(tx) => sqlite::append_events(tx, now, events).await?,
            Conn::Postgres(_) => self.events.extend_from_slice(events),
        }
        self.tell(|o| o.events(events));
        Ok(())
    }
}

#[async_trait]
impl CacheTable for SqlTx {
    async fn cache_get(&mut self, key: &str) -> Result<Option<Value>> {
        let now = self.now;
        let text: Option<String> = self
            .t()
            .optional(
                "SELECT output FROM cache WHERE key = $1 AND expires_at > $2",
                args![key, now],
                |r| r.get("output"),
            )
            .await?;
        let hit = crate::db::parse_json(text, "cached output")?;
        self.tell(|o| o.cache_lookup(hit.is_some()));
        Ok(hit)
    }

    async fn cache_put(
        &mut self,
        key: &str,
        tenant: &str,
        output: &Value,
        expires_at: i64,
    ) -> Result<()> {
        let now = self.now;
        self.t()
            .execute(
                "INSERT INTO cache (key, tenant, output, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET \
                 output = excluded.output, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at",
                args![key, tenant, json_text(output), now, expires_at],
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl UsageTable for SqlTx {
    async fn record_usage(&mut self, usage: &[usage::TaskUsage]) -> Result<()> {
        self.record_usage_rows(usage).await?;
        self.tell(|o| o.usage(usage));
        Ok(())
    }

    async fn run_usage(&mut self, run_id: &str) -> Result<usage::RunUsage> {
        let row = self.t().fetch_one(usage::RUN_USAGE, args![run_id]).await?;
        usage::usage_from_row(&row)
    }

    async fn admit_run(&mut self, tenant: &str) -> Result<Option<usage::QuotaRefusal>> {
        let max: Option<i64> = self
            .t()
            .optional(
                "SELECT max_runs_per_hour FROM tenant_quotas WHERE tenant = $1",
                args![tenant],
                |r| r.get("max_runs_per_hour"),
            )
            .await?
            .flatten();
        let Some(max) = max else {
            return Ok(None);
        };
        if let Conn::Postgres(tx) = &mut self.conn {
            // Until commit, the tenant's other creators wait here, so each one counts the
            // runs the previous ones inserted (READ COMMITTED reads them after the lock is
            // granted). SQLite's BEGIN IMMEDIATE holds the write lock already.
            postgres::lock(tx, postgres::LOCK_RUN_RATE, tenant).await?;
        }
        // The clock after the lock: the wait for it may have been long.
        let now: i64 = self
            .t()
            .fetch_one("SELECT {now} AS now", args![])
            .await?
            .get("now")?;
        let row = self
            .t()
            .fetch_one(
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM \
                 (SELECT created_at FROM runs WHERE tenant = $1 AND created_at > $2 \
                  ORDER BY created_at DESC LIMIT $3) recent",
                args![tenant, now - usage::RUN_RATE_WINDOW_MS, max],
            )
            .await?;
        Ok(usage::refusal(max, row.get("n")?, row.get("oldest")?, now))
    }
}

#[async_trait]
impl TokenTable for SqlTx {
    async fn insert_task_tokens(&mut self, tokens: &[NewTaskToken]) -> Result<()> {
        let now = self.now;
        crate::tokens::insert(&mut self.conn, now, tokens).await?;
        self.tell(|o| o.tokens_minted(tokens.len()));
        Ok(())
    }
}

#[async_trait]
impl ScheduleTable for SqlTx {
    async fn claim_schedule_slot(&mut self, claim: &SlotClaim) -> Result<bool> {
        let now = self.now;
        crate::schedules::claim_slot(self.t(), claim, now).await
    }
}

#[async_trait]
impl Tx for SqlTx {
    fn now(&self) -> i64 {
        self.now
    }

    fn observe(&mut self, observer: Box<dyn TxObserver>) {
        self.observer = Some(observer);
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let SqlTx {
            mut conn,
            health,
            now,
            events,
            queued_work,
            mut observer,
        } = *self;
        if let Some(o) = &mut observer {
            o.before_commit()?;
        }
        let committed = timed("commit", async {
            if let Conn::Postgres(tx) = &mut conn {
                postgres::flush_events(tx, now, &events).await?;
                if queued_work {
                    postgres::notify_work(tx).await?;
                }
            }
            conn.commit().await
        })
        .await;
        health.note(&committed);
        committed?;
        observer.map_or(Ok(()), |o| o.committed(now))
    }
}
