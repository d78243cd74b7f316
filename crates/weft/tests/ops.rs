//! What an operator checks from the command line: `weft status --json` sees a queued run and
//! its age, `weft migrate` reports a current schema, and `--log-format json` gives one JSON
//! object per line with run id, template, step, attempt and duration — and never an input.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const TEMPLATE: &str = r#"name: ops
version: 1
inputs:
  token: { type: string, default: none }
steps:
  - id: flaky
    tool: command
    retry: { max_attempts: 3, backoff: { type: fixed, delay: 10ms } }
    with:
      argv: [sh, -c, 'if [ "$WEFT_ATTEMPT" -lt 2 ]; then echo "warming up" >&2; exit 1; fi; echo "{\"ok\": true}"']
  - id: shout
    tool: transform
    with: { data: "{{ input.token }}", jq: 'ascii_upcase' }
"#;

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("WEFT_LOG_FORMAT")
        .env("NO_COLOR", "1");
    cmd
}

fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn status_json_reports_a_queued_run_and_its_oldest_task() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ops.yaml"), TEMPLATE).unwrap();
    let out = weft(dir.path())
        .args(["run", "ops.yaml", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let out = weft(dir.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status = json_of(&out);
    assert_eq!(out.status.code(), Some(0), "{status}");
    assert_eq!(status["ok"], true);
    assert_eq!(status["store"]["reachable"], true);
    assert_eq!(status["schema"]["current"], true);
    assert_eq!(status["queue"]["depth"], 1, "{status}");
    assert_eq!(status["queue"]["due"], 1, "{status}");
    assert_eq!(status["queue"]["running"], 0, "{status}");
    let age = status["queue"]["oldest_task_age_seconds"].as_f64().unwrap();
    assert!((1.0..60.0).contains(&age), "{status}");
    assert_eq!(status["workers"], Value::Array(vec![]));

    // The alias, as text.
    let out = weft(dir.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 queued (1 due)"), "{text}");
    assert!(text.contains("(current)"), "{text}");

    let out = weft(dir.path())
        .args(["migrate", "--json"])
        .output()
        .unwrap();
    let migrated = json_of(&out);
    assert_eq!(migrated["current"], true, "{migrated}");
    assert_eq!(migrated["applied"], migrated["latest"]);
}

#[test]
fn status_fails_when_the_store_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(dir.path())
        .args([
            "status",
            "--json",
            "--db",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let status = json_of(&out);
    assert_eq!(status["store"]["reachable"], false, "{status}");
}

#[test]
fn json_logs_carry_run_step_attempt_and_duration_but_no_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ops.yaml"), TEMPLATE).unwrap();
    let secret = "hunter2-very-secret";
    let out = weft(dir.path())
        .args(["--log-format", "json", "run", "ops.yaml", "--json"])
        .args(["-i", &format!("token={secret}")])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let run = json_of(&out);
    let run_id = run["id"].as_str().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let workflow = |msg: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["message"] == format!("[WORKFLOW] {msg}"))
            .collect()
    };
    let start = workflow("start");
    assert_eq!(start.len(), 1, "{stderr}");
    assert_eq!(start[0]["run_id"], run_id);
    assert_eq!(start[0]["template"], "ops");
    assert_eq!(start[0]["level"], "INFO");
    assert!(start[0]["timestamp"].is_string());

    let steps = workflow("step");
    let flaky = steps
        .iter()
        .find(|l| l["step"] == "flaky")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(flaky["run_id"], run_id);
    assert_eq!(flaky["template"], "ops");
    assert_eq!(flaky["status"], "succeeded");
    assert_eq!(flaky["attempt"], 2, "{flaky}");
    assert!(flaky["duration_ms"].as_i64().unwrap() >= 0);
    assert!(steps.iter().any(|l| l["step"] == "shout"), "{stderr}");

    let retry: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "Task retrying.")
        .collect();
    assert_eq!(retry.len(), 1, "{stderr}");
    assert_eq!(
        (&retry[0]["attempt"], &retry[0]["reason"]),
        (&1.into(), &"error".into())
    );

    let complete = workflow("complete");
    assert_eq!(complete.len(), 1, "{stderr}");
    assert_eq!(complete[0]["run_id"], run_id);
    assert!(complete[0]["duration_ms"].as_i64().unwrap() >= 0);

    assert!(
        !stderr.contains(secret),
        "the input reached a log:\n{stderr}"
    );
    assert!(
        !stderr.contains(&secret.to_uppercase()),
        "the output reached a log:\n{stderr}"
    );
}
