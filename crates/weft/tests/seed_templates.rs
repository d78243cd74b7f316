//! The seeds' other built-in templates end to end through the binary: `web-research` against
//! a Brave Search stand-in and an OpenAI-compatible LLM stand-in (tests/standins/, which speak
//! those paid services' wire formats), `deployment-check` against a GitHub deployments
//! stand-in, `multi-scrape` and `screenshot-and-post` (real headless Chromium) against pages
//! this test serves over real HTTP. What is checked is what a user reads: the run's output,
//! what the memory holds afterwards, the artifact on disk, and that no secret and no image
//! bytes reach the run's record.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

const BRAVE_KEY: &str = "brave-test-subscription-7d1e";
const LLM_KEY: &str = "sk-standin-0f9a8b7c6d5e";
const GITHUB_TOKEN: &str = "ghp_standinToken1234567890";

/// A stand-in (a Python script under tests/standins/) on a free port, stopped on drop.
struct StandIn {
    child: Child,
    port: u16,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandIn {
    fn start(script: &str, args: &[&str]) -> StandIn {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/standins")
            .join(script);
        let mut child = Command::new("python3")
            .arg(path)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the stand-in prints its port");
        let port = line.trim().parse().expect("a port number");
        StandIn { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the stand-in has seen (`GET /stats`).
    fn stats(&self) -> Value {
        let (status, body) = get(self.port, "/stats");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("stats are JSON")
    }
}

/// A tiny HTTP/1.0 GET, no client needed: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, body.to_string())
}

/// Web pages served over real HTTP by this test: path -> (status, content type, body). Counts
/// the requests each path gets.
struct Pages {
    port: u16,
    hits: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Pages {
    fn serve(pages: Vec<(&str, u16, &str, String)>) -> Pages {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let routes: Arc<BTreeMap<String, (u16, String, String)>> = Arc::new(
            pages
                .into_iter()
                .map(|(path, status, kind, body)| {
                    (path.to_string(), (status, kind.to_string(), body))
                })
                .collect(),
        );
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = routes.clone();
                let seen = seen.clone();
                std::thread::spawn(move || answer(stream, &routes, &seen));
            }
        });
        Pages { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> u32 {
        self.hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn answer(
    mut stream: TcpStream,
    routes: &BTreeMap<String, (u16, String, String)>,
    seen: &Mutex<BTreeMap<String, u32>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .split(' ')
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    *seen.lock().expect("lock").entry(path.clone()).or_default() += 1;
    let (status, kind, body) =
        routes
            .get(&path)
            .cloned()
            .unwrap_or((404, "text/plain".into(), "not found".into()));
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn html(title: &str, description: &str, h1: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"description\" content=\"{description}\">\
         <style>body {{ font-family: sans-serif }}</style>\
         <script>window.tracking = 'SCRIPT-NOISE';</script></head>\
         <body><h1>{h1}</h1>\n<p>{body}</p></body></html>"
    )
}

/// A working folder with this weft.toml.
fn workdir(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("weft.toml"), toml).expect("write weft.toml");
    dir
}

fn weft(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(dir)
        .env("WEFT_TEST_BRAVE_KEY", BRAVE_KEY)
        .env("WEFT_TEST_LLM_KEY", LLM_KEY)
        .env("WEFT_TEST_GITHUB_TOKEN", GITHUB_TOKEN)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .args(args)
        .output()
        .expect("weft runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `weft run ... --json`: the finished run's document (exit 0 expected).
fn run_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = weft(dir, &all);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("the run as JSON")
}

/// Every byte the store holds (the SQLite file and its WAL), as text, to look for secrets.
fn store_bytes(dir: &Path) -> String {
    let mut all = String::new();
    for name in ["weft.db", "weft.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(".weft").join(name)) {
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    all
}

/// A template that reads one memory entry, run in a later process than the one that wrote it.
fn recall(dir: &Path, namespace: &str, key: &str) -> Value {
    std::fs::write(
        dir.join("recall.yaml"),
        "name: recall\nversion: 1\ninputs:\n  namespace: { type: string }\n  key: { type: string }\n\
         steps:\n  - id: get\n    tool: memory.get\n    with: { namespace: \"{{ input.namespace }}\", key: \"{{ input.key }}\" }\n",
    )
    .expect("write recall.yaml");
    let run = run_json(
        dir,
        &[
            "recall.yaml",
            "-i",
            &format!("namespace={namespace}"),
            "-i",
            &format!("key={key}"),
        ],
    );
    run["output"].clone()
}

/// Brave results pointing at this test's pages: two readable, one that answers 500, and a
/// fourth that a run reading the top 3 must not fetch.
fn research_setup() -> (Pages, StandIn, tempfile::TempDir) {
    let pages = Pages::serve(vec![
        (
            "/durable/intro.html",
            200,
            "text/html; charset=utf-8",
            html(
                "Durable execution, explained",
                "What durable execution is",
                "Durable execution",
                "A durable workflow engine records every step, so a crash loses nothing. SENTINEL-ALPHA",
            ),
        ),
        (
            "/durable/broken",
            500,
            "text/plain",
            "upstream exploded".into(),
        ),
        (
            "/durable/queues.html",
            200,
            "text/html",
            html(
                "Queues and leases",
                "Leases in durable queues",
                "Leases",
                "Workers lease tasks &amp; renew them; an expired lease is retried. SENTINEL-BETA",
            ),
        ),
        (
            "/durable/fourth.html",
            200,
            "text/html",
            html("Fourth", "Never read", "Fourth", "SENTINEL-GAMMA"),
        ),
    ]);
    let results = json!({"nothing matches this": [], "*": [
        {"title": "Durable execution, explained", "url": pages.url("/durable/intro.html"),
         "description": "An introduction to durable execution for workflow engines."},
        {"title": "A broken page", "url": pages.url("/durable/broken"),
         "description": "This server answers 500."},
        {"title": "Queues & leases", "url": pages.url("/durable/queues.html"),
         "description": "How durable queues lease tasks to workers."},
        {"title": "Fourth result", "url": pages.url("/durable/fourth.html"),
         "description": "Beyond the top three."},
    ]});
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("brave-results.json");
    std::fs::write(&file, results.to_string()).expect("write results");
    let brave = StandIn::start(
        "brave_standin.py",
        &[BRAVE_KEY, file.to_str().expect("utf-8 path")],
    );
    (pages, brave, dir)
}

/// weft.toml for web-research: loopback allowed for the pages and stand-ins (the SSRF guard's
/// documented switch), the Brave key added to requests to the stand-in's host.
fn research_toml(brave: &StandIn, llm: Option<&StandIn>) -> String {
    let mut toml = format!(
        "[http]\nallow = [\"127.0.0.1\"]\n\n\
         [http.headers.\"127.0.0.1:{}\"]\nX-Subscription-Token = \"${{WEFT_TEST_BRAVE_KEY}}\"\n",
        brave.port
    );
    if let Some(llm) = llm {
        toml.push_str(&format!(
            "\n[llm.standin]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodel = \"standin-large\"\n\
             api_key_env = \"WEFT_TEST_LLM_KEY\"\n\
             prices.standin-large = {{ prompt = 1.0, completion = 2.0 }}\n",
            llm.url()
        ));
    }
    toml
}

#[test]
fn web_research_searches_brave_reads_the_top_pages_summarizes_with_the_llm_and_remembers() {
    let (pages, brave, _results) = research_setup();
    let llm = StandIn::start("openai_standin.py", &[LLM_KEY]);
    let dir = workdir(&research_toml(&brave, Some(&llm)));

    let run = run_json(
        dir.path(),
        &[
            "web-research",
            "-i",
            "query=durable execution",
            "-i",
            &format!("api={}", brave.url()),
        ],
    );
    assert_eq!(run["status"], "succeeded", "{run}");
    let report = run["output"].as_str().expect("a markdown report");
    assert!(
        report.contains("## Research: durable execution"),
        "{report}"
    );
    // The model's answer, built by the stand-in from the prompt it received.
    assert!(
        report.contains("**Stand-in summary** of \"durable execution\" from 3 sources."),
        "{report}"
    );
    assert!(
        report.contains("- Durable execution, explained [1]"),
        "{report}"
    );
    assert!(report.contains("- Queues & leases [3]"), "{report}");
    assert!(report.contains("### Sources"), "{report}");
    assert!(
        report.contains(&format!(
            "2. [A broken page]({}) (could not be read)",
            pages.url("/durable/broken")
        )),
        "{report}"
    );
    assert!(
        report.contains("_Summary: standin/standin-large, "),
        "{report}"
    );

    // Brave was asked once, for the top 3, with the key from the environment.
    let stats = brave.stats();
    assert_eq!(stats["calls"], 1, "{stats}");
    assert_eq!(
        stats["queries"][0],
        json!({"q": "durable execution", "count": 3, "token": "ok"})
    );
    // The top 3 were fetched (the broken one twice: one retry), the fourth never.
    assert_eq!(pages.hits("/durable/intro.html"), 1);
    assert_eq!(pages.hits("/durable/queues.html"), 1);
    assert_eq!(pages.hits("/durable/broken"), 2);
    assert_eq!(pages.hits("/durable/fourth.html"), 0);
    // The model got the pages' readable text, without their scripts.
    let seen = llm.stats();
    assert_eq!(seen["calls"], 1, "{seen}");
    let prompt = seen["requests"][0]["prompt"].as_str().expect("prompt");
    assert!(
        prompt.contains("Research question: durable execution"),
        "{prompt}"
    );
    assert!(prompt.contains("SENTINEL-ALPHA"), "{prompt}");
    assert!(
        prompt.contains("Workers lease tasks & renew them"),
        "{prompt}"
    );
    assert!(prompt.contains("(the page could not be read)"), "{prompt}");
    assert!(!prompt.contains("SCRIPT-NOISE"), "{prompt}");
    assert!(!prompt.contains("SENTINEL-GAMMA"), "{prompt}");
    assert_eq!(seen["requests"][0]["model"], "standin-large");
    // Token usage as the provider reported it.
    let summarize = run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "summarize"))
        .expect("the summarize step");
    let usage = &summarize["output"]["usage"];
    assert!(
        usage["prompt_tokens"].as_u64().is_some_and(|n| n > 50),
        "{usage}"
    );
    let (prompt_tokens, completion_tokens) = (
        usage["prompt_tokens"].as_u64().unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap_or(0),
    );
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(prompt_tokens + completion_tokens)
    );
    // ... and metered on the run, priced from weft.toml ($1 / $2 per million tokens).
    assert_eq!(
        run["usage"]["llm_prompt_tokens"].as_u64(),
        Some(prompt_tokens),
        "{}",
        run["usage"]
    );
    assert_eq!(
        run["usage"]["llm_completion_tokens"].as_u64(),
        Some(completion_tokens)
    );
    let cost = (prompt_tokens as f64 + 2.0 * completion_tokens as f64) / 1e6;
    assert!(
        run["usage"]["cost_usd"]
            .as_f64()
            .is_some_and(|c| (c - cost).abs() < 1e-9),
        "{}",
        run["usage"]
    );

    // Nothing found: said so, and no model is asked to summarize nothing.
    let empty = run_json(
        dir.path(),
        &[
            "web-research",
            "-i",
            "query=nothing matches this",
            "-i",
            &format!("api={}", brave.url()),
        ],
    );
    assert_eq!(
        empty["output"],
        "## Research: nothing matches this\n\nNo results found.\n\n_Summary: digest_\n",
        "{empty}"
    );
    assert_eq!(
        llm.stats()["calls"],
        1,
        "the model was asked about no sources"
    );

    // The notes are in the memory, for a later run.
    let notes = recall(dir.path(), "research", "durable execution");
    assert_eq!(notes["query"], "durable execution", "{notes}");
    assert_eq!(notes["summarized_by"], "llm", "{notes}");
    assert_eq!(notes["notes"], run["output"], "{notes}");
    assert_eq!(notes["run"], run["id"], "{notes}");
    assert_eq!(
        notes["read"],
        json!([
            pages.url("/durable/intro.html"),
            pages.url("/durable/queues.html")
        ])
    );
    assert_eq!(
        notes["sources"].as_array().map(Vec::len),
        Some(3),
        "{notes}"
    );

    // Neither key reaches the store.
    let stored = store_bytes(dir.path());
    assert!(!stored.is_empty());
    assert!(!stored.contains(BRAVE_KEY), "the Brave key is in the store");
    assert!(!stored.contains(LLM_KEY), "the LLM key is in the store");
}

#[test]
fn web_research_falls_back_to_a_digest_without_an_llm_and_says_why() {
    let (pages, brave, _results) = research_setup();
    let dir = workdir(&research_toml(&brave, None));
    let api = format!("api={}", brave.url());

    // `auto` (the default) with no [llm] provider: the digest, and the reason.
    let run = run_json(
        dir.path(),
        &[
            "web-research",
            "-i",
            "query=durable execution",
            "-i",
            &api,
            "-i",
            "sources=2",
        ],
    );
    let report = run["output"].as_str().expect("a markdown report");
    assert!(
        report.contains("### [1] Durable execution, explained\nAn introduction to durable execution for workflow engines.\n> Durable execution A durable workflow engine records every step, so a crash loses nothing. SENTINEL-ALPHA"),
        "{report}"
    );
    assert!(
        report.contains(
            "### [2] A broken page\nThis server answers 500.\n_(the page could not be read)_"
        ),
        "{report}"
    );
    assert!(
        report
            .contains("_Summary: digest (no LLM summary: llm.chat: no LLM provider is configured"),
        "{report}"
    );
    assert_eq!(
        pages.hits("/durable/queues.html"),
        0,
        "only the top 2 are read"
    );
    let notes = recall(dir.path(), "research", "durable execution");
    assert_eq!(notes["summarized_by"], "digest", "{notes}");

    // `digest`: no LLM step at all.
    let run = run_json(
        dir.path(),
        &[
            "web-research",
            "-i",
            "query=leases",
            "-i",
            &api,
            "-i",
            "summarize=digest",
        ],
    );
    let report = run["output"].as_str().expect("report");
    assert!(
        report.ends_with("_Summary: digest_\n") || report.ends_with("_Summary: digest_"),
        "{report}"
    );
    let summarize = run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "summarize"))
        .expect("summarize step");
    assert_eq!(summarize["status"], "skipped");

    // `llm` insists: without a provider the run fails and says so.
    let out = weft(
        dir.path(),
        &[
            "run",
            "web-research",
            "-i",
            "query=queues",
            "-i",
            &api,
            "-i",
            "summarize=llm",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(
            "summarize is `llm` but the LLM summary failed: llm.chat: no LLM provider is configured"
        ),
        "{failed}"
    );

    // A wrong key: Brave's 422 fails the search at once (not worth a retry).
    let before = brave.stats()["calls"].as_u64().unwrap_or(0);
    let wrong =
        workdir(&research_toml(&brave, None).replace("WEFT_TEST_BRAVE_KEY", "WEFT_TEST_LLM_KEY"));
    let out = weft(
        wrong.path(),
        &[
            "run",
            "web-research",
            "-i",
            "query=anything",
            "-i",
            &api,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("422") && e.contains("SUBSCRIPTION_TOKEN_INVALID")),
        "{failed}"
    );
    assert!(
        !text(&out).contains(LLM_KEY),
        "the key sent is in the output or logs"
    );
    let stats = brave.stats();
    assert_eq!(stats["calls"].as_u64(), Some(before + 1), "{stats}");
    assert_eq!(stats["queries"][before as usize]["token"], "wrong");
}

#[test]
fn deployment_check_reports_the_latest_deployment_its_state_and_failures() {
    let github = StandIn::start("github_standin.py", &[GITHUB_TOKEN]);
    // Loopback allowed for the stand-in; the token goes only to its host.
    let dir = workdir(&format!(
        "[http]\nallow = [\"127.0.0.1\"]\n\n[http.headers.\"127.0.0.1:{}\"]\nAuthorization = \"Bearer ${{WEFT_TEST_GITHUB_TOKEN}}\"\n",
        github.port
    ));
    let api = format!("api={}", github.url());

    let run = run_json(
        dir.path(),
        &["deployment-check", "-i", "repo=acme/shop", "-i", &api],
    );
    let report = run["output"].as_str().expect("a markdown report");
    assert!(
        report.contains("## Deployment check: acme/shop"),
        "{report}"
    );
    assert!(
        report.contains("**Latest**: #1003 of `a1b2c3d` (release/2.4) to **production**, created 2026-11-25T14:00:00Z by octocat"),
        "{report}"
    );
    assert!(
        report.contains("**Status**: failure (6m 8s from the first status to the last)"),
        "{report}"
    );
    assert!(report.contains("**Deployments listed**: 3"), "{report}");
    // The status log, oldest first.
    let queued = report.find("| 2026-11-25T14:00:02Z | queued | Queued |");
    let building = report.find("| 2026-11-25T14:00:30Z | in_progress | Building |");
    let failed = report.find(
        "| 2026-11-25T14:06:10Z | failure | Build failed: `npm run build` exited with code 1 |",
    );
    assert!(
        queued.is_some() && queued < building && building < failed,
        "{report}"
    );
    assert!(
        report.contains(
            "**Failures**: 1; last: Build failed: `npm run build` exited with code 1 \
             (log: https://github.com/acme/shop/actions/runs/503)"
        ),
        "{report}"
    );

    // One environment only.
    let run = run_json(
        dir.path(),
        &[
            "deployment-check",
            "-i",
            "repo=acme/shop",
            "-i",
            "environment=staging",
            "-i",
            &api,
        ],
    );
    let report = run["output"].as_str().expect("report");
    assert!(
        report.contains("**Latest**: #1002 of `e5bd391` (main) to **staging**"),
        "{report}"
    );
    assert!(report.contains("**Status**: success\n"), "{report}");
    assert!(report.contains("**Deployments listed**: 1"), "{report}");
    assert!(!report.contains("**Failures**"), "{report}");

    // No deployments.
    let run = run_json(
        dir.path(),
        &["deployment-check", "-i", "repo=acme/empty", "-i", &api],
    );
    assert!(
        run["output"]
            .as_str()
            .is_some_and(|r| r.contains("No deployments found.")),
        "{run}"
    );

    // A private repository: found with the configured token, which stays out of the store.
    let run = run_json(
        dir.path(),
        &["deployment-check", "-i", "repo=acme/private", "-i", &api],
    );
    let report = run["output"].as_str().expect("report");
    assert!(
        report.contains("**Latest**: #2001 of `0123456` (main) to **production**"),
        "{report}"
    );
    assert!(report.contains("**Status**: success"), "{report}");
    assert!(!store_bytes(dir.path()).contains(GITHUB_TOKEN));
    let stats = github.stats();
    assert!(
        stats["requests"]
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["authorization"] == "ok")),
        "{stats}"
    );

    // Without the token, GitHub's 404 fails the run at once.
    let bare = workdir("[http]\nallow = [\"127.0.0.1\"]\n");
    let out = weft(
        bare.path(),
        &[
            "run",
            "deployment-check",
            "-i",
            "repo=acme/private",
            "-i",
            &api,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("404 Not Found")),
        "{failed}"
    );
}

#[test]
fn multi_scrape_compares_pages_in_a_table_with_the_failed_one_marked() {
    let pages = Pages::serve(vec![
        (
            "/alpha",
            200,
            "text/html; charset=utf-8",
            html(
                "Alpha Plumbing",
                "Plumbers in Denver since 1990",
                "Fast, friendly <em>plumbing</em>",
                "Call us.",
            ),
        ),
        (
            "/beta",
            200,
            "text/html",
            // Attributes in the other order, an entity, markup inside the heading.
            "<html><head><title>Beta &amp; Sons HVAC</title>\
             <meta content=\"Heating and cooling in Boulder\" name=\"description\"></head>\
             <body><h1 class=\"hero\">Stay <em>warm</em></h1></body></html>"
                .into(),
        ),
        ("/down", 500, "text/plain", "database unavailable".into()),
        (
            "/plain",
            200,
            "text/html",
            "<html><body><p>No title, no description, no heading.</p></body></html>".into(),
        ),
    ]);
    let dir = workdir("[http]\nallow = [\"127.0.0.1\"]\n");
    let urls = json!([
        pages.url("/alpha"),
        pages.url("/beta"),
        pages.url("/down"),
        pages.url("/plain")
    ]);
    let run = run_json(dir.path(), &["multi-scrape", "-i", &format!("urls={urls}")]);
    assert_eq!(run["status"], "succeeded", "{run}");
    let table = run["output"].as_str().expect("a markdown table");
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| http")).collect();
    assert_eq!(rows.len(), 4, "{table}");
    let alpha_len = html(
        "Alpha Plumbing",
        "Plumbers in Denver since 1990",
        "Fast, friendly <em>plumbing</em>",
        "Call us.",
    )
    .len();
    assert_eq!(
        rows[0],
        format!(
            "| {} | 200 | Alpha Plumbing | Plumbers in Denver since 1990 | Fast, friendly plumbing | {alpha_len} |",
            pages.url("/alpha")
        ),
        "{table}"
    );
    assert!(
        rows[1].starts_with(&format!(
            "| {} | 200 | Beta & Sons HVAC | Heating and cooling in Boulder | Stay warm |",
            pages.url("/beta")
        )),
        "{table}"
    );
    assert_eq!(
        rows[2],
        format!("| {} | failed |  |  |  | 0 |", pages.url("/down")),
        "{table}"
    );
    assert!(
        rows[3].starts_with(&format!("| {} | 200 |  |  |  |", pages.url("/plain"))),
        "{table}"
    );
    // Every page was fetched; the failing one once more (its retry).
    assert_eq!(pages.hits("/alpha"), 1);
    assert_eq!(pages.hits("/down"), 2);
    let scrape = run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "scrape"))
        .expect("scrape step");
    assert_eq!(scrape["items_total"], 4, "{scrape}");
    assert_eq!(scrape["items_failed"], 1, "{scrape}");
}

fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_some() {
        return found;
    }
    if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "Chromium is required (WEFT_REQUIRE_SERVICES=1) but missing; install with: apt-get install -y chromium"
        );
    }
    eprintln!("SKIPPED: Chromium is not installed; install with: apt-get install -y chromium");
    None
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[test]
fn screenshot_and_post_stores_the_image_and_returns_its_url_and_size() {
    let Some(chromium) = chromium() else { return };
    let pages = Pages::serve(vec![(
        "/landing",
        200,
        "text/html",
        "<html><body style='margin:0;background:#0a7'><h1>weft landing page</h1>\
         <div style='height:1600px'></div></body></html>"
            .into(),
    )]);
    let dir = workdir(&format!(
        "[browser]\nchromium = \"{}\"\nallow = [\"127.0.0.1\"]\ntimeout = \"90s\"\n\n[artifacts]\ndir = \"shots\"\n",
        chromium.display()
    ));
    let run = run_json(
        dir.path(),
        &[
            "screenshot-and-post",
            "-i",
            &format!("url={}", pages.url("/landing")),
            "-i",
            "width=640",
            "-i",
            "height=480",
        ],
    );
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = &run["output"];
    assert_eq!(out["page"], pages.url("/landing"), "{out}");
    assert_eq!(out["width"], 640, "{out}");
    assert_eq!(out["height"], 480, "{out}");
    assert_eq!(out["content_type"], "image/png", "{out}");
    let url = out["url"].as_str().expect("an artifact URL");
    let id = url
        .strip_prefix("/v1/artifacts/")
        .expect("the artifact URL prefix");
    // The artifact on disk is that PNG.
    let bytes =
        std::fs::read(dir.path().join("shots").join("default").join(id)).expect("the stored PNG");
    assert_eq!(out["bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(png_size(&bytes), (640, 480));
    assert_eq!(pages.hits("/landing"), 1);

    // The run's record holds the artifact's URL, not the image.
    let id = run["id"].as_str().expect("run id");
    let shown = weft(dir.path(), &["runs", "show", id, "--json"]);
    assert!(shown.status.success(), "{}", text(&shown));
    let record = String::from_utf8_lossy(&shown.stdout);
    assert!(record.contains(url), "{record}");
    assert!(
        !record.contains("iVBORw0KGgo"),
        "PNG base64 in the run record"
    );
    assert!(!record.contains("base64"), "base64 in the run record");
    assert!(
        record.len() < 20_000,
        "the run record is {} bytes",
        record.len()
    );

    // Full page: taller than the viewport.
    let run = run_json(
        dir.path(),
        &[
            "screenshot-and-post",
            "-i",
            &format!("url={}", pages.url("/landing")),
            "-i",
            "width=400",
            "-i",
            "height=300",
            "-i",
            "full_page=true",
        ],
    );
    assert_eq!(run["output"]["width"], 400, "{run}");
    assert!(
        run["output"]["height"].as_u64().is_some_and(|h| h > 1000),
        "{run}"
    );
}

/// `venv/bin/NAME` under `WEFT_VENV` or the repository root, or a clear skip.
fn venv_bin(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("WEFT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../venv"));
    let path = base.join("bin").join(name);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "{name} is required (WEFT_REQUIRE_SERVICES=1) but missing; install with: python3 -m venv venv && venv/bin/pip install mcp-server-fetch==2026.10.24"
        );
    }
    eprintln!(
        "SKIPPED: {name} is not installed; install with: python3 -m venv venv && venv/bin/pip install mcp-server-fetch==2026.10.24"
    );
    None
}

#[test]
fn web_research_reads_pages_through_the_real_mcp_fetch_server_when_swapped_in() {
    let Some(fetch) = venv_bin("mcp-server-fetch") else {
        return;
    };
    let (pages, brave, _results) = research_setup();
    let llm = StandIn::start("openai_standin.py", &[LLM_KEY]);
    let mut toml = research_toml(&brave, Some(&llm));
    toml.push_str(&format!(
        "\n[mcp.fetch]\ncommand = \"{}\"\nargs = [\"--ignore-robots-txt\", \"--allow-private-ips\"]\nstartup_timeout = \"60s\"\n",
        fetch.display()
    ));
    let dir = workdir(&toml);
    // The variant the README describes: a copy of the built-in in ./templates with the
    // `scrape` step's tool swapped for the MCP server's `fetch`.
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/web-research.yaml"),
    )
    .expect("the built-in template");
    let http_scrape = "    tool: http\n    with: { url: \"{{ result.url }}\", headers: { Accept: \"text/html,application/xhtml+xml,*/*;q=0.8\" }, timeout: 20s }\n";
    assert!(builtin.contains(http_scrape), "the scrape step changed");
    let variant = builtin.replace(
        http_scrape,
        "    tool: mcp.fetch.fetch\n    with: { url: \"{{ result.url }}\", max_length: 20000 }\n",
    );
    std::fs::create_dir(dir.path().join("templates")).expect("templates/");
    std::fs::write(dir.path().join("templates/web-research.yaml"), variant).expect("write");

    let run = run_json(
        dir.path(),
        &[
            "web-research",
            "-i",
            "query=durable execution",
            "-i",
            &format!("api={}", brave.url()),
        ],
    );
    assert_eq!(run["file"], "templates/web-research.yaml", "{run}");
    let report = run["output"].as_str().expect("report");
    assert!(
        report.contains("**Stand-in summary** of \"durable execution\" from 3 sources."),
        "{report}"
    );
    assert!(report.contains("(could not be read)"), "{report}");
    // The pages reached the model as the fetch server's markdown.
    let seen = llm.stats();
    let prompt = seen["requests"][0]["prompt"].as_str().expect("prompt");
    assert!(prompt.contains("SENTINEL-ALPHA"), "{prompt}");
    assert!(prompt.contains("SENTINEL-BETA"), "{prompt}");
    assert!(!prompt.contains("SCRIPT-NOISE"), "{prompt}");
    assert_eq!(pages.hits("/durable/fourth.html"), 0);
    let notes = recall(dir.path(), "research", "durable execution");
    assert_eq!(
        notes["read"],
        json!([
            pages.url("/durable/intro.html"),
            pages.url("/durable/queues.html")
        ])
    );
}
