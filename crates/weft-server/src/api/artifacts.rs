//! `/v1/artifacts/{id}` and `/v1/runs/{id}/artifacts`: the images the `artifacts` hook took
//! out of tool outputs, served to the tenant that owns them (another tenant's id is a 404,
//! exactly like an id that exists nowhere).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Kind, Problem};

/// A run's artifacts.
#[derive(Serialize, ToSchema)]
pub struct ArtifactList {
    pub artifacts: Vec<ArtifactItem>,
}

#[derive(Serialize, ToSchema)]
pub struct ArtifactItem {
    pub id: String,
    /// Where `GET` fetches its bytes.
    pub url: String,
}

fn store_problem(e: weft_tools::Error) -> Problem {
    tracing::warn!(error = %e, "Artifact store failed.");
    Problem::new(
        Kind::Unavailable,
        "the artifact store did not answer; try again",
    )
}

/// An artifact's bytes, with its content type.
#[utoipa::path(get, path = "/v1/artifacts/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The artifact id, as in its `url`")),
    responses((status = 200, description = "The artifact's bytes", content_type = "image/png"),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 503, body = Problem)))]
pub async fn get_artifact(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let Some(store) = &state.artifacts else {
        return Err(Problem::not_found("artifact", &id));
    };
    match store
        .get(&caller.tenant, &id)
        .await
        .map_err(store_problem)?
    {
        Some((bytes, content_type)) => Ok((
            [
                (header::CONTENT_TYPE, content_type),
                // Named by their hash: the bytes behind an id never change.
                (
                    header::CACHE_CONTROL,
                    "private, max-age=31536000, immutable".to_string(),
                ),
            ],
            bytes,
        )
            .into_response()),
        None => Err(Problem::not_found("artifact", &id)),
    }
}

/// The artifacts a run's steps stored.
#[utoipa::path(get, path = "/v1/runs/{id}/artifacts", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id")),
    responses((status = 200, body = ArtifactList), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn list_run_artifacts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ArtifactList>> {
    if state.store.run(&caller.tenant, &id).await?.is_none() {
        return Err(Problem::not_found("run", &id));
    }
    let ids = match &state.artifacts {
        Some(store) => store
            .list_run(&caller.tenant, &id)
            .await
            .map_err(store_problem)?,
        None => Vec::new(),
    };
    Ok(Json(ArtifactList {
        artifacts: ids
            .into_iter()
            .map(|id| ArtifactItem {
                url: state
                    .artifacts
                    .as_ref()
                    .map(|s| s.url(&id))
                    .unwrap_or_default(),
                id,
            })
            .collect(),
    }))
}
