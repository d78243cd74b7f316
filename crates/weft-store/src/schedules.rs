//! Schedules as the store keeps them: a template (its source pinned when the schedule was
//! added), inputs, a cron line and a time zone, and the next slot to fire.
//!
//! Firing is exactly once per slot: a scheduler reads due schedules outside a transaction, then
//! in the transaction that creates the slot's run calls [`crate::Tx::claim_schedule_slot`],
//! a conditional UPDATE that moves `next_fire_at` on only if it still holds the slot that was
//! read. Of several schedulers racing for a slot, one UPDATE matches; the others match nothing
//! and create nothing. Cron arithmetic is the engine's: the store only compares numbers.
//! Both SQLite and PostgreSQL implement the same contract here.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{Error, Result};

/// One schedule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Schedule {
    pub id: String,
    pub tenant: String,
    /// Unique per tenant.
    pub name: String,
    /// Five fields (`0 6 * * MON`), or six with seconds first.
    pub cron: String,
    /// An IANA zone name (`Europe/Berlin`) or `UTC`.
    pub timezone: String,
    pub template: String,
    pub version: String,
    pub digest: String,
    /// The template as it was when the schedule was added; every fire runs exactly this.
    #[serde(skip)]
    pub source: String,
    #[serde(skip)]
    pub file: String,
    #[serde(skip)]
    pub files: Value,
    #[serde(skip)]
    pub base_dir: Option<String>,
    /// Resolved inputs (defaults filled).
    pub inputs: Value,
    pub paused: bool,
    /// The next slot to fire (ms since the epoch); `None` when the cron has no next time or
    /// the schedule is paused.
    pub next_fire_at: Option<i64>,
    /// The last slot fired.
    pub last_slot: Option<i64>,
    pub last_fired_at: Option<i64>,
    /// Why the last slot did not start a run, if it did not.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A slot a scheduler wants to fire: valid only while the schedule still holds
/// `expected_next`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotClaim {
    pub schedule_id: String,
    /// The `next_fire_at` the scheduler read.
    pub expected_next: i64,
    /// The slot being fired (the most recent due one; see the engine's missed-slot policy).
    pub slot: i64,
    /// The slot after it, stored as the new `next_fire_at`.
    pub next: Option<i64>,
}

/// The idempotency key of a slot's run: the same for every scheduler that computes the slot.
pub fn slot_key(schedule_id: &str, slot: i64) -> String {
    format!("schedule:{schedule_id}:{slot}")
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Adds a schedule; `false` if the tenant has one of this name.
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<bool>;
    /// A tenant's schedules by name.
    async fn schedules(&self, tenant: &str) -> Result<Vec<Schedule>>;
    /// One of a tenant's schedules, by id or by name.
    async fn schedule(&self, tenant: &str, id_or_name: &str) -> Result<Option<Schedule>>;
    /// Pauses (`next_fire_at` is cleared) or resumes (from `next_fire_at`); `false` if the
    /// tenant has no such schedule.
    async fn set_schedule_paused(
        &self,
        tenant: &str,
        id: &str,
        paused: bool,
        next_fire_at: Option<i64>,
    ) -> Result<bool>;
    async fn delete_schedule(&self, tenant: &str, id: &str) -> Result<bool>;
    /// Unpaused schedules of every tenant whose `next_fire_at <= now`, soonest first.
    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<Schedule>>;
    /// Moves past a slot that could not start a run, noting why; fenced like a claim.
    async fn skip_schedule_slot(&self, claim: &SlotClaim, error: &str) -> Result<bool>;
}

fn sqlite_row(r: &sqlx::sqlite::SqliteRow) -> Result<Schedule> {
    let paused: i64 = r.try_get("paused")?;
    from_parts(
        r.try_get("files")?,
        r.try_get("inputs")?,
        paused != 0,
        |s| {
            s.id = r.try_get("id")?;
            s.tenant = r.try_get("tenant")?;
            s.name = r.try_get("name")?;
            s.cron = r.try_get("cron")?;
            s.timezone = r.try_get("timezone")?;
            s.template = r.try_get("template")?;
            s.version = r.try_get("version")?;
            s.digest = r.try_get("digest")?;
            s.source = r.try_get("source")?;
            s.file = r.try_get("file")?;
            s.base_dir = r.try_get("base_dir")?;
            s.next_fire_at = r.try_get("next_fire_at")?;
            s.last_slot = r.try_get("last_slot")?;
            s.last_fired_at = r.try_get("last_fired_at")?;
            s.last_error = r.try_get("last_error")?;
            s.created_at = r.try_get("created_at")?;
            s.updated_at = r.try_get("updated_at")?;
            Ok(())
        },
    )
}

fn pg_row(r: &sqlx::postgres::PgRow) -> Result<Schedule> {
    from_parts(
        r.try_get("files")?,
        r.try_get("inputs")?,
        r.try_get("paused")?,
        |s| {
            s.id = r.try_get("id")?;
            s.tenant = r.try_get("tenant")?;
            s.name = r.try_get("name")?;
            s.cron = r.try_get("cron")?;
            s.timezone = r.try_get("timezone")?;
            s.template = r.try_get("template")?;
            s.version = r.try_get("version")?;
            s.digest = r.try_get("digest")?;
            s.source = r.try_get("source")?;
            s.file = r.try_get("file")?;
            s.base_dir = r.try_get("base_dir")?;
            s.next_fire_at = r.try_get("next_fire_at")?;
            s.last_slot = r.try_get("last_slot")?;
            s.last_fired_at = r.try_get("last_fired_at")?;
            s.last_error = r.try_get("last_error")?;
            s.created_at = r.try_get("created_at")?;
            s.updated_at = r.try_get("updated_at")?;
            Ok(())
        },
    )
}

fn from_parts(
    files: String,
    inputs: String,
    paused: bool,
    fill: impl FnOnce(&mut Schedule) -> std::result::Result<(), sqlx::Error>,
) -> Result<Schedule> {
    let parse = |text: &str, what: &str| {
        serde_json::from_str::<Value>(text)
            .map_err(|e| Error::Corrupt(format!("schedule {what}: {e}")))
    };
    let mut s = Schedule {
        id: String::new(),
        tenant: String::new(),
        name: String::new(),
        cron: String::new(),
        timezone: String::new(),
        template: String::new(),
        version: String::new(),
        digest: String::new(),
        source: String::new(),
        file: String::new(),
        files: parse(&files, "files")?,
        base_dir: None,
        inputs: parse(&inputs, "inputs")?,
        paused,
        next_fire_at: None,
        last_slot: None,
        last_fired_at: None,
        last_error: None,
        created_at: 0,
        updated_at: 0,
    };
    fill(&mut s)?;
    Ok(s)
}

/// The conditional UPDATE of a claim, on SQLite (called from `SqliteTx`).
pub(crate) async fn claim_sqlite(
    conn: &mut sqlx::SqliteConnection,
    claim: &SlotClaim,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE schedules SET next_fire_at = ?, last_slot = ?, last_fired_at = ?, \
         last_error = NULL, updated_at = ? \
         WHERE id = ? AND paused = 0 AND next_fire_at = ?",
    )
    .bind(claim.next)
    .bind(claim.slot)
    .bind(now)
    .bind(now)
    .bind(&claim.schedule_id)
    .bind(claim.expected_next)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The conditional UPDATE of a claim, on PostgreSQL (called from `PgTx`). A racing claimer's
/// UPDATE waits for the row lock, re-checks the WHERE on the committed row and matches nothing.
pub(crate) async fn claim_pg(
    conn: &mut sqlx::PgConnection,
    claim: &SlotClaim,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE schedules SET next_fire_at = $1, last_slot = $2, last_fired_at = $3, \
         last_error = NULL, updated_at = $3 \
         WHERE id = $4 AND NOT paused AND next_fire_at = $5",
    )
    .bind(claim.next)
    .bind(claim.slot)
    .bind(now)
    .bind(&claim.schedule_id)
    .bind(claim.expected_next)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

const COLUMNS: &str = "id, tenant, name, cron, timezone, template, version, digest, source, \
    file, files, base_dir, inputs, paused, next_fire_at, last_slot, last_fired_at, last_error, \
    created_at, updated_at";

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn insert_schedule(&self, s: &Schedule) -> Result<bool> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES \
             (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant, name) DO NOTHING"
        )))
        .bind(&s.id)
        .bind(&s.tenant)
        .bind(&s.name)
        .bind(&s.cron)
        .bind(&s.timezone)
        .bind(&s.template)
        .bind(&s.version)
        .bind(&s.digest)
        .bind(&s.source)
        .bind(&s.file)
        .bind(s.files.to_string())
        .bind(&s.base_dir)
        .bind(s.inputs.to_string())
        .bind(i64::from(s.paused))
        .bind(s.next_fire_at)
        .bind(s.last_slot)
        .bind(s.last_fired_at)
        .bind(&s.last_error)
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn schedules(&self, tenant: &str) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE tenant = ? ORDER BY name"
        )))
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(sqlite_row).collect()
    }

    async fn schedule(&self, tenant: &str, id_or_name: &str) -> Result<Option<Schedule>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE tenant = ? AND (id = ? OR name = ?) \
             ORDER BY id = ? DESC LIMIT 1"
        )))
        .bind(tenant)
        .bind(id_or_name)
        .bind(id_or_name)
        .bind(id_or_name)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(sqlite_row).transpose()
    }

    async fn set_schedule_paused(
        &self,
        tenant: &str,
        id: &str,
        paused: bool,
        next_fire_at: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE schedules SET paused = ?, next_fire_at = ?, updated_at = ? \
             WHERE tenant = ? AND id = ?",
        )
        .bind(i64::from(paused))
        .bind(next_fire_at)
        .bind(crate::sqlite::now_ms())
        .bind(tenant)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_schedule(&self, tenant: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM schedules WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE paused = 0 AND next_fire_at <= ? \
             ORDER BY next_fire_at LIMIT ?"
        )))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(sqlite_row).collect()
    }

    async fn skip_schedule_slot(&self, claim: &SlotClaim, error: &str) -> Result<bool> {
        let now = crate::sqlite::now_ms();
        let done = sqlx::query(
            "UPDATE schedules SET next_fire_at = ?, last_slot = ?, last_error = ?, \
             updated_at = ? WHERE id = ? AND next_fire_at = ?",
        )
        .bind(claim.next)
        .bind(claim.slot)
        .bind(error)
        .bind(now)
        .bind(&claim.schedule_id)
        .bind(claim.expected_next)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn insert_schedule(&self, s: &Schedule) -> Result<bool> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
              $18, $19, $20) \
             ON CONFLICT (tenant, name) DO NOTHING"
        )))
        .bind(&s.id)
        .bind(&s.tenant)
        .bind(&s.name)
        .bind(&s.cron)
        .bind(&s.timezone)
        .bind(&s.template)
        .bind(&s.version)
        .bind(&s.digest)
        .bind(&s.source)
        .bind(&s.file)
        .bind(s.files.to_string())
        .bind(&s.base_dir)
        .bind(s.inputs.to_string())
        .bind(s.paused)
        .bind(s.next_fire_at)
        .bind(s.last_slot)
        .bind(s.last_fired_at)
        .bind(&s.last_error)
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn schedules(&self, tenant: &str) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE tenant = $1 ORDER BY name"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pg_row).collect()
    }

    async fn schedule(&self, tenant: &str, id_or_name: &str) -> Result<Option<Schedule>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE tenant = $1 AND (id = $2 OR name = $2) \
             ORDER BY (id = $2) DESC LIMIT 1"
        )))
        .bind(tenant)
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pg_row).transpose()
    }

    async fn set_schedule_paused(
        &self,
        tenant: &str,
        id: &str,
        paused: bool,
        next_fire_at: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE schedules SET paused = $1, next_fire_at = $2, updated_at = weft_now_ms() \
             WHERE tenant = $3 AND id = $4",
        )
        .bind(paused)
        .bind(next_fire_at)
        .bind(tenant)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_schedule(&self, tenant: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM schedules WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE NOT paused AND next_fire_at <= $1 \
             ORDER BY next_fire_at LIMIT $2"
        )))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pg_row).collect()
    }

    async fn skip_schedule_slot(&self, claim: &SlotClaim, error: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE schedules SET next_fire_at = $1, last_slot = $2, last_error = $3, \
             updated_at = weft_now_ms() WHERE id = $4 AND next_fire_at = $5",
        )
        .bind(claim.next)
        .bind(claim.slot)
        .bind(error)
        .bind(&claim.schedule_id)
        .bind(claim.expected_next)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
