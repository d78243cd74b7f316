//! The one [`Store`]: reads outside a transaction, written once for both backends.

use std::time::Duration;

use async_trait::async_trait;

use crate::api::{RunQuery, Store, Tx};
use crate::db::{Conn, Db, SqlStore, args, timed};
use crate::error::Result;
use crate::records::*;
use crate::status::{LeaseHolder, QueueStatus, SchemaStatus};
use crate::tx::SqlTx;
use crate::{postgres, rows, sqlite, usage, workers};

#[async_trait]
impl Store for SqlStore {
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(
            timed("begin", async {
                Ok::<_, crate::Error>(match &self.db {
                    Db::Sqlite { writer, .. } => SqlTx::new(
                        Conn::Sqlite(sqlite::begin(writer).await?),
                        sqlite::now_ms(),
                        self.health.clone(),
                    ),
                    Db::Postgres { pool, .. } => {
                        let (tx, now) = postgres::begin(pool).await?;
                        SqlTx::new(Conn::Postgres(tx), now, self.health.clone())
                    }
                })
            })
            .await?,
        ))
    }

    async fn run(&self, tenant: &str, id: &str) -> Result<Option<Run>> {
        timed(
            "read_run",
            self.read().optional(
                "SELECT * FROM runs WHERE id = $1 AND tenant = $2",
                args![id, tenant],
                rows::run,
            ),
        )
        .await
    }

    async fn runs(&self, q: &RunQuery) -> Result<Vec<Run>> {
        // The page starts below a (created_at, id) pair, a row value the index
        // `(tenant, created_at DESC, id DESC)` seeks to: page 2,000 costs what page 1 does.
        let (at, id) = q
            .before
            .as_ref()
            .map_or((i64::MAX, ""), |(at, id)| (*at, id.as_str()));
        let search = q.search.as_deref().map(like_escape);
        timed(
            "list_runs",
            self.read().all(
                "SELECT * FROM runs WHERE tenant = $1 AND ($2 IS NULL OR status = $2) \
                 AND ($3 IS NULL OR template = $3) \
                 AND (created_at, id) < ($4, $5) \
                 AND created_at >= $7 AND created_at < $8 \
                 AND ($9 IS NULL OR id LIKE $9 || '%' ESCAPE '\\' \
                      OR inputs {pg:ILIKE}{sqlite:LIKE} '%' || $9 || '%' ESCAPE '\\') \
                 AND (NOT $10 OR parent_run_id IS NULL) \
                 AND ($11 IS NULL OR parent_run_id = $11) \
                 ORDER BY created_at DESC, id DESC LIMIT $6",
                args![
                    &q.tenant,
                    q.status.map(|s| s.as_str()),
                    &q.template,
                    at,
                    id,
                    q.limit.max(1),
                    q.since.unwrap_or(i64::MIN),
                    q.until.unwrap_or(i64::MAX),
                    search,
                    q.roots_only,
                    &q.parent,
                ],
                rows::run,
            ),
        )
        .await
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRow>> {
        timed(
            "read_steps",
            self.read().all(
                "SELECT * FROM steps WHERE run_id = $1 ORDER BY idx",
                args![run_id],
                rows::step,
            ),
        )
        .await
    }

    async fn tasks(&self, run_id: &str) -> Result<Vec<Task>> {
        self.read()
            .all(
                "SELECT * FROM tasks WHERE run_id = $1 ORDER BY step_id, item, id",
                args![run_id],
                rows::task,
            )
            .await
    }

    async fn child_runs(&self, run_id: &str) -> Result<Vec<Run>> {
        self.read()
            .all(rows::CHILD_RUNS, args![run_id], rows::run)
            .await
    }

    async fn events(&self, run_id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        timed(
            "read_events",
            self.read().all(
                "SELECT * FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                args![run_id, after, limit],
                rows::event,
            ),
        )
        .await
    }

    async fn now(&self) -> Result<i64> {
        match &self.db {
            // The process clock is SQLite's clock: no round trip.
            Db::Sqlite { .. } => Ok(sqlite::now_ms()),
            Db::Postgres { .. } => self
                .read()
                .fetch_one("SELECT {now} AS now", args![])
                .await?
                .get("now"),
        }
    }

    async fn wait_for_work(&self, timeout: Duration) {
        match &self.db {
            // One process writes an SQLite file's queue; in-process wake-ups go through the
            // engine.
            Db::Sqlite { .. } => tokio::time::sleep(timeout).await,
            Db::Postgres {
                pool,
                wake,
                listener,
            } => postgres::wait_for_work(pool, wake, listener, timeout).await,
        }
    }

    async fn queue_status(&self) -> Result<QueueStatus> {
        timed("queue_status", async {
            let now = self.now().await?;
            let row = self
            .read()
            .fetch_one(
                "SELECT COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS queued, \
                 COALESCE(SUM(CASE WHEN status = 'queued' AND not_before <= $1 THEN 1 ELSE 0 END), \
                   0) AS due, \
                 COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS running, \
                 MIN(CASE WHEN status = 'queued' AND not_before <= $1 THEN not_before END) \
                   AS oldest \
                 FROM tasks WHERE status IN ('queued', 'running')",
                args![now],
            )
            .await?;
            let leases = self
                .read()
                .all(
                    "SELECT lease_owner, COUNT(*) AS n, MAX(lease_expires) AS expires FROM tasks \
                 WHERE status = 'running' AND lease_owner IS NOT NULL \
                 GROUP BY lease_owner ORDER BY lease_owner COLLATE {binary}",
                    args![],
                    |r| {
                        Ok(LeaseHolder {
                            owner: r.get("lease_owner")?,
                            tasks: r.get("n")?,
                            expires_at: r.get::<Option<i64>>("expires")?.unwrap_or(0),
                        })
                    },
                )
                .await?;
            Ok(QueueStatus {
                now,
                queued: row.get("queued")?,
                due: row.get("due")?,
                running: row.get("running")?,
                oldest_due_at: row.get("oldest")?,
                leases,
            })
        })
        .await
    }

    async fn run_usage(&self, run_id: &str) -> Result<usage::RunUsage> {
        let row = self
            .read()
            .fetch_one(usage::RUN_USAGE, args![run_id])
            .await?;
        usage::usage_from_row(&row)
    }

    async fn usage(&self, q: &usage::UsageQuery) -> Result<Vec<usage::UsageRow>> {
        let day = if self.is_postgres() {
            "to_char(to_timestamp(r.created_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        } else {
            "strftime('%Y-%m-%d', r.created_at / 1000, 'unixepoch')"
        };
        let (key, template, order) = match q.group_by {
            usage::UsageGroup::Day => (day, "CAST(NULL AS TEXT)", day.to_string()),
            // Byte order, whatever the database's collation.
            usage::UsageGroup::Template => (
                "r.template",
                "CAST(NULL AS TEXT)",
                "r.template COLLATE {binary}".to_string(),
            ),
            usage::UsageGroup::Run => (
                "r.id",
                "MIN(r.template)",
                "MIN(r.created_at) DESC, r.id COLLATE {binary} DESC".to_string(),
            ),
        };
        let sql = format!(
            "SELECT {key} AS key, {template} AS template, COUNT(DISTINCT r.id) AS runs, {} \
             FROM runs r LEFT JOIN tasks t ON t.run_id = r.id \
             WHERE r.tenant = $1 AND r.created_at >= $2 GROUP BY {key} ORDER BY {order} LIMIT $3",
            usage::SUM_COLUMNS
        );
        timed(
            "usage",
            self.read().all(
                sql,
                args![&q.tenant, q.since.unwrap_or(i64::MIN), q.limit.max(1)],
                |r| {
                    Ok(usage::UsageRow {
                        key: r.get("key")?,
                        template: r.get("template")?,
                        runs: r.u64("runs")?,
                        usage: usage::usage_from_row(r)?,
                    })
                },
            ),
        )
        .await
    }

    async fn tenant_quota(&self, tenant: &str) -> Result<usage::TenantQuota> {
        let max: Option<i64> = self
            .read()
            .optional(
                "SELECT max_runs_per_hour FROM tenant_quotas WHERE tenant = $1",
                args![tenant],
                |r| r.get("max_runs_per_hour"),
            )
            .await?
            .flatten();
        Ok(usage::TenantQuota {
            max_runs_per_hour: max.and_then(|m| u32::try_from(m).ok()),
        })
    }

    async fn set_tenant_quota(&self, tenant: &str, quota: &usage::TenantQuota) -> Result<()> {
        self.write()
            .execute(
                "INSERT INTO tenant_quotas (tenant, max_runs_per_hour, updated_at) \
                 VALUES ($1, $2, {now}) ON CONFLICT (tenant) DO UPDATE SET \
                 max_runs_per_hour = excluded.max_runs_per_hour, updated_at = excluded.updated_at",
                args![tenant, quota.max_runs_per_hour],
            )
            .await?;
        Ok(())
    }

    async fn schema_status(&self) -> Result<SchemaStatus> {
        let applied: Option<i64> = self
            .read()
            .fetch_one(
                "SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success",
                args![],
            )
            .await?
            .get("v")?;
        let migrator = match &self.db {
            Db::Sqlite { .. } => &sqlite::MIGRATOR,
            Db::Postgres { .. } => &postgres::MIGRATOR,
        };
        Ok(SchemaStatus {
            applied,
            latest: migrator.iter().map(|m| m.version).max().unwrap_or(0),
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn register_worker(&self, worker: &workers::WorkerInfo) -> Result<()> {
        let done = workers::register(self, worker).await;
        self.health.note(&done);
        done
    }
    async fn heartbeat_worker(&self, id: &str) -> Result<bool> {
        let done = workers::heartbeat(self, id).await;
        self.health.note(&done);
        done
    }
    async fn deregister_worker(&self, id: &str) -> Result<()> {
        workers::deregister(self, id).await
    }
    async fn workers(&self) -> Result<workers::WorkersStatus> {
        workers::list(self).await
    }
    async fn check_writable(&self) -> Result<()> {
        crate::health::check(self).await
    }
}

/// `text` for a `LIKE` pattern with `\` as the escape: its `%`, `_` and `\` match themselves.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
