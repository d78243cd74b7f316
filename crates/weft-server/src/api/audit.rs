//! `/v1/audit`: the caller's tenant's audit trail, and the one helper handlers record with.
//!
//! Records are written by the handlers after the action (not deep in the engine), append-only:
//! nothing in the code changes or removes one.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;
use utoipa::ToSchema;
use weft_store::secrets::{AuditQuery, AuditRecord};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Kind, Problem};

/// Appends what `caller` did to the trail.
pub(crate) async fn record(
    state: &AppState,
    caller: &Caller,
    action: &str,
    object_type: &str,
    object_id: &str,
    outcome: &str,
) -> ApiResult<()> {
    state
        .store
        .append_audit(&AuditRecord {
            seq: 0,
            tenant: caller.tenant.clone(),
            at: 0,
            actor: caller.key_id.clone(),
            action: action.into(),
            object_type: object_type.into(),
            object_id: object_id.into(),
            outcome: outcome.into(),
        })
        .await?;
    Ok(())
}

/// One audit record.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    /// An API key id, `cli` or `system`.
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub outcome: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditEntry>,
}

/// The caller's audit trail, oldest first; `run` and `since` (RFC 3339) narrow it.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(("run" = Option<String>, Query, description = "Only records about this run"),
        ("since" = Option<String>, Query, description = "Only records at or after (RFC 3339)"),
        ("limit" = Option<u32>, Query, description = "At most this many records")),
    responses((status = 200, body = AuditList), (status = 401, body = Problem),
        (status = 422, body = Problem)))]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<AuditList>> {
    let max = state.options.max_page;
    let mut query = AuditQuery {
        tenant: caller.tenant.clone(),
        limit: max,
        ..AuditQuery::default()
    };
    for (name, value) in &params {
        match name.as_str() {
            "run" => query.run = Some(value.clone()),
            "since" => {
                let at = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| {
                    Problem::field(Kind::Validation, "since", "must be an RFC 3339 time")
                })?;
                query.since = Some(at.timestamp_millis());
            }
            "limit" => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        Problem::field(Kind::Validation, "limit", format!("must be 1 to {max}"))
                    })?
            }
            other => {
                return Err(Problem::field(
                    Kind::Validation,
                    other,
                    "unknown parameter; expected run, since or limit",
                ));
            }
        }
    }
    let records = state.store.audit(&query).await?;
    Ok(Json(AuditList {
        records: records
            .into_iter()
            .map(|r| AuditEntry {
                seq: r.seq,
                at: weft_store::rfc3339(r.at),
                actor: r.actor,
                action: r.action,
                object_type: r.object_type,
                object_id: r.object_id,
                outcome: r.outcome,
            })
            .collect(),
    }))
}
