//! `/v1/task/...`: the callbacks a running task makes with its task token (never an API
//! key): read a secret it is scoped to, report progress, store an artifact, read and write
//! memory, renew its token.
//!
//! Every request is checked against the token's row and its task's state at that instant: a
//! missing, malformed, unknown, expired, revoked or superseded token is a 401, a token
//! without the scope a 403, each with its own stable code. Uses and refusals of a known
//! token go to the audit trail with the token's id (`tt_...`) as the actor; the token itself
//! is never logged, stored or echoed. Whatever a task sends back (progress text, memory
//! values) is scrubbed of the secrets it may read before it is recorded.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use weft_engine::tokens::{hash_token, well_formed};
use weft_store::secrets::AuditRecord;
use weft_store::tokens::{TaskTokenState, TokenRefusal};

use super::{body, json_body};
use crate::AppState;
use crate::auth::bearer;
use crate::problem::{ApiResult, Kind, Problem};

/// The task a callback comes from, proven by its live token.
#[derive(Debug, Clone)]
pub struct TaskCaller {
    pub token: TaskTokenState,
}

impl FromRequestParts<AppState> for TaskCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let caller = authenticate(parts, state).await;
        if let Err(problem) = &caller {
            metrics::counter!(
                weft_engine::telemetry::names::TOKEN_REFUSALS,
                "code" => problem.code.clone()
            )
            .increment(1);
        }
        caller
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<TaskCaller, Problem> {
    let Some(text) = bearer(parts) else {
        return Err(Problem::new(
            Kind::TaskTokenMissing,
            "send `Authorization: Bearer <task token>`; a task finds its token in \
             WEFT_TASK_TOKEN",
        ));
    };
    if !well_formed(text) {
        return Err(Problem::new(
            Kind::TaskTokenMalformed,
            "that is not a task token (they are `wft_tt_` and 43 base64url characters); API \
             keys are not accepted here",
        ));
    }
    let Some(token) = state.store.task_token(&hash_token(text)).await? else {
        return Err(Problem::new(Kind::TaskTokenUnknown, "unknown task token"));
    };
    if let Err(refusal) = token.check() {
        let (kind, detail, outcome) = match refusal {
            TokenRefusal::Expired => (
                Kind::TaskTokenExpired,
                "the task token has expired; renew it with POST /v1/task/token/renew before \
                 it does",
                "refused: expired",
            ),
            TokenRefusal::Revoked => (
                Kind::TaskTokenRevoked,
                "the task token was revoked: its attempt has ended",
                "refused: revoked",
            ),
            TokenRefusal::LeaseLost => (
                Kind::TaskTokenRevoked,
                "the task token's attempt lost its lease",
                "refused: lease lost",
            ),
            TokenRefusal::Superseded => (
                Kind::TaskTokenSuperseded,
                "the task token belongs to an earlier attempt of its task",
                "refused: superseded attempt",
            ),
        };
        audit(state, &token, "token.refused", outcome).await?;
        return Err(Problem::new(kind, detail));
    }
    Ok(TaskCaller { token })
}

/// Appends a record about `token` to its tenant's trail.
async fn audit(
    state: &AppState,
    token: &TaskTokenState,
    action: &str,
    outcome: &str,
) -> ApiResult<()> {
    append(state, token, action, "run", &token.run_id, outcome).await
}

async fn append(
    state: &AppState,
    token: &TaskTokenState,
    action: &str,
    object_type: &str,
    object_id: &str,
    outcome: &str,
) -> ApiResult<()> {
    state
        .store
        .append_audit(&AuditRecord {
            seq: 0,
            tenant: token.tenant.clone(),
            at: 0,
            actor: format!("token:{}", token.id),
            action: action.into(),
            object_type: object_type.into(),
            object_id: object_id.into(),
            outcome: outcome.into(),
        })
        .await?;
    Ok(())
}

impl TaskCaller {
    /// Refuses (403, audited) unless the token has `scope`; audits the use when it has.
    async fn require(&self, state: &AppState, scope: &str, what: &str) -> ApiResult<()> {
        if self.token.allows(scope) {
            audit(state, &self.token, "token.used", &format!("ok: {what}")).await
        } else {
            audit(
                state,
                &self.token,
                "token.refused",
                &format!("refused: no scope `{scope}` for {what}"),
            )
            .await?;
            Err(Problem::new(
                Kind::TaskTokenScope,
                format!(
                    "the task token does not allow `{scope}`; add it to the step's \
                     `token: {{scopes: [...]}}`"
                ),
            ))
        }
    }

    async fn scrubber(&self, state: &AppState) -> ApiResult<weft_engine::scrub::Scrubber> {
        state
            .engine
            .scrubber_for(&self.token.tenant, &self.token.scopes)
            .await
            .map_err(Problem::internal)
    }
}

/// A secret's value, for the task allowed to read it.
#[derive(Serialize, ToSchema)]
pub struct SecretValue {
    pub name: String,
    pub value: String,
}

/// Reads a secret of the task's tenant; needs scope `secret:NAME`.
#[utoipa::path(get, path = "/v1/task/secrets/{name}", tag = "task",
    security(("task_token" = [])),
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = 200, body = SecretValue), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 503, body = Problem)))]
pub async fn read_secret(
    State(state): State<AppState>,
    caller: TaskCaller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller
        .require(&state, &format!("secret:{name}"), "secret read")
        .await?;
    let Some(secret_box) = &state.secret_box else {
        return Err(Problem::new(
            Kind::Unavailable,
            "this server has no secret key; start it with WEFT_SECRET_KEY or a key file",
        ));
    };
    let tenant = &caller.token.tenant;
    let Some(sealed) = state.store.secret_ciphertext(tenant, &name).await? else {
        append(
            &state,
            &caller.token,
            "secret.read",
            "secret",
            &name,
            "not found",
        )
        .await?;
        return Err(Problem::not_found("secret", &name));
    };
    let value = secret_box
        .open(tenant, &name, &sealed)
        .map_err(Problem::internal)?;
    append(&state, &caller.token, "secret.read", "secret", &name, "ok").await?;
    let value = String::from_utf8(value)
        .map_err(|_| Problem::new(Kind::Internal, "the secret is not UTF-8 text"))?;
    let mut response = Json(SecretValue { name, value }).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The body of `POST /v1/task/progress`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// Units done so far.
    pub done: u64,
    pub total: Option<u64>,
    pub message: Option<String>,
}

/// Reports the task's progress (a `task.progress` event); needs scope `progress`.
#[utoipa::path(post, path = "/v1/task/progress", tag = "task", request_body = ProgressReport,
    security(("task_token" = [])),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub async fn report_progress(
    State(state): State<AppState>,
    caller: TaskCaller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let bytes = body(bytes)?;
    let report: ProgressReport = json_body(&headers, &bytes)?;
    caller.require(&state, "progress", "progress").await?;
    let scrubber = caller.scrubber(&state).await?;
    let message = report.message.map(|m| scrubber.text(&m).into_owned());
    let t = &caller.token;
    let mut tx = state.engine.begin().await?;
    tx.append_events(&[weft_store::NewEvent {
        run_id: t.run_id.clone(),
        kind: weft_store::EventKind::TaskProgress,
        step_id: Some(t.step_id.clone()),
        item: t.item,
        attempt: Some(t.attempt),
        data: serde_json::json!({"done": report.done, "total": report.total,
                                 "message": message}),
    }])
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An artifact a task stored.
#[derive(Serialize, ToSchema)]
pub struct ArtifactStored {
    pub id: String,
    pub url: String,
    pub content_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: u64,
    pub sha256: String,
}

/// Stores the request body as an artifact of the task's run; needs scope `artifacts:write`.
#[utoipa::path(post, path = "/v1/task/artifacts", tag = "task",
    security(("task_token" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ArtifactStored), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 413, body = Problem),
        (status = 503, body = Problem)))]
pub async fn store_artifact(
    State(state): State<AppState>,
    caller: TaskCaller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ArtifactStored>)> {
    let bytes = body(bytes)?;
    caller
        .require(&state, "artifacts:write", "artifact upload")
        .await?;
    let Some(artifacts) = &state.artifacts else {
        return Err(Problem::new(
            Kind::Unavailable,
            "this server has no artifact store",
        ));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .split(';')
        .next()
        .unwrap_or("application/octet-stream")
        .trim()
        .to_ascii_lowercase();
    let stored = artifacts
        .put(
            &caller.token.tenant,
            &caller.token.run_id,
            bytes.to_vec(),
            &content_type,
        )
        .await
        .map_err(Problem::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(ArtifactStored {
            id: stored.id,
            url: stored.url,
            content_type: stored.content_type,
            width: stored.width,
            height: stored.height,
            bytes: stored.bytes,
            sha256: stored.sha256,
        }),
    ))
}

/// A memory entry as a task reads it.
#[derive(Serialize, ToSchema)]
pub struct MemoryValue {
    pub namespace: String,
    pub key: String,
    pub value: Value,
}

/// The body of `PUT /v1/task/memory/{namespace}/{key}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMemory {
    pub value: Value,
}

/// Reads an entry of the tenant's memory; needs scope `memory:read`.
#[utoipa::path(get, path = "/v1/task/memory/{namespace}/{key}", tag = "task",
    security(("task_token" = [])),
    params(("namespace" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = MemoryValue), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn read_memory(
    State(state): State<AppState>,
    caller: TaskCaller,
    Path((namespace, key)): Path<(String, String)>,
) -> ApiResult<Json<MemoryValue>> {
    caller.require(&state, "memory:read", "memory read").await?;
    match state
        .store
        .memory_get(&caller.token.tenant, &namespace, &key)
        .await?
    {
        Some(entry) => Ok(Json(MemoryValue {
            namespace: entry.namespace,
            key: entry.key,
            value: entry.value,
        })),
        None => Err(Problem::not_found(
            "memory entry",
            &format!("{namespace}/{key}"),
        )),
    }
}

/// Writes an entry of the tenant's memory; needs scope `memory:write`.
#[utoipa::path(put, path = "/v1/task/memory/{namespace}/{key}", tag = "task",
    security(("task_token" = [])), request_body = PutMemory,
    params(("namespace" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub async fn write_memory(
    State(state): State<AppState>,
    caller: TaskCaller,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let bytes = body(bytes)?;
    let request: PutMemory = json_body(&headers, &bytes)?;
    caller
        .require(&state, "memory:write", "memory write")
        .await?;
    let value = caller.scrubber(&state).await?.value(request.value);
    state
        .store
        .memory_put(&caller.token.tenant, &namespace, &key, &value)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A renewed token's new expiry.
#[derive(Serialize, ToSchema)]
pub struct Renewed {
    pub expires_at: String,
}

/// Extends the task's own token by its step's TTL, never past 30 minutes from its issue.
#[utoipa::path(post, path = "/v1/task/token/renew", tag = "task",
    security(("task_token" = [])),
    responses((status = 200, body = Renewed), (status = 401, body = Problem)))]
pub async fn renew_token(
    State(state): State<AppState>,
    caller: TaskCaller,
    headers: HeaderMap,
) -> ApiResult<Json<Renewed>> {
    let t = &caller.token;
    let ttl = match state.store.run(&t.tenant, &t.run_id).await? {
        Some(run) => state
            .engine
            .plan_for(&run)
            .ok()
            .and_then(|plan| {
                let idx = plan.step_index(&t.step_id)?;
                plan.steps[idx].token.as_ref().map(|s| s.ttl)
            })
            .unwrap_or(weft_core::plan::TokenSpec::DEFAULT_TTL),
        None => weft_core::plan::TokenSpec::DEFAULT_TTL,
    };
    let max = weft_core::plan::TokenSpec::MAX_TTL;
    // The extractor proved the bearer is this token; hash it again to renew that row.
    let hash = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, token)| hash_token(token.trim()))
        .unwrap_or_default();
    let millis = |d: std::time::Duration| d.as_millis().min(i64::MAX as u128) as i64;
    match state
        .store
        .renew_task_token(&hash, millis(ttl), millis(max))
        .await?
    {
        Some(expires_at) => {
            audit(&state, t, "token.used", "ok: renewed").await?;
            Ok(Json(Renewed {
                expires_at: weft_store::rfc3339(expires_at),
            }))
        }
        None => Err(Problem::new(
            Kind::TaskTokenExpired,
            "the task token can no longer be renewed",
        )),
    }
}
