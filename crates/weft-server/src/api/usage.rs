//! `/v1/usage`: the caller's tenant's metering — runs, tool calls, cache hits, LLM tokens and
//! estimated cost — grouped by the UTC day a run was created, by template or by run.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use weft_store::usage::{RunUsage, UsageGroup, UsageQuery, parse_since};

use super::dto::{UsageBody, UsageGroupBody, UsageReport};
use crate::AppState;
use crate::auth::{Caller, now_ms};
use crate::problem::{ApiResult, Kind, Problem};

/// The caller's usage. Runs created at or after `since` (an RFC 3339 time, a date or a span
/// back from now such as `7d`) are counted, each in the group of its creation day, its
/// template or itself.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", security(("bearer" = [])),
    params(
        ("group_by" = Option<String>, Query, description = "`day` (default), `template` or `run`",
            pattern = "^(day|template|run)$"),
        ("since" = Option<String>, Query,
            description = "Only runs created at or after: RFC 3339, a date (2026-11-25) or a span back from now (24h, 7d)"),
        ("limit" = Option<u32>, Query, description = "At most this many groups", minimum = 1, maximum = 1000)),
    responses((status = 200, body = UsageReport), (status = 401, body = Problem),
        (status = 422, body = Problem)))]
pub async fn get_usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<UsageReport>> {
    let mut query = UsageQuery {
        tenant: caller.tenant.clone(),
        group_by: UsageGroup::Day,
        since: None,
        limit: 1000,
    };
    for (name, value) in &params {
        match name.as_str() {
            "group_by" => {
                query.group_by = UsageGroup::parse(value).ok_or_else(|| {
                    Problem::field(Kind::Validation, "group_by", "must be day, template or run")
                })?
            }
            "since" => {
                query.since = Some(
                    parse_since(value, now_ms())
                        .map_err(|m| Problem::field(Kind::Validation, "since", m))?,
                )
            }
            "limit" => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| Problem::field(Kind::Validation, "limit", "must be 1 to 1000"))?
            }
            other => {
                return Err(Problem::field(
                    Kind::Validation,
                    other,
                    "unknown parameter; expected group_by, since or limit",
                ));
            }
        }
    }
    let rows = state.store.usage(&query).await?;
    let mut total = RunUsage::default();
    for r in &rows {
        let u = &r.usage;
        total.tasks += u.tasks;
        total.tool_calls += u.tool_calls;
        total.cache_hits += u.cache_hits;
        total.llm_prompt_tokens += u.llm_prompt_tokens;
        total.llm_completion_tokens += u.llm_completion_tokens;
        total.cost_usd += u.cost_usd;
        total.duration_ms += u.duration_ms;
    }
    Ok(Json(UsageReport {
        group_by: match query.group_by {
            UsageGroup::Day => "day",
            UsageGroup::Template => "template",
            UsageGroup::Run => "run",
        }
        .into(),
        since: query.since.map(weft_store::rfc3339),
        groups: rows
            .iter()
            .map(|r| UsageGroupBody {
                key: r.key.clone(),
                template: r.template.clone(),
                runs: r.runs,
                usage: UsageBody::from(&r.usage),
            })
            .collect(),
        total: UsageBody::from(&total),
    }))
}
