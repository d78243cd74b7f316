//! `/v1/tenant`: the caller's own tenant, its limits and the tools granted to it. They are set
//! by the operator (`weft tenants update NAME --max-concurrent-tasks N --max-runs-per-hour N
//! --allow-tools command,skill.report`), not by the tenant, so this is read-only.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Kind, Problem};

/// A tenant as its own keys see it.
#[derive(Serialize, ToSchema)]
pub struct TenantInfo {
    pub name: String,
    pub created_at: String,
    /// Most of this tenant's tasks that run at once across every worker; absent: no cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_tasks: Option<u32>,
    /// Most runs this tenant may create in any hour (beyond it `POST /v1/runs` answers 429
    /// with `Retry-After`); absent: no quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runs_per_hour: Option<u32>,
    /// The tools that start host processes (`command`, `skill.*`, stdio `mcp.*`; names or
    /// `prefix.*` patterns) this tenant's own registered templates may use, confined. Empty:
    /// none.
    pub allowed_tools: Vec<String>,
}

/// The caller's tenant and its limits.
#[utoipa::path(get, path = "/v1/tenant", tag = "service", security(("bearer" = [])),
    responses((status = 200, body = TenantInfo), (status = 401, body = Problem)))]
pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TenantInfo>> {
    let tenant = state
        .store
        .tenants()
        .await?
        .into_iter()
        .find(|t| t.name == caller.tenant)
        .ok_or_else(|| Problem::new(Kind::NotFound, "the key's tenant no longer exists"))?;
    Ok(Json(TenantInfo {
        name: tenant.name,
        created_at: weft_store::rfc3339(tenant.created_at),
        max_concurrent_tasks: tenant.max_concurrent_tasks,
        allowed_tools: tenant.allowed_tools,
        max_runs_per_hour: state
            .store
            .tenant_quota(&caller.tenant)
            .await?
            .max_runs_per_hour,
    }))
}
