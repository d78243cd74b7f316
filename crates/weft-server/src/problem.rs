//! Errors as RFC 9457 problem details, each with a stable `code` a client can match on.
//!
//! Every handler returns `Result<_, Problem>`, so no error reaches a client as bare text. The
//! `detail` says what to do next; it never holds a secret (keys and tickets are checked by
//! hash and never echoed back).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The closed set of problems the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unauthorized,
    NotFound,
    BadRequest,
    Validation,
    IdempotencyConflict,
    TemplateInvalid,
    TemplateVersionConflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RunNotResumable,
    MethodNotAllowed,
    Unavailable,
    /// Task callbacks: no task token, not one, unknown, expired, revoked (its attempt ended
    /// or lost its lease), an earlier attempt's, or one without the scope.
    TaskTokenMissing,
    TaskTokenMalformed,
    TaskTokenUnknown,
    TaskTokenExpired,
    TaskTokenRevoked,
    TaskTokenSuperseded,
    TaskTokenScope,
    /// The tenant already has a schedule of this name.
    ScheduleNameTaken,
    /// The tenant's runs-per-hour quota is used up (429, with `Retry-After`).
    RateLimited,
    /// The request does not fit the run's state: an approval that is not waiting, an action
    /// on a run that did not succeed.
    RunStateConflict,
    Internal,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Unauthorized => "WEFT-E201",
            Kind::NotFound => "WEFT-E202",
            Kind::BadRequest => "WEFT-E203",
            Kind::Validation => "WEFT-E204",
            Kind::IdempotencyConflict => "WEFT-E205",
            Kind::TemplateInvalid => "WEFT-E206",
            Kind::TemplateVersionConflict => "WEFT-E207",
            Kind::PayloadTooLarge => "WEFT-E208",
            Kind::UnsupportedMediaType => "WEFT-E209",
            Kind::RunNotResumable => "WEFT-E210",
            Kind::MethodNotAllowed => "WEFT-E211",
            Kind::Unavailable => "WEFT-E212",
            Kind::TaskTokenMissing => "WEFT-E230",
            Kind::TaskTokenMalformed => "WEFT-E231",
            Kind::TaskTokenUnknown => "WEFT-E232",
            Kind::TaskTokenExpired => "WEFT-E233",
            Kind::TaskTokenRevoked => "WEFT-E234",
            Kind::TaskTokenSuperseded => "WEFT-E235",
            Kind::TaskTokenScope => "WEFT-E236",
            Kind::ScheduleNameTaken => "WEFT-E240",
            Kind::RateLimited => "WEFT-E250",
            Kind::RunStateConflict => "WEFT-E260",
            Kind::Internal => "WEFT-E299",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::Unauthorized => "unauthorized",
            Kind::NotFound => "not-found",
            Kind::BadRequest => "bad-request",
            Kind::Validation => "validation",
            Kind::IdempotencyConflict => "idempotency-conflict",
            Kind::TemplateInvalid => "template-invalid",
            Kind::TemplateVersionConflict => "template-version-conflict",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::RunNotResumable => "run-not-resumable",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::Unavailable => "unavailable",
            Kind::TaskTokenMissing => "task-token-missing",
            Kind::TaskTokenMalformed => "task-token-malformed",
            Kind::TaskTokenUnknown => "task-token-unknown",
            Kind::TaskTokenExpired => "task-token-expired",
            Kind::TaskTokenRevoked => "task-token-revoked",
            Kind::TaskTokenSuperseded => "task-token-superseded",
            Kind::TaskTokenScope => "task-token-scope",
            Kind::ScheduleNameTaken => "schedule-name-taken",
            Kind::RateLimited => "rate-limited",
            Kind::RunStateConflict => "run-state-conflict",
            Kind::Internal => "internal",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Unauthorized => "Missing or invalid API key",
            Kind::NotFound => "Not found",
            Kind::BadRequest => "Malformed request",
            Kind::Validation => "Invalid request",
            Kind::IdempotencyConflict => "Idempotency key reused with another request",
            Kind::TemplateInvalid => "Template does not validate",
            Kind::TemplateVersionConflict => "Template version already registered",
            Kind::PayloadTooLarge => "Request body too large",
            Kind::UnsupportedMediaType => "Unsupported content type",
            Kind::RunNotResumable => "Run cannot be resumed",
            Kind::MethodNotAllowed => "Method not allowed",
            Kind::Unavailable => "Temporarily unavailable",
            Kind::TaskTokenMissing => "Missing task token",
            Kind::TaskTokenMalformed => "Malformed task token",
            Kind::TaskTokenUnknown => "Unknown task token",
            Kind::TaskTokenExpired => "Task token expired",
            Kind::TaskTokenRevoked => "Task token revoked",
            Kind::TaskTokenSuperseded => "Task token of a superseded attempt",
            Kind::TaskTokenScope => "Task token lacks the scope",
            Kind::ScheduleNameTaken => "Schedule name already taken",
            Kind::RateLimited => "Quota used up",
            Kind::RunStateConflict => "Not possible in the run's current state",
            Kind::Internal => "Internal error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Kind::Unauthorized
            | Kind::TaskTokenMissing
            | Kind::TaskTokenMalformed
            | Kind::TaskTokenUnknown
            | Kind::TaskTokenExpired
            | Kind::TaskTokenRevoked
            | Kind::TaskTokenSuperseded => StatusCode::UNAUTHORIZED,
            Kind::TaskTokenScope => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Validation | Kind::TemplateInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::IdempotencyConflict
            | Kind::TemplateVersionConflict
            | Kind::RunNotResumable
            | Kind::RunStateConflict
            | Kind::ScheduleNameTaken => StatusCode::CONFLICT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One field that is wrong, by its path in the request (`inputs.state`, `limit`).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A template problem at FILE:LINE:COL, as `weft validate` prints it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct DiagnosticBody {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub code: String,
    pub message: String,
}

/// An RFC 9457 problem details document (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable code (`WEFT-E2xx`): match on this, not on the text.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<DiagnosticBody>,
    /// Seconds to wait before trying again (also sent as the `Retry-After` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(skip)]
    pub kind: Option<Kind>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: format!("https://weft.dev/problems/{}", kind.slug()),
            title: kind.title().into(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            code: kind.code().into(),
            errors: Vec::new(),
            diagnostics: Vec::new(),
            retry_after: None,
            kind: Some(kind),
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Problem::new(Kind::NotFound, format!("no {what} `{id}`"))
    }

    pub fn field(kind: Kind, field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        let mut p = Problem::new(kind, format!("`{field}`: {message}"));
        p.errors.push(FieldError { field, message });
        p
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "Request failed.");
        Problem::new(Kind::Internal, "the server failed; the error is in its log")
    }
}

impl From<weft_store::Error> for Problem {
    fn from(e: weft_store::Error) -> Self {
        if e.is_cannot_write() {
            tracing::warn!(error = %e, "Store cannot write.");
            Problem::new(
                Kind::Unavailable,
                format!("{e}; weft keeps retrying its writes and goes on once the store can write"),
            )
        } else if e.is_transient() {
            tracing::warn!(error = %e, "Store busy.");
            Problem::new(Kind::Unavailable, "the store is busy; try again")
        } else {
            Problem::internal(e)
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self
            .kind
            .map(Kind::status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, Problem>;

/// Every error of the API is a problem document, also the ones axum writes itself as plain
/// text (a path that is not UTF-8, an extractor's rejection): such a response is rewritten
/// into a problem with its status and text.
pub async fn plain_errors_as_problems(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // Plain text, or no type at all (an empty error from a layer).
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let kind = match status {
        StatusCode::NOT_FOUND => Kind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Kind::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Kind::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Kind::UnsupportedMediaType,
        s if s.is_server_error() => Kind::Internal,
        _ => Kind::BadRequest,
    };
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // A body stopped by the listener's limit reaches an extractor as a failed read (400).
    let kind = if kind == Kind::BadRequest && text.contains("length limit exceeded") {
        Kind::PayloadTooLarge
    } else {
        kind
    };
    Problem::new(kind, text).into_response()
}

/// Every error response of the API is a problem document: says so in the OpenAPI document,
/// under the media type the server really sends.
pub fn document_problems(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            for (status, response) in op.responses.responses.iter_mut() {
                let utoipa::openapi::RefOr::T(response) = response else {
                    continue;
                };
                if (status.starts_with('4') || status.starts_with('5'))
                    && let Some(content) = response.content.shift_remove("application/json")
                {
                    response
                        .content
                        .insert("application/problem+json".to_string(), content);
                }
            }
        }
    }
}
