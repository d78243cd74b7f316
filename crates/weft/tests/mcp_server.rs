//! weft as an MCP server, driven by a real MCP client: the `mcp` Python SDK from PyPI
//! (`tests/mcp/weft_client.py`, run with the repository's `venv`). Over stdio (`weft mcp`)
//! and over streamable HTTP (`/mcp` on `weft serve`, with the `/v1` API key), the client sees
//! one tool per template with the template's inputs as its schema, starts a run through it,
//! reads `run_status` and `run_output`, and `ask`s with sentences (a dry run, a run, and one
//! that needs a question).
//!
//! Without the venv's Python SDK the tests skip with a message, unless
//! `WEFT_REQUIRE_SERVICES=1`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const TEMPLATE: &str = r#"name: greet
version: 1
description: Greets someone by name.
intent:
  examples: ["greet {who}", "say hello to {who}"]
inputs:
  who: { type: string, required: true, description: Who to greet }
steps:
  - id: hello
    tool: transform
    with:
      data: { who: "{{ input.who }}" }
      jq: '"Hello, " + .who + "!"'
output: "{{ steps.hello.output }}"
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python if it has the MCP SDK.
fn python() -> Option<PathBuf> {
    let python = repo().join("venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import mcp.client.streamable_http"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var("WEFT_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "the mcp Python SDK is missing from venv/ (see .ci/run)"
    );
    eprintln!("skipping: venv/bin/python with the `mcp` SDK is not there");
    None
}

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    std::fs::write(dir.path().join("templates/greet.yaml"), TEMPLATE).expect("write");
    dir
}

fn client(python: &Path, args: &[&str]) -> Value {
    let out = Command::new(python)
        .arg(repo().join("tests/mcp/weft_client.py"))
        .args(args)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .output()
        .expect("run the MCP client");
    assert!(
        out.status.success(),
        "client failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// What both transports must show.
fn check(seen: &Value) {
    let tools = seen["tools"].as_object().expect("tools");
    for name in ["ask", "run_status", "run_output", "greet"] {
        assert!(tools.contains_key(name), "no `{name}` tool: {tools:?}");
    }
    let greet = &tools["greet"];
    assert!(
        greet["description"]
            .as_str()
            .unwrap()
            .starts_with("Greets someone by name."),
        "{greet}"
    );
    assert_eq!(greet["schema"]["properties"]["who"]["type"], "string");
    assert_eq!(greet["schema"]["required"], serde_json::json!(["who"]));

    // A template's tool starts a run and answers with its id at once.
    assert_eq!(seen["greet"]["is_error"], false, "{}", seen["greet"]);
    let run_id = seen["greet"]["body"]["run_id"].as_str().expect("run_id");
    assert!(run_id.starts_with("run_"));
    assert_eq!(seen["greet"]["body"]["inputs"]["who"], "MCP");
    // run_output waits for the end and gives the output.
    assert_eq!(
        seen["run_output"]["status"], "succeeded",
        "{}",
        seen["run_output"]
    );
    assert_eq!(seen["run_output"]["output"], "Hello, MCP!");
    assert_eq!(seen["run_status"]["id"], run_id);
    assert_eq!(seen["run_status"]["steps"][0]["id"], "hello");
    // Bad inputs and unknown runs are tool errors the agent can read, not protocol errors.
    assert_eq!(seen["greet_bad"]["is_error"], true);
    let message = seen["greet_bad"]["body"]["error"].as_str().unwrap();
    assert!(
        message.contains("who") && message.contains("nope"),
        "{message}"
    );
    assert_eq!(seen["status_missing"]["is_error"], true);

    // ask: a dry run names the template and inputs; a run ends with the output; an
    // unrelated sentence is a question with candidates, and starts nothing.
    assert_eq!(seen["ask_dry"]["status"], "matched", "{}", seen["ask_dry"]);
    assert_eq!(seen["ask_dry"]["template"], "greet");
    assert_eq!(seen["ask_dry"]["inputs"]["who"], "Ada");
    assert!(seen["ask_dry"].get("run_id").is_none());
    assert_eq!(seen["ask_run"]["template"], "greet", "{}", seen["ask_run"]);
    assert_eq!(seen["ask_run_output"]["output"], "Hello, Grace!");
    assert_eq!(
        seen["ask_unsure"]["status"], "clarify",
        "{}",
        seen["ask_unsure"]
    );
    assert!(seen["ask_unsure"]["question"].as_str().unwrap().len() > 10);
    assert!(
        !seen["ask_unsure"]["candidates"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(seen["ask_unsure"].get("run_id").is_none());
}

#[test]
fn python_sdk_over_stdio() {
    let Some(python) = python() else {
        return;
    };
    let dir = workdir();
    let seen = client(
        &python,
        &[
            "stdio",
            env!("CARGO_BIN_EXE_weft"),
            dir.path().to_str().unwrap(),
        ],
    );
    check(&seen);
}

#[test]
fn python_sdk_over_streamable_http_with_an_api_key() {
    let Some(python) = python() else {
        return;
    };
    let dir = workdir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(dir.path())
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve printed its address")
            .expect("line");
        if let Some(rest) = line.strip_prefix("weft serving http://") {
            break rest.split_whitespace().next().expect("addr").to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let key = std::fs::read_to_string(dir.path().join(".weft/admin.key"))
        .expect("admin key")
        .trim()
        .to_string();
    let seen = client(&python, &["http", &format!("http://{addr}/mcp"), &key]);
    let _ = child.kill();
    let _ = child.wait();
    check(&seen);
    let refused = seen["unauthenticated"].as_str().unwrap();
    assert!(refused.starts_with("refused"), "{refused}");
}
