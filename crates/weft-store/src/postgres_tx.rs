//! The PostgreSQL [`Tx`]: one write transaction of the shared store (see `postgres.rs` for
//! the locking rules it follows).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{Postgres, Row, Transaction};

use crate::postgres::*;
use crate::*;

pub(crate) struct PgTx {
    tx: Transaction<'static, Postgres>,
    now: i64,
    /// Written at commit, under the runs' event locks (see the module comment).
    events: Vec<NewEvent>,
    /// Whether this transaction queued a task, so its commit must wake other workers.
    queued_work: bool,
}

impl PgTx {
    pub(crate) fn new(tx: Transaction<'static, Postgres>, now: i64) -> Self {
        PgTx {
            tx,
            now,
            events: Vec::new(),
            queued_work: false,
        }
    }
    async fn flush_events(&mut self) -> Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.events);
        let mut runs: Vec<&str> = events.iter().map(|e| e.run_id.as_str()).collect();
        runs.sort_unstable();
        runs.dedup();
        // Lock in key order so two committers never wait on each other in a cycle. Held until
        // commit, so a run's events commit in seq order. First (the sort below consumes every
        // row before the outer locks are taken), the event feed's lock in shared mode, so the
        // global tail never reads past an insert that has yet to commit (`postgres_server.rs`).
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1, k) FROM \
             (SELECT DISTINCT hashtext(r) AS k FROM unnest($2::text[]) AS r \
              WHERE pg_advisory_xact_lock_shared($3, 0) IS NOT NULL ORDER BY k OFFSET 0) s",
        )
        .bind(LOCK_RUN_EVENTS)
        .bind(&runs)
        .bind(crate::postgres_server::LOCK_EVENT_FEED)
        .execute(&mut *self.tx)
        .await?;
        let mut run_ids = Vec::with_capacity(events.len());
        let mut kinds = Vec::with_capacity(events.len());
        let mut steps = Vec::with_capacity(events.len());
        let mut items = Vec::with_capacity(events.len());
        let mut attempts = Vec::with_capacity(events.len());
        let mut data = Vec::with_capacity(events.len());
        for e in &events {
            run_ids.push(e.run_id.as_str());
            kinds.push(e.kind.as_str());
            steps.push(e.step_id.as_deref());
            items.push(e.item.map(i64::from));
            attempts.push(e.attempt.map(i64::from));
            data.push(json_text(&e.data));
        }
        sqlx::query(
            "INSERT INTO events (run_id, ts, kind, step_id, item, attempt, data) \
             SELECT run_id, $1, kind, step_id, item, attempt, data FROM \
             unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[]) \
             WITH ORDINALITY AS e(run_id, kind, step_id, item, attempt, data, n) ORDER BY n",
        )
        .bind(self.now)
        .bind(&run_ids)
        .bind(&kinds)
        .bind(&steps)
        .bind(&items)
        .bind(&attempts)
        .bind(&data)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Tx for PgTx {
    fn now(&self) -> i64 {
        self.now
    }

    async fn insert_run(&mut self, run: &Run) -> Result<()> {
        sqlx::query(
            "INSERT INTO runs (id, tenant, template, version, digest, source, files, file, \
             base_dir, inputs, status, output, error, idempotency_key, request_digest, \
             created_at, started_at, finished_at, updated_at, parent_run_id, parent_step_id, \
             parent_item, parent_action, budget) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
              $20, $21, $22, $23, $24)",
        )
        .bind(&run.id)
        .bind(&run.tenant)
        .bind(&run.template)
        .bind(&run.version)
        .bind(&run.digest)
        .bind(&run.source)
        .bind(json_text(&run.files))
        .bind(&run.file)
        .bind(&run.base_dir)
        .bind(json_text(&run.inputs))
        .bind(run.status.as_str())
        .bind(opt_json(run.output.as_ref()))
        .bind(&run.error)
        .bind(&run.idempotency_key)
        .bind(&run.request_digest)
        .bind(run.created_at)
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.updated_at)
        .bind(run.parent.as_ref().map(|p| &p.run_id))
        .bind(run.parent.as_ref().and_then(|p| p.step.as_ref()))
        .bind(run.parent.as_ref().and_then(|p| p.item).map(i64::from))
        .bind(run.parent.as_ref().and_then(|p| p.action.as_ref()))
        .bind(crate::sqlite::budget_text(run.budget.as_ref()))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn record_usage(&mut self, usage: &[usage::TaskUsage]) -> Result<()> {
        if usage.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = usage.iter().map(|u| u.task_id).collect();
        let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
        let prompt: Vec<i64> = usage.iter().map(|u| clamp(u.llm_prompt_tokens)).collect();
        let completion: Vec<i64> = usage
            .iter()
            .map(|u| clamp(u.llm_completion_tokens))
            .collect();
        let cost: Vec<f64> = usage.iter().map(|u| u.cost_usd).collect();
        // One statement for the batch; rows in id order, as every other task update here.
        sqlx::query(
            "UPDATE tasks t SET llm_prompt_tokens = t.llm_prompt_tokens + u.p, \
             llm_completion_tokens = t.llm_completion_tokens + u.c, cost_usd = t.cost_usd + u.d \
             FROM (SELECT id, SUM(p)::BIGINT AS p, SUM(c)::BIGINT AS c, SUM(d) AS d FROM \
                   unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[]) AS x(id, p, c, d) \
                   GROUP BY id) u \
             WHERE t.id = u.id",
        )
        .bind(&ids)
        .bind(&prompt)
        .bind(&completion)
        .bind(&cost)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn run_usage(&mut self, run_id: &str) -> Result<usage::RunUsage> {
        let sql = format!(
            "SELECT {} FROM tasks t WHERE t.run_id = $1",
            usage::sum_columns("t.cache_hit")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_one(&mut *self.tx)
            .await?;
        usage::usage_from_row(&row)
    }

    async fn admit_run(&mut self, tenant: &str) -> Result<Option<usage::QuotaRefusal>> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT max_runs_per_hour FROM tenant_quotas WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(&mut *self.tx)
                .await?
                .flatten();
        let Some(max) = max else {
            return Ok(None);
        };
        // Until commit, the tenant's other creators wait here, so each one counts the runs
        // the previous ones inserted (READ COMMITTED reads them after the lock is granted).
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LOCK_RUN_RATE)
            .bind(tenant)
            .execute(&mut *self.tx)
            .await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest, MAX(now) AS now FROM \
             (SELECT weft_now_ms() AS now) c LEFT JOIN LATERAL \
             (SELECT created_at FROM runs WHERE tenant = $1 AND created_at > c.now - $2 \
              ORDER BY created_at DESC LIMIT $3) recent ON TRUE",
        )
        .bind(tenant)
        .bind(usage::RUN_RATE_WINDOW_MS)
        .bind(max)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(usage::refusal(
            max,
            row.try_get("n")?,
            row.try_get("oldest")?,
            row.try_get("now")?,
        ))
    }

    async fn run_by_idempotency_key(&mut self, tenant: &str, key: &str) -> Result<Option<Run>> {
        // Serialises creators of the same key: the second one waits here until the first
        // commits, then finds its run instead of inserting a duplicate.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || chr(31) || $3))")
            .bind(LOCK_IDEMPOTENCY)
            .bind(tenant)
            .bind(key)
            .execute(&mut *self.tx)
            .await?;
        let row = sqlx::query("SELECT * FROM runs WHERE tenant = $1 AND idempotency_key = $2")
            .bind(tenant)
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    async fn lock_run(&mut self, run_id: &str) -> Result<Option<Run>> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1 FOR UPDATE")
            .bind(run_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    async fn set_run_status(&mut self, run_id: &str, u: &RunUpdate) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET status = $1, output = COALESCE($2, output), error = $3, \
             started_at = CASE WHEN $1 = 'running' AND started_at IS NULL THEN $4 ELSE started_at END, \
             finished_at = CASE WHEN $5 THEN $4 ELSE NULL END, updated_at = $4 WHERE id = $6",
        )
        .bind(u.status.as_str())
        .bind(opt_json(u.output.as_ref()))
        .bind(&u.error)
        .bind(self.now)
        .bind(u.status.is_terminal())
        .bind(run_id)
        .execute(&mut *self.tx)
        .await?;
        if u.status == RunStatus::Running {
            // A resumed run may have tasks ready to go.
            self.queued_work = true;
        }
        Ok(())
    }

    async fn insert_steps(&mut self, steps: &[StepRow]) -> Result<()> {
        for s in steps {
            sqlx::query(
                "INSERT INTO steps (run_id, step_id, idx, tool, status, concurrency, output, \
                 error, attempts, items_total, items_done, items_failed, cache_hits, started_at, \
                 finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&s.run_id)
            .bind(&s.step_id)
            .bind(i64::from(s.idx))
            .bind(&s.tool)
            .bind(s.status.as_str())
            .bind(s.concurrency.map(i64::from))
            .bind(opt_json(s.output.as_ref()))
            .bind(&s.error)
            .bind(i64::from(s.attempts))
            .bind(s.items_total.map(i64::from))
            .bind(i64::from(s.items_done))
            .bind(i64::from(s.items_failed))
            .bind(i64::from(s.cache_hits))
            .bind(s.started_at)
            .bind(s.finished_at)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn load_steps(&mut self, run_id: &str) -> Result<Vec<StepRow>> {
        let rows = sqlx::query("SELECT * FROM steps WHERE run_id = $1 ORDER BY idx")
            .bind(run_id)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(step_from_row).collect()
    }

    async fn update_step(&mut self, s: &StepRow) -> Result<()> {
        sqlx::query(
            "UPDATE steps SET status = $1, concurrency = $2, output = $3, error = $4, \
             attempts = $5, items_total = $6, items_done = $7, items_failed = $8, \
             cache_hits = $9, started_at = $10, finished_at = $11 \
             WHERE run_id = $12 AND step_id = $13",
        )
        .bind(s.status.as_str())
        .bind(s.concurrency.map(i64::from))
        .bind(opt_json(s.output.as_ref()))
        .bind(&s.error)
        .bind(i64::from(s.attempts))
        .bind(s.items_total.map(i64::from))
        .bind(i64::from(s.items_done))
        .bind(i64::from(s.items_failed))
        .bind(i64::from(s.cache_hits))
        .bind(s.started_at)
        .bind(s.finished_at)
        .bind(&s.run_id)
        .bind(&s.step_id)
        .execute(&mut *self.tx)
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
        sqlx::query(
            "UPDATE steps SET items_done = items_done + $1, items_failed = items_failed + $2 \
             WHERE run_id = $3 AND step_id = $4",
        )
        .bind(done)
        .bind(failed)
        .bind(run_id)
        .bind(step_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_tasks(&mut self, tasks: &[NewTask]) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let n = tasks.len();
        let (mut run_ids, mut tenants, mut steps, mut items) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut tools, mut inputs, mut statuses, mut max_attempts) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut not_before, mut outputs, mut errors, mut cache_keys) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut hits, mut finished) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for t in tasks {
            let (status, output, error, hit) = match &t.done {
                Some((status, output, error, hit)) => {
                    (*status, Some(json_text(output)), error.clone(), *hit)
                }
                None => {
                    self.queued_work = true;
                    (TaskStatus::Queued, None, None, false)
                }
            };
            run_ids.push(t.run_id.as_str());
            tenants.push(t.tenant.as_str());
            steps.push(t.step_id.as_str());
            items.push(t.item.map(i64::from));
            tools.push(t.tool.as_str());
            inputs.push(json_text(&t.input));
            statuses.push(status.as_str());
            max_attempts.push(i64::from(t.max_attempts));
            not_before.push(t.not_before);
            outputs.push(output);
            errors.push(error);
            cache_keys.push(t.cache_key.as_deref());
            hits.push(hit);
            finished.push(t.done.as_ref().map(|_| self.now));
        }
        sqlx::query(
            "INSERT INTO tasks (run_id, tenant, step_id, item, tool, input, status, attempt, \
             max_attempts, not_before, output, error, cache_key, cache_hit, created_at, \
             started_at, finished_at) \
             SELECT run_id, tenant, step_id, item, tool, input, status, 1, max_attempts, \
             not_before, output, error, cache_key, cache_hit, $1, finished, finished FROM \
             unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], \
             $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::text[], \
             $14::boolean[], $15::bigint[]) WITH ORDINALITY AS t(run_id, tenant, step_id, item, \
             tool, input, status, max_attempts, not_before, output, error, cache_key, cache_hit, \
             finished, n) ORDER BY n",
        )
        .bind(self.now)
        .bind(&run_ids)
        .bind(&tenants)
        .bind(&steps)
        .bind(&items)
        .bind(&tools)
        .bind(&inputs)
        .bind(&statuses)
        .bind(&max_attempts)
        .bind(&not_before)
        .bind(&outputs)
        .bind(&errors)
        .bind(&cache_keys)
        .bind(&hits)
        .bind(&finished)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn claim(
        &mut self,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        only_runs: Option<&[String]>,
        max_running: Option<u32>,
    ) -> Result<Vec<Task>> {
        if limit == 0 || only_runs.is_some_and(|r| r.is_empty()) {
            return Ok(Vec::new());
        }
        let runs = runs_filter(only_runs);
        // 1. Every cap this claim counts against, locked in one (namespace, key) order so no
        //    two claimers count the same leases at once and none waits on another in a cycle:
        //    capped steps with ready work, capped tenants with running runs, and the whole
        //    store when `max_running` is given. The claim below is a new statement, so it sees
        //    every claim committed by whoever held these locks before. A capped step or tenant
        //    that shows up only after this statement (a run committed in between) is left
        //    for the next turn: statement 2 takes only from caps locked here.
        let locked = sqlx::query(
            "SELECT ns, k FROM ( \
               SELECT $1 AS ns, hashtext(s.run_id || chr(31) || s.step_id) AS k \
               FROM steps s JOIN runs r ON r.id = s.run_id \
               WHERE s.status = 'running' AND r.status IN ('running', 'waiting') \
                 AND s.concurrency IS NOT NULL \
                 AND ($2::text[] IS NULL OR s.run_id = ANY($2)) \
                 AND EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = s.run_id \
                   AND t.step_id = s.step_id AND t.status = 'queued' \
                   AND t.not_before <= weft_now_ms()) \
               UNION \
               SELECT $3, hashtext(tn.name) FROM tenants tn \
               WHERE tn.max_concurrent_tasks IS NOT NULL AND EXISTS (SELECT 1 FROM runs r \
                 WHERE r.tenant = tn.name AND r.status IN ('running', 'waiting') \
                 AND ($2::text[] IS NULL OR r.id = ANY($2))) \
               UNION \
               SELECT $4, 0 WHERE $5::bigint IS NOT NULL \
               ORDER BY 1, 2 OFFSET 0) locks WHERE pg_advisory_xact_lock(ns, k) IS NOT NULL",
        )
        .bind(LOCK_STEP_CAP)
        .bind(&runs)
        .bind(LOCK_TENANT_CAP)
        .bind(LOCK_GLOBAL_CAP)
        .bind(max_running.map(i64::from))
        .fetch_all(&mut *self.tx)
        .await?;
        let (mut step_keys, mut tenant_keys) = (Vec::new(), Vec::new());
        for row in &locked {
            let (ns, k): (i32, i32) = (row.try_get("ns")?, row.try_get("k")?);
            if ns == LOCK_STEP_CAP {
                step_keys.push(k);
            } else if ns == LOCK_TENANT_CAP {
                tenant_keys.push(k);
            }
        }
        // 2. One statement: each running step's free slots (within its tenant's), filled
        //    oldest run first, in item order, skipping rows another claimer holds; then each
        //    capped tenant's share cut to its free slots, and the whole to the global cap.
        //    Items are ordered by `item` alone (unique within a step), which `tasks_by_step`
        //    gives in index order: the scan stops after the free slots instead of reading
        //    and sorting every queued item of a large fan-out, and `not_before` is compared
        //    with the transaction's clock, not a clock read per row.
        let rows = sqlx::query(
            "WITH tfree AS ( \
               SELECT tn.name AS tenant, tn.max_concurrent_tasks - (SELECT count(*) FROM tasks t \
                 WHERE t.status = 'running' AND t.tenant = tn.name) AS free \
               FROM tenants tn WHERE tn.max_concurrent_tasks IS NOT NULL \
             ), ready AS ( \
               SELECT s.run_id, s.step_id, r.tenant, r.created_at, s.idx, \
                 LEAST(CASE WHEN s.concurrency IS NULL THEN $3 \
                      ELSE s.concurrency - (SELECT count(*) FROM tasks t WHERE t.run_id = s.run_id \
                        AND t.step_id = s.step_id AND t.status = 'running') END, \
                   COALESCE((SELECT f.free FROM tfree f WHERE f.tenant = r.tenant), $3)) AS free \
               FROM steps s JOIN runs r ON r.id = s.run_id \
               WHERE s.status = 'running' AND r.status IN ('running', 'waiting') \
                 AND ($4::text[] IS NULL OR s.run_id = ANY($4)) \
                 AND (s.concurrency IS NULL \
                   OR hashtext(s.run_id || chr(31) || s.step_id) = ANY($7::int[])) \
                 AND NOT EXISTS (SELECT 1 FROM tenants tn WHERE tn.name = r.tenant \
                   AND tn.max_concurrent_tasks IS NOT NULL \
                   AND NOT hashtext(tn.name) = ANY($8::int[])) \
             ), candidates AS ( \
               SELECT c.id, c.item, ready.tenant, ready.created_at, ready.idx, \
                 row_number() OVER (PARTITION BY ready.tenant \
                   ORDER BY ready.created_at, ready.idx, c.item, c.id) AS nth \
               FROM ready, LATERAL ( \
                 SELECT t.id, t.item FROM tasks t WHERE t.run_id = ready.run_id \
                   AND t.step_id = ready.step_id AND t.status = 'queued' \
                   AND t.not_before <= $5 \
                 ORDER BY t.item LIMIT GREATEST(ready.free, 0) \
                 FOR UPDATE SKIP LOCKED) c \
             ), picked AS ( \
               SELECT c.id FROM candidates c LEFT JOIN tfree f ON f.tenant = c.tenant \
               WHERE f.free IS NULL OR c.nth <= f.free \
               ORDER BY c.created_at, c.idx, c.item, c.id \
               LIMIT GREATEST(LEAST($3, COALESCE($6 - (SELECT count(*) FROM tasks t \
                 WHERE t.status = 'running'), $3)), 0) \
             ) \
             UPDATE tasks SET status = 'running', lease_owner = $1, \
               lease_expires = weft_now_ms() + $2, started_at = $5 \
             WHERE id IN (SELECT id FROM picked) RETURNING *",
        )
        .bind(owner)
        .bind(lease_ms)
        .bind(i64::from(limit))
        .bind(&runs)
        .bind(self.now)
        .bind(max_running.map(i64::from))
        .bind(&step_keys)
        .bind(&tenant_keys)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut claimed = rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|t| t.id);
        Ok(claimed)
    }

    async fn finish_task(&mut self, f: &TaskFinish<'_>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET status = $1, output = $2, error = $3, finished_at = $4, \
             lease_owner = NULL, lease_expires = NULL \
             WHERE id = $5 AND attempt = $6 AND lease_owner = $7 AND status = 'running'",
        )
        .bind(f.status.as_str())
        .bind(opt_json(f.output))
        .bind(f.error)
        .bind(self.now)
        .bind(f.task_id)
        .bind(i64::from(f.attempt))
        .bind(f.owner)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_tasks(&mut self, fins: &[TaskFinish<'_>]) -> Result<Vec<bool>> {
        if fins.len() < 2 {
            let mut done = Vec::new();
            for f in fins {
                done.push(self.finish_task(f).await?);
            }
            return Ok(done);
        }
        let n = fins.len();
        let (mut ids, mut attempts, mut owners) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut statuses, mut outputs, mut errors) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for f in fins {
            ids.push(f.task_id);
            attempts.push(i64::from(f.attempt));
            owners.push(f.owner);
            statuses.push(f.status.as_str());
            outputs.push(opt_json(f.output));
            errors.push(f.error);
        }
        // One statement for the batch, fenced per row exactly like `finish_task`.
        let rows = sqlx::query(
            "UPDATE tasks t SET status = f.status, output = f.output, error = f.error, \
             finished_at = $1, lease_owner = NULL, lease_expires = NULL \
             FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
               $7::text[]) AS f(id, attempt, owner, status, output, error) \
             WHERE t.id = f.id AND t.attempt = f.attempt AND t.lease_owner = f.owner \
               AND t.status = 'running' RETURNING t.id",
        )
        .bind(self.now)
        .bind(&ids)
        .bind(&attempts)
        .bind(&owners)
        .bind(&statuses)
        .bind(&outputs)
        .bind(&errors)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut ended = std::collections::HashSet::with_capacity(rows.len());
        for r in &rows {
            ended.insert(r.try_get::<i64, _>("id")?);
        }
        Ok(ids.iter().map(|id| ended.contains(id)).collect())
    }

    async fn retry_task(
        &mut self,
        task_id: i64,
        attempt: u32,
        owner: &str,
        not_before: i64,
        error: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'queued', attempt = attempt + 1, not_before = $1, \
             error = $2, lease_owner = NULL, lease_expires = NULL \
             WHERE id = $3 AND attempt = $4 AND lease_owner = $5 AND status = 'running'",
        )
        .bind(not_before)
        .bind(error)
        .bind(task_id)
        .bind(i64::from(attempt))
        .bind(owner)
        .execute(&mut *self.tx)
        .await?;
        let requeued = done.rows_affected() == 1;
        self.queued_work |= requeued;
        Ok(requeued)
    }

    async fn item_results(&mut self, run_id: &str, step_id: &str) -> Result<Vec<ItemResult>> {
        let rows = sqlx::query(
            "SELECT item, status, output, error FROM tasks WHERE run_id = $1 AND step_id = $2 \
             ORDER BY item",
        )
        .bind(run_id)
        .bind(step_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ItemResult {
                    item: opt_u32(r, "item")?.unwrap_or(0),
                    status: task_status(r)?,
                    output: parse_json(r.try_get("output")?, "task output")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    async fn cancel_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'cancelled', finished_at = $1, lease_owner = NULL, \
             lease_expires = NULL WHERE run_id = $2 AND ($3::text IS NULL OR step_id = $3) \
             AND status IN ('queued', 'running', 'waiting')",
        )
        .bind(self.now)
        .bind(run_id)
        .bind(step_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }

    async fn stale_tasks(&mut self, dead_owners: &[String], limit: u32) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE status = 'running' \
             AND (lease_expires < weft_now_ms() OR lease_owner = ANY($1)) ORDER BY id LIMIT $2",
        )
        .bind(dead_owners)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn reclaim_task(&mut self, task_id: i64, attempt: u32) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'queued', attempt = attempt + 1, \
             lease_losses = lease_losses + 1, not_before = $1, error = 'lease expired', \
             lease_owner = NULL, lease_expires = NULL \
             WHERE id = $2 AND attempt = $3 AND status = 'running'",
        )
        .bind(self.now)
        .bind(task_id)
        .bind(i64::from(attempt))
        .execute(&mut *self.tx)
        .await?;
        let requeued = done.rows_affected() == 1;
        self.queued_work |= requeued;
        Ok(requeued)
    }

    async fn requeue_unfinished(&mut self, run_id: &str, step_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'queued', attempt = 1, lease_losses = 0, not_before = $1, \
             error = NULL, \
             finished_at = NULL, lease_owner = NULL, lease_expires = NULL \
             WHERE run_id = $2 AND step_id = $3 AND status IN ('failed', 'cancelled')",
        )
        .bind(self.now)
        .bind(run_id)
        .bind(step_id)
        .execute(&mut *self.tx)
        .await?;
        self.queued_work |= done.rows_affected() > 0;
        Ok(done.rows_affected())
    }

    async fn renew_leases(&mut self, owner: &str, lease_ms: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "UPDATE tasks SET lease_expires = weft_now_ms() + $1 \
             WHERE lease_owner = $2 AND status = 'running' RETURNING id",
        )
        .bind(lease_ms)
        .bind(owner)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    async fn set_waiting(
        &mut self,
        run_id: &str,
        step_id: &str,
        until: Option<i64>,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'waiting', not_before = $1, lease_owner = NULL, \
             lease_expires = NULL WHERE run_id = $2 AND step_id = $3 AND status IN ('queued', 'waiting')",
        )
        .bind(until.unwrap_or(i64::MAX))
        .bind(run_id)
        .bind(step_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }

    async fn finish_waiting(
        &mut self,
        task_id: i64,
        status: TaskStatus,
        output: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET status = $1, output = $2, error = $3, finished_at = $4, \
             started_at = COALESCE(started_at, created_at) WHERE id = $5 AND status = 'waiting'",
        )
        .bind(status.as_str())
        .bind(opt_json(output))
        .bind(error)
        .bind(self.now)
        .bind(task_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn waiting_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE run_id = $1 AND ($2::text IS NULL OR step_id = $2) \
             AND status = 'waiting' ORDER BY step_id, item, id",
        )
        .bind(run_id)
        .bind(step_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn due_waits(&mut self, limit: u32) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE status = 'waiting' AND not_before <= weft_now_ms() \
             ORDER BY not_before LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn child_runs(&mut self, run_id: &str) -> Result<Vec<Run>> {
        let rows =
            sqlx::query("SELECT * FROM runs WHERE parent_run_id = $1 ORDER BY created_at, id")
                .bind(run_id)
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn next_ready_at(&mut self, only_runs: Option<&[String]>) -> Result<Option<i64>> {
        if only_runs.is_some_and(|r| r.is_empty()) {
            return Ok(None);
        }
        Ok(sqlx::query_scalar(
            "SELECT MIN(not_before) FROM tasks WHERE status = 'queued' AND not_before > $1 \
             AND ($2::text[] IS NULL OR run_id = ANY($2))",
        )
        .bind(self.now)
        .bind(runs_filter(only_runs))
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn cache_get(&mut self, key: &str) -> Result<Option<Value>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT output FROM cache WHERE key = $1 AND expires_at > $2")
                .bind(key)
                .bind(self.now)
                .fetch_optional(&mut *self.tx)
                .await?;
        parse_json(text, "cached output")
    }

    async fn cache_put(
        &mut self,
        key: &str,
        tenant: &str,
        output: &Value,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO cache (key, tenant, output, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET \
             output = excluded.output, created_at = excluded.created_at, \
             expires_at = excluded.expires_at",
        )
        .bind(key)
        .bind(tenant)
        .bind(json_text(output))
        .bind(self.now)
        .bind(expires_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn append_events(&mut self, events: &[NewEvent]) -> Result<()> {
        self.events.extend_from_slice(events);
        Ok(())
    }

    async fn insert_task_tokens(&mut self, tokens: &[crate::tokens::NewTaskToken]) -> Result<()> {
        crate::tokens::insert_pg(&mut self.tx, self.now, tokens).await
    }

    async fn claim_schedule_slot(&mut self, claim: &crate::schedules::SlotClaim) -> Result<bool> {
        crate::schedules::claim_pg(&mut self.tx, claim, self.now).await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush_events().await?;
        if self.queued_work {
            // Delivered by PostgreSQL at commit, and only if the commit succeeds.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WORK_CHANNEL)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}
