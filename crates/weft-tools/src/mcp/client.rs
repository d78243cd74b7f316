//! The only file that knows `rmcp`. MCP's Rust SDK moves major versions fast, so the rest of
//! weft talks to a server through the small [`Connection`] trait here, in plain JSON.
//!
//! Progress notifications are routed by progress token: each call registers its token with the
//! connection's handler, which forwards the server's `notifications/progress` to the step's
//! [`Progress`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest,
    Implementation, ProgressNotificationParam, ProgressToken, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Map, Value};
use tokio::io::AsyncBufReadExt;

use crate::{Progress, ProgressUpdate};

/// Variables a stdio server inherits from weft's environment; the rest it gets from `env`.
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TZ",
    "NODE_PATH",
];
/// How long an HTTP server has to answer the liveness probe sent before each call.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// Lines of a server's stderr kept for the error message when it fails to start.
const STDERR_LINES: usize = 20;

/// How to reach one server.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

/// A tool as the server lists it.
#[derive(Debug, Clone)]
pub(crate) struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The connection is gone (server crashed, session dropped): reconnecting may help.
    Broken(String),
    /// The server answered with a JSON-RPC error (unknown tool, bad arguments).
    Server(String),
}

/// One live session with a server.
#[async_trait]
pub(crate) trait Connection: Send + Sync {
    async fn list_tools(&self) -> Result<Vec<ToolInfo>, CallError>;
    /// Calls a tool; the answer is the `CallToolResult` as JSON (`content`, `structuredContent`,
    /// `isError`).
    /// `meta` goes into the request's `_meta` (the task token, for servers that call back).
    async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        meta: Map<String, Value>,
        progress: Progress,
    ) -> Result<Value, CallError>;
    /// Whether the transport is known to be closed already.
    fn is_closed(&self) -> bool;
}

type Routes = Arc<Mutex<HashMap<ProgressToken, Progress>>>;

/// Receives the server's notifications.
struct Handler {
    routes: Routes,
    server: String,
}

impl rmcp::ClientHandler for Handler {
    fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        let target = self
            .routes
            .lock()
            .ok()
            .and_then(|routes| routes.get(&params.progress_token).cloned());
        if let Some(progress) = target {
            progress.report(ProgressUpdate {
                done: params.progress.max(0.0) as u64,
                total: params.total.map(|t| t.max(0.0) as u64),
                message: params.message,
            });
        }
        std::future::ready(())
    }

    fn get_info(&self) -> ClientConfig {
        let _ = &self.server;
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("weft", env!("CARGO_PKG_VERSION")),
        )
    }
}

struct Rmcp {
    service: RunningService<RoleClient, Handler>,
    routes: Routes,
    /// HTTP only. A restarted server answers an unknown session with an error that carries no
    /// request id, which the SDK cannot match to the call, so the call would wait forever; a
    /// short `tools/list` first turns that into a broken connection, and a reconnect.
    probe: bool,
}

/// Connects to a server and completes the MCP handshake.
pub(crate) async fn connect(
    server: &str,
    endpoint: &Endpoint,
) -> Result<Arc<dyn Connection>, String> {
    let routes: Routes = Arc::default();
    let handler = Handler {
        routes: routes.clone(),
        server: server.to_string(),
    };
    let service = match endpoint {
        Endpoint::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let view = crate::sandbox::View {
                cwd: cwd.clone(),
                visible: None,
            };
            let mut cmd = crate::process::command(command, args, None, &view);
            for name in KEPT_ENV {
                if let Some(value) = std::env::var_os(name) {
                    cmd.env(name, value);
                }
            }
            cmd.envs(env);
            let (transport, stderr) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start `{command}`: {e}"))?;
            let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
            if let Some(stderr) = stderr {
                let tail = tail.clone();
                let server = server.to_string();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(server = %server, "{line}");
                        if let Ok(mut tail) = tail.lock() {
                            if tail.len() == STDERR_LINES {
                                tail.pop_front();
                            }
                            tail.push_back(line);
                        }
                    }
                });
            }
            match handler.serve(transport).await {
                Ok(service) => service,
                Err(e) => {
                    // Give the reader a moment to collect the server's last words.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    let said = tail
                        .lock()
                        .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                        .unwrap_or_default();
                    let mut message = format!("`{command}` did not complete the handshake: {e}");
                    if !said.trim().is_empty() {
                        message.push_str("; its stderr: ");
                        message.push_str(said.trim());
                    }
                    return Err(message);
                }
            }
        }
        Endpoint::Http { url, headers } => {
            let mut custom = HashMap::new();
            for (name, value) in headers {
                let name = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("`{name}` is not a valid header name"))?;
                // The value may be a secret: never echo it.
                let value = http::HeaderValue::from_str(value)
                    .map_err(|_| format!("the value of header `{name}` is not valid"))?;
                custom.insert(name, value);
            }
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
            let transport = StreamableHttpClientTransport::from_config(config);
            handler
                .serve(transport)
                .await
                .map_err(|e| format!("cannot connect to {url}: {e}"))?
        }
    };
    let probe = matches!(endpoint, Endpoint::Http { .. });
    Ok(Arc::new(Rmcp {
        service,
        routes,
        probe,
    }))
}

fn classify(error: rmcp::ServiceError) -> CallError {
    match error {
        rmcp::ServiceError::McpError(e) => CallError::Server(e.message.to_string()),
        other => CallError::Broken(other.to_string()),
    }
}

#[async_trait]
impl Connection for Rmcp {
    async fn list_tools(&self) -> Result<Vec<ToolInfo>, CallError> {
        let tools = self.service.list_all_tools().await.map_err(classify)?;
        Ok(tools
            .into_iter()
            .map(|tool| ToolInfo {
                name: tool.name.to_string(),
                description: tool.description.map(|d| d.to_string()).unwrap_or_default(),
                input_schema: Value::Object((*tool.input_schema).clone()),
            })
            .collect())
    }

    async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        meta: Map<String, Value>,
        progress: Progress,
    ) -> Result<Value, CallError> {
        if self.probe {
            match tokio::time::timeout(PROBE_TIMEOUT, self.service.list_tools(None)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(CallError::Broken(e.to_string())),
                Err(_) => {
                    return Err(CallError::Broken(
                        "the server did not answer a liveness probe (session lost?)".into(),
                    ));
                }
            }
        }
        let mut params = CallToolRequestParams::new(name.to_string()).with_arguments(arguments);
        if !meta.is_empty() {
            let mut object = rmcp::model::RequestMetaObject::new();
            for (key, value) in meta {
                object.insert(key, value);
            }
            params.meta = Some(object);
        }
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let handle = self
            .service
            .peer()
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
            .map_err(classify)?;
        let token = handle.progress_token.clone();
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(token.clone(), progress);
        }
        let answer = handle.await_response().await;
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&token);
        }
        match answer.map_err(classify)? {
            ServerResult::CallToolResult(result) => serde_json::to_value(result)
                .map_err(|e| CallError::Server(format!("unreadable result: {e}"))),
            other => {
                let raw = serde_json::to_value(&other).unwrap_or(Value::Null);
                // An empty result is a success without content.
                if raw.is_object() && raw.as_object().is_some_and(|o| o.is_empty()) {
                    Ok(serde_json::json!({"content": []}))
                } else {
                    Err(CallError::Server(
                        "the server answered tools/call with another kind of result".into(),
                    ))
                }
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }
}
