//! `llm.chat`: one chat completion from a provider declared in `weft.toml` (`[llm.NAME]`),
//! speaking either the OpenAI-compatible or the Anthropic wire format.
//!
//! With a `schema`, the reply must be JSON matching it: it is validated, and a reply that does
//! not match gets one repair attempt (the model is shown its reply and the errors). Token usage
//! of every exchange is summed into the output's `usage`, with a cost when the provider has a
//! price, and reported to the engine through `Context::usage` as each exchange ends (so the
//! run's metering and budget see it even when the attempt fails). 429 and 5xx are retried
//! here a few times, waiting what `Retry-After` says (capped), then reported as transient so
//! the step's retry policy takes over.
//!
//! API keys come from the environment at call time and never appear in outputs, errors or logs.

mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use wire::Message;
use wire::{Reply, Request};

use crate::builtin::parse_input;
use crate::config::expand_env;
use crate::{Context, Error, Registry, Result, Tool};

/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// `POST {base_url}/chat/completions`, bearer key.
    Openai,
    /// `POST {base_url}/messages`, `x-api-key` and `anthropic-version`.
    Anthropic,
}

/// One `[llm.NAME]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// E.g. `https://api.openai.com/v1` or `https://api.anthropic.com/v1`.
    pub base_url: String,
    /// The model used when a step names none.
    pub model: String,
    /// The environment variable holding the API key (read at call time).
    pub api_key_env: Option<String>,
    /// Or the key itself, best as `${VAR}`.
    pub api_key: Option<String>,
    /// Used when a step asks for no provider and several are declared.
    #[serde(default)]
    pub default: bool,
    /// Whole-request limit (default `120s`).
    pub timeout: Option<String>,
    /// Attempts inside one step attempt for 429/5xx (default 3).
    pub max_attempts: Option<u32>,
    /// Anthropic needs `max_tokens`; this is used when a step gives none (default 1024).
    pub default_max_tokens: Option<u64>,
    /// US dollars per million tokens, by model, for the `usage.cost_usd` estimate.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt: f64,
    pub completion: f64,
}

impl Price {
    /// US dollars for this many tokens (prices are per million).
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.prompt + completion_tokens as f64 * self.completion) / 1e6
    }
}

/// The price of the model asked for, else of the model that answered.
fn price_of<'a>(provider: &'a ProviderConfig, asked: &str, answered: &str) -> Option<&'a Price> {
    provider
        .prices
        .get(asked)
        .or_else(|| provider.prices.get(answered))
}

/// Adds `llm.chat` when at least one provider is declared.
pub fn register(
    registry: &mut Registry,
    providers: &BTreeMap<String, ProviderConfig>,
) -> std::result::Result<(), Vec<String>> {
    if providers.is_empty() {
        return Ok(());
    }
    let mut problems = Vec::new();
    let defaults: Vec<&String> = providers
        .iter()
        .filter(|(_, p)| p.default)
        .map(|(n, _)| n)
        .collect();
    if defaults.len() > 1 {
        problems.push(format!(
            "[llm]: only one provider may be `default = true` (found {defaults:?})"
        ));
    }
    for (name, p) in providers {
        if !p.base_url.starts_with("http://") && !p.base_url.starts_with("https://") {
            problems.push(format!("[llm.{name}]: base_url must be http(s)"));
        }
        if let Some(t) = &p.timeout
            && humantime::parse_duration(t).is_err()
        {
            problems.push(format!("[llm.{name}]: timeout {t:?} is not a duration"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    registry.insert(Arc::new(Chat {
        providers: providers.clone(),
        client: std::sync::OnceLock::new(),
    }));
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u64>,
}

struct Chat {
    providers: BTreeMap<String, ProviderConfig>,
    /// Built on first call: loading TLS roots is not free, and most runs never chat.
    client: std::sync::OnceLock<std::result::Result<reqwest::Client, String>>,
}

impl Chat {
    fn provider(&self, asked: Option<&str>) -> Result<(&str, &ProviderConfig)> {
        if let Some(name) = asked {
            return self
                .providers
                .get_key_value(name)
                .map(|(n, p)| (n.as_str(), p))
                .ok_or_else(|| {
                    Error::Input(format!(
                        "llm.chat: no provider `{name}` (declared: {})",
                        self.providers
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                });
        }
        if let Some((n, p)) = self.providers.iter().find(|(_, p)| p.default) {
            return Ok((n, p));
        }
        if self.providers.len() == 1
            && let Some((n, p)) = self.providers.iter().next()
        {
            return Ok((n, p));
        }
        Err(Error::Input(
            "llm.chat: several providers are declared and none is `default = true`: name one with `provider:`".into(),
        ))
    }

    /// One exchange, retrying 429/5xx within the provider's attempt budget.
    async fn exchange(
        &self,
        name: &str,
        provider: &ProviderConfig,
        request: &Request<'_>,
        ctx: &Context,
    ) -> Result<Reply> {
        let key = api_key(name, provider)?;
        let base = provider.base_url.trim_end_matches('/');
        let timeout = provider
            .timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(Duration::from_secs(120));
        let (url, body) = match provider.kind {
            ProviderKind::Openai => (
                format!("{base}/chat/completions"),
                wire::openai_body(request),
            ),
            ProviderKind::Anthropic => (
                format!("{base}/messages"),
                wire::anthropic_body(request, provider.default_max_tokens.unwrap_or(1024)),
            ),
        };
        let attempts = provider.max_attempts.unwrap_or(3).max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = self
                .client
                .get_or_init(|| {
                    reqwest::Client::builder()
                        .build()
                        .map_err(|e| e.to_string())
                })
                .as_ref()
                .map_err(|e| {
                    Error::Permanent(format!("llm.chat: cannot build an HTTP client: {e}"))
                })?;
            let mut builder = client.post(&url).timeout(timeout).json(&body);
            builder = match (provider.kind, &key) {
                (ProviderKind::Openai, Some(key)) => builder.bearer_auth(key),
                (ProviderKind::Anthropic, Some(key)) => builder.header("x-api-key", key),
                (_, None) => builder,
            };
            if provider.kind == ProviderKind::Anthropic {
                builder = builder.header("anthropic-version", "2023-06-01");
            }
            let sent = tokio::select! {
                sent = builder.send() => sent,
                () = ctx.cancel.cancelled() => return Err(Error::Cancelled),
            };
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    // reqwest's message names the URL, never the headers.
                    let message = format!("llm.chat: {name}: request failed: {}", e.without_url());
                    if attempt < attempts {
                        sleep(Duration::from_millis(500 * u64::from(attempt)), ctx).await?;
                        continue;
                    }
                    return Err(Error::Failed(message));
                }
            };
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|s| Duration::from_secs_f64(s.max(0.0)).min(MAX_RETRY_AFTER));
            let bytes = response.bytes().await.map_err(|e| {
                Error::Failed(format!(
                    "llm.chat: {name}: reading the reply: {}",
                    e.without_url()
                ))
            })?;
            if status.is_success() {
                let parsed = match provider.kind {
                    ProviderKind::Openai => wire::openai_reply(&bytes),
                    ProviderKind::Anthropic => wire::anthropic_reply(&bytes),
                };
                return parsed.map_err(|e| Error::Permanent(format!("llm.chat: {name}: {e}")));
            }
            let message = format!(
                "llm.chat: {name} answered {}: {}",
                status.as_u16(),
                wire::error_message(&bytes)
            );
            let transient = status.as_u16() == 429 || status.is_server_error();
            if !transient {
                let hint = match status.as_u16() {
                    401 | 403 => " (check the provider's API key)",
                    _ => "",
                };
                return Err(Error::Permanent(format!("{message}{hint}")));
            }
            if attempt >= attempts {
                return Err(Error::Failed(message));
            }
            let wait = retry_after.unwrap_or(Duration::from_millis(500 * u64::from(attempt)));
            tracing::warn!(provider = %name, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "LLM provider asked to retry.");
            sleep(wait, ctx).await?;
        }
    }
}

async fn sleep(wait: Duration, ctx: &Context) -> Result<()> {
    tokio::select! {
        () = tokio::time::sleep(wait) => Ok(()),
        () = ctx.cancel.cancelled() => Err(Error::Cancelled),
    }
}

fn api_key(name: &str, provider: &ProviderConfig) -> Result<Option<String>> {
    if let Some(var) = &provider.api_key_env {
        return std::env::var(var).map(Some).map_err(|_| {
            Error::Permanent(format!(
                "llm.chat: {name}: the environment variable `{var}` (api_key_env) is not set"
            ))
        });
    }
    match &provider.api_key {
        Some(raw) => expand_env(raw)
            .map(Some)
            .map_err(|e| Error::Permanent(format!("llm.chat: {name}: api_key: {e}"))),
        None => Ok(None),
    }
}

/// The JSON in a reply: the whole text, or the inside of a ```json fence.
fn parse_json(text: &str) -> std::result::Result<Value, String> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .unwrap_or(trimmed);
    serde_json::from_str(inner.trim()).map_err(|e| format!("the reply is not JSON ({e})"))
}

fn check_schema(
    validator: &jsonschema::Validator,
    text: &str,
) -> std::result::Result<Value, String> {
    let value = parse_json(text)?;
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .take(5)
        .map(|e| format!("{} at `{}`", e, e.instance_path))
        .collect();
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors.join("; "))
    }
}

#[async_trait]
impl Tool for Chat {
    fn name(&self) -> &str {
        "llm.chat"
    }

    fn description(&self) -> &str {
        "One chat completion. Give `prompt` (and optionally `system`) or `messages`; with \
         `schema` the reply is JSON validated against it (one repair attempt). Output: \
         {content, model, provider, finish_reason, usage: {prompt_tokens, completion_tokens, \
         total_tokens, cost_usd}}."
    }

    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "provider": {"type": "string", "enum": self.providers.keys().collect::<Vec<_>>()},
                "model": {"type": "string"},
                "prompt": {"type": "string"},
                "system": {"type": "string"},
                "messages": {"type": "array", "items": {
                    "type": "object", "required": ["role", "content"], "additionalProperties": false,
                    "properties": {"role": {"enum": ["system", "user", "assistant"]}, "content": {"type": "string"}}
                }},
                "schema": {"type": "object", "description": "A JSON Schema for structured output."},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "max_tokens": {"type": "integer", "minimum": 1}
            }
        }))
    }

    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        let input: Input = parse_input("llm.chat", &input)?;
        let (name, provider) = self.provider(input.provider.as_deref())?;
        let model = input
            .model
            .clone()
            .unwrap_or_else(|| provider.model.clone());
        let mut messages = Vec::new();
        if let Some(system) = input.system {
            messages.push(Message {
                role: "system".into(),
                content: system,
            });
        }
        messages.extend(input.messages);
        if let Some(prompt) = input.prompt {
            messages.push(Message {
                role: "user".into(),
                content: prompt,
            });
        }
        if !messages.iter().any(|m| m.role == "user") {
            return Err(Error::Input(
                "llm.chat: give `prompt` or at least one `user` message".into(),
            ));
        }
        let validator = match &input.schema {
            Some(schema) => Some(jsonschema::validator_for(schema).map_err(|e| {
                Error::Input(format!(
                    "llm.chat: `schema` is not a valid JSON Schema: {e}"
                ))
            })?),
            None => None,
        };

        let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
        let mut exchanges = 0;
        let (content, reply) = loop {
            exchanges += 1;
            let request = Request {
                model: &model,
                messages: &messages,
                temperature: input.temperature,
                max_tokens: input.max_tokens,
                schema: input.schema.as_ref(),
            };
            let reply = self.exchange(name, provider, &request, ctx).await?;
            prompt_tokens += reply.prompt_tokens;
            completion_tokens += reply.completion_tokens;
            // Reported per exchange, so a reply that fails its schema still counts.
            ctx.usage.add_llm(
                reply.prompt_tokens,
                reply.completion_tokens,
                price_of(provider, &model, &reply.model)
                    .map(|p| p.cost(reply.prompt_tokens, reply.completion_tokens)),
            );
            let Some(validator) = &validator else {
                break (Value::String(reply.text.clone()), reply);
            };
            match check_schema(validator, &reply.text) {
                Ok(value) => break (value, reply),
                Err(problems) if exchanges == 1 => {
                    messages.push(Message {
                        role: "assistant".into(),
                        content: reply.text.clone(),
                    });
                    messages.push(Message {
                        role: "user".into(),
                        content: format!(
                            "That reply does not match the required JSON Schema: {problems}. \
                             Reply again with only the corrected JSON."
                        ),
                    });
                }
                Err(problems) => {
                    return Err(Error::Failed(format!(
                        "llm.chat: the reply did not match the schema after a repair attempt: {problems}"
                    )));
                }
            }
        };
        let cost = price_of(provider, &model, &reply.model)
            .map(|p| p.cost(prompt_tokens, completion_tokens));
        Ok(json!({
            "content": content,
            "model": if reply.model.is_empty() { model } else { reply.model },
            "provider": name,
            "finish_reason": reply.finish_reason,
            "exchanges": exchanges,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "cost_usd": cost,
            },
        }))
    }
}
