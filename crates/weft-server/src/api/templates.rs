//! `/v1/templates`: the template registry. A tenant registers versions through the API (kept
//! in the store, visible to that tenant only); the templates `weft serve` loaded at start are
//! shared by every tenant. A tenant's own template of a name comes before a shared one.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use weft_core::Plan;
use weft_store::server::{PutTemplate, TemplateRecord, TemplateStore};

use super::dto::*;
use super::{body, content_type_is};
use crate::AppState;
use crate::auth::now_ms;
use crate::problem::{ApiResult, DiagnosticBody, Kind, Problem};

/// The name templates registered through the API carry in diagnostics (and on their runs,
/// which is how the tool policy tells them from the operator's).
const API_FILE: &str = weft_core::plan::REGISTERED_FILE;

fn diagnostics_problem(d: weft_core::diag::Diagnostics) -> Problem {
    let mut p = Problem::new(
        Kind::TemplateInvalid,
        format!(
            "the template has {} problem(s); each is listed with FILE:LINE:COL",
            d.0.len()
        ),
    );
    p.diagnostics =
        d.0.iter()
            .map(|d| DiagnosticBody {
                file: d.file.clone(),
                line: d.line,
                col: d.col,
                code: d.code.as_str().into(),
                message: d.message.clone(),
            })
            .collect();
    p
}

/// The plan of a registered version, loaded once per process.
pub(crate) fn plan_of(state: &AppState, record: &TemplateRecord) -> ApiResult<Arc<Plan>> {
    if let Ok(plans) = state.plans.lock()
        && let Some(plan) = plans.get(&record.digest)
    {
        return Ok(plan.clone());
    }
    let tools = state.engine.tools().clone();
    let plan = weft_core::load::load_str(&record.source, API_FILE, None, &*tools)
        .map_err(|d| Problem::internal(format!("registered template no longer loads: {d}")))?;
    let plan = Arc::new(plan);
    if let Ok(mut plans) = state.plans.lock() {
        plans.insert(record.digest.clone(), plan.clone());
    }
    Ok(plan)
}

/// The template a run asks for, and the folder its files resolve against.
pub(crate) async fn resolve(
    state: &AppState,
    tenant: &str,
    name: &str,
    version: Option<&str>,
) -> ApiResult<(Arc<Plan>, Option<String>)> {
    if let Some(record) =
        TemplateStore::template(state.store.as_ref(), tenant, name, version).await?
    {
        return Ok((plan_of(state, &record)?, None));
    }
    if let Some(shared) = state.shared.get(name)
        && version.is_none_or(|v| v == shared.plan.version)
    {
        return Ok((shared.plan.clone(), shared.base_dir.clone()));
    }
    let what = match version {
        Some(v) => format!("{name}@{v}"),
        None => name.to_string(),
    };
    let mut p = Problem::field(Kind::NotFound, "template", format!("no template `{what}`"));
    p.detail = format!("no template `{what}`; `GET /v1/templates` lists them");
    Err(p)
}

/// Registers a template version from its YAML. It is validated first (problems come back as
/// a 422 with FILE:LINE:COL diagnostics); a different body under a registered version is a 409.
#[utoipa::path(post, path = "/v1/templates", tag = "templates", security(("bearer" = [])),
    request_body(content = String, content_type = "application/yaml", description = "The template's YAML"),
    responses((status = 201, body = TemplateRegistered),
        (status = 200, body = TemplateRegistered, description = "This body was already registered"),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn register_template(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<TemplateRegistered>)> {
    let bytes = body(bytes)?;
    if !content_type_is(
        &headers,
        &[
            "application/yaml",
            "application/x-yaml",
            "text/yaml",
            "text/x-yaml",
            "text/plain",
        ],
    ) {
        return Err(Problem::new(
            Kind::UnsupportedMediaType,
            "send the template's YAML with `Content-Type: application/yaml`",
        ));
    }
    let source = std::str::from_utf8(&bytes)
        .map_err(|_| Problem::new(Kind::BadRequest, "the template is not UTF-8 text"))?;
    // A tool that starts processes is refused at its `tool:` unless the operator granted it
    // to this tenant (the engine checks again at every call).
    let granted =
        weft_store::server::ToolGrants::allowed_tools(state.store.as_ref(), &caller.tenant).await?;
    let catalog = weft_tools::policy::Granted {
        registry: state.engine.tools(),
        tenant: &caller.tenant,
        granted: &granted,
    };
    let plan =
        weft_core::load::load_str(source, API_FILE, None, &catalog).map_err(diagnostics_problem)?;
    let record = TemplateRecord {
        tenant: caller.tenant.clone(),
        name: plan.name.clone(),
        version: plan.version.clone(),
        digest: plan.digest.clone(),
        source: source.to_string(),
        description: plan.description.clone(),
        created_at: now_ms(),
    };
    let (status, stored) = match TemplateStore::put_template(state.store.as_ref(), &record).await? {
        PutTemplate::Created(r) => (StatusCode::CREATED, r),
        PutTemplate::Unchanged(r) => (StatusCode::OK, r),
        PutTemplate::Conflict(r) => {
            return Err(Problem::new(
                Kind::TemplateVersionConflict,
                format!(
                    "`{}` version {} is already registered with another body (digest {}); \
                     bump `version:` to register a change",
                    r.name, r.version, r.digest
                ),
            ));
        }
    };
    if status == StatusCode::CREATED {
        let object = format!("{}@{}", stored.name, stored.version);
        super::audit::record(
            &state,
            &caller,
            "template.registered",
            "template",
            &object,
            "ok",
        )
        .await?;
    }
    if let Ok(mut plans) = state.plans.lock() {
        plans.insert(plan.digest.clone(), Arc::new(plan));
    }
    Ok((
        status,
        Json(TemplateRegistered {
            name: stored.name,
            version: stored.version,
            digest: stored.digest,
            created: status == StatusCode::CREATED,
        }),
    ))
}

/// Every template the caller can run: its registered ones, then the server's.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", security(("bearer" = [])),
    responses((status = 200, body = TemplateList), (status = 401, body = Problem)))]
pub async fn list_templates(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
) -> ApiResult<Json<TemplateList>> {
    let mut by_name: BTreeMap<String, TemplateSummary> = BTreeMap::new();
    for r in TemplateStore::templates(state.store.as_ref(), &caller.tenant).await? {
        let entry = by_name
            .entry(r.name.clone())
            .or_insert_with(|| TemplateSummary {
                name: r.name.clone(),
                latest_version: r.version.clone(),
                description: None,
                versions: Vec::new(),
                origin: "registered".into(),
            });
        entry.latest_version = r.version.clone();
        entry.description = r.description.clone();
        entry.versions.push(r.version);
    }
    for (name, shared) in state.shared.iter() {
        by_name
            .entry(name.clone())
            .or_insert_with(|| TemplateSummary {
                name: name.clone(),
                latest_version: shared.plan.version.clone(),
                description: shared.plan.description.clone(),
                versions: vec![shared.plan.version.clone()],
                origin: "server".into(),
            });
    }
    Ok(Json(TemplateList {
        templates: by_name.into_values().collect(),
    }))
}

/// A template's versions, each with its inputs (enough to build a form) and source.
#[utoipa::path(get, path = "/v1/templates/{name}", tag = "templates", security(("bearer" = [])),
    params(("name" = String, Path, description = "The template name")),
    responses((status = 200, body = TemplateDetail), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn get_template(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<TemplateDetail>> {
    let mut versions = Vec::new();
    for r in TemplateStore::templates(state.store.as_ref(), &caller.tenant).await? {
        if r.name == name {
            let plan = plan_of(&state, &r)?;
            versions.push(TemplateVersion::new(
                &plan,
                "registered",
                Some(r.created_at),
            ));
        }
    }
    if versions.is_empty()
        && let Some(shared) = state.shared.get(&name)
    {
        versions.push(TemplateVersion::new(&shared.plan, "server", None));
    }
    if versions.is_empty() {
        return Err(Problem::not_found("template", &name));
    }
    Ok(Json(TemplateDetail { name, versions }))
}

/// Where the server's runs find the templates their `workflow:` steps and actions start: the
/// tenant's registered versions first, then the templates `weft serve` loaded (as
/// [`resolve`] does for `POST /v1/runs`).
pub(crate) struct Registry {
    pub store: Arc<dyn weft_store::server::ServerStore>,
    pub shared: Arc<std::collections::HashMap<String, crate::SharedTemplate>>,
    pub plans: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Plan>>>>,
    pub tools: Arc<weft_tools::Registry>,
}

#[async_trait::async_trait]
impl weft_engine::TemplateSource for Registry {
    async fn find(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Plan>, Option<String>), String> {
        let record = TemplateStore::template(self.store.as_ref(), tenant, name, version)
            .await
            .map_err(|e| format!("cannot read template `{name}`: {e}"))?;
        if let Some(record) = record {
            if let Ok(plans) = self.plans.lock()
                && let Some(plan) = plans.get(&record.digest)
            {
                return Ok((plan.clone(), None));
            }
            let plan = weft_core::load::load_str(&record.source, API_FILE, None, &*self.tools)
                .map_err(|d| format!("registered template `{name}` no longer loads: {d}"))?;
            let plan = Arc::new(plan);
            if let Ok(mut plans) = self.plans.lock() {
                plans.insert(record.digest.clone(), plan.clone());
            }
            return Ok((plan, None));
        }
        if let Some(shared) = self.shared.get(name)
            && version.is_none_or(|v| v == shared.plan.version)
        {
            return Ok((shared.plan.clone(), shared.base_dir.clone()));
        }
        Err(match version {
            Some(v) => format!("no template `{name}@{v}`"),
            None => format!("no template `{name}`"),
        })
    }
}
