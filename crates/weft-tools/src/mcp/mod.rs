//! `mcp.<server>.<tool>`: the tools of MCP servers declared in `weft.toml` (`[mcp.NAME]`).
//!
//! Each server is a lazily started [`ToolSource`]: nothing runs until a template that uses it is
//! validated or run (or `weft tools list` asks), so templates without MCP steps stay fast. A
//! stdio server that crashed is started again on the next call, and a call that meets a broken
//! connection (a dead process, a dropped HTTP session) reconnects once and retries.
//!
//! Results: `isError` fails the step with the server's text; `structuredContent` is the output
//! as JSON; a single text block is a string; anything else is the list of content blocks, with
//! images left as `{type: "image", data, mimeType}` for the `artifacts` hook to move out.

mod client;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::expand_env;
use crate::{Context, Error, Registry, Result, Tool, ToolSource};
use client::{CallError, Connection, Endpoint, ToolInfo};

/// One `[mcp.NAME]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Stdio: the program to start (e.g. `node_modules/.bin/mcp-server-everything`).
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for a stdio server; `${VAR}` takes VAR from weft's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP: the endpoint, e.g. `http://127.0.0.1:3001/mcp`.
    pub url: Option<String>,
    /// Headers sent on every HTTP request; `${VAR}` as in `env` (for tokens).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long starting and the handshake may take (default `30s`).
    pub startup_timeout: Option<String>,
}

/// Adds every configured server to the registry as a lazily started source. Returns each
/// configuration problem.
pub fn register(
    registry: &mut Registry,
    servers: &BTreeMap<String, McpServerConfig>,
) -> std::result::Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (name, config) in servers {
        match McpServer::new(name, config) {
            Ok(server) => registry.insert_source(server),
            Err(problem) => problems.push(format!("[mcp.{name}]: {problem}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A server: its endpoint, its live connection (if any) and its tool list once known.
pub struct McpServer {
    name: String,
    prefix: String,
    endpoint: Endpoint,
    startup_timeout: Duration,
    connection: tokio::sync::Mutex<Option<Arc<dyn Connection>>>,
    tools: RwLock<Option<BTreeMap<String, Arc<McpTool>>>>,
    this: Weak<McpServer>,
}

impl McpServer {
    pub fn new(name: &str, config: &McpServerConfig) -> std::result::Result<Arc<Self>, String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err("a server name uses only letters, digits, `_` and `-`".into());
        }
        let endpoint = match (&config.command, &config.url) {
            (Some(command), None) => Endpoint::Stdio {
                command: command.clone(),
                args: config.args.clone(),
                env: config
                    .env
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), expand_env(v)?)))
                    .collect::<std::result::Result<_, String>>()?,
                cwd: config.cwd.clone(),
            },
            (None, Some(url)) => {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(format!("`url` must be http(s), not {url:?}"));
                }
                Endpoint::Http {
                    url: url.clone(),
                    headers: config
                        .headers
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), expand_env(v)?)))
                        .collect::<std::result::Result<_, String>>()?,
                }
            }
            (Some(_), Some(_)) => {
                return Err("give `command` (stdio) or `url` (HTTP), not both".into());
            }
            (None, None) => return Err("give `command` (stdio) or `url` (HTTP)".into()),
        };
        let startup_timeout = match &config.startup_timeout {
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| format!("startup_timeout {text:?}: {e}"))?,
            None => Duration::from_secs(30),
        };
        Ok(Arc::new_cyclic(|this| McpServer {
            name: name.to_string(),
            prefix: format!("mcp.{name}."),
            endpoint,
            startup_timeout,
            connection: tokio::sync::Mutex::new(None),
            tools: RwLock::new(None),
            this: this.clone(),
        }))
    }

    /// The live connection, (re)started when there is none or it is closed.
    async fn connection(&self) -> Result<Arc<dyn Connection>> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        if slot.take().is_some() {
            tracing::warn!(server = %self.name, "MCP server connection closed; restarting it.");
        }
        let conn = tokio::time::timeout(
            self.startup_timeout,
            client::connect(&self.name, &self.endpoint),
        )
        .await
        .map_err(|_| {
            Error::Failed(format!(
                "mcp.{}: the server did not start within {:?}",
                self.name, self.startup_timeout
            ))
        })?
        .map_err(|e| Error::Failed(format!("mcp.{}: {e}", self.name)))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets `conn` if it is still the current connection, so the next call reconnects.
    async fn drop_connection(&self, conn: &Arc<dyn Connection>) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    fn tool_from(&self, info: ToolInfo) -> Option<Arc<McpTool>> {
        Some(Arc::new(McpTool {
            server: self.this.upgrade()?,
            full_name: format!("{}{}", self.prefix, info.name),
            remote: info.name,
            description: info.description,
            schema: Some(info.input_schema),
        }))
    }

    /// Calls a tool, reconnecting once when the connection turns out broken.
    async fn call_remote(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        ctx: &Context,
    ) -> Result<Value> {
        let mut last = String::new();
        // The task token travels in `_meta`, never in the arguments (which are recorded).
        let mut meta = Map::new();
        if let Some(token) = &ctx.task_token {
            meta.insert(
                "dev.weft/taskToken".into(),
                Value::String(token.secret().into()),
            );
            if let Some(url) = token.api_url() {
                meta.insert("dev.weft/apiUrl".into(), Value::String(url.into()));
            }
        }
        for attempt in 0..2 {
            let conn = self.connection().await?;
            let call = conn.call_tool(tool, arguments.clone(), meta.clone(), ctx.progress.clone());
            let answer = tokio::select! {
                answer = call => answer,
                () = ctx.cancel.cancelled() => return Err(Error::Cancelled),
            };
            match answer {
                Ok(result) => return Ok(result),
                Err(CallError::Server(message)) => {
                    return Err(Error::Permanent(format!(
                        "mcp.{}.{tool}: the server refused the call: {message}",
                        self.name
                    )));
                }
                Err(CallError::Broken(message)) => {
                    tracing::warn!(server = %self.name, attempt, %message, "MCP connection broke during a call; reconnecting.");
                    self.drop_connection(&conn).await;
                    last = message;
                }
            }
        }
        Err(Error::Failed(format!(
            "mcp.{}.{tool}: the connection broke twice: {last}",
            self.name
        )))
    }
}

#[async_trait]
impl ToolSource for McpServer {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn is_started(&self) -> bool {
        self.tools.read().map(|t| t.is_some()).unwrap_or(false)
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        let remote = name.strip_prefix(&self.prefix)?;
        if let Ok(tools) = self.tools.read()
            && let Some(tools) = tools.as_ref()
        {
            return tools.get(remote).map(|t| t.clone() as Arc<dyn Tool>);
        }
        // Not started yet: a proxy that starts the server on its first call.
        Some(Arc::new(McpTool {
            server: self.this.upgrade()?,
            full_name: name.to_string(),
            remote: remote.to_string(),
            description: String::new(),
            schema: None,
        }))
    }

    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        match self.tools.read() {
            Ok(tools) => tools
                .as_ref()
                .map(|t| t.values().map(|t| t.clone() as Arc<dyn Tool>).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    async fn start(&self) -> Result<()> {
        if self.is_started() {
            return Ok(());
        }
        let mut infos = None;
        for _ in 0..2 {
            let conn = self.connection().await?;
            match conn.list_tools().await {
                Ok(list) => {
                    infos = Some(list);
                    break;
                }
                Err(CallError::Broken(_)) => self.drop_connection(&conn).await,
                Err(CallError::Server(message)) => {
                    return Err(Error::Failed(format!(
                        "mcp.{}: tools/list failed: {message}",
                        self.name
                    )));
                }
            }
        }
        let infos = infos.ok_or_else(|| {
            Error::Failed(format!(
                "mcp.{}: the connection broke while listing tools",
                self.name
            ))
        })?;
        let tools: BTreeMap<String, Arc<McpTool>> = infos
            .into_iter()
            .filter_map(|info| Some((info.name.clone(), self.tool_from(info)?)))
            .collect();
        tracing::debug!(server = %self.name, n_tools = tools.len(), "MCP server started.");
        if let Ok(mut slot) = self.tools.write() {
            *slot = Some(tools);
        }
        Ok(())
    }
}

/// One tool of one server (or, before the server started, a proxy for a name).
pub struct McpTool {
    server: Arc<McpServer>,
    full_name: String,
    remote: String,
    description: String,
    schema: Option<Value>,
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.full_name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn input_schema(&self) -> Option<Value> {
        self.schema.clone()
    }

    fn starts_processes(&self) -> bool {
        matches!(self.server.endpoint, Endpoint::Stdio { .. })
    }

    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        let arguments = match input {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(Error::Input(format!(
                    "{}: `with:` must be an object of arguments, not {other}",
                    self.full_name
                )));
            }
        };
        if ctx.sandbox.is_some() && self.starts_processes() {
            // One stdio server serves every caller, so it cannot be confined for one; it is
            // refused rather than run with weft's rights.
            return Err(Error::Permanent(format!(
                "{}: a stdio MCP server cannot run confined yet, so it is not available to \
                 confined templates (a tenant's, or any under `[sandbox]`); an HTTP MCP server is",
                self.full_name
            )));
        }
        self.server.start().await?;
        let known = self
            .server
            .tools
            .read()
            .ok()
            .and_then(|t| t.as_ref().map(|t| t.keys().cloned().collect::<Vec<_>>()))
            .unwrap_or_default();
        if !known.contains(&self.remote) {
            return Err(Error::Permanent(format!(
                "mcp.{} has no tool `{}` (it has: {})",
                self.server.name,
                self.remote,
                known.join(", ")
            )));
        }
        let result = self
            .server
            .call_remote(&self.remote, arguments, ctx)
            .await?;
        convert_result(&self.full_name, result)
    }
}

/// Turns a `CallToolResult` into a step output (see the module docs).
pub fn convert_result(tool: &str, result: Value) -> Result<Value> {
    let content = result
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text: Vec<&str> = content
            .iter()
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect();
        let text = if text.is_empty() {
            "the tool reported an error without text".to_string()
        } else {
            text.join("\n")
        };
        return Err(Error::Permanent(format!(
            "{tool}: {}",
            crate::builtin::excerpt(&text, 4096)
        )));
    }
    if let Some(structured) = result.get("structuredContent")
        && !structured.is_null()
    {
        return Ok(structured.clone());
    }
    let mut items: Vec<Value> = content
        .into_iter()
        .map(|block| match block.get("type").and_then(Value::as_str) {
            Some("text") => block.get("text").cloned().unwrap_or(Value::Null),
            _ => block,
        })
        .collect();
    Ok(match items.len() {
        0 => Value::Null,
        1 => items.remove(0),
        _ => Value::Array(items),
    })
}
