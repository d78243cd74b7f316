//! `/v1/runs/{id}/approvals/{step}` and `/v1/runs/{id}/actions/{name}`: deciding a run's
//! approvals and starting its follow-up actions, and what a run's JSON says about both (its
//! parent, its children, the approvals waiting, the actions offered).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use weft_engine::Decide;
use weft_store::{Run, TaskStatus};

use super::dto::*;
use super::runs::{detail, engine_problem};
use super::{body, json_body};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Kind, Problem};

/// Fills a run's children, its waiting approvals and the decided ones.
pub(crate) async fn add_links(state: &AppState, run: &Run, d: &mut RunDetail) -> ApiResult<()> {
    d.children = state
        .store
        .child_runs(&run.id)
        .await?
        .into_iter()
        .map(|c| {
            let p = c.parent.unwrap_or_default();
            ChildBody {
                id: c.id,
                template: c.template,
                version: c.version,
                status: c.status.as_str().into(),
                step: p.step,
                item: p.item,
                action: p.action,
            }
        })
        .collect();
    // A finished run without approval steps has nothing more to say; a live one is read
    // whatever its plan says, as it always was.
    if run.status.is_terminal() && !d.steps.iter().any(|s| s.kind == "approval") {
        return Ok(());
    }
    let approvals: Vec<_> = state
        .store
        .tasks(&run.id)
        .await?
        .into_iter()
        .filter(|t| t.tool == weft_core::orchestrator::APPROVAL_TOOL)
        .collect();
    for t in approvals {
        match t.status {
            TaskStatus::Waiting if !run.status.is_terminal() => d.approvals.push(WaitingApproval {
                prompt: t.input["prompt"].as_str().map(str::to_string),
                timeout: t.input["timeout"].as_str().map(str::to_string),
                step: t.step_id,
                item: t.item,
            }),
            TaskStatus::Succeeded | TaskStatus::Failed => {
                if let Some(decision) = decision_of(&t) {
                    d.decisions.push(decision);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a decided approval's task says: an approval's output is `{approved, by, comment,
/// at}`; a rejection fails the task with `rejected by BY[: COMMENT]`.
fn decision_of(t: &weft_store::Task) -> Option<ApprovalBody> {
    let at = t.finished_at.map(weft_store::rfc3339).unwrap_or_default();
    match (&t.output, t.error.as_deref()) {
        (Some(out), _) if t.status == TaskStatus::Succeeded => Some(ApprovalBody {
            run_id: t.run_id.clone(),
            step: t.step_id.clone(),
            item: t.item,
            approved: out["approved"].as_bool().unwrap_or(true),
            by: out["by"].as_str().unwrap_or_default().to_string(),
            comment: out["comment"].as_str().map(str::to_string),
            at: out["at"].as_str().map_or(at, str::to_string),
        }),
        (_, Some(error)) => {
            let rest = error.strip_prefix("rejected by ")?;
            let (by, comment) = match rest.split_once(": ") {
                Some((by, comment)) => (by, Some(comment.to_string())),
                None => (rest, None),
            };
            Some(ApprovalBody {
                run_id: t.run_id.clone(),
                step: t.step_id.clone(),
                item: t.item,
                approved: false,
                by: by.to_string(),
                comment,
                at,
            })
        }
        _ => None,
    }
}

fn decide_problem(e: weft_engine::Error, run_id: &str) -> Problem {
    match e {
        weft_engine::Error::NotFound(m) => Problem::new(Kind::NotFound, m),
        weft_engine::Error::Conflict(m) => Problem::new(Kind::RunStateConflict, m),
        other => engine_problem(other, run_id),
    }
}

/// Approves or rejects an approval step of a waiting run (`item`: one item of a `for_each`
/// approval; each is decided on its own). An approval becomes the step's output `{approved,
/// by, comment, at}`; a rejection fails the step (its `continue_on_error` applies).
#[utoipa::path(post, path = "/v1/runs/{id}/approvals/{step}", tag = "runs",
    security(("bearer" = [])), request_body = DecideApproval,
    params(("id" = String, Path, description = "The run id"),
        ("step" = String, Path, description = "The approval step")),
    responses((status = 200, body = ApprovalBody), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Nothing of this step waits for a decision"),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub async fn decide_approval(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ApprovalBody>> {
    // A missing or foreign run is a 404 before anything else is said about it.
    state
        .store
        .run(&caller.tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found("run", &id))?;
    let bytes = body(bytes)?;
    let request: DecideApproval = json_body(&headers, &bytes)?;
    if request
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 2000)
    {
        return Err(Problem::field(
            Kind::Validation,
            "comment",
            "at most 2,000 characters",
        ));
    }
    let decided = state
        .engine
        .decide_approval(
            &caller.tenant,
            &id,
            &step,
            Decide {
                approve: request.decision == Decision::Approve,
                by: caller.key_id.clone(),
                comment: request.comment,
                item: request.item,
            },
        )
        .await
        .map_err(|e| decide_problem(e, &id))?;
    let action = if decided.approved {
        "approval.approved"
    } else {
        "approval.rejected"
    };
    let object = match decided.item {
        Some(i) => format!("{id}/{step}[{i}]"),
        None => format!("{id}/{step}"),
    };
    super::audit::record(&state, &caller, action, "approval", &object, "ok").await?;
    state.hub.wake();
    Ok(Json(ApprovalBody {
        run_id: decided.run_id,
        step: decided.step,
        item: decided.item,
        approved: decided.approved,
        by: decided.by,
        comment: decided.comment,
        at: decided.at,
    }))
}

/// Starts one of a succeeded run's follow-up `actions:`: a run of the action's template, its
/// inputs from the action's `with` (rendered with the run's inputs and step outputs) and then
/// `inputs`. The new run links to this one (`parent`).
#[utoipa::path(post, path = "/v1/runs/{id}/actions/{name}", tag = "runs",
    security(("bearer" = [])), request_body = StartAction,
    params(("id" = String, Path, description = "The run id"),
        ("name" = String, Path, description = "The action, as the template names it")),
    responses((status = 201, body = RunDetail), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The run has not succeeded"),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub async fn start_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<RunDetail>)> {
    state
        .store
        .run(&caller.tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found("run", &id))?;
    let bytes = body(bytes)?;
    let request: StartAction = if bytes.is_empty() {
        StartAction::default()
    } else {
        json_body(&headers, &bytes)?
    };
    let run = state
        .engine
        .start_action(
            &caller.tenant,
            &id,
            &name,
            request.inputs.unwrap_or_default(),
        )
        .await
        .map_err(|e| decide_problem(e, &id))?;
    super::audit::record(&state, &caller, "run.created", "run", &run.id, "ok").await?;
    state.hub.wake();
    Ok((StatusCode::CREATED, Json(detail(&state, &run).await?)))
}
