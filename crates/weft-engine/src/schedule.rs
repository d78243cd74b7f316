//! Schedules: cron arithmetic and the scheduler loop that `weft serve` and `weft worker` run.
//!
//! Exactly once per slot, with any number of schedulers on one store: a scheduler reads the
//! due schedules, and for each one creates the slot's run in the transaction that claims the
//! slot (`ScheduleTable::claim_schedule_slot`, a conditional UPDATE of `next_fire_at`). The run's
//! idempotency key is derived from the schedule id and the slot, so even a claim that somehow
//! repeated would find the run already there.
//!
//! Missed slots (no scheduler was running, or it fell behind): the most recent missed slot
//! fires once, older ones are skipped, and `next_fire_at` moves to the first slot after now.
//! A slot whose run cannot be created (the stored template no longer loads, inputs refused,
//! the tenant's runs-per-hour quota says no) is skipped with the reason in `last_error`; a transient store error
//! leaves the slot to the next turn.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use weft_store::Run;
use weft_store::schedules::{Schedule, ScheduleStore, SlotClaim, slot_key};

use crate::{Engine, NewRun, Result};

/// A parsed cron line in a time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    tz: chrono_tz::Tz,
}

impl CronSpec {
    /// Five fields (`0 6 * * MON`) or six with seconds first (`*/2 * * * * *`), and an IANA
    /// time zone (`UTC` when `None`). The error says what is wrong, for the user.
    pub fn parse(expr: &str, tz: Option<&str>) -> std::result::Result<CronSpec, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| format!("`{expr}` is not a cron line: {e}"))?;
        let tz = match tz {
            None => chrono_tz::UTC,
            Some(name) => chrono_tz::Tz::from_str(name).map_err(|_| {
                format!(
                    "`{name}` is not a time zone; use an IANA name such as `Europe/Berlin` or `UTC`"
                )
            })?,
        };
        let spec = CronSpec { cron, tz };
        // A line that can never match (`0 0 31 2 *`) is refused up front.
        if spec.next_after(Utc::now().timestamp_millis()).is_none() {
            return Err(format!("`{expr}` never fires"));
        }
        Ok(spec)
    }

    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    fn at(&self, ms: i64) -> Option<DateTime<chrono_tz::Tz>> {
        self.tz.timestamp_millis_opt(ms).single()
    }

    /// The first slot strictly after `ms`.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let t = self.at(ms)?;
        self.cron
            .find_next_occurrence(&t, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The latest slot at or before `ms`.
    pub fn latest_at_or_before(&self, ms: i64) -> Option<i64> {
        let t = self.at(ms)?;
        self.cron
            .find_previous_occurrence(&t, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The missed-slot policy: with `next` due at `now`, the slot to fire (the most recent one
    /// at or before `now`, never before `next`) and the slot after `now`.
    pub fn due(&self, next: i64, now: i64) -> (i64, Option<i64>) {
        let slot = self
            .latest_at_or_before(now)
            .filter(|s| *s >= next)
            .unwrap_or(next);
        (slot, self.next_after(now.max(slot)))
    }
}

/// A new schedule's record: the plan's source pinned, the first slot after `now` next.
#[allow(clippy::too_many_arguments)]
pub fn new_schedule(
    tenant: &str,
    name: &str,
    cron: &str,
    spec: &CronSpec,
    plan: &weft_core::Plan,
    base_dir: Option<String>,
    inputs: Value,
    now: i64,
) -> Schedule {
    Schedule {
        id: format!("sch_{}", ulid::Ulid::new().to_string().to_lowercase()),
        tenant: tenant.to_string(),
        name: name.to_string(),
        cron: cron.trim().to_string(),
        timezone: spec.timezone().to_string(),
        template: plan.name.clone(),
        version: plan.version.clone(),
        digest: plan.digest.clone(),
        source: plan.source.clone(),
        file: plan.file.clone(),
        files: serde_json::to_value(&plan.files).unwrap_or(Value::Null),
        base_dir,
        inputs,
        paused: false,
        next_fire_at: spec.next_after(now),
        last_slot: None,
        last_fired_at: None,
        last_error: None,
        created_at: now,
        updated_at: now,
    }
}

/// Settings of one scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerOptions {
    /// How often the scheduler looks for due schedules, in milliseconds. A slot fires within
    /// about this long after its time.
    pub poll_ms: u64,
    /// Most schedules fired per turn.
    pub batch: u32,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            poll_ms: 500,
            batch: 100,
        }
    }
}

/// What one turn did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Turn {
    /// Runs this scheduler created.
    pub fired: Vec<String>,
    /// Slots another scheduler took first.
    pub lost: u32,
    /// Slots skipped because their run could not be created.
    pub skipped: u32,
}

/// Fires due schedules. Several may run against one store.
pub struct Scheduler {
    engine: Engine,
    schedules: Arc<dyn ScheduleStore>,
    options: SchedulerOptions,
}

impl Scheduler {
    pub fn new(
        engine: Engine,
        schedules: Arc<dyn ScheduleStore>,
        options: SchedulerOptions,
    ) -> Scheduler {
        Scheduler {
            engine,
            schedules,
            options,
        }
    }

    /// Turns until `cancel` fires. Errors are logged and the next turn tries again.
    pub async fn run(self, cancel: CancellationToken) {
        let poll = Duration::from_millis(self.options.poll_ms.max(10));
        loop {
            if let Err(error) = self.turn().await {
                tracing::warn!(%error, "Scheduler turn failed; trying again.");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One look at the due schedules, firing each at most once.
    pub async fn turn(&self) -> Result<Turn> {
        let now = self.engine.store().now().await?;
        let due = self
            .schedules
            .due_schedules(now, self.options.batch.max(1))
            .await?;
        let mut turn = Turn::default();
        for schedule in due {
            match self.fire(&schedule, now).await {
                Ok(Fired::Run(run)) => turn.fired.push(run.id),
                Ok(Fired::Lost) => turn.lost += 1,
                Ok(Fired::Skipped) => turn.skipped += 1,
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, schedule_id = %schedule.id, "Schedule not fired; trying again.");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(turn)
    }

    async fn fire(&self, schedule: &Schedule, now: i64) -> Result<Fired> {
        let Some(expected_next) = schedule.next_fire_at else {
            return Ok(Fired::Lost);
        };
        let spec = match CronSpec::parse(&schedule.cron, Some(&schedule.timezone)) {
            Ok(spec) => spec,
            Err(message) => {
                let claim = SlotClaim {
                    schedule_id: schedule.id.clone(),
                    expected_next,
                    slot: expected_next,
                    next: None,
                };
                return self.skip(schedule, &claim, &message).await;
            }
        };
        let (slot, next) = spec.due(expected_next, now);
        let claim = SlotClaim {
            schedule_id: schedule.id.clone(),
            expected_next,
            slot,
            next,
        };
        let plan = match self.plan(schedule) {
            Ok(plan) => plan,
            Err(message) => return self.skip(schedule, &claim, &message).await,
        };
        let new = NewRun {
            tenant: schedule.tenant.clone(),
            plan,
            inputs: schedule.inputs.clone(),
            idempotency_key: Some(slot_key(&schedule.id, slot)),
            base_dir: schedule.base_dir.clone(),
        };
        match self.engine.create_scheduled_run(new, &claim).await {
            Ok(Some(run)) => {
                tracing::info!(schedule_id = %schedule.id, schedule = %schedule.name,
                    slot, run_id = %run.id, "Schedule fired.");
                Ok(Fired::Run(Box::new(run)))
            }
            Ok(None) => Ok(Fired::Lost),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => self.skip(schedule, &claim, &e.to_string()).await,
        }
    }

    fn plan(&self, schedule: &Schedule) -> std::result::Result<Arc<weft_core::Plan>, String> {
        let files = match &schedule.files {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            _ => Default::default(),
        };
        weft_core::load::load_stored(
            &schedule.source,
            &schedule.file,
            &files,
            &**self.engine.tools(),
        )
        .map(Arc::new)
        .map_err(|d| format!("the schedule's template no longer loads: {d}"))
    }

    async fn skip(&self, schedule: &Schedule, claim: &SlotClaim, message: &str) -> Result<Fired> {
        if self.schedules.skip_schedule_slot(claim, message).await? {
            tracing::warn!(schedule_id = %schedule.id, schedule = %schedule.name,
                slot = claim.slot, error = %message, "Schedule slot skipped.");
            Ok(Fired::Skipped)
        } else {
            Ok(Fired::Lost)
        }
    }
}

enum Fired {
    Run(Box<Run>),
    Lost,
    Skipped,
}

impl Engine {
    /// Creates a schedule's run for one slot in the transaction that claims the slot: the
    /// claim and the run commit together or not at all. `None` when another scheduler took
    /// the slot first.
    pub async fn create_scheduled_run(
        &self,
        new: NewRun,
        claim: &SlotClaim,
    ) -> Result<Option<Run>> {
        self.remember_plan(new.plan.clone());
        let request_digest = crate::control::request_digest(&new, None);
        let mut tx = self.begin().await?;
        if !tx.claim_schedule_slot(claim).await? {
            return Ok(None);
        }
        if let Some(key) = &new.idempotency_key
            && let Some(existing) = tx.run_by_idempotency_key(&new.tenant, key).await?
        {
            tx.commit().await?;
            return Ok(Some(existing));
        }
        // The tenant's runs-per-hour quota counts scheduled runs too; a refused slot is
        // skipped (the claim rolls back with this transaction, the scheduler records why).
        self.admit_and_insert(tx, &new, request_digest)
            .await
            .map(Some)
    }
}
