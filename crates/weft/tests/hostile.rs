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
        Serve::start_with("")
    }

    /// A server whose folder has `config` as its `weft.toml` (none when empty).
    fn start_with(config: &str) -> Option<Serve> {
        Serve::start_full(config, &[], &[], &[])
    }

    /// A server with `weft.toml` = `config` (none when empty), more `weft serve` arguments,
    /// more environment and operator templates (`templates/NAME.yaml`, YAML).
    fn start_full(
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
        templates: &[(&str, &str)],
    ) -> Option<Serve> {
        let dir = tempfile::tempdir().expect("temp dir");
        if !config.is_empty() {
            std::fs::write(dir.path().join("weft.toml"), config).expect("weft.toml");
        }
        for (name, yaml) in templates {
            std::fs::create_dir_all(dir.path().join("templates")).expect("templates/");
            std::fs::write(dir.path().join(format!("templates/{name}.yaml")), yaml)
                .expect("an operator template");
        }
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
            .args(args)
            .envs(env.iter().copied())
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
        // The server may answer (413) and close before it read all of a large body.
        stream.write_all(request).ok();
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

#[test]
fn a_jinja_expression_that_builds_a_huge_value_fails_its_step_not_the_server() {
    let mut s = serve_or_skip!();
    // One cheap instruction, a lazy list of a hundred million items: fuel never sees it, and
    // turning it into JSON (inside the store's transaction) allocated gigabytes.
    let cases = [
        (
            "with",
            "  - id: a\n    tool: transform\n    with: { data: \"{{ ['x'] * 100000000 }}\", jq: '.' }\n",
        ),
        (
            "text",
            "  - id: a\n    tool: transform\n    with: { data: \"n={{ ['x'] * 100000000 }}\", jq: '.' }\n",
        ),
        (
            "for-each",
            "  - id: a\n    tool: transform\n    for_each: \"{{ range(100000) | list * 1000 }}\"\n    \
             with: { data: 1, jq: '.' }\n",
        ),
        (
            "output",
            "  - id: a\n    tool: transform\n    with: { data: 1, jq: '.' }\noutput:\n  \
             x: \"{{ ['x'] * 100000000 }}\"\n",
        ),
    ];
    for (name, steps) in cases {
        let yaml = format!("name: expr-{name}\nversion: 1\nsteps:\n{steps}");
        let error = fails_with(&s, &yaml);
        assert!(
            error.contains("larger than 16 MiB")
                || error.contains("more than 10000 items")
                || error.contains("ran out of fuel"),
            "{name}: {error}"
        );
    }
    s.still_serves_everyone();
}

/// Chromium, or None (the test skips, or fails with `WEFT_REQUIRE_SERVICES=1`).
fn chromium() -> Option<String> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if found.is_none() {
        assert_ne!(
            std::env::var("WEFT_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "Chromium is required (WEFT_REQUIRE_SERVICES=1); apt-get install -y chromium"
        );
        eprintln!("SKIPPED: Chromium is not installed; apt-get install -y chromium");
    }
    found.map(str::to_string)
}

/// A loopback listener that counts the connections it accepts.
fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\nINTERNAL SECRET",
            );
        }
    });
    (port, count)
}

/// A page server: `/` is `page`, `/go` redirects to `redirect`.
fn page_server(page: String, redirect: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 2048];
            let n = stream.read(&mut head).unwrap_or(0);
            let head = String::from_utf8_lossy(&head[..n]);
            let response = if head.starts_with("GET /go ") {
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {redirect}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{page}",
                    page.len()
                )
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

#[test]
fn a_page_in_the_browser_cannot_reach_a_loopback_service() {
    let Some(chromium) = chromium() else { return };
    let (secret, count) = counting_listener();
    let page = format!(
        "<html><body><h1>public</h1>\
         <iframe src='http://127.0.0.1:{secret}/frame'></iframe>\
         <iframe src='/go'></iframe>\
         <img src='http://localhost:{secret}/img.png'>\
         <script>fetch('http://127.0.0.1:{secret}/fetch', {{mode: 'no-cors'}})\
           .catch(() => 0).then(() => {{ const p = document.createElement('p'); p.id = 'done';\
           document.body.append(p); }});</script></body></html>"
    );
    let port = page_server(page, format!("http://127.0.0.1:{secret}/redirected"));
    // The operator allows the page's host and port (an intranet page, say); the loopback
    // service on another port stays refused.
    let mut s = match Serve::start_with(&format!(
        "[browser]\nchromium = \"{chromium}\"\nallow = [\"127.0.0.1:{port}\"]\ntimeout = \"90s\"\n"
    )) {
        Some(s) => s,
        None => return,
    };
    let yaml = "name: shot\nversion: 1\ninputs:\n  url: { type: string }\nsteps:\n  - id: shot\n    \
                tool: browser.screenshot\n    with: { url: '{{ input.url }}', wait_for: '#done' }\n\
                output:\n  blocked: '{{ steps.shot.output.blocked }}'\n";
    let run = s.run(yaml, json!({"url": format!("http://127.0.0.1:{port}/")}));
    let view = s.wait_done(&s.mallory.clone(), &run);
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the loopback service was reached"
    );
    let blocked = view["output"]["blocked"].to_string();
    assert!(blocked.contains(&format!(":{secret}")), "{view}");
    s.still_serves_everyone();
}

/// Connects and sends `bytes`; the stream, reading with a generous timeout.
fn open(s: &Serve, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(&s.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    stream.write_all(bytes).expect("send");
    stream
}

/// Whether the server closed `stream` (end of file or reset) rather than leaving it open
/// until our read timed out. What it sent before closing is returned too.
fn closed_by_server(stream: &mut TcpStream) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (true, String::from_utf8_lossy(&got).into_owned());
            }
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

#[test]
fn half_sent_and_idle_connections_are_closed() {
    let Some(mut s) = Serve::start_full("", &["--header-timeout", "1s"], &[], &[]) else {
        eprintln!("skipped: WEFT_TEST_BACKEND=postgres but no PostgreSQL is reachable");
        return;
    };
    // A head that never ends (slowloris).
    let mut half = open(&s, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    assert!(closed_by_server(&mut half).0, "a half-sent head is cut off");
    // A kept-alive connection after its answer, then silence.
    let mut idle = open(&s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (closed, answer) = closed_by_server(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle kept-alive connection is closed");
    // A body announced and never sent.
    let mut stalled = open(
        &s,
        format!(
            "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
            s.mallory
        )
        .as_bytes(),
    );
    let (closed, answer) = closed_by_server(&mut stalled);
    assert!(closed, "a stalled body is cut off: {answer}");
    s.still_serves_everyone();
}

#[test]
fn a_connection_past_the_cap_gets_a_problem_and_the_server_recovers() {
    let Some(mut s) = Serve::start_full("", &["--max-connections", "4"], &[], &[]) else {
        eprintln!("skipped: WEFT_TEST_BACKEND=postgres but no PostgreSQL is reachable");
        return;
    };
    let held: Vec<TcpStream> = (0..4)
        .map(|_| open(&s, b"GET /healthz HTTP/1.1\r\n"))
        .collect();
    let (status, head, body) = s.raw(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: Value = serde_json::from_str(&body).expect("a problem document");
    assert_eq!(problem["code"], "WEFT-E212", "{problem}");
    drop(held);
    // The slots free as the held connections close.
    let started = Instant::now();
    while s.raw(b"GET /healthz HTTP/1.0\r\n\r\n").0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(60), "no slot freed");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.still_serves_everyone();
}

#[test]
fn every_error_is_a_problem_and_every_body_is_limited() {
    let mut s = serve_or_skip!();
    // A path that is not UTF-8.
    let (status, head, body) = s.raw(b"GET /v1/runs/%FF%FE HTTP/1.0\r\n\r\n");
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(head.contains("application/problem+json"), "{head}\n{body}");
    // Bodies past the limit on routes that read the body themselves, with and without a
    // length announced.
    let big = "x".repeat(2 * 1024 * 1024);
    for path in ["/mcp", "/v1/runs", "/v1/templates"] {
        let method = "POST";
        let request = format!(
            "{method} {path} HTTP/1.0\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: {}\r\n\r\n{big}",
            s.mallory,
            big.len()
        );
        let (status, head, body) = s.raw(request.as_bytes());
        assert_eq!(status, 413, "{path}: {body}");
        assert!(head.contains("application/problem+json"), "{path}: {head}");
        let chunked = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            s.mallory,
            big.len()
        );
        let (status, head, body) = s.raw(chunked.as_bytes());
        assert_eq!(status, 413, "{path} chunked: {head}\n{body}");
    }
    s.still_serves_everyone();
}

#[test]
fn metrics_name_no_tenants_choices_without_the_operator_token() {
    let Some(mut s) = Serve::start_full("", &[], &[("WEFT_METRICS_TOKEN", "op-metrics-1")], &[])
    else {
        eprintln!("skipped: WEFT_TEST_BACKEND=postgres but no PostgreSQL is reachable");
        return;
    };
    let yaml = jq_template("mallory-private-plan", ".", "queue", "");
    let run = s.run(&yaml, json!({}));
    s.wait_done(&s.mallory.clone(), &run);
    let (status, _, public) = s.raw(b"GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200, "{public}");
    assert!(public.contains("weft_queue_depth"), "{public}");
    assert!(!public.contains("mallory-private-plan"), "{public}");
    assert!(!public.contains("template="), "{public}");
    // A tenant's key is not the operator's credential.
    let (status, problem) = s.send("GET", "/metrics", &s.mallory.clone(), None);
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["code"], "WEFT-E201", "{problem}");
    let (status, full) = s.send("GET", "/metrics", "op-metrics-1", None);
    assert_eq!(status, 200, "{full}");
    assert!(
        full.as_str()
            .is_some_and(|t| t.contains("template=\"mallory-private-plan\"")),
        "{full}"
    );
    s.still_serves_everyone();
}

#[test]
fn idempotent_replays_are_audited_once() {
    let mut s = serve_or_skip!();
    let body = json!({"template": "hello", "inputs": {"cities": 2}}).to_string();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let request = format!(
            "POST /v1/runs HTTP/1.0\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nIdempotency-Key: replay-1\r\n\
             Content-Length: {}\r\n\r\n{body}",
            s.mallory,
            body.len()
        );
        let (status, _, answer) = s.raw(request.as_bytes());
        assert!(status == 201 || status == 200, "{status} {answer}");
        let answer: Value = serde_json::from_str(&answer).expect("json");
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one run: {ids:?}");
    let (status, audit) = s.send(
        "GET",
        &format!("/v1/audit?run={}", ids[0]),
        &s.mallory.clone(),
        None,
    );
    assert_eq!(status, 200, "{audit}");
    let created = audit["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "run.created")
        .count();
    assert_eq!(created, 1, "{audit}");
    s.still_serves_everyone();
}

#[test]
fn sigterm_stops_the_server_within_its_grace_with_runaway_steps_running() {
    let sleeper = "name: sleeper\nversion: 1\nsteps:\n  - id: nap\n    tool: command\n    \
                   strategy: queue\n    timeout: 10m\n    with: { argv: [sleep, '600'] }\n";
    let Some(mut s) = Serve::start_full("", &["--grace", "2s"], &[], &[("sleeper", sleeper)])
    else {
        eprintln!("skipped: WEFT_TEST_BACKEND=postgres but no PostgreSQL is reachable");
        return;
    };
    let runaway = jq_template(
        "spin",
        "[limit(300000000; repeat(1))] | length",
        "queue",
        "    timeout: 10m\n",
    );
    let spin = s.run(&runaway, json!({}));
    let (status, body) = s.json(
        "POST",
        "/v1/runs",
        &s.alice.clone(),
        &json!({"template": "sleeper", "inputs": {}}),
    );
    assert_eq!(status, 201, "{body}");
    let nap = body["id"].as_str().expect("id").to_string();
    // Both steps are running before the signal.
    for (key, run) in [(s.mallory.clone(), &spin), (s.alice.clone(), &nap)] {
        let started = Instant::now();
        loop {
            let (_, view) = s.send("GET", &format!("/v1/runs/{run}"), &key, None);
            if view.to_string().contains("\"running\"") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{view}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let pid = s.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    // A generous bound, not a measurement: without the fix it never stopped on its own.
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = s.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "weft serve still running a minute after SIGTERM (grace 2s)"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
}
