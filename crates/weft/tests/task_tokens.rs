//! Task tokens and secret scrubbing through a real `weft serve`, as a tool sees them: a
//! `command` step gets `WEFT_TASK_TOKEN` and `WEFT_API_URL`, calls the task callback API with
//! Python's urllib, and every way a token can be wrong is refused with its own code.
//!
//! The canary check runs the server at `RUST_LOG=trace` with a tool that reads its secret
//! through the callback API and echoes it (raw, base64, URL-encoded, hex, JSON-escaped), and
//! one that fails with all of them in its error: no form of the value may be found in the
//! server's log, the database (file bytes and `sqlite3 .dump`), the SSE transcript or any API
//! response.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const CANARY: &str = "canary-7f3a9 v/+=&\"q\" leak-me-not";

thread_local! {
    /// The PostgreSQL database of the test running on this thread (SQLite when `None`).
    static DB: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env_remove("WEFT_SECRET_KEY")
        .env("NO_COLOR", "1");
    if let Some(url) = DB.with(|db| db.borrow().clone()) {
        cmd.env("WEFT_DB", url);
    }
    cmd
}

/// One HTTP/1.0 request; returns (status, body).
fn request(
    addr: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    if let Some(body) = body {
        stream.write_all(body.as_bytes()).expect("write body");
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed for the tool scripts");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// The helper every tool script starts with: calls the API with the task's token.
const PRELUDE: &str = r#"
import base64, json, os, sys, time, urllib.error, urllib.parse, urllib.request
API = os.environ["WEFT_API_URL"]
TOKEN = os.environ["WEFT_TASK_TOKEN"]

def call(method, path, body=None, token=TOKEN):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as res:
            text = res.read().decode()
            return res.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, (json.loads(text) if text else None)

def code(result):
    status, body = result
    return [status, (body or {}).get("code")]
"#;

const ECHO: &str = r#"
status, body = call("GET", "/v1/task/secrets/CANARY_KEY")
assert status == 200, (status, body)
v = body["value"]
call("POST", "/v1/task/progress", {"done": 1, "total": 2, "message": "read " + v})
raw = v.encode()
forms = {
    "raw": v,
    "b64": base64.b64encode(raw).decode(),
    "b64url": base64.urlsafe_b64encode(raw).decode(),
    "inside_b64": base64.b64encode(b"x" + raw + b"tail").decode(),
    "url": urllib.parse.quote(v, safe=""),
    "form": urllib.parse.quote_plus(v),
    "hex": raw.hex(),
    "json": json.dumps(v),
    "json_in_text": "config=" + json.dumps({"key": v}),
}
if sys.argv[1] == "fail":
    sys.stderr.write("failed with " + json.dumps(forms) + "\n")
    sys.exit(3)
print(json.dumps(forms))
"#;

const PROBE: &str = r#"
import secrets
out = {}
out["missing"] = code(call("POST", "/v1/task/progress", {"done": 1}, token=None))
out["malformed"] = code(call("POST", "/v1/task/progress", {"done": 1}, token="wft_tt_short"))
out["api_key"] = code(call("POST", "/v1/task/progress", {"done": 1}, token=sys.argv[1]))
unknown = "wft_tt_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
out["unknown"] = code(call("POST", "/v1/task/progress", {"done": 1}, token=unknown))
out["progress"] = code(call("POST", "/v1/task/progress", {"done": 1, "total": 1, "message": "half"}))
out["wrong_scope_secret"] = code(call("GET", "/v1/task/secrets/CANARY_KEY"))
out["other_tenant_secret"] = code(call("GET", "/v1/task/secrets/ACME_ONLY"))
out["memory_write"] = code(call("PUT", "/v1/task/memory/notes/k", {"value": {"n": 1}}))
out["memory_read"] = call("GET", "/v1/task/memory/notes/k")
out["memory_missing"] = code(call("GET", "/v1/task/memory/notes/none"))
req = urllib.request.Request(API + "/v1/task/artifacts", data=b"report bytes", method="POST")
req.add_header("Authorization", "Bearer " + TOKEN)
req.add_header("Content-Type", "text/plain")
with urllib.request.urlopen(req) as res:
    out["artifact"] = [res.status, json.loads(res.read().decode())]
out["renew"] = code(call("POST", "/v1/task/token/renew"))
with open(sys.argv[2], "w") as f:
    f.write(TOKEN)
print(json.dumps(out))
"#;

const EXPIRE: &str = r#"
time.sleep(1.5)
print(json.dumps({"expired": code(call("POST", "/v1/task/progress", {"done": 1}))}))
"#;

const SUPERSEDE: &str = r#"
path = sys.argv[1]
if os.environ["WEFT_ATTEMPT"] == "1":
    with open(path, "w") as f:
        f.write(TOKEN)
    sys.exit(1)
with open(path) as f:
    old = f.read()
print(json.dumps({"superseded": code(call("POST", "/v1/task/progress", {"done": 1}, token=old)),
                  "current": code(call("POST", "/v1/task/progress", {"done": 1}))}))
"#;

struct Serve {
    child: Child,
    addr: String,
    key: String,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    /// Stops the server and returns everything it wrote to stderr.
    fn stop(mut self) -> String {
        self.child.kill().ok();
        self.child.wait().ok();
        if let Some(reader) = self.reader.take() {
            reader.join().ok();
        }
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn serve(dir: &Path, templates: &Path, rust_log: &str) -> Serve {
    let mut child = weft(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--templates"])
        .arg(templates)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited early").expect("line");
        log.lock().unwrap().push_str(&line);
        log.lock().unwrap().push('\n');
        if let Some(rest) = line.strip_prefix("weft serving http://") {
            break rest.split_whitespace().next().expect("addr").to_string();
        }
    };
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(mut log) = sink.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    let key = std::fs::read_to_string(dir.join(".weft/admin.key"))
        .expect("admin key")
        .trim()
        .to_string();
    Serve {
        child,
        addr,
        key,
        log,
        reader: Some(reader),
    }
}

fn write_tool(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{PRELUDE}\n{body}")).expect("write script");
    path
}

fn template(dir: &Path, name: &str, step: &str) {
    std::fs::write(
        dir.join(format!("{name}.yaml")),
        format!("name: {name}\nversion: 1\nsteps:\n{step}"),
    )
    .expect("write template");
}

/// Starts a run and waits for its end; returns (run document, every API response body read).
fn run_to_end(s: &Serve, name: &str) -> (Value, String) {
    let body = json!({"template": name, "inputs": {}}).to_string();
    let (status, created) = request(&s.addr, "POST", "/v1/runs", Some(&s.key), Some(&body));
    assert_eq!(status, 201, "{created}");
    let id = serde_json::from_str::<Value>(&created).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut seen = created;
    let guard = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = request(
            &s.addr,
            "GET",
            &format!("/v1/runs/{id}"),
            Some(&s.key),
            None,
        );
        assert_eq!(status, 200, "{body}");
        seen.push_str(&body);
        let run: Value = serde_json::from_str(&body).expect("json");
        if ["succeeded", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or("")) {
            return (run, seen);
        }
        assert!(Instant::now() < guard, "run {id} did not end: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn step_output<'a>(run: &'a Value, step: &str) -> &'a Value {
    &run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == step)
        .expect("step")["output"]
}

fn set_secret(dir: &Path, name: &str, value: &str) {
    let mut child = weft(dir)
        .args(["secrets", "set", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success());
}

#[test]
fn every_wrong_token_is_refused_with_its_own_code() {
    token_classes();
}

/// The same on PostgreSQL (`weft serve --db postgres://...`), in a fresh database.
#[test]
fn every_wrong_token_is_refused_with_its_own_code_on_postgres() {
    use weft_store::postgres::testing;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(server) = runtime.block_on(testing::server_url()) else {
        return;
    };
    let (name, url) = runtime
        .block_on(testing::create_database(&server))
        .expect("create a database");
    DB.with(|db| *db.borrow_mut() = Some(url));
    token_classes();
    runtime
        .block_on(testing::drop_database(&server, &name))
        .expect("drop the test database");
}

fn token_classes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("mkdir");
    let py = python();
    set_secret(dir.path(), "CANARY_KEY", CANARY);
    let probe = write_tool(&templates, "probe.py", PROBE);
    let expire = write_tool(&templates, "expire.py", EXPIRE);
    let supersede = write_tool(&templates, "supersede.py", SUPERSEDE);
    let kept = dir.path().join("kept-token.txt");
    let attempt1 = dir.path().join("attempt1-token.txt");
    let s = serve(dir.path(), &templates, "info");
    // Tenant acme has a secret that tenant default's tasks must not even see exists.
    let out = weft(dir.path())
        .args(["tenants", "create", "acme"])
        .output()
        .expect("tenants create");
    let acme_key = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let (status, body) = request(
        &s.addr,
        "PUT",
        "/v1/secrets/ACME_ONLY",
        Some(&acme_key),
        Some(&json!({"value": "acme-value"}).to_string()),
    );
    assert_eq!(status, 200, "{body}");

    template(
        &templates,
        "probe",
        &format!(
            "  - id: probe\n    tool: command\n    with: {{ argv: [{py:?}, {probe:?}, {key:?}, {kept:?}] }}\n    token: {{ scopes: [progress, \"memory:write\", \"memory:read\", \"artifacts:write\", \"secret:ACME_ONLY\"] }}\n",
            probe = probe.display().to_string(),
            key = s.key,
            kept = kept.display().to_string(),
        ),
    );
    template(
        &templates,
        "expire",
        &format!(
            "  - id: expire\n    tool: command\n    with: {{ argv: [{py:?}, {expire:?}] }}\n    token: {{ ttl: 1s }}\n",
            expire = expire.display().to_string(),
        ),
    );
    template(
        &templates,
        "supersede",
        &format!(
            "  - id: again\n    tool: command\n    with: {{ argv: [{py:?}, {supersede:?}, {a1:?}] }}\n    retry: {{ max_attempts: 2, backoff: {{ type: fixed, delay: 10ms }} }}\n",
            supersede = supersede.display().to_string(),
            a1 = attempt1.display().to_string(),
        ),
    );
    // Restart so the server loads the templates written after it started.
    drop(s);
    let s = serve(dir.path(), &templates, "info");

    let (run, _) = run_to_end(&s, "probe");
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = step_output(&run, "probe");
    assert_eq!(out["missing"], json!([401, "WEFT-E230"]), "{out}");
    assert_eq!(out["malformed"], json!([401, "WEFT-E231"]), "{out}");
    assert_eq!(
        out["api_key"],
        json!([401, "WEFT-E231"]),
        "API keys are not task tokens"
    );
    assert_eq!(out["unknown"], json!([401, "WEFT-E232"]), "{out}");
    assert_eq!(out["progress"], json!([204, null]), "{out}");
    assert_eq!(
        out["wrong_scope_secret"],
        json!([403, "WEFT-E236"]),
        "{out}"
    );
    assert_eq!(
        out["other_tenant_secret"],
        json!([404, "WEFT-E202"]),
        "{out}"
    );
    assert_eq!(out["memory_write"], json!([204, null]), "{out}");
    assert_eq!(
        out["memory_read"],
        json!([200, {"namespace": "notes", "key": "k", "value": {"n": 1}}]),
        "{out}"
    );
    assert_eq!(out["memory_missing"], json!([404, "WEFT-E202"]), "{out}");
    assert_eq!(out["artifact"][0], 201, "{out}");
    assert_eq!(out["artifact"][1]["bytes"], 12, "{out}");
    assert_eq!(out["artifact"][1]["content_type"], "text/plain", "{out}");
    assert_eq!(out["renew"][0], 200, "{out}");

    // The attempt has ended: its token is revoked.
    let token = std::fs::read_to_string(&kept).expect("the probe kept its token");
    let (status, body) = request(&s.addr, "POST", "/v1/task/token/renew", Some(&token), None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["code"],
        "WEFT-E234"
    );

    let (run, _) = run_to_end(&s, "expire");
    assert_eq!(
        step_output(&run, "expire")["expired"],
        json!([401, "WEFT-E233"]),
        "{run}"
    );

    let (run, _) = run_to_end(&s, "supersede");
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = step_output(&run, "again");
    assert_eq!(out["superseded"], json!([401, "WEFT-E235"]), "{out}");
    assert_eq!(out["current"], json!([204, null]), "{out}");

    // The trail has each kind of token record, named by token id, never by token.
    let (status, body) = request(&s.addr, "GET", "/v1/audit?limit=200", Some(&s.key), None);
    assert_eq!(status, 200, "{body}");
    for action in [
        "token.minted",
        "token.used",
        "token.refused",
        "token.revoked",
    ] {
        assert!(body.contains(action), "{action} missing from {body}");
    }
    assert!(body.contains("\"token:tt_"), "{body}");
    assert!(
        !body.contains(token.trim()),
        "the token is never on the trail"
    );
    let (_, acme_audit) = request(&s.addr, "GET", "/v1/audit", Some(&acme_key), None);
    assert!(!acme_audit.contains("token."), "{acme_audit}");
    let log = s.stop();
    assert!(!log.contains(token.trim()), "the token is never logged");
}

fn forms(value: &str) -> Vec<(&'static str, String)> {
    let raw = value.as_bytes();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut percent = String::new();
    for &b in raw {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            percent.push(b as char);
        } else {
            percent.push_str(&format!("%{b:02X}"));
        }
    }
    let json = serde_json::to_string(value).expect("json");
    vec![
        ("raw", value.to_string()),
        ("base64", b64.encode(raw)),
        (
            "base64url",
            base64::engine::general_purpose::URL_SAFE.encode(raw),
        ),
        ("url", percent.clone()),
        ("form", percent.replace("%20", "+")),
        ("hex", raw.iter().map(|b| format!("{b:02x}")).collect()),
        ("json", json.trim_matches('"').to_string()),
        // Stable middle parts of the value encoded inside a longer base64 blob.
        ("inside_base64", {
            let enc = b64.encode([b"x".as_slice(), raw, b"tail"].concat());
            enc[4..enc.len() - 8].to_string()
        }),
    ]
}

fn find_leaks(what: &str, haystack: &[u8], leaks: &mut Vec<String>) {
    for (name, form) in forms(CANARY) {
        if haystack.windows(form.len()).any(|w| w == form.as_bytes()) {
            leaks.push(format!("{name} form in {what}"));
        }
    }
}

#[test]
fn canary_secret_never_leaves_in_any_form() {
    canary();
}

/// The same on PostgreSQL, with `pg_dump` of the database as the dump.
#[test]
fn canary_secret_never_leaves_in_any_form_on_postgres() {
    use weft_store::postgres::testing;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(server) = runtime.block_on(testing::server_url()) else {
        return;
    };
    let (name, url) = runtime
        .block_on(testing::create_database(&server))
        .expect("create a database");
    DB.with(|db| *db.borrow_mut() = Some(url));
    canary();
    runtime
        .block_on(testing::drop_database(&server, &name))
        .expect("drop the test database");
}

fn canary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("mkdir");
    let py = python();
    set_secret(dir.path(), "CANARY_KEY", CANARY);
    let echo = write_tool(&templates, "echo.py", ECHO);
    for (name, mode) in [("echo-secret", "ok"), ("fail-secret", "fail")] {
        template(
            &templates,
            name,
            &format!(
                "  - id: use\n    tool: command\n    with: {{ argv: [{py:?}, {echo:?}, {mode}] }}\n    token: {{ scopes: [progress, \"secret:CANARY_KEY\"] }}\n",
                echo = echo.display().to_string(),
            ),
        );
    }
    let s = serve(dir.path(), &templates, "trace");
    let mut responses = String::new();
    let mut sse = String::new();
    for (name, want) in [("echo-secret", "succeeded"), ("fail-secret", "failed")] {
        let (run, seen) = run_to_end(&s, name);
        assert_eq!(run["status"], want, "{run}");
        responses.push_str(&seen);
        let id = run["id"].as_str().expect("id");
        let (status, events) = request(
            &s.addr,
            "GET",
            &format!("/v1/runs/{id}/events"),
            Some(&s.key),
            None,
        );
        assert_eq!(status, 200);
        assert!(events.contains("task.progress"), "{events}");
        sse.push_str(&events);
        if want == "succeeded" {
            let out = step_output(&run, "use");
            // The tool did echo every form; each was replaced before it was recorded.
            for key in ["raw", "b64", "b64url", "url", "form", "hex", "json"] {
                assert!(
                    out[key].as_str().is_some_and(|v| v.contains("[REDACTED]")),
                    "{key}: {out}"
                );
            }
        } else {
            assert!(
                run["error"].as_str().unwrap_or("").contains("[REDACTED]"),
                "{run}"
            );
        }
    }
    for path in ["/v1/runs", "/v1/audit?limit=200"] {
        let (status, body) = request(&s.addr, "GET", path, Some(&s.key), None);
        assert_eq!(status, 200, "{body}");
        responses.push_str(&body);
    }
    assert!(responses.contains("secret.read"), "the read is audited");
    let log = s.stop();
    assert!(
        log.contains("TRACE") || log.contains("trace"),
        "the log is at trace level"
    );

    let mut leaks = Vec::new();
    find_leaks("API responses", responses.as_bytes(), &mut leaks);
    find_leaks("the SSE transcript", sse.as_bytes(), &mut leaks);
    find_leaks("the server's log", log.as_bytes(), &mut leaks);
    if let Some(url) = DB.with(|db| db.borrow().clone()) {
        let dump = Command::new("pg_dump")
            .arg(&url)
            .output()
            .expect("pg_dump is needed with PostgreSQL");
        assert!(dump.status.success(), "{dump:?}");
        assert!(String::from_utf8_lossy(&dump.stdout).contains("task_tokens"));
        find_leaks("pg_dump", &dump.stdout, &mut leaks);
        assert!(leaks.is_empty(), "canary found: {leaks:?}");
        return;
    }
    let mut db = Vec::new();
    for name in ["weft.db", "weft.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(".weft").join(name)) {
            db.extend(bytes);
        }
    }
    assert!(!db.is_empty());
    find_leaks("the database file", &db, &mut leaks);
    if let Ok(dump) = Command::new("sqlite3")
        .arg(dir.path().join(".weft/weft.db"))
        .arg(".dump")
        .output()
    {
        assert!(dump.status.success());
        assert!(String::from_utf8_lossy(&dump.stdout).contains("CREATE TABLE task_tokens"));
        find_leaks("sqlite3 .dump", &dump.stdout, &mut leaks);
    }
    assert!(leaks.is_empty(), "canary found: {leaks:?}");
}

/// `weft run` (the CLI's own worker) with `api_url` pointing at a `weft serve` on the same
/// store: the tool reads its secret through that server, and the CLI's record of the run is
/// scrubbed just the same.
#[test]
fn weft_run_scrubs_what_its_tool_read_through_a_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("mkdir");
    let py = python();
    set_secret(dir.path(), "CANARY_KEY", CANARY);
    let echo = write_tool(&templates, "echo.py", ECHO);
    template(
        &templates,
        "echo-secret",
        &format!(
            "  - id: use\n    tool: command\n    with: {{ argv: [{py:?}, {echo:?}, ok] }}\n    token: {{ scopes: [\"secret:CANARY_KEY\"] }}\n",
            echo = echo.display().to_string(),
        ),
    );
    let s = serve(dir.path(), &templates, "info");
    std::fs::write(
        dir.path().join("weft.toml"),
        format!("api_url = \"http://{}\"\n", s.addr),
    )
    .expect("weft.toml");
    let out = weft(dir.path())
        .args(["--json", "run", "templates/echo-secret.yaml"])
        .output()
        .expect("weft run");
    let log = s.stop();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[REDACTED]"), "{stdout}");
    let mut leaks = Vec::new();
    find_leaks("weft run's stdout", &out.stdout, &mut leaks);
    find_leaks("weft run's stderr", &out.stderr, &mut leaks);
    find_leaks("the server's log", log.as_bytes(), &mut leaks);
    assert!(leaks.is_empty(), "canary found: {leaks:?}");
}
