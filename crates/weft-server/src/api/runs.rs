//! `/v1/runs`: start, list, show, cancel and resume runs, and mint stream tickets.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use weft_engine::{NewRun, RunOptions};
use weft_store::server::{AuthStore, StreamTicket};
use weft_store::{Run, RunQuery, RunStatus};

use super::dto::*;
use super::{body, json_body, templates};
use crate::AppState;
use crate::auth::{Caller, TICKET_TTL_MS, hash_secret, new_ticket, now_ms};
use crate::problem::{ApiResult, Kind, Problem};

pub(crate) fn engine_problem(e: weft_engine::Error, run_id: &str) -> Problem {
    if let weft_engine::Error::QuotaExceeded { retry_after_ms, .. } = &e {
        let mut p = Problem::new(Kind::RateLimited, e.to_string());
        p.retry_after = Some((retry_after_ms.max(&1).unsigned_abs()).div_ceil(1000));
        return p;
    }
    match e {
        weft_engine::Error::RunNotFound(_) => Problem::not_found("run", run_id),
        weft_engine::Error::IdempotencyConflict(_) => Problem::new(
            Kind::IdempotencyConflict,
            "this Idempotency-Key was already used with a different request; use a new key",
        ),
        weft_engine::Error::Invalid(m) => Problem::new(Kind::Validation, m),
        weft_engine::Error::Store(e) => e.into(),
        other => Problem::internal(other),
    }
}

/// The run if it belongs to the caller; another tenant's run is as missing as a missing one.
async fn own_run(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Run> {
    state
        .store
        .run(&caller.tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found("run", id))
}

pub(crate) async fn detail(state: &AppState, run: &Run) -> ApiResult<RunDetail> {
    let steps = state.store.steps(&run.id).await?;
    let plan = state.engine.plan_for(run).ok();
    let mut detail = RunDetail::new(run, &steps, plan.as_deref(), now_ms());
    detail.usage = Some(UsageBody::from(&state.store.run_usage(&run.id).await?));
    super::follow::add_links(state, run, &mut detail).await?;
    Ok(detail)
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::field(
            Kind::Validation,
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_string()))
}

/// Starts a run. It is committed before the answer; the same `Idempotency-Key` with the same
/// body returns the same run, with another body it is a 409.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = CreateRun,
    params(IdempotencyParams),
    security(("bearer" = [])),
    responses((status = 201, body = RunDetail), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "The tenant's runs-per-hour quota is used up; `Retry-After` says when to try again.",
            headers(("Retry-After" = u64, description = "Seconds until a run may be created.")))))]
pub async fn create_run(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<RunDetail>)> {
    let bytes = body(bytes)?;
    let request: CreateRun = json_body(&headers, &bytes)?;
    let key = idempotency_key(&headers)?;
    let (plan, base_dir) = templates::resolve(
        &state,
        &caller.tenant,
        &request.template,
        request.version.as_deref(),
    )
    .await?;
    let given = request.inputs.unwrap_or_default();
    let inputs = weft_core::inputs::resolve_inputs(&plan, &given).map_err(|problems| {
        let mut p = Problem::new(Kind::Validation, problems.join("; "));
        p.errors = problems
            .into_iter()
            .map(|message| crate::problem::FieldError {
                field: format!("inputs.{}", first_quoted(&message).unwrap_or_default()),
                message,
            })
            .collect();
        p
    })?;
    let budget = match &request.budget {
        Some(b) => Some(
            b.check()
                .map_err(|(field, message)| Problem::field(Kind::Validation, field, message))?,
        ),
        None => None,
    };
    let (run, created) = state
        .engine
        .create_or_replay(
            NewRun {
                tenant: caller.tenant.clone(),
                plan,
                inputs,
                idempotency_key: key,
                base_dir,
            },
            RunOptions { budget },
        )
        .await
        .map_err(|e| engine_problem(e, ""))?;
    // A replay (the same idempotency key and request) created nothing: nothing to audit.
    if created {
        super::audit::record(&state, &caller, "run.created", "run", &run.id, "ok").await?;
        state.hub.wake();
    }
    Ok((StatusCode::CREATED, Json(detail(&state, &run).await?)))
}

/// The first `name` in backticks of a message (`unknown input `x``).
fn first_quoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// A `since`/`until` bound: an RFC 3339 time or a UTC date (`2026-12-06`, its midnight).
fn parse_time(field: &str, value: &str) -> ApiResult<i64> {
    let value = value.trim();
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .map_or(0, |t| t.and_utc().timestamp_millis())
            })
        })
        .map_err(|_| {
            Problem::field(
                Kind::Validation,
                field,
                "must be a date (2026-12-06) or an RFC 3339 time (2026-12-06T08:00:00Z)",
            )
        })
}

fn encode_cursor(run: &Run) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}:{}", run.created_at, run.id))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (at, id) = text.split_once(':')?;
    Some((at.parse().ok()?, id.to_string()))
}

/// Runs of the caller's tenant, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", security(("bearer" = [])),
    params(RunsParams),
    responses((status = 200, body = RunList), (status = 401, body = Problem),
        (status = 422, body = Problem)))]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<RunList>> {
    let mut query = RunQuery {
        tenant: caller.tenant.clone(),
        limit: 50,
        ..RunQuery::default()
    };
    for (name, value) in &params {
        match name.as_str() {
            "status" => {
                query.status = Some(RunStatus::parse(value).ok_or_else(|| {
                    Problem::field(
                        Kind::Validation,
                        "status",
                        "must be queued, running, waiting, succeeded, failed or cancelled",
                    )
                })?)
            }
            "template" => query.template = Some(value.clone()),
            "search" => {
                let text = value.trim();
                if text.chars().count() > 200 {
                    return Err(Problem::field(
                        Kind::Validation,
                        "search",
                        "at most 200 characters",
                    ));
                }
                query.search = (!text.is_empty()).then(|| text.to_string());
            }
            "since" => query.since = Some(parse_time("since", value)?),
            "until" => query.until = Some(parse_time("until", value)?),
            "roots" => {
                query.roots_only = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Problem::field(
                            Kind::Validation,
                            "roots",
                            "must be true or false",
                        ));
                    }
                }
            }
            "parent" => query.parent = Some(value.clone()),
            "limit" => {
                let max = state.options.max_page;
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        Problem::field(Kind::Validation, "limit", format!("must be 1 to {max}"))
                    })?
            }
            "cursor" => {
                query.before = Some(decode_cursor(value).ok_or_else(|| {
                    Problem::field(Kind::Validation, "cursor", "not a cursor this API gave out")
                })?)
            }
            other => {
                return Err(Problem::field(
                    Kind::Validation,
                    other,
                    "unknown parameter; expected status, template, search, since, until, roots, \
                     parent, limit or cursor",
                ));
            }
        }
    }
    let runs = state.store.runs(&query).await?;
    let now = now_ms();
    let next_cursor = (runs.len() as u32 == query.limit)
        .then(|| runs.last().map(encode_cursor))
        .flatten();
    let mut summaries: Vec<RunSummary> =
        runs.iter().map(|r| RunSummary::from_run(r, now)).collect();
    if query.roots_only {
        // Top-level runs say how many runs they started, for the list to group them under.
        for s in &mut summaries {
            s.child_count = Some(state.store.child_runs(&s.id).await?.len() as u32);
        }
    }
    Ok(Json(RunList {
        runs: summaries,
        next_cursor,
    }))
}

/// A run with its steps: status, attempts, timings, output, error and fan-out progress.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id")),
    responses((status = 200, body = RunDetail), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunDetail>> {
    let run = own_run(&state, &caller, &id).await?;
    Ok(Json(detail(&state, &run).await?))
}

/// Cancels a run: queued tasks never start, running ones are told to stop.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id")),
    responses((status = 200, body = RunDetail), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunDetail>> {
    let run = state
        .engine
        .cancel_run(&caller.tenant, &id)
        .await
        .map_err(|e| engine_problem(e, &id))?;
    super::audit::record(&state, &caller, "run.cancelled", "run", &run.id, "ok").await?;
    state.hub.wake();
    Ok(Json(detail(&state, &run).await?))
}

/// Resumes a failed or cancelled run: only what did not succeed runs again.
#[utoipa::path(post, path = "/v1/runs/{id}/resume", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id")),
    responses((status = 200, body = RunDetail), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn resume_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunDetail>> {
    // A missing or foreign run is a 404 before anything else is said about it.
    own_run(&state, &caller, &id).await?;
    let run = state
        .engine
        .resume_run(&caller.tenant, &id, &[])
        .await
        .map_err(|e| match e {
            weft_engine::Error::Invalid(m) => Problem::new(Kind::RunNotResumable, m),
            other => engine_problem(other, &id),
        })?;
    super::audit::record(&state, &caller, "run.resumed", "run", &run.id, "ok").await?;
    state.hub.wake();
    Ok(Json(detail(&state, &run).await?))
}

/// A single-use, read-only ticket for this run's event stream, valid 60 s: for browsers,
/// whose `EventSource` cannot send an `Authorization` header.
#[utoipa::path(post, path = "/v1/runs/{id}/stream-tickets", tag = "runs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id")),
    responses((status = 201, body = StreamTicketBody), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn create_stream_ticket(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<StreamTicketBody>)> {
    let run = own_run(&state, &caller, &id).await?;
    let ticket = new_ticket();
    let expires_at = now_ms() + TICKET_TTL_MS;
    AuthStore::insert_ticket(
        state.store.as_ref(),
        &StreamTicket {
            hash: hash_secret(&ticket),
            tenant: caller.tenant.clone(),
            run_id: run.id.clone(),
            expires_at,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(StreamTicketBody {
            events_url: format!("/v1/runs/{}/events?ticket={ticket}", run.id),
            ticket,
            expires_at: weft_store::rfc3339(expires_at),
        }),
    ))
}
