//! What only the embedded SQLite backend does: opening one file (WAL, one writer connection),
//! the claim under SQLite's single writer, and multi-row inserts.
//!
//! SQLite allows one writer at a time, so the store keeps exactly one write connection and
//! several read connections. Transactions start with `BEGIN IMMEDIATE`, so two processes sharing
//! one file (a `weft run` and a `weft runs cancel`) queue on the busy timeout instead of failing
//! half-way. Group commit happens one level up: the engine folds many completions into one
//! transaction, so they share one fsync.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection as _, Sqlite, Transaction};

use crate::db::{Arg, Db, SqlStore, Target, args, json_text, placeholders, values_sql};
use crate::error::{Error, Result};
use crate::records::{NewEvent, NewTask, Task, TaskStatus};
use crate::rows;

/// How hard a commit tries to survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is on disk before it is acknowledged.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a process crash, may lose the last commits on power loss.
    Relaxed,
}

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How many SQLite stores this process has opened: a process opens its store once
/// (`weft` logs it at debug level, and a test holds the CLI to one).
static OPENED: AtomicUsize = AtomicUsize::new(0);

/// The number of SQLite stores opened by this process so far.
pub fn opened() -> usize {
    OPENED.load(Ordering::Relaxed)
}

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

impl SqlStore {
    /// Opens (creating if needed) an SQLite database file and brings its schema up to date.
    pub async fn sqlite(path: &Path, durability: Durability) -> Result<Self> {
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
            .after_release(|conn, _| Box::pin(still_usable(conn)))
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
        let opened = OPENED.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(path = %path.display(), opened, "Opened the SQLite store.");
        Ok(SqlStore {
            db: Db::Sqlite { writer, reader },
            describe: format!("sqlite:{}", path.display()),
            health: Default::default(),
        })
    }
}

/// Whether the writer connection may go back to the pool. A `COMMIT` that fails for want of
/// space makes SQLite roll the transaction back by itself; sqlx's `ROLLBACK` on drop then
/// fails and leaves its count of open transactions at one, so every later `BEGIN IMMEDIATE`
/// failed with "begin_with at non-zero transaction depth" until the process restarted (issue
/// 13). Such a connection is closed instead, and the pool opens a fresh one.
async fn still_usable(conn: &mut SqliteConnection) -> std::result::Result<bool, sqlx::Error> {
    // Runs after the rollback a dropped transaction queued on the connection's thread.
    conn.ping().await?;
    let usable = !conn.is_in_transaction();
    if !usable {
        tracing::warn!("The SQLite writer was left inside a failed transaction; reopening it.");
    }
    Ok(usable)
}

/// A write transaction: `BEGIN IMMEDIATE` takes the write lock now, not at the first write.
pub(crate) async fn begin(writer: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    Ok(writer.begin_with("BEGIN IMMEDIATE").await?)
}

/// `TaskQueue::claim` under SQLite's single writer: the counts read here stay true until commit.
pub(crate) async fn claim(
    conn: &mut SqliteConnection,
    now: i64,
    owner: &str,
    limit: u32,
    lease_ms: i64,
    only_runs: Option<&[String]>,
    max_running: Option<u32>,
) -> Result<Vec<Task>> {
    if limit == 0 || only_runs.is_some_and(|r| r.is_empty()) {
        return Ok(Vec::new());
    }
    let mut left = i64::from(limit);
    if let Some(max) = max_running {
        let running: i64 = Target::SqliteConn(&mut *conn)
            .fetch_one(
                "SELECT COUNT(*) AS n FROM tasks WHERE status = 'running'",
                args![],
            )
            .await?
            .get("n")?;
        left = left.min(i64::from(max) - running);
        if left <= 0 {
            return Ok(Vec::new());
        }
    }
    // Free slots of each capped tenant; a tenant without a cap (or a row) is not limited.
    let caps = Target::SqliteConn(&mut *conn)
        .fetch_all(
            "SELECT t.name, t.max_concurrent_tasks - (SELECT COUNT(*) FROM tasks k \
             WHERE k.status = 'running' AND k.tenant = t.name) AS free \
             FROM tenants t WHERE t.max_concurrent_tasks IS NOT NULL",
            args![],
        )
        .await?;
    let mut tenant_free = HashMap::with_capacity(caps.len());
    for row in caps {
        tenant_free.insert(row.get::<String>("name")?, row.get::<i64>("free")?);
    }
    // Running steps are few; walk them oldest run first and fill each one's free slots. A
    // `waiting` run (one step waits for a decision) keeps its other steps going.
    let mut sql = String::from(
        "SELECT s.run_id, s.step_id, s.concurrency, r.tenant FROM steps s \
         JOIN runs r ON r.id = s.run_id WHERE s.status = 'running' \
         AND r.status IN ('running', 'waiting')",
    );
    let mut run_args = Vec::new();
    if let Some(runs) = only_runs {
        sql.push_str(&format!(
            " AND s.run_id IN ({})",
            placeholders(1, runs.len())
        ));
        run_args.extend(runs.iter().map(Arg::from));
    }
    sql.push_str(" ORDER BY r.created_at, s.idx");
    let steps = Target::SqliteConn(&mut *conn)
        .fetch_all(sql, &run_args)
        .await?;
    let mut claimed = Vec::new();
    for row in steps {
        if left <= 0 {
            break;
        }
        let run_id: String = row.get("run_id")?;
        let step_id: String = row.get("step_id")?;
        let cap: Option<i64> = row.get("concurrency")?;
        let tenant: String = row.get("tenant")?;
        let mut want = left;
        if let Some(free) = tenant_free.get(&tenant) {
            want = want.min(*free);
        }
        if let Some(cap) = cap {
            let running: i64 = Target::SqliteConn(&mut *conn)
                .fetch_one(
                    "SELECT COUNT(*) AS n FROM tasks WHERE run_id = $1 AND step_id = $2 \
                     AND status = 'running'",
                    args![&run_id, &step_id],
                )
                .await?
                .get("n")?;
            want = want.min(cap - running);
        }
        if want <= 0 {
            continue;
        }
        let rows = Target::SqliteConn(&mut *conn)
            .fetch_all(
                "UPDATE tasks SET status = 'running', lease_owner = $1, lease_expires = $2, \
                 started_at = $3 WHERE id IN (SELECT id FROM tasks WHERE run_id = $4 AND \
                 step_id = $5 AND status = 'queued' AND not_before <= $3 ORDER BY item, id \
                 LIMIT $6) RETURNING *",
                args![owner, now + lease_ms, now, &run_id, &step_id, want],
            )
            .await?;
        left -= rows.len() as i64;
        if let Some(free) = tenant_free.get_mut(&tenant) {
            *free -= rows.len() as i64;
        }
        for r in &rows {
            claimed.push(rows::task(r)?);
        }
    }
    claimed.sort_by_key(|t| t.id);
    Ok(claimed)
}

/// `TaskQueue::insert_tasks` as multi-row inserts: a 100,000-item fan-out is 100 statements, not
/// 100,000 round trips to SQLite's connection thread. 17 columns x 1,000 rows stays under
/// SQLite's 32,766 bound parameters.
pub(crate) async fn insert_tasks(
    conn: &mut SqliteConnection,
    now: i64,
    tasks: &[NewTask],
) -> Result<()> {
    for chunk in tasks.chunks(1_000) {
        let mut values = Vec::with_capacity(chunk.len() * 17);
        for t in chunk {
            let (status, output, error, hit) = match &t.done {
                Some((status, output, error, hit)) => {
                    (*status, Some(json_text(output)), error.as_deref(), *hit)
                }
                None => (TaskStatus::Queued, None, None, false),
            };
            let finished = t.done.as_ref().map(|_| now);
            values.extend([
                Arg::from(&t.run_id),
                Arg::from(&t.tenant),
                Arg::from(&t.step_id),
                Arg::from(t.item),
                Arg::from(&t.tool),
                Arg::from(json_text(&t.input)),
                Arg::from(status.as_str()),
                Arg::from(1i64),
                Arg::from(t.max_attempts),
                Arg::from(t.not_before),
                Arg::from(output),
                Arg::from(error),
                Arg::from(&t.cache_key),
                Arg::from(hit),
                Arg::from(now),
                Arg::from(finished),
                Arg::from(finished),
            ]);
        }
        let sql = values_sql(
            "INSERT INTO tasks (run_id, tenant, step_id, item, tool, input, status, attempt, \
             max_attempts, not_before, output, error, cache_key, cache_hit, created_at, \
             started_at, finished_at)",
            17,
            chunk.len(),
        );
        Target::SqliteConn(&mut *conn).execute(sql, &values).await?;
    }
    Ok(())
}

/// `EventLog::append_events`: one statement per 4,000 events (7 values each), in order, so `seq`
/// follows it. The single writer makes commit order `seq` order.
pub(crate) async fn append_events(
    conn: &mut SqliteConnection,
    now: i64,
    events: &[NewEvent],
) -> Result<()> {
    for chunk in events.chunks(4_000) {
        let mut values = Vec::with_capacity(chunk.len() * 7);
        for e in chunk {
            values.extend([
                Arg::from(&e.run_id),
                Arg::from(now),
                Arg::from(e.kind.as_str()),
                Arg::from(&e.step_id),
                Arg::from(e.item),
                Arg::from(e.attempt),
                Arg::from(json_text(&e.data)),
            ]);
        }
        let sql = values_sql(
            "INSERT INTO events (run_id, ts, kind, step_id, item, attempt, data)",
            7,
            chunk.len(),
        );
        Target::SqliteConn(&mut *conn).execute(sql, &values).await?;
    }
    Ok(())
}
