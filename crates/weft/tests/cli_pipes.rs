//! The CLI as scripts and new users meet it (issue 16): a closed pipe is not a panic, piped
//! stderr has no colours and one message per failed run, the quickstart works from any
//! folder, `validate` takes names and compiles jq, every bad input is reported at once with
//! `minimum`/`maximum` and state codes, `argv` takes numbers, and `weft plan` says what it can.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;
use common::{FAILING_TEMPLATE, text};

/// `weft` in `dir`, as a user's shell starts it: no `NO_COLOR`, no configuration.
fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG");
    cmd
}

fn run_ok(dir: &Path, args: &[&str]) -> (String, String) {
    let out = weft(dir).args(args).output().expect("run weft");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{args:?}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Runs weft with stdout a pipe whose reader is already gone, as after `| head -1`.
fn into_closed_pipe(dir: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    weft(dir)
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run weft")
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(dir.path(), &["run", "hello", "-i", "cities=2"]);
    for args in [
        &["runs", "list"][..],
        &["--json", "runs", "list"],
        &["templates", "show", "hello", "--yaml"],
        &["plan", "hello"],
    ] {
        let out = into_closed_pipe(dir.path(), args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn a_failed_or_cancelled_run_says_why_once_without_colours() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("fail.yaml"), FAILING_TEMPLATE).expect("write");
    let out = weft(dir.path())
        .args(["run", "fail.yaml"])
        .output()
        .expect("run");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in piped stderr:\n{stderr}"
    );
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert_eq!(stderr.matches("kaput").count(), 1, "{stderr}");
    assert!(
        stderr.contains("run failed in") && stderr.contains("step `boom` failed"),
        "{stderr}"
    );

    std::fs::write(
        dir.path().join("slow.yaml"),
        "name: slow\nsteps:\n  - id: nap\n    tool: sleep\n    with: { duration: 30s }\n",
    )
    .expect("write");
    let id = run_ok(dir.path(), &["run", "slow.yaml", "--detach"])
        .0
        .trim()
        .to_string();
    run_ok(dir.path(), &["runs", "cancel", &id]);
    let out = weft(dir.path())
        .args(["runs", "wait", &id])
        .output()
        .expect("wait");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run cancelled"), "{stderr}");
    assert!(!stderr.contains("error="), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[test]
fn the_quickstart_command_works_from_a_fresh_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weft(dir.path())
        .args(["run", "examples/hello.yaml", "-i", "name=Ada"])
        .output()
        .expect("run");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("# Hello, Ada!"), "{stdout}");
    assert!(stderr.contains("built-in `hello`"), "{stderr}");
    assert_eq!(stderr.matches("note:").count(), 1, "{stderr}");
}

#[test]
fn validate_takes_names_and_finds_jq_and_duration_mistakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\nsteps:\n  - id: t\n    tool: transform\n    with: { data: 1, jq: \".[\" }\n  - id: s\n    tool: sleep\n    with: { duration: \"5 minutes please\" }\n",
    )
    .expect("write");
    let out = weft(dir.path())
        .args(["validate", "hello", "state-discovery", "bad.yaml", "nosuch"])
        .output()
        .expect("validate");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("bad.yaml:5:"), "{stdout}");
    assert!(lines[0].contains("WEFT-E010"), "{stdout}");
    assert!(lines[0].contains("jq program does not compile"), "{stdout}");
    assert!(lines[1].starts_with("bad.yaml:8:"), "{stdout}");
    assert!(lines[1].contains("\"5 minutes please\""), "{stdout}");
    assert!(lines[1].contains("e.g. \"50ms\""), "{stdout}");
    assert!(!lines[1].contains("[0-9]"), "a raw pattern: {stdout}");
    assert!(stderr.contains("no template `nosuch`"), "{stderr}");
    assert!(
        stderr.contains("2 of 4 templates valid, 3 problems"),
        "{stderr}"
    );
}

#[test]
fn every_bad_input_is_reported_at_once_and_states_read_like_people_write_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weft(dir.path())
        .args([
            "run",
            "state-discovery",
            "-i",
            "niche=HVAC",
            "-i",
            "limit=-3",
            "-i",
            "state=Atlantis",
            "-i",
            "colour",
        ])
        .output()
        .expect("run");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`-i colour`: inputs are written KEY=VALUE"),
        "{stderr}"
    );
    assert!(stderr.contains("input `limit` is -3"), "{stderr}");
    assert!(stderr.contains("input `state` is \"Atlantis\""), "{stderr}");

    for (given, state) in [
        ("CO", "Colorado"),
        ("texas", "Texas"),
        ("Colorodo", "Colorado"),
    ] {
        let (stdout, _) = run_ok(
            dir.path(),
            &[
                "run",
                "hello",
                "-i",
                &format!("state={given}"),
                "-i",
                "cities=1",
            ],
        );
        assert!(
            stdout.contains(&format!("cities of {state}")),
            "{given}: {stdout}"
        );
    }

    // The README's own schedule.
    run_ok(
        dir.path(),
        &[
            "schedules",
            "add",
            "--cron",
            "0 6 * * MON",
            "state-discovery",
            "-i",
            "niche=HVAC",
            "-i",
            "state=CO",
        ],
    );
    let (stdout, _) = run_ok(dir.path(), &["--json", "schedules", "list"]);
    let list: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(list[0]["inputs"]["state"], "Colorado", "{stdout}");
}

#[test]
fn argv_values_that_render_numbers_or_booleans_are_passed_as_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("argv.yaml"),
        "name: argv\nsteps:\n  - id: c\n    for_each: \"{{ [1, 2] }}\"\n    as: i\n    tool: command\n    with: { argv: [echo, \"{{ i }}\", \"{{ i > 1 }}\"], env: { N: \"{{ i }}\" } }\n",
    )
    .expect("write");
    let (stdout, _) = run_ok(dir.path(), &["--json", "run", "argv.yaml"]);
    let doc: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        doc["output"],
        serde_json::json!(["1 false", "2 true"]),
        "{stdout}"
    );
}

#[test]
fn plan_applies_input_only_conditions_and_keeps_items_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, _) = run_ok(
        dir.path(),
        &[
            "plan",
            "state-discovery",
            "-i",
            "niche=HVAC",
            "-i",
            "state=CO",
            "-i",
            "qualify=false",
        ],
    );
    assert!(
        stdout.contains("if: {{ input.qualify }}   (false: skipped)"),
        "{stdout}"
    );
    let (stdout, _) = run_ok(dir.path(), &["plan", "hello"]);
    // The fan-out's item is not known before the run: shown as written, not `null`.
    assert!(stdout.contains("\"CITY\":\"{{ city }}\""), "{stdout}");
    // A jq program is a block to read.
    assert!(
        stdout.contains("        jq: |\n          \"Hello, \" + .name + \"!\""),
        "{stdout}"
    );
    let (stdout, _) = run_ok(dir.path(), &["--json", "plan", "hello"]);
    let doc: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        doc["steps"][2]["with"]["env"]["CITY"], "{{ city }}",
        "{stdout}"
    );
}
