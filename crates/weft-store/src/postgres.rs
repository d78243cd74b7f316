//! The PostgreSQL backend: many `weft worker` and `weft serve` processes on many machines
//! sharing one database.
//!
//! The same contract as SQLite, kept across processes with the database's own tools:
//! - every "now" that decides a lease is the database clock (`weft_now_ms()`), never a worker's;
//! - claiming is one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`,
//!   preceded by transaction-scoped advisory locks on the capped steps it may take from (taken
//!   in key order, so claimers never deadlock), so a step's `concurrency` holds however many
//!   workers claim at once: the claim statement starts after the lock and sees every earlier
//!   claimer's commit;
//! - events are written at commit, under a per-run advisory lock, so within a run `seq` order
//!   is commit order and a reader paging with `seq > after` never skips an event that commits
//!   late;
//! - a commit that queued work sends one `NOTIFY weft_work`; [`Store::wait_for_work`] listens,
//!   and wakes up after every reconnect too, because notifications sent meanwhile are lost.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use tokio::sync::Notify;

use crate::*;

/// The channel a commit that queued tasks notifies.
const WORK_CHANNEL: &str = "weft_work";
/// Advisory lock namespaces (the first key of the two-key form).
const LOCK_STEP_CAP: i32 = 0x7765_0001;
const LOCK_RUN_EVENTS: i32 = 0x7765_0002;
const LOCK_IDEMPOTENCY: i32 = 0x7765_0003;

pub struct PgStore {
    pub(crate) pool: PgPool,
    wake: std::sync::Arc<Notify>,
    /// Started by the first [`Store::wait_for_work`], so a short-lived CLI process that never
    /// waits for work holds one connection, not two.
    listener: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    describe: String,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(l) = self.listener.get() {
            l.abort();
        }
    }
}

impl PgStore {
    /// Connects, brings the schema up to date (several processes may start at once: the
    /// migrator holds an advisory lock while it works), and starts listening for work.
    pub async fn open(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| Error::Invalid(format!("not a PostgreSQL URL `{url}`: {e}")))?;
        let describe = format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore {
            pool,
            wake: std::sync::Arc::new(Notify::new()),
            listener: std::sync::OnceLock::new(),
            describe,
        })
    }

    /// Closes every connection (the listener's too).
    pub async fn close(&self) {
        if let Some(l) = self.listener.get() {
            l.abort();
        }
        self.pool.close().await;
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

fn wake_all(wake: &Notify) {
    wake.notify_waiters();
    // A worker between two waits gets the wake-up on its next wait.
    wake.notify_one();
}

/// Forwards `NOTIFY weft_work` to local waiters, reconnecting for ever. Every (re)connect
/// counts as a wake-up: whatever was notified while the connection was down is lost, so
/// workers must look at the queue again.
async fn listen(pool: PgPool, wake: std::sync::Arc<Notify>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for work; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(error) = listener.listen(WORK_CHANNEL).await {
            tracing::warn!(%error, "LISTEN failed; retrying.");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        wake_all(&wake);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake_all(&wake),
                // The connection dropped; the next try_recv reconnects and listens again.
                Ok(None) => {
                    tracing::info!("The work listener lost its connection; reconnecting.");
                    wake_all(&wake);
                }
                Err(error) => {
                    tracing::warn!(%error, "The work listener failed; reconnecting.");
                    tokio::time::sleep(backoff).await;
                    wake_all(&wake);
                    break;
                }
            }
        }
    }
}

async fn db_now(tx: &mut Transaction<'static, Postgres>) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT weft_now_ms()")
        .fetch_one(&mut **tx)
        .await?)
}

#[async_trait]
impl Store for PgStore {
    async fn queue_status(&self) -> Result<QueueStatus> {
        let row = sqlx::query(
            "SELECT weft_now_ms() AS now, \
             COUNT(*) FILTER (WHERE status = 'queued') AS queued, \
             COUNT(*) FILTER (WHERE status = 'queued' AND not_before <= weft_now_ms()) AS due, \
             COUNT(*) FILTER (WHERE status = 'running') AS running, \
             MIN(not_before) FILTER (WHERE status = 'queued' AND not_before <= weft_now_ms()) \
               AS oldest \
             FROM tasks WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        let leases = sqlx::query(
            "SELECT lease_owner, COUNT(*) AS n, MAX(lease_expires) AS expires FROM tasks \
             WHERE status = 'running' AND lease_owner IS NOT NULL \
             GROUP BY lease_owner ORDER BY lease_owner",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(QueueStatus {
            now: row.try_get("now")?,
            queued: row.try_get("queued")?,
            due: row.try_get("due")?,
            running: row.try_get("running")?,
            oldest_due_at: row.try_get("oldest")?,
            leases: leases
                .iter()
                .map(|r| {
                    Ok(LeaseHolder {
                        owner: r.try_get("lease_owner")?,
                        tasks: r.try_get("n")?,
                        expires_at: r.try_get::<Option<i64>, _>("expires")?.unwrap_or(0),
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    async fn schema_status(&self) -> Result<SchemaStatus> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(SchemaStatus {
            applied,
            latest: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
        })
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let mut tx = self.pool.begin().await?;
        let now = db_now(&mut tx).await?;
        Ok(Box::new(PgTx {
            tx,
            now,
            events: Vec::new(),
            queued_work: false,
        }))
    }

    async fn run(&self, tenant: &str, id: &str) -> Result<Option<Run>> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1 AND tenant = $2")
            .bind(id)
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    async fn runs(&self, q: &RunQuery) -> Result<Vec<Run>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE tenant = $1 AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR template = $3) \
             AND ($4::bigint IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
             ORDER BY created_at DESC, id DESC LIMIT $6",
        )
        .bind(&q.tenant)
        .bind(q.status.map(|s| s.as_str()))
        .bind(&q.template)
        .bind(q.before.as_ref().map(|b| b.0))
        .bind(q.before.as_ref().map(|b| b.1.as_str()))
        .bind(q.limit.max(1) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRow>> {
        let rows = sqlx::query("SELECT * FROM steps WHERE run_id = $1 ORDER BY idx")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(step_from_row).collect()
    }

    async fn tasks(&self, run_id: &str) -> Result<Vec<Task>> {
        let rows = sqlx::query("SELECT * FROM tasks WHERE run_id = $1 ORDER BY step_id, item, id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn events(&self, run_id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn now(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT weft_now_ms()")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.listener
            .get_or_init(|| tokio::spawn(listen(self.pool.clone(), self.wake.clone())));
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

struct PgTx {
    tx: Transaction<'static, Postgres>,
    now: i64,
    /// Written at commit, under the runs' event locks (see the module comment).
    events: Vec<NewEvent>,
    /// Whether this transaction queued a task, so its commit must wake other workers.
    queued_work: bool,
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn opt_json(v: Option<&Value>) -> Option<String> {
    v.map(json_text)
}

fn parse_json(text: Option<String>, what: &str) -> Result<Option<Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| Error::Corrupt(format!("{what}: {e}"))))
        .transpose()
}

fn opt_u32(r: &PgRow, col: &str) -> Result<Option<u32>> {
    let v: Option<i64> = r.try_get(col)?;
    v.map(|v| u32::try_from(v).map_err(|_| Error::Corrupt(format!("{col} = {v}"))))
        .transpose()
}

fn u32_of(r: &PgRow, col: &str) -> Result<u32> {
    opt_u32(r, col)?.ok_or_else(|| Error::Corrupt(format!("{col} is null")))
}

fn run_from_row(r: &PgRow) -> Result<Run> {
    let status: String = r.try_get("status")?;
    Ok(Run {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        template: r.try_get("template")?,
        version: r.try_get("version")?,
        digest: r.try_get("digest")?,
        source: r.try_get("source")?,
        files: parse_json(r.try_get("files")?, "run files")?.unwrap_or(Value::Null),
        file: r.try_get("file")?,
        base_dir: r.try_get("base_dir")?,
        inputs: parse_json(r.try_get("inputs")?, "run inputs")?.unwrap_or(Value::Null),
        status: RunStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("run status `{status}`")))?,
        output: parse_json(r.try_get("output")?, "run output")?,
        error: r.try_get("error")?,
        idempotency_key: r.try_get("idempotency_key")?,
        request_digest: r.try_get("request_digest")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn step_from_row(r: &PgRow) -> Result<StepRow> {
    let status: String = r.try_get("status")?;
    Ok(StepRow {
        run_id: r.try_get("run_id")?,
        step_id: r.try_get("step_id")?,
        idx: u32_of(r, "idx")?,
        tool: r.try_get("tool")?,
        status: StepStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("step status `{status}`")))?,
        concurrency: opt_u32(r, "concurrency")?,
        output: parse_json(r.try_get("output")?, "step output")?,
        error: r.try_get("error")?,
        attempts: u32_of(r, "attempts")?,
        items_total: opt_u32(r, "items_total")?,
        items_done: u32_of(r, "items_done")?,
        items_failed: u32_of(r, "items_failed")?,
        cache_hits: u32_of(r, "cache_hits")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn task_status(r: &PgRow) -> Result<TaskStatus> {
    let status: String = r.try_get("status")?;
    TaskStatus::parse(&status).ok_or_else(|| Error::Corrupt(format!("task status `{status}`")))
}

fn task_from_row(r: &PgRow) -> Result<Task> {
    Ok(Task {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        tenant: r.try_get("tenant")?,
        step_id: r.try_get("step_id")?,
        item: opt_u32(r, "item")?,
        tool: r.try_get("tool")?,
        input: parse_json(r.try_get("input")?, "task input")?.unwrap_or(Value::Null),
        status: task_status(r)?,
        attempt: u32_of(r, "attempt")?,
        max_attempts: u32_of(r, "max_attempts")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires: r.try_get("lease_expires")?,
        output: parse_json(r.try_get("output")?, "task output")?,
        error: r.try_get("error")?,
        cache_key: r.try_get("cache_key")?,
        cache_hit: r.try_get("cache_hit")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn event_from_row(r: &PgRow) -> Result<Event> {
    Ok(Event {
        seq: r.try_get("seq")?,
        run_id: r.try_get("run_id")?,
        ts: r.try_get("ts")?,
        kind: r.try_get("kind")?,
        step_id: r.try_get("step_id")?,
        item: opt_u32(r, "item")?,
        attempt: opt_u32(r, "attempt")?,
        data: parse_json(r.try_get("data")?, "event data")?.unwrap_or(Value::Null),
    })
}

/// The runs filter as a nullable text array (`NULL` = every run).
fn runs_filter(only_runs: Option<&[String]>) -> Option<Vec<String>> {
    only_runs.map(<[String]>::to_vec)
}

impl PgTx {
    async fn flush_events(&mut self) -> Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.events);
        let mut runs: Vec<&str> = events.iter().map(|e| e.run_id.as_str()).collect();
        runs.sort_unstable();
        runs.dedup();
        // Lock in key order so two committers never wait on each other in a cycle. Held until
        // commit, so a run's events commit in seq order.
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1, k) FROM \
             (SELECT DISTINCT hashtext(r) AS k FROM unnest($2::text[]) AS r ORDER BY k OFFSET 0) s",
        )
        .bind(LOCK_RUN_EVENTS)
        .bind(&runs)
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
             created_at, started_at, finished_at, updated_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
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
        .execute(&mut *self.tx)
        .await?;
        Ok(())
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
    ) -> Result<Vec<Task>> {
        if limit == 0 || only_runs.is_some_and(|r| r.is_empty()) {
            return Ok(Vec::new());
        }
        let runs = runs_filter(only_runs);
        // 1. Capped steps with ready work: lock them (in key order) so no other claimer counts
        //    their leases at the same time. The claim below is a new statement, so it sees
        //    every claim committed by whoever held these locks before.
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1, k) FROM ( \
               SELECT DISTINCT hashtext(s.run_id || chr(31) || s.step_id) AS k \
               FROM steps s JOIN runs r ON r.id = s.run_id \
               WHERE s.status = 'running' AND r.status = 'running' AND s.concurrency IS NOT NULL \
                 AND ($2::text[] IS NULL OR s.run_id = ANY($2)) \
                 AND EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = s.run_id \
                   AND t.step_id = s.step_id AND t.status = 'queued' \
                   AND t.not_before <= weft_now_ms()) \
               ORDER BY k OFFSET 0) locks",
        )
        .bind(LOCK_STEP_CAP)
        .bind(&runs)
        .execute(&mut *self.tx)
        .await?;
        // 2. One statement: each running step's free slots, filled oldest run first, in item
        //    order, skipping rows another claimer holds.
        let rows = sqlx::query(
            "WITH ready AS ( \
               SELECT s.run_id, s.step_id, r.created_at, s.idx, \
                 CASE WHEN s.concurrency IS NULL THEN $3 \
                      ELSE s.concurrency - (SELECT count(*) FROM tasks t WHERE t.run_id = s.run_id \
                        AND t.step_id = s.step_id AND t.status = 'running') END AS free \
               FROM steps s JOIN runs r ON r.id = s.run_id \
               WHERE s.status = 'running' AND r.status = 'running' \
                 AND ($4::text[] IS NULL OR s.run_id = ANY($4)) \
             ), picked AS ( \
               SELECT c.id FROM ready, LATERAL ( \
                 SELECT t.id, t.item FROM tasks t WHERE t.run_id = ready.run_id \
                   AND t.step_id = ready.step_id AND t.status = 'queued' \
                   AND t.not_before <= weft_now_ms() \
                 ORDER BY t.item, t.id LIMIT GREATEST(ready.free, 0) \
                 FOR UPDATE SKIP LOCKED) c \
               ORDER BY ready.created_at, ready.idx, c.item, c.id LIMIT $3 \
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
             AND status IN ('queued', 'running')",
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
            "UPDATE tasks SET status = 'queued', attempt = attempt + 1, not_before = $1, \
             error = 'lease expired', lease_owner = NULL, lease_expires = NULL \
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
            "UPDATE tasks SET status = 'queued', attempt = 1, not_before = $1, error = NULL, \
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

/// Helpers for tests that need a PostgreSQL database of their own.
pub mod testing {
    use super::*;

    /// The server tests use (`WEFT_TEST_PG`, default the local `test` database), or `None`
    /// with a message when it cannot be reached. With `WEFT_REQUIRE_SERVICES=1` an unreachable
    /// server is a failure instead of a skip.
    pub async fn server_url() -> Option<String> {
        let url = std::env::var("WEFT_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let reachable = async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect(&url)
                .await?;
            sqlx::query("SELECT 1").execute(&pool).await?;
            pool.close().await;
            Ok::<_, sqlx::Error>(())
        };
        match reachable.await {
            Ok(()) => Some(url),
            Err(e) if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("PostgreSQL at {url} is required (WEFT_REQUIRE_SERVICES=1) but: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: PostgreSQL at {url} is not reachable ({e}); set WEFT_TEST_PG");
                None
            }
        }
    }

    /// `server` with its database replaced by `name`.
    pub fn database_url(server: &str, name: &str) -> Result<String> {
        let mut url = url_without_db(server)?;
        url.push('/');
        url.push_str(name);
        Ok(url)
    }

    fn url_without_db(server: &str) -> Result<String> {
        let (base, query) = match server.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (server, None),
        };
        let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
        let path_start = base[scheme_end..]
            .find('/')
            .map(|i| i + scheme_end)
            .unwrap_or(base.len());
        if query.is_some() {
            return Err(Error::Invalid(
                "test server URLs must not have a query".into(),
            ));
        }
        Ok(base[..path_start].to_string())
    }

    /// Creates a fresh, empty database `weft_test_<random>` and returns its name and URL.
    pub async fn create_database(server: &str) -> Result<(String, String)> {
        let name = format!("weft_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(server)
            .await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&pool)
            .await?;
        pool.close().await;
        let url = database_url(server, &name)?;
        Ok((name, url))
    }

    /// Drops a database made by [`create_database`], disconnecting whoever still uses it.
    pub async fn drop_database(server: &str, name: &str) -> Result<()> {
        if !name.starts_with("weft_test_") || name.contains('"') {
            return Err(Error::Invalid(format!("refusing to drop `{name}`")));
        }
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(server)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&pool)
        .await?;
        pool.close().await;
        Ok(())
    }
}
