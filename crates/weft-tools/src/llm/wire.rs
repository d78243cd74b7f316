//! The two wire formats `llm.chat` speaks, as our own serde types: OpenAI's
//! `/v1/chat/completions` (which many servers imitate) and Anthropic's `/v1/messages`.
//! Only the fields weft uses are modelled; unknown fields in replies are ignored.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One message of a conversation, provider-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// What one exchange returned, provider-neutral.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub text: String,
    pub model: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One request, provider-neutral.
pub struct Request<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    /// A JSON Schema the reply must match (structured output).
    pub schema: Option<&'a Value>,
}

// ---- OpenAI-compatible ----

#[derive(Deserialize)]
struct OpenAiReply {
    #[serde(default)]
    model: String,
    choices: Vec<OpenAiChoice>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    message: OpenAiMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

pub fn openai_body(request: &Request<'_>) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": request.messages,
    });
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = request.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(schema) = request.schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": false},
        });
    }
    body
}

pub fn openai_reply(body: &[u8]) -> Result<Reply, String> {
    let reply: OpenAiReply =
        serde_json::from_slice(body).map_err(|e| format!("unreadable reply: {e}"))?;
    let choice = reply
        .choices
        .into_iter()
        .next()
        .ok_or("the reply has no choices")?;
    let text = match (choice.message.content, choice.message.refusal) {
        (Some(text), _) => text,
        (None, Some(refusal)) => return Err(format!("the model refused: {refusal}")),
        (None, None) => String::new(),
    };
    let usage = reply.usage.unwrap_or(OpenAiUsage {
        prompt_tokens: 0,
        completion_tokens: 0,
    });
    Ok(Reply {
        text,
        model: reply.model,
        finish_reason: choice.finish_reason,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
    })
}

// ---- Anthropic Messages ----

#[derive(Deserialize)]
struct AnthropicReply {
    #[serde(default)]
    model: String,
    content: Vec<AnthropicBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// Anthropic takes the system prompt apart from the turns, and needs `max_tokens`. Structured
/// output is asked for in the system prompt; the reply is validated like any other.
pub fn anthropic_body(request: &Request<'_>, default_max_tokens: u64) -> Value {
    let mut system: Vec<String> = request
        .messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.clone())
        .collect();
    if let Some(schema) = request.schema {
        system.push(format!(
            "Reply with only a JSON value (no prose, no code fence) that matches this JSON Schema:\n{schema}"
        ));
    }
    let turns: Vec<&Message> = request
        .messages
        .iter()
        .filter(|m| m.role != "system")
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens.unwrap_or(default_max_tokens),
        "messages": turns,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    body
}

pub fn anthropic_reply(body: &[u8]) -> Result<Reply, String> {
    let reply: AnthropicReply =
        serde_json::from_slice(body).map_err(|e| format!("unreadable reply: {e}"))?;
    let text: Vec<String> = reply
        .content
        .into_iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text)
        .collect();
    let usage = reply.usage.unwrap_or(AnthropicUsage {
        input_tokens: 0,
        output_tokens: 0,
    });
    Ok(Reply {
        text: text.join(""),
        model: reply.model,
        finish_reason: reply.stop_reason,
        prompt_tokens: usage.input_tokens,
        completion_tokens: usage.output_tokens,
    })
}

/// The message in a provider's error body (`{"error": {"message": ...}}` for both formats),
/// or a cut of the body.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(message) = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
    {
        return message.to_string();
    }
    crate::builtin::excerpt(String::from_utf8_lossy(body).trim(), 300)
}
