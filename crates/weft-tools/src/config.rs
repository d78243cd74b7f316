//! The parts of `weft.toml` that tools read: `[http]`, `[mcp.NAME]`, `[llm]`, `[skills]`,
//! `[artifacts]` and `[browser]`. The binary copies them out of its own `Config`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::artifacts::ArtifactsConfig;
use crate::browser::BrowserConfig;
use crate::llm::ProviderConfig;
use crate::mcp::McpServerConfig;
use crate::skills::SkillsConfig;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    pub http: HttpConfig,
    /// MCP servers by name: their tools become `mcp.NAME.TOOL`.
    pub mcp: BTreeMap<String, McpServerConfig>,
    pub artifacts: ArtifactsConfig,
    /// LLM providers by name, for `llm.chat`.
    pub llm: BTreeMap<String, ProviderConfig>,
    pub skills: SkillsConfig,
    pub browser: BrowserConfig,
    /// `[places]`: the provider behind `places.search`.
    pub places: crate::builtin::places::PlacesConfig,
}

/// Adds every configured tool besides the built-ins and memory: MCP servers (not started),
/// `llm.chat`, skills, `browser.screenshot`, and the artifacts hook. Returns every problem.
pub fn register_configured(
    registry: &mut crate::Registry,
    config: &ToolsConfig,
) -> Result<crate::artifacts::ArtifactStore, Vec<String>> {
    let mut problems = Vec::new();
    if let Err(more) = crate::mcp::register(registry, &config.mcp) {
        problems.extend(more);
    }
    if config.llm.is_empty() {
        registry.insert(std::sync::Arc::new(NoLlmProvider));
    } else if let Err(more) = crate::llm::register(registry, &config.llm) {
        problems.extend(more);
    }
    if let Err(more) = crate::skills::register(registry, &config.skills) {
        problems.extend(more);
    }
    if let Err(problem) = crate::browser::register(registry, &config.browser) {
        problems.push(problem);
    }
    match crate::builtin::places::Places::new(config.places.clone()) {
        Ok(places) => registry.insert(std::sync::Arc::new(places)),
        Err(problem) => problems.push(problem),
    }
    // Hooks last: they apply to tools whatever their source.
    let store = crate::artifacts::register(registry, &config.artifacts);
    match store {
        Ok(store) if problems.is_empty() => Ok(store),
        Ok(_) => Err(problems),
        Err(problem) => {
            problems.push(problem);
            Err(problems)
        }
    }
}

/// `llm.chat` when no `[llm.NAME]` is declared: templates that use it still load and
/// validate (a built-in may offer an LLM step that only runs when asked), and a call says
/// what to configure.
struct NoLlmProvider;

#[async_trait::async_trait]
impl crate::Tool for NoLlmProvider {
    fn name(&self) -> &str {
        "llm.chat"
    }

    fn description(&self) -> &str {
        "One chat completion from an LLM provider; none is configured (add an [llm.NAME] \
         table to weft.toml)."
    }

    async fn call(
        &self,
        _input: serde_json::Value,
        _ctx: &crate::Context,
    ) -> crate::Result<serde_json::Value> {
        Err(crate::Error::Permanent(
            "llm.chat: no LLM provider is configured; add an [llm.NAME] table to weft.toml \
             (kind, base_url, model, api_key_env)"
                .into(),
        ))
    }
}

/// Expands `${VAR}` from the environment, so secrets stay out of `weft.toml`. A missing
/// variable is an error that names it (never a value).
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in {:?}", excerpt_name(text)))?;
        let name = &after[..end];
        let value = std::env::var(name)
            .map_err(|_| format!("the environment variable `{name}` is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What may be shown of a configured value: the text before any `${`, which is not secret.
fn excerpt_name(text: &str) -> &str {
    text.split("${").next().unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Hosts (`name` or `name:port`) the `http` tool may reach even when they resolve to
    /// loopback, private or link-local addresses.
    pub allow: Vec<String>,
    /// Largest response body read, in bytes.
    pub max_response_bytes: u64,
    /// Whole-request time limit, in seconds.
    pub timeout_secs: u64,
    /// Most redirects followed (each re-checked against the guard).
    pub max_redirects: usize,
    /// Headers added to every request to a host (`name` or `name:port`), e.g. an API key:
    /// `[http.headers."api.search.brave.com"] X-Subscription-Token = "${BRAVE_API_KEY}"`.
    /// Values may use `${VAR}` (read at call time). They go only to that host (a redirect
    /// elsewhere drops them), win over a step's header of the same name, and are never part
    /// of a step's input or output.
    pub headers: BTreeMap<String, BTreeMap<String, String>>,
    /// Hosts (`name` or `name:port`) that get the task's token as `Authorization: Bearer`:
    /// weft itself, or a service that calls weft back for the task. No other host sees it.
    pub send_task_token: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allow: Vec::new(),
            max_response_bytes: 10 * 1024 * 1024,
            timeout_secs: 30,
            max_redirects: 5,
            headers: BTreeMap::new(),
            send_task_token: Vec::new(),
        }
    }
}
