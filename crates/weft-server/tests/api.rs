//! The API in process (`tower::ServiceExt::oneshot`): auth, runs, idempotency, templates,
//! tickets, and field-precise problems.

mod common;

use common::*;
use serde_json::{Value, json};
use weft_server::ServerOptions;

fn assert_problem(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["code"], code, "{:?}", r.body);
    assert_eq!(r.body["status"], status);
    assert!(
        r.body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://"))
    );
    assert!(r.body["title"].is_string() && r.body["detail"].is_string());
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
}

fn field_of(r: &Reply) -> String {
    r.body["errors"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_problem_not_plain_text() {
    let h = harness(ServerOptions::default()).await;
    let r = call(&h, "GET", "/v1/runs/%FF%FE", Some(&h.key_a), None).await;
    assert_problem(&r, 400, "WEFT-E203");
    let r = call(&h, "GET", "/v1/runs?limit=many", Some(&h.key_a), None).await;
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{:?}",
        r.body
    );
}

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    let h = harness(ServerOptions::default()).await;
    let r = call(&h, "GET", "/v1/runs", None, None).await;
    assert_problem(&r, 401, "WEFT-E201");
    assert_eq!(
        r.headers.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let r = call(&h, "GET", "/v1/runs", Some("wft_ak_not-a-real-key"), None).await;
    assert_problem(&r, 401, "WEFT-E201");
    let r = call(&h, "GET", "/v1/runs", Some("something-else"), None).await;
    assert_problem(&r, 401, "WEFT-E201");
    // A revoked key stops working at once, and the problem never echoes the key.
    let keys = h.store.api_keys("alpha").await.unwrap();
    assert!(h.store.revoke_api_key("alpha", &keys[0].id).await.unwrap());
    let r = call(&h, "GET", "/v1/runs", Some(&h.key_a), None).await;
    assert_problem(&r, 401, "WEFT-E201");
    assert!(!r.body.to_string().contains(&h.key_a));
    // Keys are stored as hashes only.
    assert!(
        keys.iter()
            .all(|k| k.hash.len() == 64 && !k.hash.contains("wft_ak_"))
    );
    assert!(h.key_a.starts_with("wft_ak_") && h.key_a.len() == "wft_ak_".len() + 43);
}

#[tokio::test]
async fn a_run_is_created_listed_shown_and_paged() {
    let h = harness(ServerOptions::default()).await;
    let mut ids = Vec::new();
    for who in ["a", "b", "c"] {
        ids.push(start_run(&h, &h.key_a, "steps", json!({"who": who})).await);
    }
    let r = call(
        &h,
        "GET",
        &format!("/v1/runs/{}", ids[0]),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["template"], "steps");
    assert_eq!(r.body["inputs"]["who"], "a");
    let steps: Vec<_> = r.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(
        steps,
        vec![
            json!("first"),
            json!("second"),
            json!("third"),
            json!("report")
        ]
    );
    assert_eq!(r.body["steps"][1]["needs"], json!(["first"]));
    assert_eq!(
        r.body["links"]["events"],
        format!("/v1/runs/{}/events", ids[0])
    );

    let page1 = call(&h, "GET", "/v1/runs?limit=2", Some(&h.key_a), None).await;
    assert_eq!(page1.status, 200);
    let got: Vec<_> = page1.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(got, vec![json!(ids[2]), json!(ids[1])]);
    let cursor = page1.body["next_cursor"].as_str().unwrap();
    let page2 = call(
        &h,
        "GET",
        &format!("/v1/runs?limit=2&cursor={cursor}"),
        Some(&h.key_a),
        None,
    )
    .await;
    let got: Vec<_> = page2.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(got, vec![json!(ids[0])]);
    assert!(page2.body["next_cursor"].is_null());
    let filtered = call(
        &h,
        "GET",
        "/v1/runs?status=running&template=steps",
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(filtered.body["runs"].as_array().unwrap().len(), 3);
    let none = call(&h, "GET", "/v1/runs?template=fails", Some(&h.key_a), None).await;
    assert_eq!(none.body["runs"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_run_and_another_body_conflicts() {
    let h = harness(ServerOptions::default()).await;
    let post = |key: &'static str, body: serde_json::Value, api_key: String| {
        let h = &h;
        async move {
            let uri = "/v1/runs";
            let req = axum::http::Request::builder()
                .method("POST")
                .uri(uri)
                .header("authorization", format!("Bearer {api_key}"))
                .header("content-type", "application/json")
                .header("idempotency-key", key);
            let req = req.body(axum::body::Body::from(body.to_string())).unwrap();
            use http_body_util::BodyExt as _;
            use tower::ServiceExt as _;
            let res = h.server.router().oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        }
    };
    let body = json!({"template": "steps", "inputs": {"who": "x"}});
    let (s1, r1) = post("order-1", body.clone(), h.key_a.clone()).await;
    let (s2, r2) = post("order-1", body.clone(), h.key_a.clone()).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(r1["id"], r2["id"]);
    let (s3, r3) = post(
        "order-1",
        json!({"template": "steps", "inputs": {"who": "y"}}),
        h.key_a.clone(),
    )
    .await;
    assert_eq!(s3, 409, "{r3}");
    assert_eq!(r3["code"], "WEFT-E205");
    // Keys belong to a tenant: another tenant's same key is its own run.
    let (s4, r4) = post("order-1", body.clone(), h.key_b.clone()).await;
    assert_eq!(s4, 201);
    assert_ne!(r4["id"], r1["id"]);
    let runs = call(&h, "GET", "/v1/runs", Some(&h.key_a), None).await;
    assert_eq!(
        runs.body["runs"].as_array().unwrap().len(),
        1,
        "one run for two requests"
    );
}

#[tokio::test]
async fn bad_requests_are_problems_that_name_the_field() {
    let h = harness(ServerOptions {
        body_limit: 2048,
        ..ServerOptions::default()
    })
    .await;
    let key = Some(h.key_a.as_str());
    let json_ct = "application/json";
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some((json_ct, "{\"template\": ")),
    )
    .await;
    assert_problem(&r, 400, "WEFT-E203");
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some((json_ct, r#"{"template": "steps", "extra": 1}"#)),
    )
    .await;
    assert_problem(&r, 422, "WEFT-E204");
    assert_eq!(field_of(&r), "extra");
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some((json_ct, r#"{"template": 5}"#)),
    )
    .await;
    assert_problem(&r, 422, "WEFT-E204");
    assert_eq!(field_of(&r), "template");
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some((json_ct, r#"{"inputs": {}}"#)),
    )
    .await;
    assert_problem(&r, 422, "WEFT-E204");
    assert!(r.body["detail"].as_str().unwrap().contains("template"));
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some((
            json_ct,
            r#"{"template": "steps", "inputs": {"who": 3, "nope": 1}}"#,
        )),
    )
    .await;
    assert_problem(&r, 422, "WEFT-E204");
    let fields: Vec<_> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect();
    assert!(
        fields.contains(&"inputs.nope".to_string()) && fields.contains(&"inputs.who".to_string()),
        "{fields:?}"
    );
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some((json_ct, r#"{"template": "no-such"}"#)),
    )
    .await;
    assert_problem(&r, 404, "WEFT-E202");
    assert_eq!(field_of(&r), "template");
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some(("text/plain", r#"{"template": "steps"}"#)),
    )
    .await;
    assert_problem(&r, 415, "WEFT-E209");
    let big = format!(
        r#"{{"template": "steps", "inputs": {{"who": "{}"}}}}"#,
        "x".repeat(4096)
    );
    let r = call(&h, "POST", "/v1/runs", key, Some((json_ct, &big))).await;
    assert_problem(&r, 413, "WEFT-E208");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("status=bogus", "status"),
        ("cursor=!!", "cursor"),
        ("colour=red", "colour"),
    ] {
        let r = call(&h, "GET", &format!("/v1/runs?{query}"), key, None).await;
        assert_problem(&r, 422, "WEFT-E204");
        assert_eq!(field_of(&r), field, "{query}");
    }
    let r = call(&h, "GET", "/v1/nothing-here", key, None).await;
    assert_problem(&r, 404, "WEFT-E202");
    let r = call(&h, "DELETE", "/v1/runs", key, None).await;
    assert_problem(&r, 405, "WEFT-E211");
}

#[tokio::test]
async fn templates_are_registered_validated_versioned_and_run_by_version() {
    let h = harness(ServerOptions::default()).await;
    let key = Some(h.key_a.as_str());
    let yaml = "application/yaml";
    let broken = "name: broken\nversion: 1\nsteps:\n  - id: a\n    tool: no.such.tool\n  - id: b\n    tool: sleep\n    bogus: 1\n";
    let r = call(&h, "POST", "/v1/templates", key, Some((yaml, broken))).await;
    assert_problem(&r, 422, "WEFT-E206");
    let diags = r.body["diagnostics"].as_array().unwrap();
    assert!(diags.len() >= 2, "every problem at once: {diags:?}");
    assert!(diags.iter().all(|d| d["file"] == "<api>"
        && d["line"].as_u64().unwrap() > 1
        && d["col"].as_u64().unwrap() >= 1));
    assert!(diags.iter().any(|d| d["code"] == "WEFT-E011"), "{diags:?}");

    let v1 = "name: greet\nversion: 1\ninputs:\n  who: { type: string }\nsteps:\n  - id: hi\n    tool: transform\n    with: { data: \"{{ input.who }}\", jq: '\"hi \" + .' }\n";
    let r = call(&h, "POST", "/v1/templates", key, Some((yaml, v1))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["created"], true);
    let r = call(&h, "POST", "/v1/templates", key, Some((yaml, v1))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["created"], false);
    let changed = v1.replace("hi \"", "hello \"");
    let r = call(&h, "POST", "/v1/templates", key, Some((yaml, &changed))).await;
    assert_problem(&r, 409, "WEFT-E207");
    let v2 = changed.replace("version: 1", "version: 2");
    let r = call(&h, "POST", "/v1/templates", key, Some((yaml, &v2))).await;
    assert_eq!(r.status, 201);
    let r = call(
        &h,
        "POST",
        "/v1/templates",
        key,
        Some(("application/json", v1)),
    )
    .await;
    assert_problem(&r, 415, "WEFT-E209");

    let list = call(&h, "GET", "/v1/templates", key, None).await;
    let greet = list.body["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "greet")
        .cloned()
        .unwrap();
    assert_eq!(greet["versions"], json!(["1", "2"]));
    assert_eq!(greet["latest_version"], "2");
    let detail = call(&h, "GET", "/v1/templates/greet", key, None).await;
    assert_eq!(detail.body["versions"][0]["inputs"][0]["name"], "who");
    assert_eq!(detail.body["versions"][0]["inputs"][0]["required"], true);
    assert_eq!(detail.body["versions"][1]["source"], v2);

    let body = json!({"template": "greet", "version": "1", "inputs": {"who": "ann"}}).to_string();
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["version"], "1");
    let body = json!({"template": "greet", "inputs": {"who": "ann"}}).to_string();
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.body["version"], "2", "the newest version by default");
    let body = json!({"template": "greet", "version": "9", "inputs": {}}).to_string();
    let r = call(
        &h,
        "POST",
        "/v1/runs",
        key,
        Some(("application/json", &body)),
    )
    .await;
    assert_problem(&r, 404, "WEFT-E202");
}

#[tokio::test]
async fn cancel_resume_and_tickets() {
    let h = harness(ServerOptions::default()).await;
    let key = Some(h.key_a.as_str());
    let id = start_run(&h, &h.key_a, "steps", json!({"pause": "10s"})).await;
    let r = call(&h, "POST", &format!("/v1/runs/{id}/cancel"), key, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "cancelled");
    let r = call(&h, "POST", &format!("/v1/runs/{id}/resume"), key, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "running");

    let r = call(
        &h,
        "POST",
        &format!("/v1/runs/{id}/stream-tickets"),
        key,
        None,
    )
    .await;
    assert_eq!(r.status, 201);
    let ticket = r.body["ticket"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("wft_st_"));
    assert_eq!(
        r.body["events_url"],
        format!("/v1/runs/{id}/events?ticket={ticket}")
    );
    // A ticket is read-only: it is not an API key.
    let r = call(&h, "GET", "/v1/runs", Some(&ticket), None).await;
    assert_problem(&r, 401, "WEFT-E201");
    // Single use.
    let url = format!("/v1/runs/{id}/events?ticket={ticket}");
    let first = call_head(&h, &url).await;
    assert_eq!(first, 200);
    let second = call(&h, "GET", &url, None, None).await;
    assert_problem(&second, 401, "WEFT-E201");
}

/// The status of a streaming response, without waiting for its end.
async fn call_head(h: &Harness, uri: &str) -> u16 {
    use tower::ServiceExt as _;
    let req = axum::http::Request::builder()
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = h.server.router().oneshot(req).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    res.status().as_u16()
}

#[tokio::test]
async fn health_metrics_and_openapi_answer() {
    let h = harness(ServerOptions::default()).await;
    let r = call(&h, "GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    let r = call(&h, "GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    let text = r.body.as_str().unwrap();
    assert!(text.contains("weft_queue_depth"), "{text}");
    let r = call(&h, "GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["paths"]["/v1/runs/{id}/events"]["get"]["responses"]["200"]["content"]
            ["text/event-stream"]
            .is_object()
    );
    assert!(r.body["components"]["schemas"]["Problem"].is_object());
    // Every event kind, from the lifecycle, for the UI and the widget.
    let kinds = &r.body["components"]["schemas"]["EventKind"]["enum"];
    let listed: Vec<&str> = kinds
        .as_array()
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let all: Vec<&str> = weft_store::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(listed, all);
    assert!(listed.contains(&"run.resumed"), "{listed:?}");
    let r = call(&h, "GET", "/", None, None).await;
    assert!(r.body.as_str().unwrap().contains("<title>weft</title>"));
    let r = call(&h, "GET", "/weft-run.js", None, None).await;
    assert_eq!(r.status, 200);
}
