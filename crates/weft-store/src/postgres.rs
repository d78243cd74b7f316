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

use crate::postgres_tx::PgTx;
use crate::*;

/// The channel a commit that queued tasks notifies.
pub(crate) const WORK_CHANNEL: &str = "weft_work";
/// Advisory lock namespaces (the first key of the two-key form).
pub(crate) const LOCK_STEP_CAP: i32 = 0x7765_0001;
pub(crate) const LOCK_RUN_EVENTS: i32 = 0x7765_0002;
pub(crate) const LOCK_IDEMPOTENCY: i32 = 0x7765_0003;
/// (0x7765_0004 is the event feed's, in `postgres_server.rs`.)
pub(crate) const LOCK_GLOBAL_CAP: i32 = 0x7765_0005;
pub(crate) const LOCK_TENANT_CAP: i32 = 0x7765_0006;
/// Serialises one tenant's run creations while a runs-per-hour quota is counted.
pub(crate) const LOCK_RUN_RATE: i32 = 0x7765_0008;

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

    async fn run_usage(&self, run_id: &str) -> Result<usage::RunUsage> {
        let sql = format!(
            "SELECT {} FROM tasks t WHERE t.run_id = $1",
            usage::sum_columns("t.cache_hit")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_one(&self.pool)
            .await?;
        usage::usage_from_row(&row)
    }

    async fn usage(&self, q: &usage::UsageQuery) -> Result<Vec<usage::UsageRow>> {
        let (key, template, order) = match q.group_by {
            usage::UsageGroup::Day => (
                "to_char(to_timestamp(r.created_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
                "NULL::text",
                "1 ASC",
            ),
            // Byte order, as SQLite sorts, whatever the database's collation.
            usage::UsageGroup::Template => {
                ("r.template", "NULL::text", "r.template COLLATE \"C\" ASC")
            }
            usage::UsageGroup::Run => (
                "r.id",
                "MIN(r.template)",
                "MIN(r.created_at) DESC, r.id COLLATE \"C\" DESC",
            ),
        };
        let sql = format!(
            "SELECT {key} AS key, {template} AS template, COUNT(DISTINCT r.id) AS runs, {} \
             FROM runs r LEFT JOIN tasks t ON t.run_id = r.id \
             WHERE r.tenant = $1 AND r.created_at >= $2 GROUP BY 1 ORDER BY {order} LIMIT $3",
            usage::sum_columns("t.cache_hit")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&q.tenant)
            .bind(q.since.unwrap_or(i64::MIN))
            .bind(q.limit.max(1) as i64)
            .fetch_all(&self.pool)
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
            sqlx::query_scalar("SELECT max_runs_per_hour FROM tenant_quotas WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await?
                .flatten();
        Ok(usage::TenantQuota {
            max_runs_per_hour: max.and_then(|m| u32::try_from(m).ok()),
        })
    }

    async fn set_tenant_quota(&self, tenant: &str, quota: &usage::TenantQuota) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenant_quotas (tenant, max_runs_per_hour, updated_at) \
             VALUES ($1, $2, weft_now_ms()) \
             ON CONFLICT (tenant) DO UPDATE SET max_runs_per_hour = excluded.max_runs_per_hour, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(quota.max_runs_per_hour.map(i64::from))
        .execute(&self.pool)
        .await?;
        Ok(())
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
        Ok(Box::new(PgTx::new(tx, now)))
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

    async fn child_runs(&self, run_id: &str) -> Result<Vec<Run>> {
        let rows =
            sqlx::query("SELECT * FROM runs WHERE parent_run_id = $1 ORDER BY created_at, id")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(run_from_row).collect()
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

    async fn register_worker(&self, worker: &crate::workers::WorkerInfo) -> Result<()> {
        crate::workers::postgres::register(self, worker).await
    }
    async fn heartbeat_worker(&self, id: &str) -> Result<bool> {
        crate::workers::postgres::heartbeat(self, id).await
    }
    async fn deregister_worker(&self, id: &str) -> Result<()> {
        crate::workers::postgres::deregister(self, id).await
    }
    async fn workers(&self) -> Result<crate::workers::WorkersStatus> {
        crate::workers::postgres::list(self).await
    }
}

pub(crate) fn json_text(v: &Value) -> String {
    v.to_string()
}

pub(crate) fn opt_json(v: Option<&Value>) -> Option<String> {
    v.map(json_text)
}

pub(crate) fn parse_json(text: Option<String>, what: &str) -> Result<Option<Value>> {
    text.map(|t| {
        weft_core::limits::parse_stored_json(&t).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
    })
    .transpose()
}

pub(crate) fn opt_u32(r: &PgRow, col: &str) -> Result<Option<u32>> {
    let v: Option<i64> = r.try_get(col)?;
    v.map(|v| u32::try_from(v).map_err(|_| Error::Corrupt(format!("{col} = {v}"))))
        .transpose()
}

pub(crate) fn u32_of(r: &PgRow, col: &str) -> Result<u32> {
    opt_u32(r, col)?.ok_or_else(|| Error::Corrupt(format!("{col} is null")))
}

pub(crate) fn run_from_row(r: &PgRow) -> Result<Run> {
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
        budget: crate::sqlite::parse_budget(r.try_get("budget")?)?,
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

pub(crate) fn step_from_row(r: &PgRow) -> Result<StepRow> {
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

pub(crate) fn task_status(r: &PgRow) -> Result<TaskStatus> {
    let status: String = r.try_get("status")?;
    TaskStatus::parse(&status).ok_or_else(|| Error::Corrupt(format!("task status `{status}`")))
}

pub(crate) fn task_from_row(r: &PgRow) -> Result<Task> {
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
        lease_losses: u32_of(r, "lease_losses")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires: r.try_get("lease_expires")?,
        output: parse_json(r.try_get("output")?, "task output")?,
        error: r.try_get("error")?,
        cache_key: r.try_get("cache_key")?,
        cache_hit: r.try_get("cache_hit")?,
        llm_prompt_tokens: r.try_get::<i64, _>("llm_prompt_tokens")?.max(0) as u64,
        llm_completion_tokens: r.try_get::<i64, _>("llm_completion_tokens")?.max(0) as u64,
        cost_usd: r.try_get("cost_usd")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

pub(crate) fn event_from_row(r: &PgRow) -> Result<Event> {
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
pub(crate) fn runs_filter(only_runs: Option<&[String]>) -> Option<Vec<String>> {
    only_runs.map(<[String]>::to_vec)
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
