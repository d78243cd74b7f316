//! Worker processes on record: each `weft worker`, `weft serve` and `weft run` registers a row
//! when its worker starts and heart-beats it, both stamped by the store's clock (PostgreSQL's
//! `weft_now_ms()`, so workers on other machines with skewed clocks still agree). An operator
//! counts the live ones with `weft status` or the `weft_workers_alive` gauge.
//!
//! The `Store` methods (`register_worker`, `heartbeat_worker`, `deregister_worker`,
//! `workers`) are the functions here.

use serde::Serialize;

use crate::db::{Row, SqlStore, args};
use crate::error::Result;

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

fn worker_from_row(r: &Row) -> Result<WorkerRow> {
    Ok(WorkerRow {
        id: r.get("id")?,
        host: r.get("host")?,
        pid: r.get("pid")?,
        version: r.get("version")?,
        lease_ms: r.get("lease_ms")?,
        started_at: r.get("started_at")?,
        last_heartbeat_at: r.get("last_heartbeat_at")?,
    })
}

pub(crate) async fn register(store: &SqlStore, w: &WorkerInfo) -> Result<()> {
    let mut tx = store.begin_plain().await?;
    tx.target()
        .execute(
            "DELETE FROM workers WHERE last_heartbeat_at < {now} - $1",
            args![FORGET_AFTER_MS],
        )
        .await?;
    tx.target()
        .execute(
            "INSERT INTO workers (id, host, pid, version, lease_ms, started_at, \
             last_heartbeat_at) VALUES ($1, $2, $3, $4, $5, {now}, {now}) \
             ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = excluded.last_heartbeat_at",
            args![&w.id, &w.host, w.pid, &w.version, w.lease_ms],
        )
        .await?;
    tx.commit().await
}

pub(crate) async fn heartbeat(store: &SqlStore, id: &str) -> Result<bool> {
    let done = store
        .write()
        .execute(
            "UPDATE workers SET last_heartbeat_at = {now} WHERE id = $1",
            args![id],
        )
        .await?;
    Ok(done == 1)
}

pub(crate) async fn deregister(store: &SqlStore, id: &str) -> Result<()> {
    store
        .write()
        .execute("DELETE FROM workers WHERE id = $1", args![id])
        .await?;
    Ok(())
}

pub(crate) async fn list(store: &SqlStore) -> Result<WorkersStatus> {
    // The clock and the rows in one statement, so they agree.
    let rows = store
        .read()
        .fetch_all(
            "SELECT w.*, c.now FROM (SELECT {now} AS now) c \
             LEFT JOIN workers w ON TRUE ORDER BY w.started_at, w.id",
            args![],
        )
        .await?;
    let now = match rows.first() {
        Some(r) => r.get("now")?,
        None => 0,
    };
    let workers = rows
        .iter()
        .filter(|r| matches!(r.get::<Option<String>>("id"), Ok(Some(_))))
        .map(worker_from_row)
        .collect::<Result<_>>()?;
    Ok(WorkersStatus { now, workers })
}
