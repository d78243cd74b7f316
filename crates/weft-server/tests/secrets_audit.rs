//! Tenant secrets through the API: stored only as ciphertext (the raw database file never
//! holds the value), never in an answer; and the audit trail of runs and secrets.

mod common;

use common::*;
use serde_json::json;
use weft_server::ServerOptions;

const CANARY: &str = "canary-7f3a9c-do-not-leak";

fn db_bytes(h: &Harness) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["weft.db", "weft.db-wal"] {
        if let Ok(bytes) = std::fs::read(h.dir.path().join(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn secret_values_are_sealed_at_rest_and_never_answered() {
    let h = harness(ServerOptions {
        workers: false,
        ..ServerOptions::default()
    })
    .await;
    let key = Some(h.key_a.as_str());
    let body = json!({"value": CANARY}).to_string();
    let r = call(
        &h,
        "PUT",
        "/v1/secrets/API_TOKEN",
        key,
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"name": "API_TOKEN", "created": true}));
    let r = call(
        &h,
        "PUT",
        "/v1/secrets/API_TOKEN",
        key,
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.body["created"], false);
    let mut answers = vec![r.body.to_string()];

    let r = call(&h, "GET", "/v1/secrets", key, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["secrets"][0]["name"], "API_TOKEN");
    answers.push(r.body.to_string());
    let r = call(&h, "GET", "/v1/audit", key, None).await;
    answers.push(r.body.to_string());
    let actions: Vec<_> = r.body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(actions, ["secret.set", "secret.set"]);
    assert!(
        r.body["records"][0]["actor"]
            .as_str()
            .unwrap_or_default()
            .starts_with("key_")
    );
    for answer in &answers {
        assert!(!answer.contains(CANARY), "{answer}");
    }

    // The store holds ciphertext only, and the database file never sees the value.
    let sealed = h
        .store
        .secret_ciphertext("alpha", "API_TOKEN")
        .await
        .expect("read")
        .expect("stored");
    assert!(!contains(&sealed, CANARY));
    assert!(!contains(&db_bytes(&h), CANARY));
    // A bad name and a body without a value are refused without echoing anything secret.
    let r = call(
        &h,
        "PUT",
        "/v1/secrets/1bad",
        key,
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(!r.body.to_string().contains(CANARY));
    let r = call(
        &h,
        "PUT",
        "/v1/secrets/X",
        key,
        Some(("application/json", "{}")),
    )
    .await;
    assert_eq!(r.status, 422);

    let r = call(&h, "DELETE", "/v1/secrets/API_TOKEN", key, None).await;
    assert_eq!(r.status, 204);
    let r = call(&h, "DELETE", "/v1/secrets/API_TOKEN", key, None).await;
    assert_eq!(r.status, 404);
    let r = call(&h, "GET", "/v1/secrets", key, None).await;
    assert_eq!(r.body["secrets"], json!([]));
}

#[tokio::test]
async fn runs_created_and_cancelled_through_the_api_are_audited() {
    let h = harness(ServerOptions {
        workers: false,
        ..ServerOptions::default()
    })
    .await;
    let key = Some(h.key_a.as_str());
    let run = start_run(&h, &h.key_a, "steps", json!({})).await;
    let r = call(&h, "POST", &format!("/v1/runs/{run}/cancel"), key, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = call(&h, "GET", &format!("/v1/audit?run={run}"), key, None).await;
    assert_eq!(r.status, 200);
    let records = r.body["records"].as_array().expect("records");
    let actions: Vec<_> = records.iter().map(|r| r["action"].clone()).collect();
    assert_eq!(actions, [json!("run.created"), json!("run.cancelled")]);
    assert_eq!(records[0]["object_id"], run.as_str());
    assert_eq!(records[0]["outcome"], "ok");
    let r = call(&h, "GET", "/v1/audit?since=2999-01-01T00:00:00Z", key, None).await;
    assert_eq!(r.body["records"], json!([]));
    let r = call(&h, "GET", "/v1/audit?since=yesterday", key, None).await;
    assert_eq!(r.status, 422);
}
