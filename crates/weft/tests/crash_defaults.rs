//! Runs survive crashes with the settings a new user has: no `retry:` anywhere, default lease.
//!
//! - `weft serve` on SQLite killed with SIGKILL in the middle of a fan-out and started again
//!   finishes the run by itself: 30/30 items, each committed once, none called again after its
//!   result was committed, and what the dead server held is taken back before its lease could
//!   have lapsed (the new process sees the old one is gone).
//! - `weft runs resume` continues a failed and a cancelled run, redoing only what did not
//!   succeed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_store::Store as _;

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts `weft serve` with its log in `dir/serve-N.log` and waits until it listens.
fn serve(dir: &Path, n: usize) -> Child {
    common::serve(dir, &dir.join(format!("serve-{n}.log"))).0
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn events(dir: &Path, run_id: &str) -> Vec<weft_store::Event> {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let store = weft_store::SqlStore::sqlite(
                &dir.join(".weft/weft.db"),
                weft_store::sqlite::Durability::Full,
            )
            .await
            .expect("open store");
            store.events(run_id, 0, 100_000).await.expect("events")
        })
}

const FAN: &str = r#"name: fan
steps:
  - id: work
    for_each: "{{ range(30) | list }}"
    concurrency: 3
    tool: command
    with:
      argv: [sh, -c, 'echo "$WEFT_ITEM_INDEX $WEFT_ATTEMPT $(date +%s%3N)" >> calls.log; sleep 0.2; echo "{\"n\": $N}"']
      env: { N: "{{ item }}" }
output: "{{ steps.work.output | map(attribute='n') | list }}"
"#;

#[test]
fn serve_killed_mid_fan_out_finishes_the_run_by_itself_with_default_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("fan.yaml"), FAN).expect("write template");
    let mut server = serve(d, 0);
    let out = common::weft(d)
        .args(["run", "fan.yaml", "--detach"])
        .output()
        .expect("weft run --detach");
    assert!(out.status.success(), "{out:?}");
    let run_id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // About a second in: a few items done, three in flight.
    let calls_log = d.join("calls.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(&calls_log).len() < 6 {
        assert!(
            Instant::now() < deadline,
            "the server never called the tool"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill().expect("SIGKILL weft serve");
    let _ = server.wait();
    let killed_at = wall_ms();
    let mut server = serve(d, 1);

    let mut wait = common::weft(d)
        .args(["--json", "runs", "wait", &run_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft runs wait");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = wait.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = wait.kill();
            let _ = server.kill();
            panic!("the run did not end within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = wait.wait_with_output().expect("output");
    server.kill().expect("stop serve");
    let _ = server.wait();
    let view: Value = serde_json::from_slice(&out.stdout).expect("runs wait --json");
    assert_eq!(status.code(), Some(0), "the run succeeded: {view}");
    let expected: Vec<Value> = (0..30).map(Value::from).collect();
    assert_eq!(view["output"], Value::Array(expected), "30/30 items");

    // Each item's result committed exactly once.
    let events = events(d, &run_id);
    let mut committed: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "task.succeeded") {
        committed
            .entry(e.item.unwrap_or(u32::MAX))
            .or_default()
            .push(e.ts);
    }
    assert_eq!(committed.len(), 30, "every item committed");
    assert!(committed.values().all(|c| c.len() == 1), "{committed:?}");

    // Nothing committed was called again; only what the dead server held was called twice.
    let mut calls: BTreeMap<u32, Vec<(u32, i64)>> = BTreeMap::new();
    for line in lines(&calls_log) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [item, attempt, at] = parts[..] else {
            panic!("bad call record `{line}`")
        };
        calls
            .entry(item.parse().expect("item"))
            .or_default()
            .push((attempt.parse().expect("attempt"), at.parse().expect("time")));
    }
    for (item, tries) in &calls {
        let done = committed[item][0];
        assert!(
            tries.iter().all(|(_, at)| *at <= done),
            "item {item} was called again after its result was committed: {tries:?}"
        );
        let attempts: Vec<u32> = tries.iter().map(|(a, _)| *a).collect();
        assert!(
            attempts.windows(2).all(|w| w[1] > w[0]),
            "item {item}: a repeated call is a later attempt: {attempts:?}"
        );
    }
    let repeated = calls.values().filter(|t| t.len() > 1).count();
    assert!(
        repeated <= 3,
        "only the 3 calls in flight at the kill repeat"
    );

    // The view tells a cut-off attempt apart from a failed one, and prints the run's own
    // duration (from its start to its end on record), not how long it watched.
    let again = common::weft(d)
        .args(["runs", "wait", &run_id])
        .output()
        .expect("weft runs wait");
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!said.contains("failed (lease_expired)"), "{said}");
    assert!(said.contains("was cut off"), "{said}");
    let start = events
        .iter()
        .find(|e| e.kind == "run.started")
        .expect("start")
        .ts;
    let end = events
        .iter()
        .find(|e| e.kind == "run.succeeded")
        .expect("end")
        .ts;
    let expected = format!("run succeeded in {:.2}s", (end - start) as f64 / 1000.0);
    assert!(said.contains(&expected), "{expected} in {said}");

    // What the dead server held came back as a lost lease, not a try of the step, and before
    // its 30 s lease could have lapsed: the new server saw the old process was gone.
    let reclaims: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "task.retrying")
        .collect();
    assert!(!reclaims.is_empty(), "nothing was in flight at the kill");
    for e in &reclaims {
        assert_eq!(e.data["reason"], "lease_expired", "{e:?}");
        assert!(
            e.ts < killed_at + 30_000,
            "taken back only when the lease lapsed: {e:?}"
        );
    }
}

#[test]
fn resume_continues_a_failed_run_and_a_cancelled_one_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("gate.yaml"),
        r#"name: gate
steps:
  - id: first
    tool: command
    with:
      argv: [sh, -c, 'echo first >> calls.log; echo "{\"n\": 1}"']
  - id: gate
    tool: command
    with:
      argv: [sh, -c, 'echo gate >> calls.log; test -f open || { echo closed >&2; exit 3; }; echo "{\"n\": 2}"']
output: "{{ steps.first.output.n + steps.gate.output.n }}"
"#,
    )
    .expect("write template");
    let failed = common::weft(d)
        .args(["--json", "run", "gate.yaml"])
        .output()
        .expect("weft run");
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let run: Value = serde_json::from_slice(&failed.stdout).expect("run json");
    let run_id = run["id"].as_str().expect("id").to_string();
    assert_eq!(run["status"], "failed");

    std::fs::write(d.join("open"), "").expect("open the gate");
    let resumed = common::weft(d)
        .args(["--json", "runs", "resume", &run_id])
        .output()
        .expect("weft runs resume");
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("interrupted"), "{stderr}");
    let view: Value = serde_json::from_slice(&resumed.stdout).expect("resume json");
    assert_eq!(view["status"], "succeeded");
    assert_eq!(view["output"], 3);
    // Only what did not succeed ran again.
    assert_eq!(lines(&d.join("calls.log")), ["first", "gate", "gate"]);

    // Cancelled from another process before anything ran, then resumed.
    let out = common::weft(d)
        .args(["run", "gate.yaml", "--detach"])
        .output()
        .expect("weft run --detach");
    let run_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let cancel = common::weft(d)
        .args(["runs", "cancel", &run_id])
        .output()
        .expect("weft runs cancel");
    assert!(cancel.status.success(), "{cancel:?}");
    let resumed = common::weft(d)
        .args(["--json", "runs", "resume", &run_id])
        .output()
        .expect("weft runs resume");
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(0), "{stderr}");
    let view: Value = serde_json::from_slice(&resumed.stdout).expect("resume json");
    assert_eq!(view["status"], "succeeded");
    let kinds: Vec<String> = events(d, &run_id)
        .into_iter()
        .map(|e| e.kind.to_string())
        .collect();
    let ends = kinds
        .iter()
        .filter(|k| matches!(k.as_str(), "run.cancelled" | "run.succeeded"))
        .count();
    assert_eq!(ends, 2, "cancelled, then succeeded: {kinds:?}");
}

/// Issue 13: three processes opening a brand-new SQLite file at once raced in its migrations
/// (`table ... already exists`) in most trials.
#[test]
fn three_processes_opening_a_new_database_at_once_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    for trial in 0..8 {
        let db = dir.path().join(format!("new-{trial}.db"));
        let db = db.to_string_lossy().to_string();
        let children: Vec<Child> = (0..3)
            .map(|_| {
                common::weft(dir.path())
                    .args(["migrate", "--db", &db])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("weft migrate")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "trial {trial}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
