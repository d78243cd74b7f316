//! Metering and quotas as the store keeps them: the LLM usage of each task (on its row), sums
//! per run and per day, template or run for a tenant, and a tenant's run-rate quota.
//!
//! The store only counts and compares. What counts as crossing a budget is decided by the
//! engine (`weft_core::plan::Budget`); the run-rate quota is checked here because it must hold
//! across processes, in the transaction that creates the run.

use serde::{Deserialize, Serialize};

use crate::db::Row;
use crate::error::Result;

/// The usage one attempt reported, added to its task's row.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskUsage {
    pub task_id: i64,
    /// The task's run (for telemetry's template label; the store keys on `task_id`).
    pub run_id: String,
    pub llm_prompt_tokens: u64,
    pub llm_completion_tokens: u64,
    pub cost_usd: f64,
}

/// A run's usage so far, summed over its tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RunUsage {
    /// Tasks of the run (items of fan-outs included).
    pub tasks: u64,
    /// Attempts that ran a tool: finished and running attempts, not cache hits, not attempts
    /// that were cancelled before they ended.
    pub tool_calls: u64,
    pub cache_hits: u64,
    pub llm_prompt_tokens: u64,
    pub llm_completion_tokens: u64,
    pub cost_usd: f64,
    /// Wall time of the finished tasks, from their last claim to their end.
    pub duration_ms: u64,
}

impl RunUsage {
    pub fn llm_tokens(&self) -> u64 {
        self.llm_prompt_tokens + self.llm_completion_tokens
    }
}

/// How `/v1/usage` and `weft usage` group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageGroup {
    /// The UTC day the run was created.
    Day,
    Template,
    Run,
}

impl UsageGroup {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "day" => UsageGroup::Day,
            "template" => UsageGroup::Template,
            "run" => UsageGroup::Run,
            _ => return None,
        })
    }
}

/// Which runs a usage report covers: a tenant's runs created at or after `since`.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub tenant: String,
    pub group_by: UsageGroup,
    /// Milliseconds since the epoch; runs created before are left out.
    pub since: Option<i64>,
    /// Most groups returned (days ascending, templates by name, runs newest first).
    pub limit: u32,
}

/// One group of a usage report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// The day (`2026-11-25`), template name or run id.
    pub key: String,
    /// The template, for a row per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub runs: u64,
    #[serde(flatten)]
    pub usage: RunUsage,
}

/// A tenant's quotas. `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantQuota {
    pub max_runs_per_hour: Option<u32>,
}

/// Why a run may not be created now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRefusal {
    pub max_runs_per_hour: u32,
    /// When the oldest run of the last hour leaves the window (ms from now, at least 1 s).
    pub retry_after_ms: i64,
}

/// One hour, the run-rate window.
pub const RUN_RATE_WINDOW_MS: i64 = 3_600_000;

/// The answer to [`crate::UsageTable::admit_run`] from the quota, the number of the tenant's newest
/// runs (at most `max`) created within the window, and the oldest of them. The window has room
/// again when that run leaves it.
pub(crate) fn refusal(
    max: i64,
    recent: i64,
    oldest: Option<i64>,
    now: i64,
) -> Option<QuotaRefusal> {
    if recent < max {
        return None;
    }
    let frees_at = oldest.unwrap_or(now) + RUN_RATE_WINDOW_MS;
    Some(QuotaRefusal {
        max_runs_per_hour: u32::try_from(max.max(0)).unwrap_or(u32::MAX),
        retry_after_ms: (frees_at - now).max(1_000),
    })
}

/// A usage sum over tasks `t` (the rest of the statement is the caller's). Sums are cast so
/// both backends return 64-bit integers and doubles.
macro_rules! sum_columns {
    () => {
        "COUNT(t.id) AS tasks, \
         CAST(COALESCE(SUM(CASE WHEN t.id IS NULL OR t.cache_hit THEN 0 \
             WHEN t.status IN ('succeeded', 'failed', 'running') THEN t.attempt \
             ELSE t.attempt - 1 END), 0) AS BIGINT) AS tool_calls, \
         CAST(COALESCE(SUM(CASE WHEN t.cache_hit THEN 1 ELSE 0 END), 0) AS BIGINT) AS cache_hits, \
         CAST(COALESCE(SUM(t.llm_prompt_tokens), 0) AS BIGINT) AS llm_prompt_tokens, \
         CAST(COALESCE(SUM(t.llm_completion_tokens), 0) AS BIGINT) AS llm_completion_tokens, \
         CAST(COALESCE(SUM(t.cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd, \
         CAST(COALESCE(SUM(CASE WHEN t.finished_at IS NOT NULL AND t.started_at IS NOT NULL \
             THEN t.finished_at - t.started_at ELSE 0 END), 0) AS BIGINT) AS duration_ms"
    };
}

pub(crate) const SUM_COLUMNS: &str = sum_columns!();

/// A run's usage so far (in and outside a transaction).
pub(crate) const RUN_USAGE: &str = concat!(
    "SELECT ",
    sum_columns!(),
    " FROM tasks t WHERE t.run_id = $1"
);

/// Reads the columns of [`SUM_COLUMNS`].
pub(crate) fn usage_from_row(r: &Row) -> Result<RunUsage> {
    Ok(RunUsage {
        tasks: r.u64("tasks")?,
        tool_calls: r.u64("tool_calls")?,
        cache_hits: r.u64("cache_hits")?,
        llm_prompt_tokens: r.u64("llm_prompt_tokens")?,
        llm_completion_tokens: r.u64("llm_completion_tokens")?,
        cost_usd: r.get("cost_usd")?,
        duration_ms: r.u64("duration_ms")?,
    })
}

/// A report's start as a user writes it: an RFC 3339 time (`2026-11-25T08:00:00Z`), a UTC
/// date (`2026-11-25`), or a span back from `now` (`90m`, `24h`, `7d`, `2w`). Milliseconds
/// since the epoch; the error says what is accepted.
pub fn parse_since(text: &str, now: i64) -> std::result::Result<i64, String> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    let unit_ms = match text.chars().last() {
        Some('m') => Some(60_000),
        Some('h') => Some(3_600_000),
        Some('d') => Some(86_400_000),
        Some('w') => Some(7 * 86_400_000),
        _ => None,
    };
    if let Some(unit) = unit_ms
        && let Ok(n) = text[..text.len() - 1].parse::<i64>()
        && (0..=100_000).contains(&n)
    {
        return Ok(now - n * unit);
    }
    Err(format!(
        "`{text}` is not a time: give an RFC 3339 time (2026-11-25T08:00:00Z), a date \
         (2026-11-25) or a span back from now (90m, 24h, 7d, 2w)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_dates_and_spans() {
        let now = 1_764_000_000_000;
        assert_eq!(parse_since("2026-11-25", now), Ok(1_795_564_800_000));
        assert_eq!(
            parse_since("2026-11-25T01:00:00Z", now),
            Ok(1_795_568_400_000)
        );
        assert_eq!(parse_since("24h", now), Ok(now - 86_400_000));
        assert_eq!(parse_since("7d", now), Ok(now - 7 * 86_400_000));
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("h", now).is_err());
        assert!(parse_since("-3d", now).is_err());
    }

    #[test]
    fn quota_refusal_waits_for_the_oldest_run_of_the_window() {
        let now = 10 * RUN_RATE_WINDOW_MS;
        assert_eq!(refusal(3, 2, Some(now - 1000), now), None);
        let r = refusal(3, 3, Some(now - RUN_RATE_WINDOW_MS + 60_000), now).expect("refused");
        assert_eq!(r.retry_after_ms, 60_000);
        assert_eq!(r.max_runs_per_hour, 3);
        // Never less than a second, so a client does not spin.
        let r = refusal(1, 1, Some(now - RUN_RATE_WINDOW_MS + 10), now).expect("refused");
        assert_eq!(r.retry_after_ms, 1_000);
    }
}
