//! A hostile tenant against a real `weft serve` with default settings: it has only its own API
//! key and sends what would kill or wedge the server (YAML bombs, deep nesting, runaway jq and
//! Jinja, huge and malformed requests). After each case the server is still up, another tenant
//! is served, the hostile tenant got a clear error, and everything stored still reads back.
//!
//! SQLite by default; `WEFT_TEST_BACKEND=postgres` runs every case on a fresh PostgreSQL
//! database (`WEFT_TEST_PG`), skipped with a message when none is reachable unless
//! `WEFT_REQUIRE_SERVICES=1`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_store::postgres::testing;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A `weft serve` with two tenants: `mallory` (hostile) and `alice` (who must not notice).
struct Serve {
    child: Child,
    addr: String,
    db: String,
    mallory: String,
    alice: String,
    dir: tempfile::TempDir,
    /// Last, so the database is dropped after the server stopped.
    _pg: Option<PgDb>,
}

/// A PostgreSQL database made for one server, dropped with it.
struct PgDb {
    server: String,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Runtime::new() {
            rt.block_on(testing::drop_database(&self.server, &self.name))
                .ok();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(WEFT);
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG");
    cmd
}

/// The database for one server: a fresh PostgreSQL database with `WEFT_TEST_BACKEND=postgres`
/// (None when the backend is PostgreSQL but none is reachable: the test skips), else SQLite.
fn database(dir: &Path) -> Option<(String, Option<PgDb>)> {
    if std::env::var("WEFT_TEST_BACKEND").as_deref() != Ok("postgres") {
        let db = dir.join("weft.db").display().to_string();
        return Some((db, None));
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(testing::server_url())?;
    let (name, url) = rt
        .block_on(testing::create_database(&server))
        .expect("create a database");
    Some((url, Some(PgDb { server, name })))
}

impl Serve {
    fn start() -> Option<Serve> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, pg) = database(dir.path())?;
        let mut keys = Vec::new();
        for tenant in ["mallory", "alice"] {
            let out = weft(dir.path())
                .args(["tenants", "create", tenant, "--db", &db])
                .output()
                .expect("weft tenants create");
            assert!(out.status.success(), "{out:?}");
            keys.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let mut child = weft(dir.path())
            .args(["serve", "--db", &db, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weft serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut log = String::new();
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("weft serve exited early:\n{log}"),
            };
            log.push_str(&line);
            log.push('\n');
            if let Some(rest) = line.strip_prefix("weft serving http://") {
                break rest.split_whitespace().next().expect("addr").to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let alice = keys.pop().expect("key");
        let mallory = keys.pop().expect("key");
        Some(Serve {
            child,
            addr,
            db,
            mallory,
            alice,
            dir,
            _pg: pg,
        })
    }

    /// One HTTP/1.0 request with a raw body; (status, headers, body).
    fn raw(&self, request: &[u8]) -> (u16, String, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        stream.write_all(request).expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok();
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (status, head.to_string(), body.to_string())
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<(&str, &str)>,
    ) -> (u16, Value) {
        let (content_type, body) = body.unwrap_or(("application/json", ""));
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let (status, _, body) = self.raw(request.as_bytes());
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, value)
    }

    fn json(&self, method: &str, path: &str, key: &str, body: &Value) -> (u16, Value) {
        self.send(
            method,
            path,
            key,
            Some(("application/json", &body.to_string())),
        )
    }

    fn register(&self, key: &str, yaml: &str) -> (u16, Value) {
        self.send(
            "POST",
            "/v1/templates",
            key,
            Some(("application/yaml", yaml)),
        )
    }

    /// Registers `yaml` as mallory and starts it; the run's id.
    fn run(&self, yaml: &str, inputs: Value) -> String {
        let (status, body) = self.register(&self.mallory, yaml);
        assert!(status == 201 || status == 200, "{status} {body}");
        let name = body["name"].as_str().expect("name").to_string();
        let (status, body) = self.json(
            "POST",
            "/v1/runs",
            &self.mallory,
            &json!({"template": name, "inputs": inputs}),
        );
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    fn wait_done(&self, key: &str, run: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, view) = self.send("GET", &format!("/v1/runs/{run}"), key, None);
            assert_eq!(status, 200, "{view}");
            if ["succeeded", "failed", "cancelled"].contains(&view["status"].as_str().unwrap_or(""))
            {
                return view;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the run did not end: {view}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What every case ends with: the server answers, alice's runs work, both tenants' lists
    /// read back, and so does the whole store through the CLI.
    fn still_serves_everyone(&mut self) {
        assert!(
            self.child.try_wait().expect("wait").is_none(),
            "weft serve died"
        );
        let (status, body) = self.send("GET", "/healthz", "", None);
        assert_eq!(status, 200, "{body}");
        let (status, body) = self.json(
            "POST",
            "/v1/runs",
            &self.alice.clone(),
            &json!({"template": "hello", "inputs": {"cities": 2}}),
        );
        assert_eq!(status, 201, "{body}");
        let run = body["id"].as_str().expect("id").to_string();
        let view = self.wait_done(&self.alice.clone(), &run);
        assert_eq!(view["status"], "succeeded", "{view}");
        for key in [&self.alice, &self.mallory] {
            let (status, body) = self.send("GET", "/v1/runs", key, None);
            assert_eq!(status, 200, "{body}");
        }
        let out = weft(self.dir.path())
            .args(["--json", "runs", "list", "--db", &self.db])
            .output()
            .expect("weft runs list");
        assert!(out.status.success(), "weft runs list: {out:?}");
    }
}

macro_rules! serve_or_skip {
    () => {
        match Serve::start() {
            Some(serve) => serve,
            None => {
                eprintln!("skipped: WEFT_TEST_BACKEND=postgres but no PostgreSQL is reachable");
                return;
            }
        }
    };
}

fn detail(problem: &Value) -> String {
    problem.to_string()
}

#[test]
fn a_yaml_billion_laughs_is_refused_before_it_expands() {
    let mut s = serve_or_skip!();
    let mut yaml = String::from(
        "name: lol\nversion: 1\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        yaml.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    assert!(yaml.len() < 1024);
    let (status, body) = s.register(&s.mallory.clone(), &yaml);
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("aliases are expanded"), "{body}");
    s.still_serves_everyone();
}

#[test]
fn yaml_nested_ten_thousand_deep_is_refused_without_a_stack_overflow() {
    let mut s = serve_or_skip!();
    // 20 KB: ten thousand nested lists, `- - - ... x`.
    let yaml = format!(
        "name: deep\nversion: 1\nsteps:\n  {}x\n",
        "- ".repeat(10_000)
    );
    let (status, body) = s.register(&s.mallory.clone(), &yaml);
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("nest more than 64 levels"), "{body}");
    let flow = format!(
        "name: deep\nversion: 1\nsteps: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let (status, body) = s.register(&s.mallory.clone(), &flow);
    assert_eq!(status, 422, "{body}");
    s.still_serves_everyone();
}

#[test]
fn an_output_nested_200_deep_fails_its_step_and_every_list_still_reads() {
    let mut s = serve_or_skip!();
    for strategy in ["sync", "queue"] {
        let yaml = format!(
            "name: deep-{strategy}\nversion: 1\nsteps:\n  - id: nest\n    tool: transform\n    \
             strategy: {strategy}\n    with: {{ data: 1, jq: 'reduce range(200) as $i (.; [.])' }}\n"
        );
        let run = s.run(&yaml, json!({}));
        let view = s.wait_done(&s.mallory.clone(), &run);
        assert_eq!(view["status"], "failed", "{view}");
        assert!(
            detail(&view).contains("more than 100 levels deep"),
            "the error says why: {view}"
        );
    }
    s.still_serves_everyone();
}

#[test]
fn inputs_nested_too_deep_are_refused_at_creation() {
    let mut s = serve_or_skip!();
    let yaml = "name: echo\nversion: 1\ninputs:\n  x: { type: object }\nsteps:\n  - id: a\n    \
                tool: transform\n    with: { data: '{{ input.x }}', jq: '.' }\n";
    let (status, body) = s.register(&s.mallory.clone(), yaml);
    assert_eq!(status, 201, "{body}");
    let mut deep = json!(1);
    for _ in 0..110 {
        deep = json!({ "a": deep });
    }
    let (status, body) = s.json(
        "POST",
        "/v1/runs",
        &s.mallory.clone(),
        &json!({"template": "echo", "inputs": {"x": deep}}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("levels deep"), "{body}");
    s.still_serves_everyone();
}

#[test]
fn a_body_past_the_limit_is_a_problem_413() {
    let mut s = serve_or_skip!();
    let big = format!(
        "name: big\nversion: 1\ndescription: '{}'\n",
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, body) = s.register(&s.mallory.clone(), &big);
    assert_eq!(status, 413, "{body}");
    assert!(body["code"].is_string(), "a problem: {body}");
    s.still_serves_everyone();
}

/// A one-step template around a `transform` program, queued or (as pure steps are by default)
/// inline; `extra` is more of the step's YAML.
fn jq_template(name: &str, program: &str, strategy: &str, extra: &str) -> String {
    format!(
        "name: {name}\nversion: 1\nsteps:\n  - id: eval\n    tool: transform\n    \
         strategy: {strategy}\n{extra}    with: {{ data: 1, jq: '{program}' }}\n"
    )
}

/// Runs `yaml` as mallory and returns the failed run's error text.
fn fails_with(s: &Serve, yaml: &str) -> String {
    let run = s.run(yaml, json!({}));
    let view = s.wait_done(&s.mallory, &run);
    assert_eq!(view["status"], "failed", "{view}");
    detail(&view)
}

#[test]
fn jq_that_allocates_without_bound_fails_its_step_not_the_server() {
    let mut s = serve_or_skip!();
    for strategy in ["sync", "queue"] {
        let yaml = jq_template(
            &format!("alloc-{strategy}"),
            "[range(1e9)] | length",
            strategy,
            "",
        );
        let error = fails_with(&s, &yaml);
        assert!(error.contains("MiB of memory"), "{error}");
    }
    s.still_serves_everyone();
}

#[test]
fn jq_that_nests_a_hundred_thousand_deep_fails_its_step_not_the_server() {
    let mut s = serve_or_skip!();
    for strategy in ["sync", "queue"] {
        let yaml = jq_template(
            &format!("nest-{strategy}"),
            "reduce range(100000) as $i (.; [.])",
            strategy,
            "",
        );
        let error = fails_with(&s, &yaml);
        assert!(
            error.contains("levels deep") || error.contains("overflowed its stack"),
            "{error}"
        );
    }
    s.still_serves_everyone();
}

#[test]
fn a_runaway_jq_stops_at_the_step_timeout_while_others_are_served() {
    let mut s = serve_or_skip!();
    let yaml = jq_template(
        "runaway",
        "[limit(300000000; repeat(1))] | length",
        "sync",
        "    timeout: 2s\n",
    );
    let run = s.run(&yaml, json!({}));
    // While it runs, the API answers and another tenant's run finishes.
    s.still_serves_everyone();
    let view = s.wait_done(&s.mallory.clone(), &run);
    assert_eq!(view["status"], "failed", "{view}");
    assert!(detail(&view).contains("timed out after 2s"), "{view}");
}

#[test]
fn a_jinja_memory_bomb_in_render_fails_its_step_not_the_server() {
    let mut s = serve_or_skip!();
    let yaml = "name: bomb\nversion: 1\nsteps:\n  - id: text\n    tool: render\n    with:\n      \
                template: \"{% set ns = namespace(l=[]) %}{% for i in range(20) %}\
                {% set ns.l = ns.l + ['x' * 100000000] %}{% endfor %}{{ ns.l | length }}\"\n";
    // Stopped by its fuel or, past that, by the evaluator's memory limit.
    let error = fails_with(&s, yaml);
    assert!(
        error.contains("ran out of fuel") || error.contains("MiB of memory"),
        "{error}"
    );
    s.still_serves_everyone();
}
