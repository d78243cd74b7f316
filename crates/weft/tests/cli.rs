//! The `weft` binary as a user runs it: exit codes, `--json`, input conversion, validation
//! output, runs list/show, and a run killed with SIGKILL that `resume` finishes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{FAILING_TEMPLATE, text};

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env("NO_COLOR", "1");
    cmd
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn json_of(out: &Output) -> Value {
    let (stdout, stderr) = text(out);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\n{stderr}"))
}

#[test]
fn hello_runs_offline_and_prints_its_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weft(dir.path())
        .args(["run"])
        .arg(examples().join("hello.yaml"))
        .args(["-i", "name=Ada", "-i", "cities=4"])
        .output()
        .expect("run weft");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("# Hello, Ada!"), "{stdout}");
    assert!(stdout.contains("Visited 4 cities of Colorado"), "{stdout}");
    assert!(stdout.contains("| Denver | 6 |"), "{stdout}");
    assert!(stdout.contains("ready on attempt 2"), "{stdout}");
    // Piped stderr gets plain progress lines, including the retry.
    assert!(stderr.contains("retrying"), "{stderr}");
    assert!(dir.path().join(".weft/weft.db").exists());
}

/// A `weft run` process opens its store once: one SQLite pool (one writer, one migration
/// check) shared by the engine, the server's tables, audit, schedules and secrets. The store
/// logs each open at debug level.
#[test]
fn a_run_opens_the_store_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weft(dir.path())
        .env("RUST_LOG", "weft_store=debug")
        .args(["run"])
        .arg(examples().join("hello.yaml"))
        .args(["-i", "name=Ada", "-i", "cities=2"])
        .output()
        .expect("run weft");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let opens = stderr.matches("Opened the SQLite store").count();
    assert_eq!(opens, 1, "the store was opened {opens} times:\n{stderr}");
}

#[test]
fn json_output_is_one_document_with_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("in.json"),
        r#"{"name": "Grace", "state": "co"}"#,
    )
    .expect("write inputs");
    let out = weft(dir.path())
        .args([
            "run",
            "--json",
            "--input-file",
            "in.json",
            "-i",
            "state=Texas",
            "-i",
            "cities=2",
        ])
        .arg(examples().join("hello.yaml"))
        .output()
        .expect("run weft");
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let doc = json_of(&out);
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["template"], "hello");
    assert_eq!(doc["inputs"]["name"], "Grace");
    assert_eq!(doc["inputs"]["state"], "Texas");
    assert!(doc["id"].as_str().unwrap_or("").starts_with("run_"));
    let steps = doc["steps"].as_array().expect("steps");
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["greeting", "cities", "visit", "flaky", "report"]);
    assert_eq!(steps[2]["items_total"], 2);
    assert_eq!(steps[3]["attempts"], 2);
    assert!(doc["output"].as_str().unwrap_or("").contains("Houston"));
}

#[test]
fn inputs_of_the_wrong_type_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weft(dir.path())
        .arg("run")
        .arg(examples().join("hello.yaml"))
        .args(["-i", "cities=many"])
        .output()
        .expect("run weft");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cities"), "{stderr}");
    assert!(stderr.contains("integer"), "{stderr}");

    let out = weft(dir.path())
        .arg("run")
        .arg(examples().join("hello.yaml"))
        .args(["-i", "state=Atlantis"])
        .output()
        .expect("run weft");
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}

#[test]
fn a_failed_run_exits_1_and_shows_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("fail.yaml"), FAILING_TEMPLATE).expect("write");
    let out = weft(dir.path())
        .args(["run", "fail.yaml"])
        .output()
        .expect("run");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kaput"), "{stderr}");
    assert!(stderr.contains("code 3"), "{stderr}");
}

#[test]
fn validate_prints_every_problem_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\nsteps:\n  - id: a\n    tool: transfrom\n  - id: b\n    tool: transform\n    neds: [a]\n    with: { data: \"{{ steps.zzz.output }}\", jq: . }\n",
    )
    .expect("write");
    let out = weft(dir.path())
        .args(["validate", "bad.yaml"])
        .output()
        .expect("run");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("bad.yaml:4:11: WEFT-E011: "),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("bad.yaml:7:5: WEFT-E002: "),
        "{stdout}"
    );
    assert!(lines[2].starts_with("bad.yaml:8:"), "{stdout}");
    assert!(lines[2].contains("WEFT-E007"), "{stdout}");

    let out = weft(dir.path())
        .arg("validate")
        .arg(examples().join("hello.yaml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

#[test]
fn runs_list_is_newest_first_and_show_finds_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("t.yaml"),
        "name: tiny\ninputs: { n: { type: integer } }\nsteps:\n  - id: a\n    tool: transform\n    with: { data: \"{{ input.n }}\", jq: \". + 1\" }\n",
    )
    .expect("write");
    let mut ids = Vec::new();
    for n in 0..3 {
        let out = weft(dir.path())
            .args(["run", "t.yaml", "--json", "-i"])
            .arg(format!("n={n}"))
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0));
        let doc = json_of(&out);
        assert_eq!(doc["output"], n + 1);
        ids.push(doc["id"].as_str().unwrap_or_default().to_string());
    }
    let out = weft(dir.path())
        .args(["runs", "list", "--json"])
        .output()
        .expect("list");
    let list = json_of(&out);
    let listed: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    for r in list.as_array().expect("array") {
        assert_eq!(r["template"], "tiny");
        assert_eq!(r["status"], "succeeded");
        assert!(r["created_at"].as_str().unwrap_or("").ends_with('Z'));
    }
    let out = weft(dir.path())
        .args(["runs", "show", &ids[1]])
        .output()
        .expect("show");
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("succeeded"), "{stdout}");
    let out = weft(dir.path())
        .args(["runs", "show", "run_nope"])
        .output()
        .expect("show");
    assert_eq!(out.status.code(), Some(2));
}

/// Lines `KEY ATTEMPT` written by the tool, one per call.
fn calls(path: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, a) = l.split_once(' ')?;
            Some((k.to_string(), a.trim().parse().ok()?))
        })
        .collect()
}

fn wait_for_calls(path: &Path, n: usize) {
    let start = Instant::now();
    while calls(path).len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_mid_fan_out_then_resume_finishes_every_item_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("calls.log");
    std::fs::write(
        dir.path().join("fan.yaml"),
        r#"name: fan
steps:
  - id: items
    for_each: "{{ range(30) | list }}"
    concurrency: 3
    tool: command
    with:
      argv: [sh, -c, 'sleep 0.03; echo "$WEFT_IDEMPOTENCY_KEY $WEFT_ATTEMPT" >> calls.log; echo "{\"n\": $N}"']
      env: { N: "{{ item }}" }
output: "{{ steps.items.output | map(attribute='n') | list }}"
"#,
    )
    .expect("write");
    let mut child = weft(dir.path())
        .args(["run", "fan.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut run_id = String::new();
    for kill_at in [3, 12, 21] {
        wait_for_calls(&log, kill_at);
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // Let tool processes that outlived weft finish their write.
        std::thread::sleep(Duration::from_millis(150));
        if run_id.is_empty() {
            let out = weft(dir.path())
                .args(["runs", "list", "--json"])
                .output()
                .expect("list");
            run_id = json_of(&out)[0]["id"].as_str().expect("id").to_string();
        }
        child = weft(dir.path())
            .args(["runs", "resume", &run_id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn resume");
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));

    let out = weft(dir.path())
        .args(["runs", "show", "--json", &run_id])
        .output()
        .expect("show");
    let doc = json_of(&out);
    assert_eq!(doc["status"], "succeeded");
    let expected: Vec<Value> = (0..30).map(Value::from).collect();
    assert_eq!(
        doc["output"],
        Value::Array(expected),
        "every item once, in order"
    );

    let calls = calls(&log);
    let mut per_key: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (key, attempt) in &calls {
        per_key.entry(key).or_default().push(*attempt);
    }
    assert_eq!(per_key.len(), 30, "some item never ran");
    // A second call happens only for an item that was in flight when weft was killed (at
    // most 3 at a time, 3 kills), and then as a later attempt.
    let repeated: Vec<_> = per_key.iter().filter(|(_, a)| a.len() > 1).collect();
    assert!(repeated.len() <= 9, "too many repeated calls: {repeated:?}");
    for (key, attempts) in &repeated {
        assert!(
            attempts.windows(2).all(|w| w[1] > w[0]),
            "{key}: {attempts:?}"
        );
    }
    // Every task taken back from a killed weft is on record as a retry for `lease_expired`.
    let events = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            use weft_store::Store;
            let store = weft_store::SqlStore::sqlite(
                &dir.path().join(".weft/weft.db"),
                weft_store::sqlite::Durability::Full,
            )
            .await
            .expect("open store");
            store.events(&run_id, 0, 100_000).await.expect("events")
        });
    let reclaimed = events
        .iter()
        .filter(|e| e.kind == "task.retrying" && e.data["reason"] == "lease_expired")
        .count();
    assert!(
        reclaimed >= repeated.len(),
        "{reclaimed} reclaims for {} repeats",
        repeated.len()
    );
    assert!(reclaimed >= 1, "no task was in flight at any kill");
    let succeeded = events.iter().filter(|e| e.kind == "task.succeeded").count();
    assert_eq!(succeeded, 30, "a result was committed twice or not at all");
}

#[test]
fn piped_progress_counts_fan_out_items_at_most_once_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("fan.yaml"),
        r#"name: fan
steps:
  - id: items
    for_each: "{{ range(3000) | list }}"
    strategy: queue
    concurrency: 8
    tool: transform
    with: { data: "{{ item }}", jq: ". * 2" }
output: "{{ steps.items.output | length }}"
"#,
    )
    .expect("write");
    let started = Instant::now();
    let out = weft(dir.path())
        .args(["run", "fan.yaml"])
        .output()
        .expect("run");
    let elapsed = started.elapsed().as_secs();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "3000");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("/3000 items"))
        .collect();
    assert!(!lines.is_empty(), "{stderr}");
    assert!(
        stderr.contains("✓ [1/1] items succeeded") && stderr.contains("· 3000 items"),
        "{stderr}"
    );
    // One line a second at most (the first comes at once).
    assert!(
        lines.len() as u64 <= elapsed + 2,
        "{} item lines in {elapsed} s:\n{stderr}",
        lines.len()
    );
}
