//! weft as an MCP server, so an agent can hand a multi-step job to weft instead of chaining
//! tools itself: one tool per template the caller can run (input schema from the template's
//! inputs, description from the template), plus `ask` (a sentence to a template and a run),
//! `run_status` and `run_output`.
//!
//! The same handler serves `weft mcp` (stdio, tenant `default`) and `/mcp` on `weft serve`
//! (streamable HTTP). Over HTTP every request is authenticated with the same bearer API keys
//! as `/v1`, and the tenant comes from the request's own key, never from the session: a
//! session id is not a credential. Like the API, the handler holds no workflow logic: runs
//! start through `Engine`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use weft_engine::NewRun;
use weft_engine::intent::inputs_schema;

use crate::AppState;
use crate::api::ask::{candidates, clarify, match_sentence};
use crate::auth::Caller;

/// The tools that are not templates. A template with one of these names is not offered.
const ASK: &str = "ask";
const RUN_STATUS: &str = "run_status";
const RUN_OUTPUT: &str = "run_output";
const RESERVED: [&str; 3] = [ASK, RUN_STATUS, RUN_OUTPUT];

/// Longest `wait_seconds` a `run_output` call may ask for.
const MAX_WAIT_SECONDS: u64 = 120;

/// The MCP handler: the server's state, and for stdio the fixed caller.
#[derive(Clone)]
pub struct WeftMcp {
    state: AppState,
    /// `weft mcp` (stdio) acts for this caller; over HTTP each request's key decides.
    fixed: Option<Caller>,
}

impl WeftMcp {
    /// The handler for `weft mcp`: every call acts for `tenant`.
    pub fn stdio(state: AppState, tenant: &str) -> Self {
        WeftMcp {
            state,
            fixed: Some(Caller {
                tenant: tenant.to_string(),
                key_id: "mcp-stdio".into(),
            }),
        }
    }

    /// The handler behind `/mcp`: the caller comes from each request.
    pub fn http(state: AppState) -> Self {
        WeftMcp { state, fixed: None }
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
        if let Some(c) = &self.fixed {
            return Ok(c.clone());
        }
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>())
            .cloned()
            .ok_or_else(|| McpError::invalid_request("not authenticated", None))
    }
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(Map::new()),
    }
}

fn fixed_tools() -> Vec<Tool> {
    vec![
        Tool::new(
            ASK,
            "Say what you want in a sentence (\"Find all HVAC businesses in Colorado\"): weft \
             picks the template and its inputs and starts the run (not with dry_run). When it \
             is unsure or an input is missing it answers with a question and the candidates \
             instead, and starts nothing.",
            schema(json!({
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "What you want, in a sentence"},
                    "dry_run": {"type": "boolean", "default": false,
                                "description": "Only say which template and inputs; start nothing"}
                },
                "required": ["text"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            RUN_STATUS,
            "A run's status and each step's status, attempts and progress.",
            schema(json!({
                "type": "object",
                "properties": {"run_id": {"type": "string"}},
                "required": ["run_id"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            RUN_OUTPUT,
            "A run's output once it has ended (or its error); with wait_seconds, waits up to \
             that long for the run to end.",
            schema(json!({
                "type": "object",
                "properties": {
                    "run_id": {"type": "string"},
                    "wait_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
                                     "default": 0}
                },
                "required": ["run_id"],
                "additionalProperties": false
            })),
        ),
    ]
}

/// A tool's answer: the JSON as structured content and as text (for clients that show text).
fn answer(value: Value) -> CallToolResponse {
    let mut result = CallToolResult::success(vec![ContentBlock::text(value.to_string())]);
    result.structured_content = Some(value);
    result.into()
}

/// A failure the caller should read (a bad input, an unknown run), not a protocol error.
fn refusal(message: impl Into<String>) -> CallToolResponse {
    let message = message.into();
    let mut result = CallToolResult::error(vec![ContentBlock::text(message.clone())]);
    result.structured_content = Some(json!({"error": message}));
    result.into()
}

fn internal(e: impl std::fmt::Display) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

impl ServerHandler for WeftMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("weft", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "weft runs multi-step workflows durably. Call a template's tool (or `ask` with a \
                 sentence) to start a run; it returns a run_id at once. Then `run_status` shows \
                 progress and `run_output` (with wait_seconds) gives the result.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = self.caller(&ctx)?;
        let mut tools = fixed_tools();
        let templates = candidates(&self.state, &caller.tenant)
            .await
            .map_err(|p| internal(p.detail))?;
        for c in templates {
            if RESERVED.contains(&c.plan.name.as_str()) {
                continue;
            }
            let description = format!(
                "{} (weft template {}@{}; starts a run and returns its run_id)",
                c.plan
                    .description
                    .clone()
                    .unwrap_or_else(|| format!("Runs the `{}` template.", c.plan.name)),
                c.plan.name,
                c.plan.version
            );
            tools.push(Tool::new(
                c.plan.name.clone(),
                description,
                schema(inputs_schema(&c.plan)),
            ));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = self.caller(&ctx)?;
        let args = request.arguments.unwrap_or_default();
        match request.name.as_ref() {
            ASK => self.ask(&caller, &args).await,
            RUN_STATUS => self.status(&caller, &args).await,
            RUN_OUTPUT => self.output(&caller, &args).await,
            name => self.start(&caller, name, args).await,
        }
    }
}

fn run_id_arg(args: &JsonObject) -> Result<&str, CallToolResponse> {
    args.get("run_id")
        .and_then(Value::as_str)
        .ok_or_else(|| refusal("`run_id` (a string) is required"))
}

impl WeftMcp {
    async fn start(
        &self,
        caller: &Caller,
        name: &str,
        args: JsonObject,
    ) -> Result<CallToolResponse, McpError> {
        let templates = candidates(&self.state, &caller.tenant)
            .await
            .map_err(|p| internal(p.detail))?;
        let Some(c) = templates.into_iter().find(|c| c.plan.name == name) else {
            return Err(McpError::invalid_params(
                format!("no tool `{name}`; tools/list names them"),
                None,
            ));
        };
        let inputs = match weft_core::inputs::resolve_inputs(&c.plan, &args) {
            Ok(inputs) => inputs,
            Err(problems) => return Ok(refusal(problems.join("; "))),
        };
        self.create(caller, c.plan, c.base_dir, inputs, Map::new())
            .await
    }

    async fn create(
        &self,
        caller: &Caller,
        plan: Arc<weft_core::Plan>,
        base_dir: Option<String>,
        inputs: Value,
        mut extra: Map<String, Value>,
    ) -> Result<CallToolResponse, McpError> {
        let run = match self
            .state
            .engine
            .create_run(NewRun {
                tenant: caller.tenant.clone(),
                plan: plan.clone(),
                inputs: inputs.clone(),
                idempotency_key: None,
                base_dir,
            })
            .await
        {
            Ok(run) => run,
            Err(weft_engine::Error::Store(e)) => return Err(internal(e)),
            Err(e) => return Ok(refusal(e.to_string())),
        };
        if let Err(p) =
            crate::api::audit::record(&self.state, caller, "run.created", "run", &run.id, "ok")
                .await
        {
            tracing::warn!(error = %p.detail, "Could not audit an MCP run.");
        }
        self.state.hub.wake();
        extra.insert("run_id".into(), json!(run.id));
        extra.insert("status".into(), json!(run.status.to_string()));
        extra.insert("template".into(), json!(plan.name));
        extra.insert("version".into(), json!(plan.version));
        extra.insert("inputs".into(), inputs);
        Ok(answer(Value::Object(extra)))
    }

    async fn ask(&self, caller: &Caller, args: &JsonObject) -> Result<CallToolResponse, McpError> {
        let Some(text) = args.get("text").and_then(Value::as_str).map(str::trim) else {
            return Ok(refusal("`text` (a sentence) is required"));
        };
        if text.is_empty() {
            return Ok(refusal("`text` is empty; say what you want in a sentence"));
        }
        let dry_run = args
            .get("dry_run")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (templates, decision) = match_sentence(&self.state, &caller.tenant, text)
            .await
            .map_err(|p| internal(p.detail))?;
        let (Some(idx), Some(inputs), true) = (
            decision.chosen,
            decision.resolved.clone(),
            decision.is_confident(),
        ) else {
            let mut body =
                serde_json::to_value(clarify(&templates, &decision)).map_err(internal)?;
            if let Value::Object(map) = &mut body {
                map.insert("status".into(), json!("clarify"));
            }
            return Ok(answer(body));
        };
        let c = &templates[idx];
        let mut extra = Map::new();
        extra.insert("matched".into(), json!(true));
        extra.insert("confidence".into(), json!(decision.answer.confidence));
        extra.insert("matcher".into(), json!(decision.matcher));
        extra.insert(
            "alternatives".into(),
            serde_json::to_value(&decision.answer.alternatives).map_err(internal)?,
        );
        if dry_run {
            extra.insert("status".into(), json!("matched"));
            extra.insert("dry_run".into(), json!(true));
            extra.insert("template".into(), json!(c.plan.name));
            extra.insert("version".into(), json!(c.plan.version));
            extra.insert("inputs".into(), inputs);
            return Ok(answer(Value::Object(extra)));
        }
        self.create(caller, c.plan.clone(), c.base_dir.clone(), inputs, extra)
            .await
    }

    async fn status(
        &self,
        caller: &Caller,
        args: &JsonObject,
    ) -> Result<CallToolResponse, McpError> {
        let run_id = match run_id_arg(args) {
            Ok(id) => id,
            Err(r) => return Ok(r),
        };
        let Some(run) = self
            .state
            .store
            .run(&caller.tenant, run_id)
            .await
            .map_err(internal)?
        else {
            return Ok(refusal(format!("no run `{run_id}`")));
        };
        let detail = crate::api::runs::detail(&self.state, &run)
            .await
            .map_err(|p| internal(p.detail))?;
        Ok(answer(serde_json::to_value(detail).map_err(internal)?))
    }

    async fn output(
        &self,
        caller: &Caller,
        args: &JsonObject,
    ) -> Result<CallToolResponse, McpError> {
        let run_id = match run_id_arg(args) {
            Ok(id) => id,
            Err(r) => return Ok(r),
        };
        let wait = args
            .get("wait_seconds")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(MAX_WAIT_SECONDS);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        loop {
            let Some(run) = self
                .state
                .store
                .run(&caller.tenant, run_id)
                .await
                .map_err(internal)?
            else {
                return Ok(refusal(format!("no run `{run_id}`")));
            };
            if run.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(answer(json!({
                    "run_id": run.id,
                    "status": run.status.to_string(),
                    "ended": run.status.is_terminal(),
                    "output": run.output,
                    "error": run.error,
                })));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `/mcp`: authenticates each request with a `/v1` API key (a missing or bad key is a 401
/// problem, as on `/v1`) and hands it to the streamable HTTP service.
pub(crate) fn router(
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> axum::Router<AppState> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let handler_state = state.clone();
    // Every request carries an API key, so a rebound `Host` gains an attacker nothing; and
    // `weft serve --listen` decides which addresses answer.
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    config.cancellation_token = shutdown;
    let service = StreamableHttpService::new(
        move || Ok(WeftMcp::http(handler_state.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::<AppState>::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
}

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use axum::extract::FromRequestParts as _;
    let (mut parts, body) = request.into_parts();
    match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => {
            parts.extensions.insert(caller);
            // rmcp reads the body itself and answers a body past the limit with a 500: read it
            // here (it is small, JSON-RPC) so that one is the 413 problem every route gives.
            let body = match axum::body::to_bytes(body, state.options.body_limit).await {
                Ok(bytes) => axum::body::Body::from(bytes),
                Err(_) => {
                    return crate::problem::Problem::new(
                        crate::problem::Kind::PayloadTooLarge,
                        format!(
                            "the request body is larger than {} bytes",
                            state.options.body_limit
                        ),
                    )
                    .into_response();
                }
            };
            next.run(Request::from_parts(parts, body)).await
        }
        Err(problem) => problem.into_response(),
    }
}
