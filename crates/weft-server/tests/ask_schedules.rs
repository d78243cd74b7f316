//! `POST /v1/ask` and `/v1/schedules` in process: a sentence to a dry run, to a run, to a
//! clarifying question; bad bodies are field-precise problems; schedules are added, listed
//! with their next fire time, paused, resumed and deleted. And the LLM matcher against a
//! stand-in provider served by this test (it speaks OpenAI's `/v1/chat/completions`; no real
//! model is reachable here): the model is shown every template's name, description and input
//! schema, asked for structured output, and its answer is checked against the registry before
//! anything runs.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use weft_engine::EngineOptions;
use weft_server::{Server, ServerOptions};
use weft_store::SqlStore;
use weft_store::server::AuthStore;
use weft_store::sqlite::Durability;
use weft_tools::llm::{ProviderConfig, ProviderKind};
use weft_tools::{Registry, ToolsConfig};

const GREET: &str = r#"name: greet
version: 1
description: Greets someone by name.
intent:
  examples: ["greet {who}", "say hello to {who}"]
inputs:
  who: { type: string, required: true, description: Who to greet }
  times: { type: integer, default: 1, description: How many times }
steps:
  - id: hello
    tool: transform
    with:
      data: { who: "{{ input.who }}" }
      jq: '"Hello, " + .who + "!"'
output: "{{ steps.hello.output }}"
"#;

async fn json_call(h: &Harness, method: &str, uri: &str, key: &str, body: Value) -> Reply {
    let text = body.to_string();
    call(h, method, uri, Some(key), Some(("application/json", &text))).await
}

async fn register_greet(h: &Harness) {
    let r = call(
        h,
        "POST",
        "/v1/templates",
        Some(&h.key_a),
        Some(("application/yaml", GREET)),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn ask_dry_run_run_and_clarify() {
    let h = harness(ServerOptions::default()).await;
    register_greet(&h).await;

    // A dry run: the template, its inputs (defaults filled), the confidence; nothing starts.
    let r = json_call(
        &h,
        "POST",
        "/v1/ask",
        &h.key_a,
        json!({"text": "please greet Ada", "dry_run": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "matched");
    assert_eq!(r.body["template"], "greet");
    assert_eq!(r.body["inputs"], json!({"who": "Ada", "times": 1}));
    assert_eq!(r.body["matcher"], "offline");
    assert!(r.body["confidence"].as_f64().unwrap() > 0.45);
    assert!(r.body["alternatives"].is_array());
    assert!(r.body["run_id"].is_null());
    let runs = call(&h, "GET", "/v1/runs", Some(&h.key_a), None).await;
    assert_eq!(runs.body["runs"], json!([]));

    // Not a dry run: the run starts and its id comes back.
    let r = json_call(
        &h,
        "POST",
        "/v1/ask",
        &h.key_a,
        json!({"text": "say hello to Grace"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let run_id = r.body["run_id"].as_str().expect("run id").to_string();
    assert_eq!(r.body["run"]["id"], run_id.as_str());
    let run = call(
        &h,
        "GET",
        &format!("/v1/runs/{run_id}"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(run.body["inputs"]["who"], "Grace");
    assert_eq!(run.body["output"], "Hello, Grace!");

    // A required input is missing (and the sentence is too short to be sure): a question,
    // the missing input and the candidates; no run.
    let r = json_call(&h, "POST", "/v1/ask", &h.key_a, json!({"text": "greet"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "clarify");
    assert_eq!(r.body["missing"], json!(["who"]));
    assert!(r.body["question"].as_str().unwrap().contains("greet"));
    assert_eq!(r.body["candidates"][0]["template"], "greet");

    // Nothing like any template: a question, never a guess.
    let r = json_call(
        &h,
        "POST",
        "/v1/ask",
        &h.key_a,
        json!({"text": "compute the orbital period of Jupiter"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "clarify", "{:?}", r.body);
    assert!(!r.body["candidates"].as_array().unwrap().is_empty());
    let runs = call(&h, "GET", "/v1/runs", Some(&h.key_a), None).await;
    assert_eq!(runs.body["runs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn ask_refuses_bad_bodies_with_field_problems() {
    let h = harness(ServerOptions::default()).await;
    let r = json_call(&h, "POST", "/v1/ask", &h.key_a, json!({})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "body");
    let r = json_call(&h, "POST", "/v1/ask", &h.key_a, json!({"text": "  "})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "text");
    let r = json_call(&h, "POST", "/v1/ask", &h.key_a, json!({"text": 5})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "text");
    let r = json_call(
        &h,
        "POST",
        "/v1/ask",
        &h.key_a,
        json!({"text": "hi", "extra": true}),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        &h,
        "POST",
        "/v1/ask",
        Some(&h.key_a),
        Some(("application/json", "{not json")),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = call(
        &h,
        "POST",
        "/v1/ask",
        Some(&h.key_a),
        Some(("text/plain", "greet Ada")),
    )
    .await;
    assert_eq!(r.status, 415);
    let r = call(&h, "POST", "/v1/ask", None, None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn schedules_are_added_listed_paused_resumed_and_deleted() {
    let h = harness(ServerOptions::default()).await;
    register_greet(&h).await;
    let r = json_call(
        &h,
        "POST",
        "/v1/schedules",
        &h.key_a,
        json!({"template": "greet", "inputs": {"who": "team"}, "cron": "0 6 * * MON",
               "timezone": "Europe/Berlin", "name": "monday-greeting"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(r.body["inputs"], json!({"who": "team", "times": 1}));
    assert_eq!(r.body["timezone"], "Europe/Berlin");
    assert_eq!(r.body["version"], "1");
    let next = r.body["next_fire_at"].as_str().expect("next fire time");
    // 06:00 in Berlin is 05:00 UTC in winter, 04:00 in summer.
    assert!(
        next.contains("T05:00:00") || next.contains("T04:00:00"),
        "{next}"
    );

    let r = call(&h, "GET", "/v1/schedules", Some(&h.key_a), None).await;
    assert_eq!(r.body["schedules"][0]["id"], id.as_str());
    assert_eq!(r.body["schedules"][0]["next_fire_at"], next);

    // The same name again is a conflict with a stable code.
    let r = json_call(
        &h,
        "POST",
        "/v1/schedules",
        &h.key_a,
        json!({"template": "greet", "inputs": {"who": "x"}, "cron": "* * * * *",
               "name": "monday-greeting"}),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["code"], "WEFT-E240");

    let r = call(
        &h,
        "POST",
        &format!("/v1/schedules/{id}/pause"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["paused"], true);
    assert!(r.body["next_fire_at"].is_null());
    let r = call(
        &h,
        "POST",
        &format!("/v1/schedules/{id}/resume"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(r.body["paused"], false);
    assert!(r.body["next_fire_at"].is_string());

    let r = call(
        &h,
        "DELETE",
        &format!("/v1/schedules/{id}"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = call(
        &h,
        "GET",
        &format!("/v1/schedules/{id}"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn schedules_refuse_bad_cron_zones_and_inputs() {
    let h = harness(ServerOptions::default()).await;
    register_greet(&h).await;
    for (body, field) in [
        (
            json!({"template": "greet", "inputs": {"who": "x"}, "cron": "every day"}),
            "cron",
        ),
        (
            json!({"template": "greet", "inputs": {"who": "x"}, "cron": "0 6 * * *",
                   "timezone": "Mars/Olympus"}),
            "timezone",
        ),
        (
            json!({"template": "greet", "inputs": {"who": "x"}, "cron": "0 6 * * *",
                   "name": "has spaces"}),
            "name",
        ),
        (json!({"template": "greet", "cron": "0 6 * * *"}), "inputs"),
        (json!({"cron": "0 6 * * *"}), "body"),
    ] {
        let r = json_call(&h, "POST", "/v1/schedules", &h.key_a, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["errors"][0]["field"], field, "{body}: {:?}", r.body);
    }
    let r = json_call(
        &h,
        "POST",
        "/v1/schedules",
        &h.key_a,
        json!({"template": "nope", "cron": "0 6 * * *"}),
    )
    .await;
    assert_eq!(r.status, 404);
}

/// The stand-in provider: replies with the scripted texts in turn (the last repeats) and
/// keeps what it was sent.
#[derive(Clone, Default)]
struct Standin {
    replies: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Vec<Value>>>,
}

async fn completions(State(s): State<Standin>, Json(body): Json<Value>) -> Json<Value> {
    s.seen.lock().expect("lock").push(body.clone());
    let text = {
        let mut replies = s.replies.lock().expect("lock");
        if replies.len() > 1 {
            replies.remove(0)
        } else {
            replies[0].clone()
        }
    };
    Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140}
    }))
}

/// A server whose `llm.chat` talks to the stand-in, with the LLM matcher on.
async fn llm_server(replies: Vec<&str>) -> (Server, String, Standin, tempfile::TempDir) {
    let standin = Standin {
        replies: Arc::new(Mutex::new(replies.into_iter().map(String::from).collect())),
        ..Standin::default()
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(standin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = ToolsConfig {
        llm: BTreeMap::from([(
            "standin".to_string(),
            ProviderConfig {
                kind: ProviderKind::Openai,
                base_url: format!("http://{addr}/v1"),
                model: "stand-in-model".into(),
                api_key_env: None,
                api_key: Some("sk-standin".into()),
                default: true,
                timeout: Some("10s".into()),
                max_attempts: Some(1),
                default_max_tokens: None,
                prices: BTreeMap::new(),
            },
        )]),
        ..ToolsConfig::default()
    };
    let mut tools = Registry::with_builtins(&config);
    weft_tools::llm::register(&mut tools, &config.llm).expect("llm.chat");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
            .await
            .expect("store"),
    );
    store.create_tenant("alpha").await.expect("tenant");
    let (_, key) = weft_server::auth::create_key(store.as_ref(), "alpha", "test")
        .await
        .expect("key");
    let engine = EngineOptions::new(store.clone(), Arc::new(tools));
    let options = ServerOptions {
        llm_matcher: true,
        workers: false,
        ..ServerOptions::default()
    };
    let server = Server::new(store, engine, options, Vec::new());
    (server, key, standin, dir)
}

async fn send(server: &Server, key: &str, uri: &str, content_type: &str, body: &str) -> Value {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type)
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    let res = server.router().oneshot(req).await.expect("response");
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("json")
}

async fn ask(server: &Server, key: &str, text: &str) -> Value {
    let body = json!({"text": text, "dry_run": true}).to_string();
    send(server, key, "/v1/ask", "application/json", &body).await
}

#[tokio::test]
async fn llm_matcher_chooses_with_structured_output_checked_against_the_registry() {
    let (server, key, standin, _dir) = llm_server(vec![
        // 1. A good answer for a sentence the offline matcher could not read.
        r#"{"template": "greet", "inputs": {"who": "Ada Lovelace", "times": 3}, "confidence": 0.93}"#,
        // 2. An input the template does not take: not trusted, the offline matcher decides.
        r#"{"template": "greet", "inputs": {"who": "Ada", "colour": "red"}, "confidence": 0.9}"#,
        // 3. A required input left out: a question.
        r#"{"template": "greet", "inputs": {}, "confidence": 0.8}"#,
        // 4. An input of the wrong type: not trusted.
        r#"{"template": "greet", "inputs": {"who": "Ada", "times": "many"}, "confidence": 0.9}"#,
    ])
    .await;
    let r = send(&server, &key, "/v1/templates", "application/yaml", GREET).await;
    assert_eq!(r["name"], "greet", "{r}");

    let a = ask(
        &server,
        &key,
        "could you send three warm greetings to Ada Lovelace",
    )
    .await;
    assert_eq!(a["status"], "matched", "{a}");
    assert_eq!(a["matcher"], "llm");
    assert_eq!(a["template"], "greet");
    assert_eq!(a["inputs"], json!({"who": "Ada Lovelace", "times": 3}));
    assert_eq!(a["confidence"], 0.93);

    // What the model was shown: every template's name, description and input schema, and a
    // JSON Schema for its answer whose template must be one of the registry's.
    {
        let seen = standin.seen.lock().expect("lock");
        let request = &seen[0];
        assert_eq!(request["model"], "stand-in-model");
        let schema = &request["response_format"]["json_schema"]["schema"];
        assert_eq!(schema["properties"]["template"]["enum"], json!(["greet"]));
        let system = request["messages"][0]["content"].as_str().expect("system");
        assert!(system.contains("Greets someone by name."), "{system}");
        assert!(system.contains("\"who\""), "{system}");
        assert!(system.contains("Who to greet"), "{system}");
        assert_eq!(
            request["messages"][1]["content"],
            "could you send three warm greetings to Ada Lovelace"
        );
    }

    let b = ask(&server, &key, "greet Ada").await;
    assert_eq!(b["matcher"], "offline", "{b}");
    assert_eq!(b["status"], "matched");
    assert_eq!(b["inputs"]["who"], "Ada");

    let c = ask(&server, &key, "greet someone").await;
    assert_eq!(c["status"], "clarify", "{c}");
    assert_eq!(c["matcher"], "llm");
    assert_eq!(c["missing"], json!(["who"]));

    let d = ask(&server, &key, "greet Ada").await;
    assert_eq!(d["matcher"], "offline", "{d}");
    assert_eq!(d["inputs"]["times"], 1);
}
