//! `weft ask` with an `[llm.NAME]` provider in weft.toml: the model (a stand-in speaking the
//! OpenAI wire format, tests/standins/intent_llm_standin.py) picks the template and inputs, the
//! answer is checked against the templates before anything runs, and `--offline` skips it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

struct StandIn {
    child: Child,
    port: String,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandIn {
    fn start(reply: &str) -> StandIn {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/standins/intent_llm_standin.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["sk-standin", reply])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the stand-in prints its port");
        StandIn {
            child,
            port: line.trim().to_string(),
        }
    }

    fn stats(&self) -> Value {
        let mut stream =
            std::net::TcpStream::connect(format!("127.0.0.1:{}", self.port)).expect("connect");
        stream
            .write_all(b"GET /stats HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read");
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default()).expect("JSON")
    }
}

const GREET: &str = r#"name: greet
version: 1
description: Greets someone by name.
intent:
  examples: ["greet {who}"]
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

fn workdir(stand_in: &StandIn) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    std::fs::write(dir.path().join("templates/greet.yaml"), GREET).expect("write");
    std::fs::write(
        dir.path().join("weft.toml"),
        format!(
            "[llm.standin]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}/v1\"\n\
             model = \"stand-in\"\napi_key = \"sk-standin\"\nmax_attempts = 1\n",
            stand_in.port
        ),
    )
    .expect("weft.toml");
    dir
}

fn weft(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .args(args)
        .output()
        .expect("run weft")
}

#[test]
fn the_model_picks_and_the_registry_checks() {
    let stand_in =
        StandIn::start(r#"{"template": "greet", "inputs": {"who": "Ada"}, "confidence": 0.9}"#);
    let dir = workdir(&stand_in);

    // A sentence the offline matcher could not read: the model's answer is used.
    let out = weft(
        dir.path(),
        &[
            "ask",
            "please send my warmest regards to Ada",
            "--dry-run",
            "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["matcher"], "llm", "{answer}");
    assert_eq!(answer["template"], "greet");
    assert_eq!(answer["inputs"]["who"], "Ada");
    assert_eq!(answer["plan"]["template"], "greet");
    let stats = stand_in.stats();
    assert_eq!(stats["calls"], 1);
    let request = &stats["requests"][0];
    let names =
        request["response_format"]["json_schema"]["schema"]["properties"]["template"]["enum"]
            .as_array()
            .expect("the registry's names");
    assert!(names.iter().any(|n| n == "greet"), "{names:?}");

    // And the run itself.
    let out = weft(
        dir.path(),
        &["ask", "please send my warmest regards to Ada"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello, Ada!");

    // --offline never asks the model.
    let before = stand_in.stats()["calls"].as_u64().unwrap();
    let out = weft(
        dir.path(),
        &["ask", "greet Grace", "--offline", "--dry-run", "--json"],
    );
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["matcher"], "offline");
    assert_eq!(answer["inputs"]["who"], "Grace");
    assert_eq!(stand_in.stats()["calls"].as_u64().unwrap(), before);
}

#[test]
fn a_template_the_registry_does_not_have_falls_back_to_the_offline_matcher() {
    // The model insists on a template that does not exist (its schema's enum says otherwise,
    // and the repair attempt gets the same answer).
    let stand_in =
        StandIn::start(r#"{"template": "launch-rockets", "inputs": {}, "confidence": 0.99}"#);
    let dir = workdir(&stand_in);
    let out = weft(dir.path(), &["ask", "greet Linus", "--dry-run", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["matcher"], "offline", "{answer}");
    assert_eq!(answer["template"], "greet");
    assert_eq!(answer["inputs"]["who"], "Linus");
    assert!(answer["llm_fallback"].is_string(), "{answer}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("matched offline"));
}
