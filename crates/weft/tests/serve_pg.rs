//! `weft serve --db postgres://...` as a user runs it: the first start makes tenant `default`
//! with its key in `.weft/admin.key`; `weft tenants create` with a task cap; a template that
//! uses the memory tools runs through the API and remembers across runs; its events stream
//! over SSE (with a one-use ticket) to the end; `GET /v1/tenant` shows the cap; a second
//! server on the same database serves the same tenants and runs, and `weft run --db` the
//! same memory.
//!
//! Each test uses a fresh database `weft_test_<random>`. Without a reachable server
//! (`WEFT_TEST_PG`) it skips with a message, unless `WEFT_REQUIRE_SERVICES=1`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_store::postgres::testing;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

const REMEMBER: &str = r#"
name: remember
version: 1
inputs:
  city: { type: string }
steps:
  - id: before
    tool: memory.get
    with: { namespace: trips, key: last, default: nowhere }
  - id: store
    tool: memory.put
    needs: [before]
    with: { namespace: trips, key: last, value: "{{ input.city }}" }
  - id: find
    tool: memory.search
    needs: [store]
    with: { namespace: trips, query: "{{ input.city }}" }
output:
  previous: "{{ steps.before.output }}"
  found: "{{ steps.find.output | length }}"
"#;

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(WEFT);
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG");
    cmd
}

/// One HTTP/1.0 request; returns (status, body). The server closes the connection after the
/// response, so this also reads a whole event stream until the server ends it.
fn http(addr: &str, method: &str, path: &str, key: &str, body: Option<&Value>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = if key.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {key}\r\n")
    };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Starts `weft serve` and returns it with the address it printed.
fn serve(dir: &Path, db: &str) -> (Child, String) {
    let mut child = weft(dir)
        .args(["serve", "--db", db, "--listen", "127.0.0.1:0"])
        .args(["--templates", "flows"])
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
    assert!(log.contains("postgres://"), "{log}");
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn wait_done(addr: &str, key: &str, run: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = http(addr, "GET", &format!("/v1/runs/{run}"), key, None);
        assert_eq!(status, 200, "{body}");
        let view = json_of(&body);
        if ["succeeded", "failed", "cancelled"].contains(&view["status"].as_str().unwrap_or("")) {
            return view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run did not end: {view}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(addr: &str, key: &str, city: &str) -> String {
    let (status, body) = http(
        addr,
        "POST",
        "/v1/runs",
        key,
        Some(&json!({"template": "remember", "inputs": {"city": city}})),
    );
    assert_eq!(status, 201, "{body}");
    json_of(&body)["id"].as_str().expect("id").to_string()
}

#[test]
fn serve_on_postgres_runs_streams_and_remembers() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(server) = rt.block_on(testing::server_url()) else {
        return;
    };
    let (name, url) = rt
        .block_on(testing::create_database(&server))
        .expect("create a database");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("flows")).expect("mkdir");
    std::fs::write(dir.path().join("flows/remember.yaml"), REMEMBER).expect("template");

    let (mut first, addr) = serve(dir.path(), &url);
    let admin = std::fs::read_to_string(dir.path().join(".weft/admin.key"))
        .expect("the first start writes .weft/admin.key")
        .trim()
        .to_string();
    let (status, body) = http(&addr, "GET", "/v1/runs", &admin, None);
    assert_eq!(status, 200, "{body}");

    let out = weft(dir.path())
        .args(["tenants", "create", "acme", "--max-concurrent-tasks", "2"])
        .args(["--db", &url])
        .output()
        .expect("weft tenants create");
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (status, body) = http(&addr, "GET", "/v1/tenant", &key, None);
    assert_eq!(status, 200, "{body}");
    let tenant = json_of(&body);
    assert_eq!(
        (
            tenant["name"].as_str(),
            tenant["max_concurrent_tasks"].as_u64()
        ),
        (Some("acme"), Some(2))
    );

    // A run through the API: memory starts empty for this tenant, then remembers.
    let run = start(&addr, &key, "Lyon");
    let (status, body) = http(
        &addr,
        "POST",
        &format!("/v1/runs/{run}/stream-tickets"),
        &key,
        None,
    );
    assert_eq!(status, 201, "{body}");
    let ticket = json_of(&body)["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    // The stream replays from the start and ends after the terminal event.
    let (status, stream) = http(
        &addr,
        "GET",
        &format!("/v1/runs/{run}/events?ticket={ticket}"),
        "",
        None,
    );
    assert_eq!(status, 200, "{stream}");
    let kinds: Vec<String> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter_map(|e| e["kind"].as_str().map(String::from))
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("run.started"));
    assert_eq!(kinds.last().map(String::as_str), Some("run.succeeded"));
    assert_eq!(
        kinds.iter().filter(|k| *k == "step.succeeded").count(),
        3,
        "{kinds:?}"
    );
    let ids: Vec<i64> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let (status, _) = http(
        &addr,
        "GET",
        &format!("/v1/runs/{run}/events?ticket={ticket}"),
        "",
        None,
    );
    assert_eq!(status, 401, "a ticket works once");

    let view = wait_done(&addr, &key, &run);
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["output"]["previous"], "nowhere", "{view}");
    assert_eq!(view["output"]["found"], 1, "{view}");

    // A second server on the same database: same tenants, the first run's memory.
    let (mut second, addr2) = serve(dir.path(), &url);
    let again = start(&addr2, &key, "Turin");
    let view = wait_done(&addr2, &key, &again);
    assert_eq!(view["output"]["previous"], "Lyon", "{view}");
    let (status, body) = http(&addr, "GET", &format!("/v1/runs/{again}"), &key, None);
    assert_eq!(status, 200, "{body}");
    // Another tenant sees neither run nor memory.
    let (status, _) = http(&addr, "GET", &format!("/v1/runs/{again}"), &admin, None);
    assert_eq!(status, 404);
    let other = start(&addr, &admin, "Oslo");
    let view = wait_done(&addr, &admin, &other);
    assert_eq!(view["output"]["previous"], "nowhere", "{view}");

    // The CLI on the same database runs the memory tools too (its runs are `default`'s).
    let out = weft(dir.path())
        .args(["--json", "run", "flows/remember.yaml", "-i", "city=Rome"])
        .args(["--db", &url])
        .output()
        .expect("weft run");
    assert!(out.status.success(), "{out:?}");
    let view: Value = serde_json::from_slice(&out.stdout).expect("run JSON");
    assert_eq!(view["output"]["previous"], "Oslo", "{view}");

    for child in [&mut first, &mut second] {
        child.kill().ok();
        child.wait().ok();
    }
    rt.block_on(testing::drop_database(&server, &name))
        .expect("drop the test database");
}
