//! Approvals, sub-workflows, actions and `weft plan` through the `weft` binary: a run that
//! waits for approval survives its process being killed, each item of a `for_each` approval is
//! decided on its own, a child run's failure fails its parent's step, and an action's run links
//! to the run it follows.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env("USER", "tester")
        .env("NO_COLOR", "1");
    cmd
}

fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = weft(dir).args(args).output().expect("weft runs");
    assert!(
        out.status.success(),
        "weft {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run_ok(dir, &all);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Waits until the newest run of `template` has `status`, and returns it.
fn until_status(dir: &Path, template: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = json(dir, &["runs", "list", "--template", template]);
        if let Some(run) = runs.as_array().and_then(|r| r.first())
            && run["status"] == status
        {
            return run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {template} run became {status}: {runs}\n{}",
            std::fs::read_to_string(dir.join("first.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir.join("templates")).expect("templates dir");
    std::fs::write(dir.join("templates").join(name), text).expect("write template");
}

const GATE: &str = r#"
name: gate
version: 2
inputs:
  who: { type: array, default: [ann, bob, cy] }
steps:
  - id: draft
    tool: transform
    with: { data: "{{ input.who | length }}", jq: '"to " + tostring' }
  - id: ask
    for_each: "{{ input.who }}"
    approval: { prompt: "Send {{ steps.draft.output }} to {{ item }}?" }
    continue_on_error: true
  - id: sent
    tool: transform
    # In the queue, so a worker (not the deciding process) finishes the run.
    strategy: queue
    with:
      data: { who: "{{ input.who }}", ok: "{{ steps.ask.output }}" }
      jq: '[range(0; .who | length) as $i | select(.ok[$i] != null) | .who[$i]]'
actions:
  again:
    template: gate
    with: { who: "{{ steps.sent.output }}" }
    description: Ask again, only those that were approved
"#;

fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    let _ = child.wait();
}

#[test]
fn a_waiting_run_survives_its_process_and_each_item_is_decided_on_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "gate.yaml", GATE);
    // The store exists before two processes open it.
    run_ok(d, &["migrate"]);
    let log = std::fs::File::create(d.join("first.log")).expect("log");
    let mut first = weft(d)
        .args(["run", "gate"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("weft run");
    let run = until_status(d, "gate", "waiting");
    let id = run["id"].as_str().expect("id").to_string();
    // The process that drove the run dies while the run waits: the wait is durable state.
    kill(&mut first);

    let show = run_ok(d, &["runs", "show", &id]);
    let text = stdout(&show);
    assert!(text.contains("status    waiting"), "{text}");
    assert!(
        text.contains("waiting   ask --item 1: Send to 3 to bob?"),
        "{text}"
    );

    let out = run_ok(
        d,
        &[
            "runs",
            "approve",
            &id,
            "ask",
            "--item",
            "1",
            "--comment",
            "yes",
        ],
    );
    assert!(
        stdout(&out).contains("approved ask item 1"),
        "{}",
        stdout(&out)
    );
    let out = run_ok(
        d,
        &["runs", "approve", &id, "ask", "--item", "0", "--reject"],
    );
    assert!(
        stdout(&out).contains("rejected ask item 0"),
        "{}",
        stdout(&out)
    );
    // Deciding one item twice, or leaving the item out while several wait, is refused.
    let again = weft(d)
        .args(["runs", "approve", &id, "ask", "--item", "1"])
        .output()
        .expect("weft");
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("item 1 of step `ask` is not waiting"),
        "{}",
        stderr(&again)
    );
    // One item still waits, so the run does too.
    let shown = json(d, &["runs", "show", &id]);
    assert_eq!(shown["status"], "waiting");

    // A new process takes the run over; the last decision lets it finish.
    let mut second = weft(d)
        .args(["runs", "resume", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft runs resume");
    run_ok(d, &["runs", "approve", &id, "ask", "--item", "2"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            kill(&mut second);
            panic!("the resumed run did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = second.wait_with_output().expect("output");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<Value>(stdout(&out).trim()).expect("output JSON"),
        serde_json::json!(["bob", "cy"])
    );
    let shown = json(d, &["runs", "show", &id]);
    assert_eq!(shown["status"], "succeeded");
    let ask = shown["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "ask"))
        .cloned()
        .expect("ask");
    assert_eq!(ask["output"][1]["approved"], true);
    assert_eq!(ask["output"][1]["by"], "tester");
    assert_eq!(ask["output"][1]["comment"], "yes");
    assert_eq!(ask["output"][0], Value::Null);
    assert_eq!(ask["error"], "item 0 failed: rejected by tester");

    // The decisions are on the audit trail.
    let audit = stdout(&run_ok(d, &["audit"]));
    assert!(
        audit.contains("approval.approved") && audit.contains("approval.rejected"),
        "{audit}"
    );

    // An action of the finished run: a new run, linked to it, with the action's inputs.
    let out = run_ok(d, &["runs", "action", &id, "again", "--detach"]);
    let action = stdout(&out).trim().to_string();
    let child = json(d, &["runs", "show", &action]);
    assert_eq!(child["parent"]["run_id"], id.as_str());
    assert_eq!(child["parent"]["action"], "again");
    assert_eq!(child["inputs"]["who"], serde_json::json!(["bob", "cy"]));
    // `-i` goes on top of the action's `with`, typed by the started template's inputs.
    let out = run_ok(
        d,
        &[
            "runs",
            "action",
            &id,
            "again",
            "--detach",
            "-i",
            r#"who=["dee"]"#,
        ],
    );
    let other = json(d, &["runs", "show", stdout(&out).trim()]);
    assert_eq!(other["inputs"]["who"], serde_json::json!(["dee"]));
    assert_eq!(child["version"], "2");
    let parent = stdout(&run_ok(d, &["runs", "show", &id]));
    assert!(
        parent.contains(&format!("child     {action} gate@2")) && parent.contains("(action again)"),
        "{parent}"
    );
    let unknown = weft(d)
        .args(["runs", "action", &id, "nope"])
        .output()
        .expect("weft");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no action `nope`; its actions: again"),
        "{}",
        stderr(&unknown)
    );
}

const CHILD: &str = r#"
name: child
version: 1
inputs:
  n: { type: integer }
steps:
  - id: check
    tool: transform
    with: { data: "{{ input.n }}", jq: 'if . < 0 then error("negative input") else . * 10 end' }
"#;

const PARENT: &str = r#"
name: parent
version: 1
inputs:
  ns: { type: array }
steps:
  - id: sub
    for_each: "{{ input.ns }}"
    workflow: child
    with: { n: "{{ item }}" }
  - id: total
    tool: transform
    with: { data: "{{ steps.sub.output }}", jq: add }
"#;

#[test]
fn a_sub_workflow_gives_its_output_and_a_failed_child_fails_the_parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "child.yaml", CHILD);
    write(d, "parent.yaml", PARENT);

    let out = run_ok(d, &["run", "parent", "-i", "ns=[1,2,3]"]);
    assert_eq!(stdout(&out).trim(), "60");

    let out = weft(d)
        .args(["run", "parent", "-i", "ns=[1,-2]"])
        .output()
        .expect("weft run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The step's line tells why; the run's last line names the step (the reason once).
    assert!(err.contains("sub failed"), "{err}");
    assert!(err.contains(": item 1 failed: child run run_"), "{err}");
    assert!(
        err.contains("run failed in") && err.contains("step `sub` failed"),
        "{err}"
    );
    assert!(err.contains("negative input"), "{err}");
    let run = until_status(d, "parent", "failed");
    let id = run["id"].as_str().expect("id");
    let shown = stdout(&run_ok(d, &["runs", "show", id]));
    assert!(
        shown.contains("child@1 failed (step sub item 1)"),
        "{shown}"
    );
    let children = shown.lines().filter(|l| l.starts_with("child ")).count();
    assert_eq!(children, 2, "{shown}");
    let failed_child = shown
        .lines()
        .find(|l| l.contains("child@1 failed"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the failed child")
        .to_string();
    let child = json(d, &["runs", "show", &failed_child]);
    assert_eq!(child["parent"]["run_id"], id);
    assert_eq!(child["parent"]["step"], "sub");
    assert_eq!(child["parent"]["item"], 1);
}

#[test]
fn plan_resolves_what_the_inputs_decide_and_templates_show_names_the_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "gate.yaml", GATE);
    let out = run_ok(d, &["plan", "gate", "-i", r#"who=["x","y"]"#]);
    let text = stdout(&out);
    assert!(text.contains("plan gate@2 · 3 steps"), "{text}");
    // Known before the run: the for_each list and `draft`'s data.
    assert!(text.contains(r#"for_each (2 items): ["x","y"]"#), "{text}");
    assert!(
        text.contains(
            "      with:\n        data: 2\n        jq: |\n          \"to \" + tostring\n"
        ),
        "{text}"
    );
    // Not known: what needs another step's output or the item stays as written.
    assert!(
        text.contains("{{ steps.draft.output }} to {{ item }}?"),
        "{text}"
    );
    assert!(
        text.contains("sent                 tool transform   needs ask"),
        "{text}"
    );
    let plan = json(d, &["plan", "gate"]);
    assert_eq!(plan["steps"][1]["kind"], "approval");
    assert_eq!(plan["steps"][1]["level"], 1);
    assert_eq!(
        plan["inputs"]["who"],
        serde_json::json!(["ann", "bob", "cy"])
    );

    let shown = json(d, &["templates", "show", "gate@2"]);
    assert_eq!(shown["version"], "2");
    assert_eq!(shown["actions"][0]["name"], "again");
    let wrong = weft(d)
        .args(["templates", "show", "gate@1"])
        .output()
        .expect("weft");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("is at version 2 here, not 1"),
        "{}",
        stderr(&wrong)
    );
    let yaml = stdout(&run_ok(d, &["templates", "show", "gate", "--yaml"]));
    assert_eq!(yaml, GATE);
}
