//! Worker processes on record: each `weft worker`, `weft serve` and `weft run` registers a row
//! when its worker starts and heart-beats it, both stamped by the store's clock (PostgreSQL's
//! `weft_now_ms()`, so workers on other machines with skewed clocks still agree). An operator
//! counts the live ones with `weft status` or the `weft_workers_alive` gauge.
//!
//! The `Store` methods (`register_worker`, `heartbeat_worker`, `deregister_worker`,
//! `workers`) of both backends are the functions here.

use serde::Serialize;
use sqlx::Row as _;

use crate::Result;

/// Rows whose heartbeat is older than this are removed when a worker registers.
const FORGET_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;

/// Who a worker is, as it registers.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// Unique per process start (`host:pid:random`, as its lease owner).
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// The weft version it runs.
    pub version: String,
    /// Its lease: it heart-beats every third of it.
    pub lease_ms: i64,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub lease_ms: i64,
    pub started_at: i64,
    pub last_heartbeat_at: i64,
}

impl WorkerRow {
    /// Alive while its last heartbeat is within two of its leases of `now` (it beats every
    /// third of a lease, so a live worker is never near that).
    pub fn is_alive(&self, now: i64) -> bool {
        now - self.last_heartbeat_at <= 2 * self.lease_ms.max(1)
    }
}

/// Every registered worker, with the store's clock when it answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkersStatus {
    pub now: i64,
    /// Oldest start first.
    pub workers: Vec<WorkerRow>,
}

impl WorkersStatus {
    pub fn alive(&self) -> impl Iterator<Item = &WorkerRow> {
        self.workers.iter().filter(|w| w.is_alive(self.now))
    }
}

fn row(r: &impl RowLike) -> Result<WorkerRow> {
    r.worker_row()
}

/// Reads a worker row from either backend's row type.
trait RowLike {
    fn worker_row(&self) -> Result<WorkerRow>;
}

macro_rules! row_like {
    ($t:ty) => {
        impl RowLike for $t {
            fn worker_row(&self) -> Result<WorkerRow> {
                Ok(WorkerRow {
                    id: self.try_get("id")?,
                    host: self.try_get("host")?,
                    pid: self.try_get("pid")?,
                    version: self.try_get("version")?,
                    lease_ms: self.try_get("lease_ms")?,
                    started_at: self.try_get("started_at")?,
                    last_heartbeat_at: self.try_get("last_heartbeat_at")?,
                })
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

pub(crate) mod sqlite {
    use super::*;
    use crate::sqlite::{SqliteStore, now_ms};

    pub async fn register(store: &SqliteStore, w: &WorkerInfo) -> Result<()> {
        let now = now_ms();
        let mut tx = store.writer.begin().await?;
        sqlx::query("DELETE FROM workers WHERE last_heartbeat_at < ?")
            .bind(now - FORGET_AFTER_MS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO workers (id, host, pid, version, lease_ms, started_at, last_heartbeat_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = excluded.last_heartbeat_at",
        )
        .bind(&w.id)
        .bind(&w.host)
        .bind(w.pid)
        .bind(&w.version)
        .bind(w.lease_ms)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn heartbeat(store: &SqliteStore, id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE workers SET last_heartbeat_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(&store.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn deregister(store: &SqliteStore, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM workers WHERE id = ?")
            .bind(id)
            .execute(&store.writer)
            .await?;
        Ok(())
    }

    pub async fn list(store: &SqliteStore) -> Result<WorkersStatus> {
        let rows = sqlx::query("SELECT * FROM workers ORDER BY started_at, id")
            .fetch_all(&store.reader)
            .await?;
        Ok(WorkersStatus {
            now: now_ms(),
            workers: rows.iter().map(row).collect::<Result<_>>()?,
        })
    }
}

pub(crate) mod postgres {
    use super::*;
    use crate::postgres::PgStore;

    pub async fn register(store: &PgStore, w: &WorkerInfo) -> Result<()> {
        let mut tx = store.pool.begin().await?;
        sqlx::query("DELETE FROM workers WHERE last_heartbeat_at < weft_now_ms() - $1")
            .bind(FORGET_AFTER_MS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO workers (id, host, pid, version, lease_ms, started_at, last_heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, weft_now_ms(), weft_now_ms()) \
             ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = excluded.last_heartbeat_at",
        )
        .bind(&w.id)
        .bind(&w.host)
        .bind(w.pid)
        .bind(&w.version)
        .bind(w.lease_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn heartbeat(store: &PgStore, id: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE workers SET last_heartbeat_at = weft_now_ms() WHERE id = $1")
                .bind(id)
                .execute(&store.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn deregister(store: &PgStore, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(id)
            .execute(&store.pool)
            .await?;
        Ok(())
    }

    pub async fn list(store: &PgStore) -> Result<WorkersStatus> {
        let mut tx = store.pool.begin().await?;
        let now: i64 = sqlx::query_scalar("SELECT weft_now_ms()")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query("SELECT * FROM workers ORDER BY started_at, id")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(WorkersStatus {
            now,
            workers: rows.iter().map(row).collect::<Result<_>>()?,
        })
    }
}
