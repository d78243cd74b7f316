//! An approval and a sub-workflow across real `weft worker` processes on one PostgreSQL
//! database: the run waits for a decision while the worker that ran it is killed (SIGKILL), a
//! decision from another process and a fresh worker finish it, child run included.
//!
//! Uses a fresh database `weft_test_<random>`; skips without a reachable server
//! (`WEFT_TEST_PG`) unless `WEFT_REQUIRE_SERVICES=1`.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_store::postgres::testing;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

const CHILD: &str = r#"
name: child
version: 1
inputs:
  n: { type: integer }
steps:
  - id: times
    tool: transform
    with: { data: "{{ input.n }}", jq: ". * 10" }
"#;

const FLOW: &str = r#"
name: flow
version: 1
inputs:
  n: { type: integer, default: 4 }
steps:
  - id: ask
    approval: "Run the child with {{ input.n }}?"
  - id: sub
    workflow: child
    with: { n: "{{ input.n }}" }
"#;

fn weft(dir: &Path, db: &str, args: &[&str]) -> Output {
    let out = Command::new(WEFT)
        .args(args)
        .args(["--db", db])
        .current_dir(dir)
        .output()
        .expect("run weft");
    assert!(
        out.status.success(),
        "weft {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn show(dir: &Path, db: &str, run: &str) -> Value {
    let out = weft(dir, db, &["--json", "runs", "show", run]);
    serde_json::from_slice(&out.stdout).expect("runs show --json")
}

fn spawn_worker(dir: &Path, db: &str, n: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("worker-{n}.log"))).expect("log");
    Command::new(WEFT)
        .args(["worker", "--db", db, "--poll", "200ms"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start weft worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_outlives_its_worker_and_finishes_its_child_on_another() {
    let Some(server) = testing::server_url().await else {
        return;
    };
    let (name, db) = testing::create_database(&server)
        .await
        .expect("create a database");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("templates")).expect("templates");
    std::fs::write(d.join("templates/flow.yaml"), FLOW).expect("flow");
    weft(d, &db, &["migrate"]);
    // The child is registered in the store (as `POST /v1/templates` does), not in a folder:
    // the worker that starts it finds it there.
    let store = weft_store::SqlStore::postgres(&db).await.expect("open");
    weft_store::server::TemplateStore::put_template(
        &store,
        &weft_store::server::TemplateRecord {
            tenant: "default".into(),
            name: "child".into(),
            version: "1".into(),
            digest: "child-v1".into(),
            source: CHILD.into(),
            description: None,
            created_at: 0,
        },
    )
    .await
    .expect("register the child");
    store.close().await;

    let mut first = spawn_worker(d, &db, 1);
    let out = weft(d, &db, &["run", "flow", "--detach"]);
    let run = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while show(d, &db, &run)["status"] != "waiting" {
        assert!(Instant::now() < deadline, "the run never waited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().expect("SIGKILL");
    let _ = first.wait();

    weft(d, &db, &["runs", "approve", &run, "ask", "--comment", "go"]);
    let mut second = spawn_worker(d, &db, 2);
    let out = weft(d, &db, &["--json", "runs", "wait", &run]);
    let done: Value = serde_json::from_slice(&out.stdout).expect("runs wait --json");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], 40);
    let ask = &done["steps"][0];
    assert_eq!(ask["output"]["approved"], true);
    assert_eq!(ask["output"]["comment"], "go");

    let text = String::from_utf8_lossy(&weft(d, &db, &["runs", "show", &run]).stdout).to_string();
    let child = text
        .lines()
        .find(|l| l.starts_with("child "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no child listed:\n{text}"))
        .to_string();
    let child = show(d, &db, &child);
    assert_eq!(child["status"], "succeeded");
    assert_eq!(child["parent"]["run_id"], run.as_str());
    assert_eq!(child["parent"]["step"], "sub");

    second.kill().expect("SIGKILL");
    let _ = second.wait();
    testing::drop_database(&server, &name)
        .await
        .expect("drop the test database");
}
