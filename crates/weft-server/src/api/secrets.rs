//! `/v1/secrets`: a tenant's secrets. Values go in and never come out: the list shows names
//! only, the store holds ciphertext sealed by `weft_engine::secrets`, and no answer, log line
//! or audit record carries a value.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use weft_engine::secrets::valid_name;

use super::audit::record;
use super::{body, json_body};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Kind, Problem};

/// The body of `PUT /v1/secrets/{name}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value; stored encrypted, never shown again.
    pub value: String,
}

/// A secret as listed: never its value.
#[derive(Serialize, ToSchema)]
pub struct SecretSummary {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretSummary>,
}

/// What storing a secret did (the value is not echoed).
#[derive(Serialize, ToSchema)]
pub struct SecretStored {
    pub name: String,
    pub created: bool,
}

fn check_name(name: &str) -> ApiResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Problem::field(
            Kind::Validation,
            "name",
            "a letter or `_` first, then letters, digits, `_`, `-` or `.`; 1 to 64 characters",
        ))
    }
}

/// Stores a secret of the caller's tenant, or replaces its value.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", request_body = PutSecret,
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = 200, body = SecretStored), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
pub async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SecretStored>> {
    check_name(&name)?;
    let bytes = body(bytes)?;
    let request: PutSecret = json_body(&headers, &bytes)?;
    let Some(secret_box) = &state.secret_box else {
        return Err(Problem::new(
            Kind::Unavailable,
            "this server has no secret key; start it with WEFT_SECRET_KEY or a key file",
        ));
    };
    let sealed = secret_box
        .seal(&caller.tenant, &name, request.value.as_bytes())
        .map_err(Problem::internal)?;
    let created = state
        .store
        .put_secret(&caller.tenant, &name, &sealed)
        .await?;
    record(&state, &caller, "secret.set", "secret", &name, "ok").await?;
    Ok(Json(SecretStored { name, created }))
}

/// The caller's secrets, names only.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", security(("bearer" = [])),
    responses((status = 200, body = SecretList), (status = 401, body = Problem)))]
pub async fn list_secrets(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<SecretList>> {
    let secrets = state.store.secrets(&caller.tenant).await?;
    Ok(Json(SecretList {
        secrets: secrets
            .into_iter()
            .map(|s| SecretSummary {
                name: s.name,
                created_at: weft_store::rfc3339(s.created_at),
                updated_at: weft_store::rfc3339(s.updated_at),
            })
            .collect(),
    }))
}

/// Deletes a secret of the caller's tenant.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.store.delete_secret(&caller.tenant, &name).await? {
        return Err(Problem::not_found("secret", &name));
    }
    record(&state, &caller, "secret.deleted", "secret", &name, "ok").await?;
    Ok(StatusCode::NO_CONTENT)
}
