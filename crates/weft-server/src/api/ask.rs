//! `POST /v1/ask`: a sentence to a template and its inputs, then (unless a dry run) the run.
//!
//! The caller's registered templates and the server's are the candidates; the matcher is the
//! engine's ([`weft_engine::intent`]): the model when an `llm` provider is configured, checked
//! against the registry, else the offline matcher. An unsure answer or a missing input is a
//! `clarify` answer (200) with the question and the candidates, and nothing starts.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use weft_engine::NewRun;
use weft_engine::intent::{Candidate, Decision, decide};
use weft_store::server::TemplateStore;

use super::dto::*;
use super::{body, json_body, runs, templates};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Kind, Problem};

/// The longest sentence accepted, in characters.
const MAX_TEXT: usize = 2_000;

/// Every template `tenant` can run: its registered ones (newest version of each name), then
/// the server's that it does not shadow.
pub(crate) async fn candidates(state: &AppState, tenant: &str) -> ApiResult<Vec<Candidate>> {
    let mut out: Vec<Candidate> = Vec::new();
    let records = TemplateStore::templates(state.store.as_ref(), tenant).await?;
    for record in records.iter().rev() {
        if out.iter().any(|c| c.plan.name == record.name) {
            continue;
        }
        out.push(Candidate {
            plan: templates::plan_of(state, record)?,
            base_dir: None,
        });
    }
    out.reverse();
    let mut shared: Vec<_> = state.shared.values().collect();
    shared.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
    for t in shared {
        if t.askable && out.iter().all(|c| c.plan.name != t.plan.name) {
            out.push(Candidate {
                plan: t.plan.clone(),
                base_dir: t.base_dir.clone(),
            });
        }
    }
    Ok(out)
}

/// Matches a sentence for `tenant` (shared with the MCP `ask` tool).
pub(crate) async fn match_sentence(
    state: &AppState,
    tenant: &str,
    text: &str,
) -> ApiResult<(Vec<Candidate>, Decision)> {
    let candidates = candidates(state, tenant).await?;
    let decision = decide(
        state.engine.tools(),
        &candidates,
        text,
        state.options.llm_matcher,
    )
    .await;
    Ok((candidates, decision))
}

fn candidate_list(candidates: &[Candidate], decision: &Decision) -> Vec<AskCandidate> {
    let answer = &decision.answer;
    answer
        .template
        .iter()
        .map(|t| AskCandidate {
            template: t.clone(),
            confidence: answer.confidence,
            description: candidates
                .iter()
                .find(|c| &c.plan.name == t)
                .and_then(|c| c.plan.description.clone()),
        })
        .chain(answer.alternatives.iter().map(|a| AskCandidate {
            template: a.template.clone(),
            confidence: a.confidence,
            description: a.description.clone(),
        }))
        .collect()
}

/// The clarifying answer for an unsure decision.
pub(crate) fn clarify(candidates: &[Candidate], decision: &Decision) -> AskClarify {
    let answer = &decision.answer;
    AskClarify {
        question: answer
            .question
            .clone()
            .unwrap_or_else(|| "Which template did you mean?".into()),
        candidates: candidate_list(candidates, decision),
        template: answer.template.clone(),
        inputs: answer.inputs.clone(),
        missing: answer.missing.clone(),
        confidence: answer.confidence,
        matcher: decision.matcher.clone(),
    }
}

/// Picks a template and its inputs from a sentence and starts the run (not on a dry run).
/// Unsure or missing an input, it answers `clarify` with the question and the candidates and
/// starts nothing. An `Idempotency-Key` makes a retried request return the same run.
#[utoipa::path(post, path = "/v1/ask", tag = "runs", request_body = AskRequest,
    params(IdempotencyParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AskAnswer,
            description = "`matched`: the template and inputs (with the run unless `dry_run`); \
                           `clarify`: the question to ask and the candidates, nothing started"),
        (status = 201, body = AskAnswer, description = "`matched` and the run started"),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn ask(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<AskAnswer>)> {
    let bytes = body(bytes)?;
    let request: AskRequest = json_body(&headers, &bytes)?;
    let key = runs::idempotency_key(&headers)?;
    let text = request.text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        return Err(Problem::field(
            Kind::Validation,
            "text",
            format!("must be a sentence of 1 to {MAX_TEXT} characters"),
        ));
    }
    let (candidates, decision) = match_sentence(&state, &caller.tenant, text).await?;
    let (Some(idx), Some(inputs), true) = (
        decision.chosen,
        decision.resolved.clone(),
        decision.is_confident(),
    ) else {
        return Ok((
            StatusCode::OK,
            Json(AskAnswer::Clarify(clarify(&candidates, &decision))),
        ));
    };
    let candidate = &candidates[idx];
    let mut matched = AskMatched {
        template: candidate.plan.name.clone(),
        version: candidate.plan.version.clone(),
        inputs: inputs.clone(),
        confidence: decision.answer.confidence,
        alternatives: candidate_list(&candidates, &decision)
            .into_iter()
            .skip(1)
            .collect(),
        matcher: decision.matcher.clone(),
        dry_run: request.dry_run,
        run_id: None,
        run: None,
    };
    if request.dry_run {
        return Ok((StatusCode::OK, Json(AskAnswer::Matched(matched))));
    }
    let run = state
        .engine
        .create_run(NewRun {
            tenant: caller.tenant.clone(),
            plan: candidate.plan.clone(),
            inputs,
            idempotency_key: key,
            base_dir: candidate.base_dir.clone(),
        })
        .await
        .map_err(|e| match e {
            weft_engine::Error::IdempotencyConflict(_) => Problem::new(
                Kind::IdempotencyConflict,
                "this Idempotency-Key was already used with a different request; use a new key",
            ),
            weft_engine::Error::Invalid(m) => Problem::new(Kind::Validation, m),
            weft_engine::Error::Store(e) => e.into(),
            // The runs-per-hour quota's 429 and everything else, as `POST /v1/runs` says them.
            other => super::runs::engine_problem(other, ""),
        })?;
    super::audit::record(&state, &caller, "run.created", "run", &run.id, "ok").await?;
    state.hub.wake();
    matched.run_id = Some(run.id.clone());
    matched.run = Some(Box::new(runs::detail(&state, &run).await?));
    Ok((StatusCode::CREATED, Json(AskAnswer::Matched(matched))))
}
