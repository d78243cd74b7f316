//! The seeds' templates shipped as built-ins, through the binary: `state-discovery` end to end
//! against the places stand-in (tests/standins/places_standin.py, which speaks the Google
//! Places API wire format), its per-city cache, every built-in passing `weft validate`, and
//! `weft ask` from a sentence to a plan and to a finished run.

use std::io::{BufRead, BufReader};
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
    fn start() -> StandIn {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/standins/places_standin.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("test-key")
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the places stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the stand-in prints its port");
        StandIn {
            child,
            port: line.trim().to_string(),
        }
    }

    /// Calls the stand-in has answered so far (a tiny HTTP/1.0 GET, no client needed).
    fn calls(&self) -> u64 {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(format!("127.0.0.1:{}", self.port)).expect("connect");
        stream
            .write_all(b"GET /stats HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let stats: Value = serde_json::from_str(body).expect("stats are JSON");
        stats["calls"].as_u64().unwrap_or(0)
    }
}

/// A working folder with a weft.toml that sends `places.search` to the stand-in.
fn workdir(stand_in: &StandIn) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("weft.toml"),
        format!(
            "[places]\nprovider = \"google\"\ngoogle_url = \"http://127.0.0.1:{}\"\napi_key_env = \"WEFT_TEST_PLACES_KEY\"\n",
            stand_in.port
        ),
    )
    .expect("write weft.toml");
    dir
}

fn weft(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(dir)
        .env("WEFT_TEST_PLACES_KEY", "test-key")
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .args(args)
        .output()
        .expect("weft runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn state_discovery_runs_end_to_end_against_the_places_stand_in() {
    let stand_in = StandIn::start();
    let dir = workdir(&stand_in);
    let args = [
        "run",
        "state-discovery",
        "-i",
        "niche=HVAC",
        "-i",
        "state=Colorado",
        "-i",
        "limit=4",
    ];
    let out = weft(dir.path(), &args);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Denver 13, Colorado Springs 33, Aurora 13, Fort Collins 25 (each with the chain) = 84,
    // less the chain counted 3 extra times.
    assert!(text.contains("## HVAC Businesses in Colorado"), "{text}");
    assert!(
        text.contains("**Found**: 81 businesses across 4 cities"),
        "{text}"
    );
    assert!(text.contains("- Colorado Springs: 33 businesses"), "{text}");
    assert!(text.contains("- With website: 54 (67%)"), "{text}");
    assert!(text.contains("### Actions Available:"), "{text}");
    // Colorado Springs and Fort Collins need two pages each.
    let first = stand_in.calls();
    assert_eq!(first, 6);

    // The same run again: every city comes from the 24h cache.
    let out = weft(dir.path(), &args);
    assert!(out.status.success());
    assert!(stdout(&out).contains("**Found**: 81 businesses across 4 cities"));
    assert_eq!(
        stand_in.calls(),
        first,
        "a second run calls the provider again"
    );

    // Given cities instead of the state's largest; the state by its code, as people write it.
    let out = weft(
        dir.path(),
        &[
            "run",
            "state-discovery",
            "-i",
            "niche=Plumbing",
            "-i",
            "state=CO",
            "-i",
            "cities=[\"Boulder\", \"Golden\"]",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("**Found**: 27 businesses across 2 cities"),
        "{text}"
    );
}

/// Issue 16: with every website fetch failing, the summary said "SEO optimized: 0 (0%)".
/// It now says how many sites could not be checked and computes no share over none.
#[test]
fn state_discovery_says_which_websites_could_not_be_checked() {
    let stand_in = StandIn::start();
    let dir = workdir(&stand_in);
    let out = weft(
        dir.path(),
        &[
            "run",
            "state-discovery",
            "-i",
            "niche=HVAC",
            "-i",
            "state=CO",
            "-i",
            "limit=1",
            "-i",
            "qualify=true",
        ],
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("- Websites checked: 0 of "), "{text}");
    assert!(text.contains("could not be fetched"), "{text}");
    assert!(!text.contains("SEO optimized: 0 (0%)"), "{text}");
    // "Found" and "Top Cities" are two paragraphs, not one line in markdown.
    assert!(text.contains(" cities\n\n**Top Cities**:"), "{text}");
}

#[test]
fn every_builtin_template_validates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let mut files: Vec<String> = std::fs::read_dir(&root)
        .expect("templates/")
        .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = weft(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = weft(dir.path(), &["templates", "list", "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for name in [
        "state-discovery",
        "web-research",
        "screenshot-and-post",
        "multi-scrape",
        "deployment-check",
    ] {
        assert!(
            rows.as_array()
                .into_iter()
                .flatten()
                .any(|r| r["name"] == name && r["source"] == "builtin"),
            "{name} is not listed as a built-in"
        );
    }
}

#[test]
fn ask_turns_a_sentence_into_a_plan_a_question_or_a_run() {
    let stand_in = StandIn::start();
    let dir = workdir(&stand_in);

    let out = weft(
        dir.path(),
        &[
            "ask",
            "Find all HVAC businesses in Colorado",
            "--dry-run",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["template"], "state-discovery");
    assert_eq!(answer["inputs"]["niche"], "HVAC");
    assert_eq!(answer["inputs"]["state"], "Colorado");
    assert!(
        answer["confidence"].as_f64().unwrap_or(0.0) > 0.9,
        "{answer}"
    );
    assert!(answer["alternatives"].is_array());
    assert_eq!(answer["plan"]["steps"][1]["tool"], "places.search");
    assert_eq!(stand_in.calls(), 0, "a dry run calls nothing");

    // Unsure: a question and the candidates, exit 2, nothing runs.
    let out = weft(dir.path(), &["ask", "what's the weather like", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(answer["question"].is_string(), "{answer}");

    // Sure: the run starts and finishes like `weft run`.
    let out = weft(
        dir.path(),
        &["ask", "find hvac companies in 2 cities of CO"],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("**Found**: 45 businesses across 2 cities"),
        "{text}"
    );
}

/// A city several states have: `weft ask` asks which state and runs nothing; the person's
/// answer as `-i state=...` completes the inputs, and `--dry-run` shows what was read and what
/// is a default.
#[test]
fn ask_asks_which_springfield_and_takes_a_correction() {
    let stand_in = StandIn::start();
    let dir = workdir(&stand_in);

    let out = weft(
        dir.path(),
        &["ask", "find roofers in Springfield", "--json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["template"], "state-discovery");
    assert_eq!(
        answer["inputs"]["cities"],
        serde_json::json!(["Springfield"])
    );
    assert!(answer["inputs"]["state"].is_null(), "{answer}");
    let question = answer["question"].as_str().expect("a question");
    for state in ["Illinois", "Massachusetts", "Missouri"] {
        assert!(question.contains(state), "{question}");
    }

    let out = weft(
        dir.path(),
        &[
            "ask",
            "find roofers in Springfield",
            "-i",
            "state=Illinois",
            "--dry-run",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("correct or add one with -i NAME=VALUE"),
        "{text}"
    );
    for line in [
        "niche",
        "roofers",
        "read from the sentence",
        "limit",
        "15",
        "default",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(
        text.contains(r#""cities":["Springfield"]"#) && text.contains(r#""state":"Illinois""#),
        "{text}"
    );

    // A correction of a value the matcher read wins over it.
    let out = weft(
        dir.path(),
        &[
            "ask",
            "find roofers in Austin and Dallas",
            "-i",
            "niche=roofing contractors",
            "--dry-run",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["plan"]["inputs"]["niche"], "roofing contractors");
    assert_eq!(answer["plan"]["inputs"]["state"], "Texas");
    assert_eq!(stand_in.calls(), 0, "nothing ran");
}
