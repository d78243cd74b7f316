//! `/v1/schedules`: a tenant's schedules. The server's scheduler (and every `weft worker`'s)
//! fires them; these handlers only add, show, pause, resume and delete them. A schedule of
//! another tenant is as missing as a missing one.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use weft_engine::schedule::{CronSpec, new_schedule};
use weft_store::schedules::{Schedule, ScheduleStore};

use super::dto::*;
use super::{body, json_body, templates};
use crate::AppState;
use crate::auth::{Caller, now_ms};
use crate::problem::{ApiResult, FieldError, Kind, Problem};

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn own(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Schedule> {
    ScheduleStore::schedule(state.store.as_ref(), &caller.tenant, id)
        .await?
        .filter(|s| s.id == id)
        .ok_or_else(|| Problem::not_found("schedule", id))
}

/// Adds a schedule: the template (pinned as it is now) with these inputs, on a cron line.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = CreateSchedule,
    security(("bearer" = [])),
    responses((status = 201, body = ScheduleBody), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ScheduleBody>)> {
    let bytes = body(bytes)?;
    let request: CreateSchedule = json_body(&headers, &bytes)?;
    let spec = CronSpec::parse(&request.cron, request.timezone.as_deref()).map_err(|m| {
        let field = if m.contains("time zone") {
            "timezone"
        } else {
            "cron"
        };
        Problem::field(Kind::Validation, field, m)
    })?;
    if let Some(name) = &request.name
        && !valid_name(name)
    {
        return Err(Problem::field(
            Kind::Validation,
            "name",
            "1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
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
            .map(|message| FieldError {
                field: "inputs".into(),
                message,
            })
            .collect();
        p
    })?;
    let name = request.name.clone().unwrap_or_else(|| plan.name.clone());
    let schedule = new_schedule(
        &caller.tenant,
        &name,
        &request.cron,
        &spec,
        &plan,
        base_dir,
        inputs,
        now_ms(),
    );
    if !ScheduleStore::insert_schedule(state.store.as_ref(), &schedule).await? {
        return Err(Problem::new(
            Kind::ScheduleNameTaken,
            format!("a schedule named `{name}` exists; give another `name` or delete it first"),
        ));
    }
    super::audit::record(
        &state,
        &caller,
        "schedule.created",
        "schedule",
        &schedule.id,
        "ok",
    )
    .await?;
    Ok((StatusCode::CREATED, Json(ScheduleBody::new(&schedule))))
}

/// The caller's schedules, each with its next fire time.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", security(("bearer" = [])),
    responses((status = 200, body = ScheduleList), (status = 401, body = Problem)))]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ScheduleList>> {
    let all = ScheduleStore::schedules(state.store.as_ref(), &caller.tenant).await?;
    Ok(Json(ScheduleList {
        schedules: all.iter().map(ScheduleBody::new).collect(),
    }))
}

/// One schedule.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules", security(("bearer" = [])),
    params(("id" = String, Path, description = "The schedule id")),
    responses((status = 200, body = ScheduleBody), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleBody>> {
    Ok(Json(ScheduleBody::new(&own(&state, &caller, &id).await?)))
}

/// Deletes a schedule; the runs it started stay.
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", security(("bearer" = [])),
    params(("id" = String, Path, description = "The schedule id")),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let s = own(&state, &caller, &id).await?;
    if !ScheduleStore::delete_schedule(state.store.as_ref(), &caller.tenant, &s.id).await? {
        return Err(Problem::not_found("schedule", &id));
    }
    super::audit::record(&state, &caller, "schedule.deleted", "schedule", &s.id, "ok").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stops a schedule firing until it is resumed.
#[utoipa::path(post, path = "/v1/schedules/{id}/pause", tag = "schedules",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The schedule id")),
    responses((status = 200, body = ScheduleBody), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn pause_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleBody>> {
    set_paused(&state, &caller, &id, true).await
}

/// Fires a paused schedule again from the next slot after now (slots while it was paused are
/// not made up).
#[utoipa::path(post, path = "/v1/schedules/{id}/resume", tag = "schedules",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The schedule id")),
    responses((status = 200, body = ScheduleBody), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn resume_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleBody>> {
    set_paused(&state, &caller, &id, false).await
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    id: &str,
    paused: bool,
) -> ApiResult<Json<ScheduleBody>> {
    let s = own(state, caller, id).await?;
    let next = if paused {
        None
    } else {
        CronSpec::parse(&s.cron, Some(&s.timezone))
            .map_err(|m| Problem::new(Kind::Validation, m))?
            .next_after(now_ms())
    };
    ScheduleStore::set_schedule_paused(state.store.as_ref(), &caller.tenant, &s.id, paused, next)
        .await?;
    let action = if paused {
        "schedule.paused"
    } else {
        "schedule.resumed"
    };
    super::audit::record(state, caller, action, "schedule", &s.id, "ok").await?;
    Ok(Json(ScheduleBody::new(&own(state, caller, id).await?)))
}
