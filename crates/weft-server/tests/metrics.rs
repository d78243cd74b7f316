//! What an operator reads on `/metrics` after real runs: a retried step and a cache hit show
//! up with the right counts, the queue gauges are back to zero, no run id leaks into a label,
//! and the text passes `promtool check metrics` when promtool is installed.
//!
//! Metrics are process-wide, so this file is its own test binary with a single test.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_engine::WorkerOptions;
use weft_server::ServerOptions;

/// The operator's metrics credential (`WEFT_METRICS_TOKEN` in `weft serve`).
const OPERATOR: &str = "operator-metrics-token";

/// Prometheus text -> series (name with labels, as written) -> value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(series: &BTreeMap<String, f64>, name: &str) -> f64 {
    *series
        .get(name)
        .unwrap_or_else(|| panic!("no series {name} in {series:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_retry_a_cache_hit_and_the_queue() {
    let h = harness(ServerOptions {
        workers: false,
        metrics_token: Some(OPERATOR.into()),
        ..ServerOptions::default()
    })
    .await;
    let key = h.key_a.clone();
    let yaml = std::fs::read_to_string(data("ops.yaml")).expect("ops.yaml");
    let r = call(
        &h,
        "POST",
        "/v1/templates",
        Some(&key),
        Some(("application/yaml", &yaml)),
    )
    .await;
    // Its steps start host processes, which a tenant may not register (WEFT-E015): the
    // operator's copy (the harness's shared templates) is the one that runs.
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(
        r.body["diagnostics"][0]["code"], "WEFT-E015",
        "{:?}",
        r.body
    );

    // A run waiting for a worker: the queue shows it.
    let first = start_run(&h, &key, "ops", json!({"token": "hunter2-secret"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = call(&h, "GET", "/metrics", Some(OPERATOR), None).await.body;
    let text = text.as_str().expect("text").to_string();
    let series = parse(&text);
    assert!(value(&series, "weft_queue_depth") >= 1.0, "{text}");
    assert!(
        value(&series, "weft_queue_oldest_task_age_seconds") >= 1.0,
        "{text}"
    );

    let stop = CancellationToken::new();
    let worker = h.engine.worker(WorkerOptions {
        poll: Duration::from_millis(20),
        ..WorkerOptions::default()
    });
    let worker = tokio::spawn(worker.run(stop.clone()));
    wait_for(&h, &key, &first).await;
    let second = start_run(&h, &key, "ops", json!({})).await;
    wait_for(&h, &key, &second).await;
    stop.cancel();
    let _ = worker.await;

    let text = call(&h, "GET", "/metrics", Some(OPERATOR), None).await.body;
    let text = text.as_str().expect("text").to_string();
    let series = parse(&text);
    let t = r#"template="ops""#;
    assert_eq!(
        value(&series, &format!("weft_runs_started_total{{{t}}}")),
        2.0
    );
    assert_eq!(
        value(
            &series,
            &format!(r#"weft_runs_finished_total{{{t},status="succeeded"}}"#)
        ),
        2.0
    );
    assert_eq!(
        value(
            &series,
            &format!(r#"weft_run_duration_seconds_count{{{t},status="succeeded"}}"#)
        ),
        2.0
    );
    assert_eq!(
        value(
            &series,
            r#"weft_task_retries_total{tool="command",reason="error"}"#
        ),
        2.0,
        "the flaky step failed once in each run"
    );
    assert_eq!(value(&series, "weft_cache_hits_total"), 1.0);
    assert_eq!(value(&series, "weft_cache_misses_total"), 1.0);
    assert_eq!(
        value(
            &series,
            &format!(r#"weft_steps_finished_total{{{t},step="flaky",status="succeeded"}}"#)
        ),
        2.0
    );
    assert_eq!(
        value(
            &series,
            &format!(r#"weft_step_duration_seconds_count{{{t},step="lookup",status="succeeded"}}"#)
        ),
        2.0
    );
    // The flaky step's attempts: 2 per run; the cached one: 1 in the first run only.
    assert_eq!(
        value(&series, r#"weft_task_claims_total{tool="command"}"#),
        5.0
    );
    // Every claimed attempt of a tool that can call back got its own credential.
    assert_eq!(value(&series, "weft_task_tokens_minted_total"), 5.0);
    assert!(!text.contains("weft_step_failures_total{"), "{text}");
    assert_eq!(value(&series, "weft_queue_depth"), 0.0);

    // Without the operator's credential: no series names a template or a step; a tenant's
    // key is not that credential.
    let public = call(&h, "GET", "/metrics", None, None).await;
    assert_eq!(public.status, 200);
    let public = public.body.as_str().expect("text").to_string();
    assert!(public.contains("weft_queue_depth"), "{public}");
    assert!(!public.contains("ops"), "{public}");
    assert!(!public.contains("flaky"), "{public}");
    let tenant = call(&h, "GET", "/metrics", Some(&key), None).await;
    assert_eq!(tenant.status, 401, "{:?}", tenant.body);
    assert_eq!(tenant.body["code"], "WEFT-E201", "{:?}", tenant.body);

    // A callback without a task token is refused and counted by its problem code.
    let refused = call(&h, "GET", "/v1/task/secrets/anything", None, None).await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    let text = call(&h, "GET", "/metrics", Some(OPERATOR), None).await.body;
    let text = text.as_str().expect("text").to_string();
    assert_eq!(
        value(
            &parse(&text),
            r#"weft_task_token_refusals_total{code="WEFT-E230"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value(&series, "weft_queue_oldest_task_age_seconds"), 0.0);
    assert_eq!(value(&series, "weft_tasks_in_flight"), 0.0);
    assert_eq!(
        value(&series, &format!(r#"weft_runs{{{t},status="succeeded"}}"#)),
        2.0
    );
    assert!(
        value(
            &series,
            r#"weft_store_operation_duration_seconds_count{operation="commit"}"#
        ) >= 4.0
    );
    assert!(
        text.contains("# TYPE weft_run_duration_seconds histogram"),
        "{text}"
    );
    for id in [&first, &second] {
        assert!(!text.contains(id.as_str()), "a run id in a label: {text}");
    }
    assert!(!text.contains("hunter2"), "an input in the metrics: {text}");

    promtool_check(&text);
}

async fn wait_for(h: &Harness, key: &str, run_id: &str) {
    for _ in 0..300 {
        let r = call(h, "GET", &format!("/v1/runs/{run_id}"), Some(key), None).await;
        match r.body["status"].as_str() {
            Some("succeeded") => return,
            Some("failed" | "cancelled") => panic!("run ended badly: {:?}", r.body),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("run {run_id} did not finish");
}

/// `promtool check metrics` (Debian package `prometheus`) lints names, units and help texts.
fn promtool_check(text: &str) {
    use std::io::Write as _;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        if std::env::var_os("WEFT_REQUIRE_SERVICES").is_some() {
            panic!("promtool is not installed (apt-get install prometheus)");
        }
        eprintln!("SKIPPED promtool check metrics: promtool is not installed");
        return;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
