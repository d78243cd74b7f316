//! What only the PostgreSQL backend does: many `weft worker` and `weft serve` processes on
//! many machines sharing one database.
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
//! - the event tail (`EventFeed::events_since`) needs care that SQLite does not: `seq` is
//!   handed out when a transaction inserts its events, not when it commits, so two committers
//!   can make `seq` 10 visible before `seq` 9. Every transaction that writes events therefore
//!   holds [`LOCK_EVENT_FEED`] in shared mode from its insert to its commit, and the tail takes
//!   it exclusively for the length of one read;
//! - a commit that queued work sends one `NOTIFY weft_work`; `Store::wait_for_work` listens,
//!   and wakes up after every reconnect too, because notifications sent meanwhile are lost.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres, Row as _, Transaction};
use tokio::sync::Notify;

use crate::db::{Db, Row, SqlStore, json_text, opt_json};
use crate::error::{Error, Result};
use crate::records::{NewEvent, NewTask, Task, TaskFinish, TaskStatus};
use crate::rows;
use crate::usage::TaskUsage;

/// The channel a commit that queued tasks notifies.
pub(crate) const WORK_CHANNEL: &str = "weft_work";
/// Advisory lock namespaces (the first key of the two-key form).
pub(crate) const LOCK_STEP_CAP: i32 = 0x7765_0001;
pub(crate) const LOCK_RUN_EVENTS: i32 = 0x7765_0002;
pub(crate) const LOCK_IDEMPOTENCY: i32 = 0x7765_0003;
/// (0x7765_0004 is the event feed's, [`LOCK_EVENT_FEED`].)
pub(crate) const LOCK_GLOBAL_CAP: i32 = 0x7765_0005;
pub(crate) const LOCK_TENANT_CAP: i32 = 0x7765_0006;
/// Serialises one tenant's run creations while a runs-per-hour quota is counted.
pub(crate) const LOCK_RUN_RATE: i32 = 0x7765_0008;

/// The advisory lock (two-key form, second key 0) between event writers (shared) and the
/// event tail (exclusive).
pub(crate) const LOCK_EVENT_FEED: i32 = 0x7765_0004;

impl SqlStore {
    /// Connects, brings the schema up to date (several processes may start at once: the
    /// migrator holds an advisory lock while it works). Listening for work starts with the
    /// first `wait_for_work`.
    pub async fn postgres(url: &str) -> Result<Self> {
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
        Ok(SqlStore {
            db: Db::Postgres {
                pool,
                wake: Arc::new(Notify::new()),
                listener: OnceLock::new(),
            },
            describe,
            health: Default::default(),
        })
    }

    /// Closes every connection (the work listener's too). A no-op on SQLite.
    pub async fn close(&self) {
        if let Db::Postgres { pool, listener, .. } = &self.db {
            if let Some(l) = listener.get() {
                l.abort();
            }
            pool.close().await;
        }
    }
}

/// Returns when another process may have queued work, or after `timeout` at the latest.
pub(crate) async fn wait_for_work(
    pool: &PgPool,
    wake: &Arc<Notify>,
    listener: &OnceLock<tokio::task::JoinHandle<()>>,
    timeout: Duration,
) {
    listener.get_or_init(|| tokio::spawn(listen(pool.clone(), wake.clone())));
    let _ = tokio::time::timeout(timeout, wake.notified()).await;
}

/// A write transaction and the database clock at its start.
pub(crate) async fn begin(pool: &PgPool) -> Result<(Transaction<'static, Postgres>, i64)> {
    let mut tx = pool.begin().await?;
    let now: i64 = sqlx::query_scalar("SELECT weft_now_ms()")
        .fetch_one(&mut *tx)
        .await?;
    Ok((tx, now))
}

/// Sends `NOTIFY weft_work`, delivered by PostgreSQL at commit and only if the commit succeeds.
pub(crate) async fn notify_work(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WORK_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes an advisory lock until the transaction ends: `(namespace, hashtext(key))`.
pub(crate) async fn lock(conn: &mut PgConnection, namespace: i32, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(namespace)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

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

/// Writes a transaction's events at its commit, under the runs' event locks (see the module
/// comment).
pub(crate) async fn flush_events(
    conn: &mut PgConnection,
    now: i64,
    events: &[NewEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut runs: Vec<&str> = events.iter().map(|e| e.run_id.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    // Lock in key order so two committers never wait on each other in a cycle. Held until
    // commit, so a run's events commit in seq order. First (the sort below consumes every
    // row before the outer locks are taken), the event feed's lock in shared mode, so the
    // global tail never reads past an insert that has yet to commit (`server.rs`).
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, k) FROM \
             (SELECT DISTINCT hashtext(r) AS k FROM unnest($2::text[]) AS r \
              WHERE pg_advisory_xact_lock_shared($3, 0) IS NOT NULL ORDER BY k OFFSET 0) s",
    )
    .bind(LOCK_RUN_EVENTS)
    .bind(&runs)
    .bind(LOCK_EVENT_FEED)
    .execute(&mut *conn)
    .await?;
    let mut run_ids = Vec::with_capacity(events.len());
    let mut kinds = Vec::with_capacity(events.len());
    let mut steps = Vec::with_capacity(events.len());
    let mut items = Vec::with_capacity(events.len());
    let mut attempts = Vec::with_capacity(events.len());
    let mut data = Vec::with_capacity(events.len());
    for e in events {
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
    .bind(now)
    .bind(&run_ids)
    .bind(&kinds)
    .bind(&steps)
    .bind(&items)
    .bind(&attempts)
    .bind(&data)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `TaskQueue::insert_tasks` as one `unnest` statement; whether it queued work (to notify at commit).
pub(crate) async fn insert_tasks(
    conn: &mut PgConnection,
    now: i64,
    tasks: &[NewTask],
) -> Result<bool> {
    if tasks.is_empty() {
        return Ok(false);
    }
    let mut queued_work = false;
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
                queued_work = true;
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
        finished.push(t.done.as_ref().map(|_| now));
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
    .bind(now)
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
    .execute(&mut *conn)
    .await?;
    Ok(queued_work)
}

/// `TaskQueue::claim` across processes: advisory locks on the caps it counts against, then one
/// `UPDATE ... FOR UPDATE SKIP LOCKED` statement.
pub(crate) async fn claim(
    conn: &mut PgConnection,
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
    let runs: Option<Vec<String>> = only_runs.map(<[String]>::to_vec);
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
    .fetch_all(&mut *conn)
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
    .bind(now)
    .bind(max_running.map(i64::from))
    .bind(&step_keys)
    .bind(&tenant_keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed = rows
        .into_iter()
        .map(|r| rows::task(&Row::Pg(r)))
        .collect::<Result<Vec<_>>>()?;
    claimed.sort_by_key(|t| t.id);
    Ok(claimed)
}

/// `TaskQueue::finish_tasks` as one statement for the batch (two or more), fenced per row exactly
/// like `finish_task`.
pub(crate) async fn finish_tasks(
    conn: &mut PgConnection,
    now: i64,
    fins: &[TaskFinish<'_>],
) -> Result<Vec<bool>> {
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
    .bind(now)
    .bind(&ids)
    .bind(&attempts)
    .bind(&owners)
    .bind(&statuses)
    .bind(&outputs)
    .bind(&errors)
    .fetch_all(&mut *conn)
    .await?;
    let mut ended = std::collections::HashSet::with_capacity(rows.len());
    for r in &rows {
        ended.insert(r.try_get::<i64, _>("id")?);
    }
    Ok(ids.iter().map(|id| ended.contains(id)).collect())
}

/// `UsageTable::record_usage` as one statement for the batch.
pub(crate) async fn record_usage(conn: &mut PgConnection, usage: &[TaskUsage]) -> Result<()> {
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
        .execute(&mut *conn)
        .await?;
    Ok(())
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
