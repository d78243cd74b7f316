//! Schedules as the store keeps them: a template (its source pinned when the schedule was
//! added), inputs, a cron line and a time zone, and the next slot to fire.
//!
//! Firing is exactly once per slot: a scheduler reads due schedules outside a transaction, then
//! in the transaction that creates the slot's run calls [`crate::ScheduleTable::claim_schedule_slot`],
//! a conditional UPDATE that moves `next_fire_at` on only if it still holds the slot that was
//! read. Of several schedulers racing for a slot, one UPDATE matches; the others match nothing
//! and create nothing (on PostgreSQL a racing claimer's UPDATE waits for the row lock,
//! re-checks the WHERE on the committed row and matches nothing). Cron arithmetic is the
//! engine's: the store only compares numbers.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::db::{Row, SqlStore, Target, args};
use crate::error::{Error, Result};

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

fn schedule_from_row(r: &Row) -> Result<Schedule> {
    let parse = |col: &str| -> Result<Value> {
        let text: String = r.get(col)?;
        serde_json::from_str(&text).map_err(|e| Error::Corrupt(format!("schedule {col}: {e}")))
    };
    Ok(Schedule {
        id: r.get("id")?,
        tenant: r.get("tenant")?,
        name: r.get("name")?,
        cron: r.get("cron")?,
        timezone: r.get("timezone")?,
        template: r.get("template")?,
        version: r.get("version")?,
        digest: r.get("digest")?,
        source: r.get("source")?,
        file: r.get("file")?,
        files: parse("files")?,
        base_dir: r.get("base_dir")?,
        inputs: parse("inputs")?,
        paused: r.get("paused")?,
        next_fire_at: r.get("next_fire_at")?,
        last_slot: r.get("last_slot")?,
        last_fired_at: r.get("last_fired_at")?,
        last_error: r.get("last_error")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

/// The conditional UPDATE of a claim (`ScheduleTable::claim_schedule_slot`).
pub(crate) async fn claim_slot(t: Target<'_>, claim: &SlotClaim, now: i64) -> Result<bool> {
    let done = t
        .execute(
            "UPDATE schedules SET next_fire_at = $1, last_slot = $2, last_fired_at = $3, \
             last_error = NULL, updated_at = $3 \
             WHERE id = $4 AND NOT paused AND next_fire_at = $5",
            args![
                claim.next,
                claim.slot,
                now,
                &claim.schedule_id,
                claim.expected_next
            ],
        )
        .await?;
    Ok(done == 1)
}

macro_rules! columns {
    () => {
        "id, tenant, name, cron, timezone, template, version, digest, source, file, files, \
         base_dir, inputs, paused, next_fire_at, last_slot, last_fired_at, last_error, \
         created_at, updated_at"
    };
}

#[async_trait]
impl ScheduleStore for SqlStore {
    async fn insert_schedule(&self, s: &Schedule) -> Result<bool> {
        let done = self
            .write()
            .execute(
                concat!(
                    "INSERT INTO schedules (",
                    columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                     $15, $16, $17, $18, $19, $20) ON CONFLICT (tenant, name) DO NOTHING"
                ),
                args![
                    &s.id,
                    &s.tenant,
                    &s.name,
                    &s.cron,
                    &s.timezone,
                    &s.template,
                    &s.version,
                    &s.digest,
                    &s.source,
                    &s.file,
                    s.files.to_string(),
                    &s.base_dir,
                    s.inputs.to_string(),
                    s.paused,
                    s.next_fire_at,
                    s.last_slot,
                    s.last_fired_at,
                    &s.last_error,
                    s.created_at,
                    s.updated_at,
                ],
            )
            .await?;
        Ok(done == 1)
    }

    async fn schedules(&self, tenant: &str) -> Result<Vec<Schedule>> {
        self.read()
            .all(
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM schedules WHERE tenant = $1 ORDER BY name COLLATE {binary}"
                ),
                args![tenant],
                schedule_from_row,
            )
            .await
    }

    async fn schedule(&self, tenant: &str, id_or_name: &str) -> Result<Option<Schedule>> {
        self.read()
            .optional(
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM schedules WHERE tenant = $1 AND (id = $2 OR name = $2) \
                     ORDER BY (id = $2) DESC LIMIT 1"
                ),
                args![tenant, id_or_name],
                schedule_from_row,
            )
            .await
    }

    async fn set_schedule_paused(
        &self,
        tenant: &str,
        id: &str,
        paused: bool,
        next_fire_at: Option<i64>,
    ) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "UPDATE schedules SET paused = $1, next_fire_at = $2, updated_at = {now} \
                 WHERE tenant = $3 AND id = $4",
                args![paused, next_fire_at, tenant, id],
            )
            .await?;
        Ok(done == 1)
    }

    async fn delete_schedule(&self, tenant: &str, id: &str) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "DELETE FROM schedules WHERE tenant = $1 AND id = $2",
                args![tenant, id],
            )
            .await?;
        Ok(done == 1)
    }

    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<Schedule>> {
        self.read()
            .all(
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM schedules WHERE NOT paused AND next_fire_at <= $1 \
                     ORDER BY next_fire_at LIMIT $2"
                ),
                args![now, limit],
                schedule_from_row,
            )
            .await
    }

    async fn skip_schedule_slot(&self, claim: &SlotClaim, error: &str) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "UPDATE schedules SET next_fire_at = $1, last_slot = $2, last_error = $3, \
                 updated_at = {now} WHERE id = $4 AND next_fire_at = $5",
                args![
                    claim.next,
                    claim.slot,
                    error,
                    &claim.schedule_id,
                    claim.expected_next
                ],
            )
            .await?;
        Ok(done == 1)
    }
}
