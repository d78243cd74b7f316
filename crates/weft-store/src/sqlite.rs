//! The embedded SQLite backend: one file, WAL, one writer connection.
//!
//! SQLite allows one writer at a time, so the store keeps exactly one write connection and
//! several read connections. Transactions start with `BEGIN IMMEDIATE`, so two processes sharing
//! one file (a `weft run` and a `weft runs cancel`) queue on the busy timeout instead of failing
//! half-way. Group commit happens one level up: the engine folds many completions into one
//! transaction, so they share one fsync.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use crate::*;

/// How hard a commit tries to survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is on disk before it is acknowledged.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a process crash, may lose the last commits on power loss.
    Relaxed,
}

pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    path: PathBuf,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The versions of the migrations applied, in order (empty for a new file).
async fn applied_versions(writer: &SqlitePool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1 ORDER BY version")
        .fetch_all(writer)
        .await
        .unwrap_or_default()
}

/// The versions of this build's migrations, in order.
fn expected_versions() -> Vec<i64> {
    let mut versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    versions.sort_unstable();
    versions.dedup();
    versions
}

/// An exclusive lock on `DB-migrate.lock` beside the database file, held until dropped (the
/// kernel releases it if the process dies).
async fn migration_lock(path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push("-migrate.lock");
    let lock_path = std::path::PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| Error::Invalid(format!("migration lock: {e}")))?
    .map_err(|e| Error::Invalid(format!("cannot lock the database for migrations: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path, durability: Durability) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        }
        let sync = match durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Relaxed => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        // Most starts find the schema current: one indexed read of every applied version
        // instead of the migrator's table checks and checksums.
        if applied_versions(&writer).await != expected_versions() {
            // Processes opening a brand-new file at once would each apply the first
            // migration: the holder of this lock migrates, the others wait and find the
            // schema current (the migrator skips what is applied).
            let lock = migration_lock(path).await?;
            if applied_versions(&writer).await != expected_versions() {
                MIGRATOR.run(&writer).await?;
            }
            drop(lock);
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options.read_only(true));
        Ok(SqliteStore {
            writer,
            reader,
            path: path.to_path_buf(),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn queue_status(&self) -> Result<QueueStatus> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT COALESCE(SUM(status = 'queued'), 0) AS queued, \
             COALESCE(SUM(status = 'queued' AND not_before <= ?1), 0) AS due, \
             COALESCE(SUM(status = 'running'), 0) AS running, \
             MIN(CASE WHEN status = 'queued' AND not_before <= ?1 THEN not_before END) AS oldest \
             FROM tasks WHERE status IN ('queued', 'running')",
        )
        .bind(now)
        .fetch_one(&self.reader)
        .await?;
        let leases = sqlx::query(
            "SELECT lease_owner, COUNT(*) AS n, MAX(lease_expires) AS expires FROM tasks \
             WHERE status = 'running' AND lease_owner IS NOT NULL \
             GROUP BY lease_owner ORDER BY lease_owner",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(QueueStatus {
            now,
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

    async fn run_usage(&self, run_id: &str) -> Result<usage::RunUsage> {
        let sql = format!(
            "SELECT {} FROM tasks t WHERE t.run_id = ?",
            usage::sum_columns("t.cache_hit = 1")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_one(&self.reader)
            .await?;
        usage::usage_from_row(&row)
    }

    async fn usage(&self, q: &usage::UsageQuery) -> Result<Vec<usage::UsageRow>> {
        let (key, template, order) = match q.group_by {
            usage::UsageGroup::Day => (
                "strftime('%Y-%m-%d', r.created_at / 1000, 'unixepoch')",
                "NULL",
                "key ASC",
            ),
            usage::UsageGroup::Template => ("r.template", "NULL", "key ASC"),
            usage::UsageGroup::Run => (
                "r.id",
                "MIN(r.template)",
                "MIN(r.created_at) DESC, key DESC",
            ),
        };
        let sql = format!(
            "SELECT {key} AS key, {template} AS template, COUNT(DISTINCT r.id) AS runs, {} \
             FROM runs r LEFT JOIN tasks t ON t.run_id = r.id \
             WHERE r.tenant = ? AND r.created_at >= ? GROUP BY {key} ORDER BY {order} LIMIT ?",
            usage::sum_columns("t.cache_hit = 1")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&q.tenant)
            .bind(q.since.unwrap_or(i64::MIN))
            .bind(q.limit.max(1) as i64)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(usage::UsageRow {
                    key: r.try_get("key")?,
                    template: r.try_get("template")?,
                    runs: r.try_get::<i64, _>("runs")?.max(0) as u64,
                    usage: usage::usage_from_row(r)?,
                })
            })
            .collect()
    }

    async fn tenant_quota(&self, tenant: &str) -> Result<usage::TenantQuota> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT max_runs_per_hour FROM tenant_quotas WHERE tenant = ?")
                .bind(tenant)
                .fetch_optional(&self.reader)
                .await?
                .flatten();
        Ok(usage::TenantQuota {
            max_runs_per_hour: max.and_then(|m| u32::try_from(m).ok()),
        })
    }

    async fn set_tenant_quota(&self, tenant: &str, quota: &usage::TenantQuota) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenant_quotas (tenant, max_runs_per_hour, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (tenant) DO UPDATE SET max_runs_per_hour = excluded.max_runs_per_hour, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(quota.max_runs_per_hour.map(i64::from))
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn schema_status(&self) -> Result<SchemaStatus> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.reader)
                .await?;
        Ok(SchemaStatus {
            applied,
            latest: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
        })
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteTx { tx, now: now_ms() }))
    }

    async fn run(&self, tenant: &str, id: &str) -> Result<Option<Run>> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ? AND tenant = ?")
            .bind(id)
            .bind(tenant)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    async fn runs(&self, q: &RunQuery) -> Result<Vec<Run>> {
        let mut sql = String::from("SELECT * FROM runs WHERE tenant = ?");
        if q.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if q.template.is_some() {
            sql.push_str(" AND template = ?");
        }
        if q.before.is_some() {
            sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(&q.tenant);
        if let Some(s) = q.status {
            query = query.bind(s.as_str());
        }
        if let Some(t) = &q.template {
            query = query.bind(t);
        }
        if let Some((at, id)) = &q.before {
            query = query.bind(at).bind(at).bind(id);
        }
        let rows = query
            .bind(q.limit.max(1) as i64)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRow>> {
        let rows = sqlx::query("SELECT * FROM steps WHERE run_id = ? ORDER BY idx")
            .bind(run_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(step_from_row).collect()
    }

    async fn tasks(&self, run_id: &str) -> Result<Vec<Task>> {
        let rows = sqlx::query("SELECT * FROM tasks WHERE run_id = ? ORDER BY step_id, item, id")
            .bind(run_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn child_runs(&self, run_id: &str) -> Result<Vec<Run>> {
        let rows =
            sqlx::query("SELECT * FROM runs WHERE parent_run_id = ? ORDER BY created_at, id")
                .bind(run_id)
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn events(&self, run_id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        let rows =
            sqlx::query("SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?")
                .bind(run_id)
                .bind(after)
                .bind(limit as i64)
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn now(&self) -> Result<i64> {
        Ok(now_ms())
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn register_worker(&self, worker: &crate::workers::WorkerInfo) -> Result<()> {
        crate::workers::sqlite::register(self, worker).await
    }
    async fn heartbeat_worker(&self, id: &str) -> Result<bool> {
        crate::workers::sqlite::heartbeat(self, id).await
    }
    async fn deregister_worker(&self, id: &str) -> Result<()> {
        crate::workers::sqlite::deregister(self, id).await
    }
    async fn workers(&self) -> Result<crate::workers::WorkersStatus> {
        crate::workers::sqlite::list(self).await
    }
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    now: i64,
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn opt_json(v: Option<&Value>) -> Option<String> {
    v.map(json_text)
}

fn parse_json(text: Option<String>, what: &str) -> Result<Option<Value>> {
    text.map(|t| {
        weft_core::limits::parse_stored_json(&t).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
    })
    .transpose()
}

/// A run's budget as stored (JSON text; none when no limit is set).
pub(crate) fn budget_text(budget: Option<&weft_core::plan::Budget>) -> Option<String> {
    budget
        .filter(|b| !b.is_empty())
        .and_then(|b| serde_json::to_string(b).ok())
}

pub(crate) fn parse_budget(text: Option<String>) -> Result<Option<weft_core::plan::Budget>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| Error::Corrupt(format!("run budget: {e}"))))
        .transpose()
}

fn run_from_row(r: &SqliteRow) -> Result<Run> {
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
        budget: parse_budget(r.try_get("budget")?)?,
        parent: match r.try_get::<Option<String>, _>("parent_run_id")? {
            Some(run_id) => Some(RunParent {
                run_id,
                step: r.try_get("parent_step_id")?,
                item: opt_u32(r, "parent_item")?,
                action: r.try_get("parent_action")?,
            }),
            None => None,
        },
    })
}

fn opt_u32(r: &SqliteRow, col: &str) -> Result<Option<u32>> {
    let v: Option<i64> = r.try_get(col)?;
    Ok(v.map(|v| v as u32))
}

fn step_from_row(r: &SqliteRow) -> Result<StepRow> {
    let status: String = r.try_get("status")?;
    Ok(StepRow {
        run_id: r.try_get("run_id")?,
        step_id: r.try_get("step_id")?,
        idx: r.try_get::<i64, _>("idx")? as u32,
        tool: r.try_get("tool")?,
        status: StepStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("step status `{status}`")))?,
        concurrency: opt_u32(r, "concurrency")?,
        output: parse_json(r.try_get("output")?, "step output")?,
        error: r.try_get("error")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        items_total: opt_u32(r, "items_total")?,
        items_done: r.try_get::<i64, _>("items_done")? as u32,
        items_failed: r.try_get::<i64, _>("items_failed")? as u32,
        cache_hits: r.try_get::<i64, _>("cache_hits")? as u32,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn task_from_row(r: &SqliteRow) -> Result<Task> {
    let status: String = r.try_get("status")?;
    Ok(Task {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        tenant: r.try_get("tenant")?,
        step_id: r.try_get("step_id")?,
        item: opt_u32(r, "item")?,
        tool: r.try_get("tool")?,
        input: parse_json(r.try_get("input")?, "task input")?.unwrap_or(Value::Null),
        status: TaskStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("task status `{status}`")))?,
        attempt: r.try_get::<i64, _>("attempt")? as u32,
        max_attempts: r.try_get::<i64, _>("max_attempts")? as u32,
        lease_losses: r.try_get::<i64, _>("lease_losses")?.max(0) as u32,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires: r.try_get("lease_expires")?,
        output: parse_json(r.try_get("output")?, "task output")?,
        error: r.try_get("error")?,
        cache_key: r.try_get("cache_key")?,
        cache_hit: r.try_get::<i64, _>("cache_hit")? != 0,
        llm_prompt_tokens: r.try_get::<i64, _>("llm_prompt_tokens")?.max(0) as u64,
        llm_completion_tokens: r.try_get::<i64, _>("llm_completion_tokens")?.max(0) as u64,
        cost_usd: r.try_get("cost_usd")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

pub(crate) fn event_from_row(r: &SqliteRow) -> Result<Event> {
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

#[async_trait]
impl Tx for SqliteTx {
    fn now(&self) -> i64 {
        self.now
    }

    async fn insert_run(&mut self, run: &Run) -> Result<()> {
        sqlx::query(
            "INSERT INTO runs (id, tenant, template, version, digest, source, files, file, \
             base_dir, inputs, status, output, error, idempotency_key, request_digest, \
             created_at, started_at, finished_at, updated_at, parent_run_id, parent_step_id, \
             parent_item, parent_action, budget) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(budget_text(run.budget.as_ref()))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn run_by_idempotency_key(&mut self, tenant: &str, key: &str) -> Result<Option<Run>> {
        let row = sqlx::query("SELECT * FROM runs WHERE tenant = ? AND idempotency_key = ?")
            .bind(tenant)
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    async fn lock_run(&mut self, run_id: &str) -> Result<Option<Run>> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    async fn set_run_status(&mut self, run_id: &str, u: &RunUpdate) -> Result<()> {
        let now = self.now;
        let terminal = u.status.is_terminal();
        sqlx::query(
            "UPDATE runs SET status = ?, output = COALESCE(?, output), error = ?, \
             started_at = CASE WHEN ? = 'running' AND started_at IS NULL THEN ? ELSE started_at END, \
             finished_at = CASE WHEN ? THEN ? ELSE NULL END, updated_at = ? WHERE id = ?",
        )
        .bind(u.status.as_str())
        .bind(opt_json(u.output.as_ref()))
        .bind(&u.error)
        .bind(u.status.as_str())
        .bind(now)
        .bind(terminal)
        .bind(now)
        .bind(now)
        .bind(run_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_steps(&mut self, steps: &[StepRow]) -> Result<()> {
        for s in steps {
            sqlx::query(
                "INSERT INTO steps (run_id, step_id, idx, tool, status, concurrency, output, \
                 error, attempts, items_total, items_done, items_failed, cache_hits, started_at, \
                 finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&s.run_id)
            .bind(&s.step_id)
            .bind(s.idx as i64)
            .bind(&s.tool)
            .bind(s.status.as_str())
            .bind(s.concurrency.map(i64::from))
            .bind(opt_json(s.output.as_ref()))
            .bind(&s.error)
            .bind(s.attempts as i64)
            .bind(s.items_total.map(i64::from))
            .bind(s.items_done as i64)
            .bind(s.items_failed as i64)
            .bind(s.cache_hits as i64)
            .bind(s.started_at)
            .bind(s.finished_at)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn load_steps(&mut self, run_id: &str) -> Result<Vec<StepRow>> {
        let rows = sqlx::query("SELECT * FROM steps WHERE run_id = ? ORDER BY idx")
            .bind(run_id)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(step_from_row).collect()
    }

    async fn update_step(&mut self, s: &StepRow) -> Result<()> {
        sqlx::query(
            "UPDATE steps SET status = ?, concurrency = ?, output = ?, error = ?, attempts = ?, \
             items_total = ?, items_done = ?, items_failed = ?, cache_hits = ?, started_at = ?, \
             finished_at = ? WHERE run_id = ? AND step_id = ?",
        )
        .bind(s.status.as_str())
        .bind(s.concurrency.map(i64::from))
        .bind(opt_json(s.output.as_ref()))
        .bind(&s.error)
        .bind(s.attempts as i64)
        .bind(s.items_total.map(i64::from))
        .bind(s.items_done as i64)
        .bind(s.items_failed as i64)
        .bind(s.cache_hits as i64)
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
            "UPDATE steps SET items_done = items_done + ?, items_failed = items_failed + ? \
             WHERE run_id = ? AND step_id = ?",
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
        let now = self.now;
        // Multi-row inserts: a 100,000-item fan-out is 100 statements, not 100,000 round
        // trips to SQLite's connection thread. 17 columns x 1,000 rows stays under SQLite's
        // 32,766 bound parameters.
        for chunk in tasks.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO tasks (run_id, tenant, step_id, item, tool, input, status, attempt, \
                 max_attempts, not_before, output, error, cache_key, cache_hit, created_at, \
                 started_at, finished_at) ",
            );
            q.push_values(chunk, |mut row, t| {
                let (status, output, error, hit) = match &t.done {
                    Some((status, output, error, hit)) => {
                        (*status, Some(json_text(output)), error.clone(), *hit)
                    }
                    None => (TaskStatus::Queued, None, None, false),
                };
                let finished = t.done.as_ref().map(|_| now);
                row.push_bind(t.run_id.clone())
                    .push_bind(t.tenant.clone())
                    .push_bind(t.step_id.clone())
                    .push_bind(t.item.map(i64::from))
                    .push_bind(t.tool.clone())
                    .push_bind(json_text(&t.input))
                    .push_bind(status.as_str())
                    .push_bind(1i64)
                    .push_bind(t.max_attempts as i64)
                    .push_bind(t.not_before)
                    .push_bind(output)
                    .push_bind(error)
                    .push_bind(t.cache_key.clone())
                    .push_bind(hit)
                    .push_bind(now)
                    .push_bind(finished)
                    .push_bind(finished);
            });
            q.build().execute(&mut *self.tx).await?;
        }
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now;
        let mut left = limit as i64;
        // One writer at a time: the counts below stay true until this transaction commits.
        if let Some(max) = max_running {
            let running: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = 'running'")
                    .fetch_one(&mut *self.tx)
                    .await?;
            left = left.min(i64::from(max) - running);
            if left <= 0 {
                return Ok(Vec::new());
            }
        }
        // Free slots of each capped tenant; a tenant without a cap (or a row) is not limited.
        let caps = sqlx::query(
            "SELECT t.name, t.max_concurrent_tasks - (SELECT COUNT(*) FROM tasks k \
             WHERE k.status = 'running' AND k.tenant = t.name) AS free \
             FROM tenants t WHERE t.max_concurrent_tasks IS NOT NULL",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let mut tenant_free = std::collections::HashMap::with_capacity(caps.len());
        for row in caps {
            tenant_free.insert(
                row.try_get::<String, _>("name")?,
                row.try_get::<i64, _>("free")?,
            );
        }
        // Running steps are few; walk them oldest run first and fill each one's free slots.
        let mut sql = String::from(
            "SELECT s.run_id, s.step_id, s.concurrency, r.tenant FROM steps s \
             JOIN runs r ON r.id = s.run_id WHERE s.status = 'running' AND r.status = 'running'",
        );
        if let Some(runs) = only_runs {
            sql.push_str(" AND s.run_id IN (");
            sql.push_str(&vec!["?"; runs.len().max(1)].join(","));
            sql.push(')');
        }
        sql.push_str(" ORDER BY r.created_at, s.idx");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(runs) = only_runs {
            if runs.is_empty() {
                return Ok(Vec::new());
            }
            for r in runs {
                q = q.bind(r);
            }
        }
        let steps = q.fetch_all(&mut *self.tx).await?;
        let mut claimed = Vec::new();
        for row in steps {
            if left <= 0 {
                break;
            }
            let run_id: String = row.try_get("run_id")?;
            let step_id: String = row.try_get("step_id")?;
            let cap: Option<i64> = row.try_get("concurrency")?;
            let tenant: String = row.try_get("tenant")?;
            let mut want = left;
            if let Some(free) = tenant_free.get(&tenant) {
                want = want.min(*free);
            }
            if let Some(cap) = cap {
                let running: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM tasks WHERE run_id = ? AND step_id = ? AND status = 'running'",
                )
                .bind(&run_id)
                .bind(&step_id)
                .fetch_one(&mut *self.tx)
                .await?;
                want = want.min(cap - running);
            }
            if want <= 0 {
                continue;
            }
            let rows = sqlx::query(
                "UPDATE tasks SET status = 'running', lease_owner = ?, lease_expires = ?, \
                 started_at = ? WHERE id IN (SELECT id FROM tasks WHERE run_id = ? AND \
                 step_id = ? AND status = 'queued' AND not_before <= ? ORDER BY item, id LIMIT ?) \
                 RETURNING *",
            )
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(&run_id)
            .bind(&step_id)
            .bind(now)
            .bind(want)
            .fetch_all(&mut *self.tx)
            .await?;
            left -= rows.len() as i64;
            if let Some(free) = tenant_free.get_mut(&tenant) {
                *free -= rows.len() as i64;
            }
            for r in &rows {
                claimed.push(task_from_row(r)?);
            }
        }
        claimed.sort_by_key(|t| t.id);
        Ok(claimed)
    }

    async fn finish_task(&mut self, f: &TaskFinish<'_>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET status = ?, output = ?, error = ?, finished_at = ?, \
             lease_owner = NULL, lease_expires = NULL \
             WHERE id = ? AND attempt = ? AND lease_owner = ? AND status = 'running'",
        )
        .bind(f.status.as_str())
        .bind(opt_json(f.output))
        .bind(f.error)
        .bind(self.now)
        .bind(f.task_id)
        .bind(f.attempt as i64)
        .bind(f.owner)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_usage(&mut self, usage: &[usage::TaskUsage]) -> Result<()> {
        for u in usage {
            sqlx::query(
                "UPDATE tasks SET llm_prompt_tokens = llm_prompt_tokens + ?, \
                 llm_completion_tokens = llm_completion_tokens + ?, cost_usd = cost_usd + ? \
                 WHERE id = ?",
            )
            .bind(u.llm_prompt_tokens.min(i64::MAX as u64) as i64)
            .bind(u.llm_completion_tokens.min(i64::MAX as u64) as i64)
            .bind(u.cost_usd)
            .bind(u.task_id)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn run_usage(&mut self, run_id: &str) -> Result<usage::RunUsage> {
        let sql = format!(
            "SELECT {} FROM tasks t WHERE t.run_id = ?",
            usage::sum_columns("t.cache_hit = 1")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_one(&mut *self.tx)
            .await?;
        usage::usage_from_row(&row)
    }

    async fn admit_run(&mut self, tenant: &str) -> Result<Option<usage::QuotaRefusal>> {
        // BEGIN IMMEDIATE holds the write lock: no other creation can count meanwhile.
        let max: Option<i64> =
            sqlx::query_scalar("SELECT max_runs_per_hour FROM tenant_quotas WHERE tenant = ?")
                .bind(tenant)
                .fetch_optional(&mut *self.tx)
                .await?
                .flatten();
        let Some(max) = max else {
            return Ok(None);
        };
        let since = self.now - usage::RUN_RATE_WINDOW_MS;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM \
             (SELECT created_at FROM runs WHERE tenant = ? AND created_at > ? \
              ORDER BY created_at DESC LIMIT ?)",
        )
        .bind(tenant)
        .bind(since)
        .bind(max)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(usage::refusal(
            max,
            row.try_get("n")?,
            row.try_get("oldest")?,
            self.now,
        ))
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
            "UPDATE tasks SET status = 'queued', attempt = attempt + 1, not_before = ?, \
             error = ?, lease_owner = NULL, lease_expires = NULL \
             WHERE id = ? AND attempt = ? AND lease_owner = ? AND status = 'running'",
        )
        .bind(not_before)
        .bind(error)
        .bind(task_id)
        .bind(attempt as i64)
        .bind(owner)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn item_results(&mut self, run_id: &str, step_id: &str) -> Result<Vec<ItemResult>> {
        let rows = sqlx::query(
            "SELECT item, status, output, error FROM tasks WHERE run_id = ? AND step_id = ? \
             ORDER BY item",
        )
        .bind(run_id)
        .bind(step_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                Ok(ItemResult {
                    item: opt_u32(r, "item")?.unwrap_or(0),
                    status: TaskStatus::parse(&status)
                        .ok_or_else(|| Error::Corrupt(format!("task status `{status}`")))?,
                    output: parse_json(r.try_get("output")?, "task output")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    async fn cancel_tasks(&mut self, run_id: &str, step_id: Option<&str>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'cancelled', finished_at = ?, lease_owner = NULL, \
             lease_expires = NULL WHERE run_id = ? AND (? IS NULL OR step_id = ?) \
             AND status IN ('queued', 'running', 'waiting')",
        )
        .bind(self.now)
        .bind(run_id)
        .bind(step_id)
        .bind(step_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }

    async fn stale_tasks(&mut self, dead_owners: &[String], limit: u32) -> Result<Vec<Task>> {
        // Only running tasks matter: read them through their partial index, never the table.
        let mut sql = String::from(
            "SELECT * FROM tasks INDEXED BY tasks_running \
             WHERE status = 'running' AND (lease_expires < ?",
        );
        if !dead_owners.is_empty() {
            sql.push_str(" OR lease_owner IN (");
            sql.push_str(&vec!["?"; dead_owners.len()].join(","));
            sql.push(')');
        }
        sql.push_str(") ORDER BY id LIMIT ?");
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(self.now);
        for o in dead_owners {
            q = q.bind(o);
        }
        let rows = q.bind(limit as i64).fetch_all(&mut *self.tx).await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn reclaim_task(&mut self, task_id: i64, attempt: u32) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'queued', attempt = attempt + 1, \
             lease_losses = lease_losses + 1, not_before = ?, error = 'lease expired', \
             lease_owner = NULL, lease_expires = NULL \
             WHERE id = ? AND attempt = ? AND status = 'running'",
        )
        .bind(self.now)
        .bind(task_id)
        .bind(attempt as i64)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue_unfinished(&mut self, run_id: &str, step_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'queued', attempt = 1, lease_losses = 0, not_before = ?, \
             error = NULL, \
             finished_at = NULL, lease_owner = NULL, lease_expires = NULL \
             WHERE run_id = ? AND step_id = ? AND status IN ('failed', 'cancelled')",
        )
        .bind(self.now)
        .bind(run_id)
        .bind(step_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }

    async fn renew_leases(&mut self, owner: &str, lease_ms: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "UPDATE tasks SET lease_expires = ? WHERE lease_owner = ? AND status = 'running' \
             RETURNING id",
        )
        .bind(self.now + lease_ms)
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
            "UPDATE tasks SET status = 'waiting', not_before = ?, lease_owner = NULL, \
             lease_expires = NULL WHERE run_id = ? AND step_id = ? AND status IN ('queued', 'waiting')",
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
            "UPDATE tasks SET status = ?, output = ?, error = ?, finished_at = ?, \
             started_at = COALESCE(started_at, created_at) WHERE id = ? AND status = 'waiting'",
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
            "SELECT * FROM tasks WHERE run_id = ? AND (? IS NULL OR step_id = ?) \
             AND status = 'waiting' ORDER BY step_id, item, id",
        )
        .bind(run_id)
        .bind(step_id)
        .bind(step_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn due_waits(&mut self, limit: u32) -> Result<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT * FROM tasks INDEXED BY tasks_waiting WHERE status = 'waiting' \
             AND not_before <= ? ORDER BY not_before LIMIT ?",
        )
        .bind(self.now)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn child_runs(&mut self, run_id: &str) -> Result<Vec<Run>> {
        let rows =
            sqlx::query("SELECT * FROM runs WHERE parent_run_id = ? ORDER BY created_at, id")
                .bind(run_id)
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn next_ready_at(&mut self, only_runs: Option<&[String]>) -> Result<Option<i64>> {
        // Pinned to the index on queued tasks' `not_before`: with a run filter, SQLite would
        // otherwise pick the per-run index and scan every task of the run, on every turn.
        let mut sql = String::from(
            "SELECT MIN(not_before) FROM tasks INDEXED BY tasks_queued \
             WHERE status = 'queued' AND not_before > ?",
        );
        if let Some(runs) = only_runs {
            if runs.is_empty() {
                return Ok(None);
            }
            sql.push_str(" AND run_id IN (");
            sql.push_str(&vec!["?"; runs.len()].join(","));
            sql.push(')');
        }
        let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(self.now);
        if let Some(runs) = only_runs {
            for r in runs {
                q = q.bind(r);
            }
        }
        Ok(q.fetch_one(&mut *self.tx).await?)
    }

    async fn cache_get(&mut self, key: &str) -> Result<Option<Value>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT output FROM cache WHERE key = ? AND expires_at > ?")
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
            "INSERT INTO cache (key, tenant, output, created_at, expires_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (key) DO UPDATE SET output = excluded.output, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
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
        // One statement per 4,000 events (7 parameters each), in order, so `seq` follows it.
        for chunk in events.chunks(4_000) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (run_id, ts, kind, step_id, item, attempt, data) ",
            );
            q.push_values(chunk, |mut row, e| {
                row.push_bind(e.run_id.clone())
                    .push_bind(self.now)
                    .push_bind(e.kind.clone())
                    .push_bind(e.step_id.clone())
                    .push_bind(e.item.map(i64::from))
                    .push_bind(e.attempt.map(i64::from))
                    .push_bind(json_text(&e.data));
            });
            q.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn insert_task_tokens(&mut self, tokens: &[crate::tokens::NewTaskToken]) -> Result<()> {
        crate::tokens::insert_sqlite(&mut self.tx, self.now, tokens).await
    }

    async fn claim_schedule_slot(&mut self, claim: &crate::schedules::SlotClaim) -> Result<bool> {
        crate::schedules::claim_sqlite(&mut self.tx, claim, self.now).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
