//! Per-tenant and global caps on running tasks, held across real `weft worker` processes on
//! one PostgreSQL database. The tool itself counts how many calls overlap (a file per running
//! call in a shared folder), so the check is what a user would measure, not what the store
//! says about itself.
//!
//! Each test uses a fresh database `weft_test_<random>`. Without a reachable server
//! (`WEFT_TEST_PG`) they skip with a message, unless `WEFT_REQUIRE_SERVICES=1`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use weft_store::postgres::testing;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// Two fan-outs in one run, each allowed more than the tenant's cap on its own, so only the
/// tenant (or global) cap can hold the total down.
const FAN_OUTS: &str = r#"
name: two-fanouts
version: 1
inputs:
  items: { type: array }
steps:
  - id: left
    for_each: "{{ input.items }}"
    as: item
    concurrency: 8
    tool: command
    with: { argv: [sh, tool.sh], stdin: "{{ item }}" }
  - id: right
    for_each: "{{ input.items }}"
    as: item
    concurrency: 8
    tool: command
    with: { argv: [sh, tool.sh], stdin: "{{ item }}" }
output: "{{ (steps.left.output | length) + (steps.right.output | length) }}"
"#;

/// Notes how many calls are running (its own included) when it starts.
const OVERLAP_TOOL: &str = r#"
mkdir -p active
touch "active/$$"
echo "$(ls active | wc -l)" >> overlap.log
sleep 0.1
rm -f "active/$$"
cat
"#;

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(WEFT);
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG");
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run weft");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn spawn_worker(db: &str, dir: &Path, n: usize, extra: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(format!("worker-{n}.log"))).expect("worker log");
    weft(dir)
        .args(["worker", "--db", db, "--lease", "5s", "--poll", "100ms"])
        .args(["--concurrency", "6"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start weft worker")
}

fn stop(workers: &mut [Child]) {
    for w in workers.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in workers.iter_mut() {
        let _ = w.wait();
    }
}

/// Runs the two fan-outs to the end on three workers; returns the most calls seen at once.
async fn run_with_workers(db: &str, dir: &Path, worker_args: &[&str]) -> u64 {
    let _ = std::fs::remove_file(dir.join("overlap.log"));
    let mut workers: Vec<Child> = (0..3)
        .map(|n| spawn_worker(db, dir, n, worker_args))
        .collect();
    let run_id = run_ok(weft(dir).args([
        "run",
        "fanouts.yaml",
        "--detach",
        "--db",
        db,
        "--input-file",
        "inputs.json",
    ]));
    let mut wait = tokio::process::Command::new(WEFT);
    wait.args(["runs", "wait", &run_id, "--json", "--db", db])
        .current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), wait.output())
        .await
        .expect("the run ends within 5 minutes")
        .expect("run weft runs wait");
    stop(&mut workers);
    let view: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(0), "the run succeeded: {view}");
    assert_eq!(view["output"], 60, "every item ran: {view}");
    let overlap = std::fs::read_to_string(dir.join("overlap.log")).expect("overlap log");
    let counts: Vec<u64> = overlap
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(counts.len(), 60, "one call per item (no retries expected)");
    counts.into_iter().max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_global_caps_hold_across_three_workers() {
    let Some(server) = testing::server_url().await else {
        return;
    };
    let (name, db) = testing::create_database(&server)
        .await
        .expect("create a database");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("fanouts.yaml"), FAN_OUTS).expect("template");
    std::fs::write(d.join("tool.sh"), OVERLAP_TOOL).expect("tool");
    let items: Vec<u64> = (0..30).collect();
    std::fs::write(
        d.join("inputs.json"),
        serde_json::json!({ "items": items }).to_string(),
    )
    .expect("inputs");

    // The CLI's runs are tenant `default`'s: cap it at 3 tasks. 3 workers × 6 slots and two
    // steps × 8 would allow 16 at once without it.
    run_ok(weft(d).args([
        "tenants",
        "create",
        "default",
        "--max-concurrent-tasks",
        "3",
        "--db",
        &db,
    ]));
    let most = run_with_workers(&db, d, &[]).await;
    assert!(
        most <= 3,
        "at most 3 of the tenant's calls at once, saw {most}"
    );
    eprintln!("tenant cap 3: at most {most} calls at once");

    // Lift the tenant's cap; a global cap of 2 given to every worker holds instead.
    run_ok(weft(d).args([
        "tenants",
        "update",
        "default",
        "--max-concurrent-tasks",
        "none",
        "--db",
        &db,
    ]));
    let listed = run_ok(weft(d).args(["--json", "tenants", "list", "--db", &db]));
    let listed: Value = serde_json::from_str(&listed).expect("tenants JSON");
    assert_eq!(listed[0]["max_concurrent_tasks"], Value::Null, "{listed}");
    let most = run_with_workers(&db, d, &["--max-concurrent-tasks", "2"]).await;
    assert!(
        most <= 2,
        "at most 2 calls at once in the store, saw {most}"
    );
    eprintln!("global cap 2: at most {most} calls at once");

    testing::drop_database(&server, &name)
        .await
        .expect("drop the test database");
}
