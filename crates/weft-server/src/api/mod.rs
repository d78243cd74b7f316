//! The `/v1` handlers, and what they share: reading bodies into field-precise problems,
//! finding templates, and the service routes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::problem::{ApiResult, Kind, Problem};

pub mod artifacts;
pub mod ask;
pub mod audit;
pub mod dto;
pub mod follow;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod steps;
pub mod task;
pub mod templates;
pub mod tenant;
pub mod usage;

/// A request body, or the problem with it (too large, unreadable).
pub(crate) fn body(bytes: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    bytes.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
            || stopped_by_the_limit(&rejection)
        {
            Problem::new(
                Kind::PayloadTooLarge,
                "the request body is larger than the server accepts",
            )
        } else {
            Problem::new(
                Kind::BadRequest,
                format!("cannot read the request body: {rejection}"),
            )
        }
    })
}

/// Whether a body read failed because the listener's body limit (tower-http's, which axum
/// does not recognise as its own) cut it off.
fn stopped_by_the_limit(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Whether the request says its body is of one of `types` (parameters like `charset` ignored).
pub(crate) fn content_type_is(headers: &HeaderMap, types: &[&str]) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|v| types.contains(&v.as_str()))
}

/// Parses a JSON body: a syntax error is a 400, a wrong field a 422 naming the field.
pub(crate) fn json_body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<T> {
    if !content_type_is(headers, &["application/json"]) {
        return Err(Problem::new(
            Kind::UnsupportedMediaType,
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::new(
                Kind::BadRequest,
                format!("the body is not valid JSON: {inner}"),
            )
        } else {
            let field = if field == "." {
                "body".to_string()
            } else {
                field
            };
            Problem::field(Kind::Validation, field, strip_position(&inner.to_string()))
        }
    })
}

/// serde_json appends "at line 1 column 40"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Is the service up, and can it read and write its store? 503 with a problem saying why when
/// the store cannot write (a full disk answers reads to the end).
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, body = dto::Health), (status = 503, body = Problem)))]
pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<dto::Health>> {
    state.store.now().await?;
    state.store.check_writable().await?;
    Ok(Json(dto::Health {
        status: "ok".into(),
        store: state.store.describe(),
    }))
}

pub async fn not_found() -> Problem {
    Problem::new(
        Kind::NotFound,
        "no such route; the API is described at /openapi.json",
    )
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(
        Kind::MethodNotAllowed,
        "this route does not take that method",
    )
}
