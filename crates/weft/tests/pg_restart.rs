//! PostgreSQL restarted in the middle of a run: the workers reconnect and every run finishes.
//!
//! Restarting the server disturbs every other test using it, so this one runs only when asked:
//! `WEFT_PG_RESTART_TEST=1 cargo test -p weft --test pg_restart` (it runs
//! `pg_ctlcluster $WEFT_PG_CLUSTER restart`, default `15 main`). Run it alone, last.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weft_store::SqlStore;
use weft_store::Store;
use weft_store::postgres::testing;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

const FAN_OUT: &str = r#"
name: restart
version: 1
inputs:
  items: { type: array }
steps:
  - id: work
    for_each: "{{ input.items }}"
    as: item
    concurrency: 8
    retry: { max_attempts: 20, backoff: { type: fixed, initial: 100ms } }
    tool: command
    with:
      argv: [sh, -c, 'sleep 0.05; cat']
      stdin: "{{ item }}"
output: "{{ steps.work.output | length }}"
"#;

fn spawn_worker(db: &str, dir: &std::path::Path, n: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("worker-{n}.log"))).expect("worker log");
    Command::new(WEFT)
        .args([
            "worker", "--db", db, "--lease", "2s", "--poll", "500ms", "-v",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start weft worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_finish_across_a_postgres_restart() {
    if std::env::var("WEFT_PG_RESTART_TEST").as_deref() != Ok("1") {
        eprintln!("SKIPPED: set WEFT_PG_RESTART_TEST=1 to restart PostgreSQL mid-run");
        return;
    }
    let Some(server) = testing::server_url().await else {
        return;
    };
    let (name, url) = testing::create_database(&server)
        .await
        .expect("create a database");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("restart.yaml"), FAN_OUT).expect("write template");
    let items: Vec<u32> = (0..300).collect();
    std::fs::write(
        d.join("in.json"),
        serde_json::json!({ "items": items }).to_string(),
    )
    .expect("write inputs");
    let mut workers: Vec<Child> = (0..2).map(|n| spawn_worker(&url, d, n)).collect();
    let mut run_ids = Vec::new();
    for _ in 0..3 {
        let out = Command::new(WEFT)
            .args([
                "run",
                "restart.yaml",
                "--detach",
                "--input-file",
                "in.json",
                "--db",
                &url,
            ])
            .current_dir(d)
            .output()
            .expect("weft run --detach");
        assert!(out.status.success());
        run_ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let cluster = std::env::var("WEFT_PG_CLUSTER").unwrap_or_else(|_| "15 main".into());
    let mut restart = Command::new("pg_ctlcluster");
    restart.args(cluster.split_whitespace()).arg("restart");
    assert!(
        restart.status().expect("run pg_ctlcluster").success(),
        "restart PostgreSQL"
    );

    for run_id in &run_ids {
        let out = tokio::time::timeout(
            Duration::from_secs(180),
            tokio::process::Command::new(WEFT)
                .args(["runs", "wait", run_id, "--json", "--db", &url])
                .current_dir(d)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the run ends")
        .expect("weft runs wait");
        let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(out.status.code(), Some(0), "run {run_id} succeeded: {view}");
        assert_eq!(view["output"], 300, "run {run_id} has every result");
    }
    for w in &workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in workers.iter_mut() {
        let _ = w.wait();
    }
    let store = SqlStore::postgres(&url).await.expect("open");
    for run_id in &run_ids {
        let tasks = store.tasks(run_id).await.expect("tasks");
        assert_eq!(tasks.len(), 300);
    }
    store.close().await;
    testing::drop_database(&server, &name).await.expect("drop");
}
