//! `weft schedules` as a user runs it: add (with a cron line, inputs, a time zone and a name),
//! list with the next fire time, refusals with exit 2, then two `weft worker` processes fire a
//! per-second schedule (each slot once), pause stops it, resume and delete.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TICK: &str = r#"name: tick
version: 1
description: Says tick.
inputs:
  label: { type: string, default: nightly }
steps:
  - id: say
    tool: transform
    with:
      data: { label: "{{ input.label }}" }
      jq: '"tick " + .label'
output: "{{ steps.say.output }}"
"#;

fn weft(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .args(args)
        .output()
        .expect("run weft")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn worker(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .args(["worker", "--poll", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker")
}

fn runs(dir: &Path) -> Vec<Value> {
    let list = json(&weft(
        dir,
        &[
            "--json",
            "runs",
            "list",
            "--template",
            "tick",
            "--limit",
            "500",
        ],
    ));
    list.as_array().cloned().unwrap_or_default()
}

#[test]
fn schedules_are_added_fired_once_per_slot_by_workers_paused_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    std::fs::write(dir.path().join("templates/tick.yaml"), TICK).expect("write");

    // Refusals: a bad cron line, an unknown zone, an input the template does not take.
    for args in [
        vec!["schedules", "add", "--cron", "every day", "tick"],
        vec![
            "schedules",
            "add",
            "--cron",
            "0 6 * * *",
            "--tz",
            "Mars/Base",
            "tick",
        ],
        vec![
            "schedules",
            "add",
            "--cron",
            "0 6 * * *",
            "tick",
            "-i",
            "nope=1",
        ],
    ] {
        let out = weft(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty());
    }

    let weekly = json(&weft(
        dir.path(),
        &[
            "--json",
            "schedules",
            "add",
            "--cron",
            "0 6 * * MON",
            "--tz",
            "Europe/Berlin",
            "tick",
            "-i",
            "label=weekly",
            "--name",
            "weekly",
        ],
    ));
    assert_eq!(weekly["timezone"], "Europe/Berlin");
    assert_eq!(weekly["inputs"]["label"], "weekly");
    assert!(weekly["next_fire_at"].as_str().unwrap().contains("T0"));
    let out = weft(
        dir.path(),
        &[
            "schedules",
            "add",
            "--cron",
            "* * * * * *",
            "tick",
            "-i",
            "label=fast",
            "--name",
            "fast",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let again = weft(
        dir.path(),
        &[
            "schedules",
            "add",
            "--cron",
            "* * * * *",
            "tick",
            "--name",
            "fast",
        ],
    );
    assert_eq!(again.status.code(), Some(2), "a taken name: {again:?}");

    let out = weft(dir.path(), &["schedules", "list"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("NEXT"), "{text}");
    assert!(
        text.contains("weekly") && text.contains("Europe/Berlin"),
        "{text}"
    );
    assert!(text.contains("fast") && text.contains("active"), "{text}");

    // Two workers race for every slot of the per-second schedule.
    let mut workers = [worker(dir.path()), worker(dir.path())];
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs(dir.path()).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the schedule never fired 3 times"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = weft(dir.path(), &["schedules", "pause", "fast"]);
    assert!(out.status.success(), "{out:?}");
    let paused_at = runs(dir.path()).len();
    // Two more slots go by while paused; the workers keep running.
    std::thread::sleep(Duration::from_millis(2_200));
    let after = runs(dir.path());
    for w in workers.iter_mut() {
        let _ = w.kill();
        let _ = w.wait();
    }
    // A slot is claimed only while the schedule is not paused, in the transaction that
    // creates its run: nothing fires after `pause` returns.
    assert_eq!(after.len(), paused_at, "a paused schedule fired");
    // Each run is one slot of the schedule: distinct keys, the schedule's inputs.
    let mut keys: Vec<String> = Vec::new();
    for run in &after {
        assert_eq!(run["inputs"]["label"], "fast");
        let id = run["id"].as_str().unwrap();
        let shown = json(&weft(dir.path(), &["--json", "runs", "show", id]));
        keys.push(shown["idempotency_key"].as_str().expect("key").to_string());
    }
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total, "a slot fired twice");
    assert!(keys.iter().all(|k| k.starts_with("schedule:sch_")));

    let listed = json(&weft(dir.path(), &["--json", "schedules", "list"]));
    let fast = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "fast")
        .expect("fast");
    assert_eq!(fast["paused"], true);
    assert!(fast["next_fire_at"].is_null());
    assert!(fast["last_fired_at"].is_string());

    let out = weft(dir.path(), &["schedules", "resume", "fast"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("next at"));
    let out = weft(dir.path(), &["schedules", "delete", "fast"]);
    assert!(out.status.success(), "{out:?}");
    let out = weft(dir.path(), &["schedules", "delete", "fast"]);
    assert_eq!(out.status.code(), Some(2));
    let listed = json(&weft(dir.path(), &["--json", "schedules", "list"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
