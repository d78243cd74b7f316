//! Approvals, sub-workflows and actions through the API, with a worker running the runs: per
//! item decisions on a waiting run, problems for what cannot be decided, a child run whose
//! failure fails its parent, and an action started from a finished run, linked to it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_engine::WorkerOptions;
use weft_server::ServerOptions;

const YAML: &str = "application/yaml";
const JSON: &str = "application/json";

const GATE: &str = r#"
name: gate
version: 1
inputs:
  who: { type: array, default: [ann, bob] }
steps:
  - id: ask
    for_each: "{{ input.who }}"
    approval: { prompt: "Send to {{ item }}?" }
    continue_on_error: true
  - id: sent
    tool: transform
    with: { data: "{{ steps.ask.output }}", jq: "map(. != null)" }
actions:
  again:
    template: gate
    with: { who: ["{{ input.who[0] }}"] }
"#;

const CHILD: &str = r#"
name: child
version: 1
inputs:
  n: { type: integer }
steps:
  - id: check
    tool: transform
    with: { data: "{{ input.n }}", jq: "if . < 0 then error(\"negative input\") else . * 10 end" }
"#;

const PARENT: &str = r#"
name: parent
version: 1
inputs:
  n: { type: integer }
steps:
  - id: sub
    workflow: child
    with: { n: "{{ input.n }}" }
"#;

struct Worker(CancellationToken);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn worker(h: &Harness) -> Worker {
    let stop = CancellationToken::new();
    let w = h.engine.worker(WorkerOptions {
        poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    });
    tokio::spawn(w.run(stop.clone()));
    Worker(stop)
}

async fn register(h: &Harness, yaml: &str) {
    let r = call(
        h,
        "POST",
        "/v1/templates",
        Some(&h.key_a),
        Some((YAML, yaml)),
    )
    .await;
    assert!(r.status == 201 || r.status == 200, "{:?}", r.body);
}

/// Polls the run until its status is `want`.
async fn until(h: &Harness, run: &str, want: &str) -> Value {
    loop {
        let r = call(h, "GET", &format!("/v1/runs/{run}"), Some(&h.key_a), None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        if r.body["status"] == want {
            return r.body;
        }
        let status = r.body["status"].as_str().unwrap_or_default().to_string();
        assert!(
            !["succeeded", "failed", "cancelled"].contains(&status.as_str()),
            "run ended {status} while waiting for {want}: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn decide(h: &Harness, key: &str, run: &str, step: &str, body: Value) -> Reply {
    call(
        h,
        "POST",
        &format!("/v1/runs/{run}/approvals/{step}"),
        Some(key),
        Some((JSON, &body.to_string())),
    )
    .await
}

/// Starts follow-up `name` on `run` with an empty body.
async fn action(h: &Harness, key: &str, run: &str, name: &str) -> Reply {
    call(
        h,
        "POST",
        &format!("/v1/runs/{run}/actions/{name}"),
        Some(key),
        Some((JSON, "{}")),
    )
    .await
}

fn assert_problem(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["code"], code, "{:?}", r.body);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
}

#[tokio::test]
async fn each_item_is_approved_or_rejected_through_the_api_and_audited() {
    let h = harness(ServerOptions::default()).await;
    let _w = worker(&h);
    register(&h, GATE).await;
    let run = start_run(&h, &h.key_a, "gate", json!({})).await;
    let body = until(&h, &run, "waiting").await;
    let approvals = body["approvals"].as_array().expect("approvals");
    assert_eq!(approvals.len(), 2, "{body:?}");
    assert_eq!(approvals[1]["prompt"], "Send to bob?");
    let ask = body["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "ask");
    assert_eq!(ask.map(|s| s["status"].clone()), Some(json!("waiting")));

    // Problems first: another tenant sees no run, a bad decision names the field, a step
    // that is not an approval or an item that does not wait is a conflict.
    let r = decide(
        &h,
        &h.key_b,
        &run,
        "ask",
        json!({"decision": "approve", "item": 0}),
    )
    .await;
    assert_problem(&r, 404, "WEFT-E202");
    let r = decide(&h, &h.key_a, &run, "ask", json!({"decision": "maybe"})).await;
    assert_problem(&r, 422, "WEFT-E204");
    assert_eq!(r.body["errors"][0]["field"], "decision");
    let r = decide(&h, &h.key_a, &run, "nope", json!({"decision": "approve"})).await;
    assert_problem(&r, 404, "WEFT-E202");
    let r = decide(&h, &h.key_a, &run, "sent", json!({"decision": "approve"})).await;
    assert_problem(&r, 409, "WEFT-E260");
    let r = decide(&h, &h.key_a, &run, "ask", json!({"decision": "approve"})).await;
    assert_problem(&r, 409, "WEFT-E260");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("say which item")
    );

    let r = decide(
        &h,
        &h.key_a,
        &run,
        "ask",
        json!({"decision": "reject", "item": 1, "comment": "not bob"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["approved"], false);
    assert_eq!(r.body["item"], 1);
    let r = decide(
        &h,
        &h.key_a,
        &run,
        "ask",
        json!({"decision": "reject", "item": 1}),
    )
    .await;
    assert_problem(&r, 409, "WEFT-E260");
    // Still waiting for item 0.
    let body = until(&h, &run, "waiting").await;
    assert_eq!(body["approvals"].as_array().map(Vec::len), Some(1));
    let r = decide(
        &h,
        &h.key_a,
        &run,
        "ask",
        json!({"decision": "approve", "item": 0, "comment": "ok"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = until(&h, &run, "succeeded").await;
    assert_eq!(body["output"], json!([true, false]));
    let ask = body["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "ask")
        .cloned();
    let ask = ask.expect("ask step");
    assert_eq!(ask["output"][0]["approved"], true);
    assert_eq!(ask["output"][0]["comment"], "ok");
    assert!(
        ask["output"][0]["by"]
            .as_str()
            .unwrap_or_default()
            .starts_with("key_")
    );

    let r = call(&h, "GET", "/v1/audit", Some(&h.key_a), None).await;
    let actions: Vec<String> = r.body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        actions.contains(&"approval.rejected".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"approval.approved".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn an_action_starts_a_run_linked_to_its_parent() {
    let h = harness(ServerOptions::default()).await;
    let _w = worker(&h);
    register(&h, GATE).await;
    let run = start_run(&h, &h.key_a, "gate", json!({"who": ["cy"]})).await;
    until(&h, &run, "waiting").await;
    // Not yet: actions follow a run that succeeded.
    let r = action(&h, &h.key_a, &run, "again").await;
    assert_problem(&r, 409, "WEFT-E260");
    let r = decide(&h, &h.key_a, &run, "ask", json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = until(&h, &run, "succeeded").await;
    assert_eq!(body["actions"][0]["name"], "again");

    let r = action(&h, &h.key_a, &run, "nope").await;
    assert_problem(&r, 404, "WEFT-E202");
    let r = action(&h, &h.key_b, &run, "again").await;
    assert_problem(&r, 404, "WEFT-E202");
    let r = action(&h, &h.key_a, &run, "again").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let child = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(r.body["parent"]["run_id"], run.as_str());
    assert_eq!(r.body["parent"]["action"], "again");
    assert_eq!(r.body["inputs"]["who"], json!(["cy"]));
    let body = call(&h, "GET", &format!("/v1/runs/{run}"), Some(&h.key_a), None)
        .await
        .body;
    assert_eq!(body["children"][0]["id"], child.as_str());
    assert_eq!(body["children"][0]["action"], "again");
}

#[tokio::test]
async fn a_sub_workflow_returns_its_output_and_its_failure_fails_the_parent() {
    let h = harness(ServerOptions::default()).await;
    let _w = worker(&h);
    register(&h, CHILD).await;
    register(&h, PARENT).await;
    let ok = start_run(&h, &h.key_a, "parent", json!({"n": 4})).await;
    let body = until(&h, &ok, "succeeded").await;
    assert_eq!(body["output"], 40);
    let child = body["children"][0].clone();
    assert_eq!(child["template"], "child");
    assert_eq!(child["step"], "sub");
    let c = call(
        &h,
        "GET",
        &format!("/v1/runs/{}", child["id"].as_str().unwrap_or_default()),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(c.body["parent"]["run_id"], ok.as_str());
    assert_eq!(c.body["parent"]["step"], "sub");

    let bad = start_run(&h, &h.key_a, "parent", json!({"n": -1})).await;
    let body = until(&h, &bad, "failed").await;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("child run run_") && error.contains("negative input"),
        "{error}"
    );
    let child = body["children"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let c = call(
        &h,
        "GET",
        &format!("/v1/runs/{child}"),
        Some(&h.key_a),
        None,
    )
    .await;
    assert_eq!(c.body["status"], "failed");
}
