//! `llm.chat` against a stand-in provider served by this test. The stand-in is not OpenAI or
//! Anthropic: it speaks their wire formats (`/v1/chat/completions`, `/v1/messages`, usage
//! fields, error bodies, `Retry-After`) so the client's parsing, retries, structured-output
//! repair and secret handling are exercised without the network.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use weft_tools::llm::{Price, ProviderConfig, ProviderKind};
use weft_tools::{Context, Registry};

const SECRET: &str = "sk-test-very-secret-4242";

/// What the stand-in says next, in order; the last one repeats.
#[derive(Clone)]
enum Script {
    Text(&'static str),
    Status(u16, Option<&'static str>),
}

#[derive(Clone, Default)]
struct Standin {
    script: Arc<Mutex<Vec<Script>>>,
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

impl Standin {
    fn next(&self) -> Script {
        let mut script = self.script.lock().expect("lock");
        if script.len() > 1 {
            script.remove(0)
        } else {
            script[0].clone()
        }
    }
}

async fn openai(State(s): State<Standin>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    s.seen.lock().expect("lock").push((headers, body.clone()));
    match s.next() {
        Script::Text(text) => Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        }))
        .into_response(),
        Script::Status(code, retry_after) => error(code, retry_after, json!({
            "error": {"message": format!("stand-in error {code}"), "type": "rate_limit_error", "code": null}
        })),
    }
}

async fn anthropic(
    State(s): State<Standin>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    s.seen.lock().expect("lock").push((headers, body.clone()));
    match s.next() {
        Script::Text(text) => Json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 5}
        }))
        .into_response(),
        Script::Status(code, retry_after) => error(
            code,
            retry_after,
            json!({
                "type": "error", "error": {"type": "overloaded_error", "message": format!("stand-in error {code}")}
            }),
        ),
    }
}

fn error(code: u16, retry_after: Option<&str>, body: Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    if let Some(after) = retry_after
        && let Ok(value) = after.parse()
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

async fn standin(script: Vec<Script>) -> (String, Standin) {
    let state = Standin {
        script: Arc::new(Mutex::new(script)),
        ..Standin::default()
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), state)
}

fn provider(kind: ProviderKind, base_url: &str) -> ProviderConfig {
    ProviderConfig {
        kind,
        base_url: base_url.into(),
        model: "stand-in-model".into(),
        api_key_env: None,
        api_key: Some(SECRET.into()),
        default: false,
        timeout: Some("10s".into()),
        max_attempts: Some(3),
        default_max_tokens: None,
        prices: BTreeMap::from([(
            "stand-in-model".into(),
            Price {
                prompt: 1.0,
                completion: 2.0,
            },
        )]),
    }
}

fn chat(name: &str, config: ProviderConfig) -> Arc<dyn weft_tools::Tool> {
    let mut registry = Registry::new();
    weft_tools::llm::register(&mut registry, &BTreeMap::from([(name.to_string(), config)]))
        .expect("valid");
    registry.get("llm.chat").expect("registered")
}

#[tokio::test]
async fn openai_format_text_usage_cost_and_bearer_key() {
    let (url, standin) = standin(vec![Script::Text("Hello from the stand-in")]).await;
    let tool = chat("local", provider(ProviderKind::Openai, &url));
    let ctx = Context::for_test();
    let out = tool
        .call(
            json!({"prompt": "Say hello", "system": "Be brief", "temperature": 0.2}),
            &ctx,
        )
        .await
        .expect("answer");
    // What the engine records for the attempt is what the output says.
    let reported = ctx.usage.total();
    assert_eq!(
        (reported.llm_prompt_tokens, reported.llm_completion_tokens),
        (11, 7)
    );
    assert!((reported.cost_usd - (11.0 + 14.0) / 1e6).abs() < 1e-12);
    assert_eq!(out["content"], "Hello from the stand-in");
    assert_eq!(out["usage"]["prompt_tokens"], 11);
    assert_eq!(out["usage"]["completion_tokens"], 7);
    assert_eq!(out["usage"]["total_tokens"], 18);
    let cost = out["usage"]["cost_usd"].as_f64().expect("a cost");
    assert!((cost - (11.0 + 14.0) / 1e6).abs() < 1e-12, "{cost}");
    let seen = standin.seen.lock().expect("lock");
    let (headers, body) = &seen[0];
    assert_eq!(
        headers["authorization"],
        format!("Bearer {SECRET}").as_str()
    );
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief"})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "Say hello"})
    );
    assert!(!out.to_string().contains(SECRET));
}

#[tokio::test]
async fn anthropic_format_with_structured_output_and_one_repair() {
    let (url, standin) = standin(vec![
        Script::Text("Sure! {\"city\": \"Lyon\"}"),
        Script::Text("```json\n{\"city\": \"Lyon\", \"population\": 522250}\n```"),
    ])
    .await;
    let tool = chat("claude", provider(ProviderKind::Anthropic, &url));
    let schema = json!({"type": "object", "required": ["city", "population"],
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}}});
    let out = tool
        .call(
            json!({"prompt": "Biggest city near Lyon?", "schema": schema, "system": "Facts only."}),
            &Context::for_test(),
        )
        .await
        .expect("repaired");
    assert_eq!(
        out["content"],
        json!({"city": "Lyon", "population": 522250})
    );
    assert_eq!(out["exchanges"], 2);
    assert_eq!(out["usage"]["prompt_tokens"], 40);
    assert_eq!(out["usage"]["completion_tokens"], 10);
    let seen = standin.seen.lock().expect("lock");
    let (headers, first) = &seen[0];
    assert_eq!(headers["x-api-key"], SECRET);
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert!(
        first["system"]
            .as_str()
            .is_some_and(|s| s.contains("Facts only.") && s.contains("JSON Schema"))
    );
    assert_eq!(first["max_tokens"], 1024);
    assert!(
        first["messages"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["role"] != "system"))
    );
    let (_, second) = &seen[1];
    let turns = second["messages"].as_array().expect("turns");
    assert_eq!(turns.len(), 3, "{second}");
    assert_eq!(turns[1]["role"], "assistant");
}

#[tokio::test]
async fn a_reply_that_stays_invalid_fails_after_one_repair() {
    let (url, standin) = standin(vec![Script::Text("not json at all")]).await;
    let tool = chat("local", provider(ProviderKind::Openai, &url));
    let ctx = Context::for_test();
    let error = tool
        .call(json!({"prompt": "x", "schema": {"type": "object"}}), &ctx)
        .await
        .expect_err("still invalid");
    // A failed attempt still spent its two exchanges' tokens, and reports them.
    let reported = ctx.usage.total();
    assert_eq!(
        (reported.llm_prompt_tokens, reported.llm_completion_tokens),
        (22, 14)
    );
    assert!(
        error.to_string().contains("after a repair attempt"),
        "{error}"
    );
    assert_eq!(standin.seen.lock().expect("lock").len(), 2);
    let body = &standin.seen.lock().expect("lock")[0].1;
    assert_eq!(body["response_format"]["type"], "json_schema");
}

#[tokio::test]
async fn rate_limits_and_overload_are_retried_honouring_retry_after() {
    let (url, standin) = standin(vec![
        Script::Status(429, Some("1")),
        Script::Status(529, Some("0")),
        Script::Text("finally"),
    ])
    .await;
    let tool = chat("claude", provider(ProviderKind::Anthropic, &url));
    let started = std::time::Instant::now();
    let out = tool
        .call(json!({"prompt": "x"}), &Context::for_test())
        .await
        .expect("third time lucky");
    assert_eq!(out["content"], "finally");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(950),
        "waited Retry-After"
    );
    assert_eq!(standin.seen.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn errors_are_classified_and_never_show_the_key() {
    let (url, _) = standin(vec![Script::Status(503, Some("0"))]).await;
    let mut config = provider(ProviderKind::Openai, &url);
    config.max_attempts = Some(2);
    let tool = chat("local", config);
    let error = tool
        .call(json!({"prompt": "x"}), &Context::for_test())
        .await
        .expect_err("503");
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("stand-in error 503"), "{error}");
    assert!(!error.to_string().contains(SECRET));

    let (url, _) = standin(vec![Script::Status(401, None)]).await;
    let tool = chat("local", provider(ProviderKind::Openai, &url));
    let error = tool
        .call(json!({"prompt": "x"}), &Context::for_test())
        .await
        .expect_err("401");
    assert!(!error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("API key") && !error.to_string().contains(SECRET),
        "{error}"
    );

    let mut config = provider(ProviderKind::Openai, &url);
    config.api_key = None;
    config.api_key_env = Some("WEFT_TEST_SURELY_UNSET_KEY".into());
    let tool = chat("local", config);
    let error = tool
        .call(json!({"prompt": "x"}), &Context::for_test())
        .await
        .expect_err("no key");
    assert!(
        error.to_string().contains("WEFT_TEST_SURELY_UNSET_KEY"),
        "{error}"
    );
}
