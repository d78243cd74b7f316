//! A hostile tenant with only its API key, against a real `weft serve` with default settings:
//! the tool policy (a tool that starts host processes is the operator's to grant), checked on
//! every path a tenant's template reaches a tool by (the API, a `workflow:` step, an action, a
//! schedule, MCP at `/mcp`), and the confinement of what a granted tool starts.
//!
//! The store is SQLite in a temp dir, or with `WEFT_TEST_BACKEND=postgres` a fresh PostgreSQL
//! database (`WEFT_TEST_PG`; without a reachable server the test skips with a message, unless
//! `WEFT_REQUIRE_SERVICES=1`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A tenant's template that runs a shell: what the attacker registered.
const SHELL: &str = "name: shell
version: 1
inputs:
  script: { type: string, default: \"echo hi\" }
steps:
  - id: sh
    tool: command
    with: { argv: [\"sh\", \"-c\", \"{{ input.script }}\"] }
";

/// A tenant's template whose only step is a child run of `shell`.
const PARENT: &str = "name: parent
version: 1
steps:
  - id: child
    workflow: shell
";

/// A harmless tenant's template that offers `shell` as a follow-up action.
const OFFER: &str = "name: offer
version: 1
steps:
  - id: t
    tool: transform
    with: { jq: \".\", data: 1 }
actions:
  again: { template: shell }
";

/// The operator's own template, from the server's `templates/` folder.
const OPERATOR_SHELL: &str = "name: op_shell
version: 1
inputs:
  script: { type: string }
steps:
  - id: sh
    tool: command
    with: { argv: [\"sh\", \"-c\", \"{{ input.script }}\"] }
";

/// A PostgreSQL database for one test, dropped with it.
struct PgDb {
    server: String,
    name: String,
    url: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(weft_store::postgres::testing::drop_database(&server, &name))
        })
        .join();
    }
}

/// Whether bubblewrap confines a process here; a test that needs it skips with a message
/// otherwise (unless `WEFT_REQUIRE_SERVICES=1`).
fn bwrap_works() -> bool {
    let works = Command::new("bwrap")
        .args([
            "--ro-bind",
            "/",
            "/",
            "--unshare-all",
            "--die-with-parent",
            "true",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        assert!(
            std::env::var("WEFT_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "bwrap (Debian bubblewrap) does not work here"
        );
        eprintln!("skipping: bwrap (Debian bubblewrap) does not work here");
    }
    works
}

/// Whether this test runs as root (the non-dumpable check switches users).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The backend the test runs on; `Err(())` when PostgreSQL is asked for and absent (skip).
fn backend() -> Result<Option<PgDb>, ()> {
    if std::env::var("WEFT_TEST_BACKEND").as_deref() != Ok("postgres") {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let Some(server) = rt.block_on(weft_store::postgres::testing::server_url()) else {
        assert!(
            std::env::var("WEFT_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "WEFT_TEST_BACKEND=postgres needs a reachable PostgreSQL (WEFT_TEST_PG)"
        );
        eprintln!("skipping: no PostgreSQL reachable (set WEFT_TEST_PG)");
        return Err(());
    };
    let (name, url) = rt
        .block_on(weft_store::postgres::testing::create_database(&server))
        .expect("create a database");
    Ok(Some(PgDb { server, name, url }))
}

/// A running `weft serve` in a temp dir with tenants `acme` and `other`.
struct Served {
    dir: tempfile::TempDir,
    child: Child,
    addr: String,
    acme: String,
    other: String,
    /// What the server printed on stderr before it listened.
    banner: String,
    /// Last, so the database outlives the server.
    pg: Option<PgDb>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts a server; `config` is written as `weft.toml` when given.
    fn start(config: Option<&str>) -> Option<Served> {
        Served::start_with(config, &[])
    }

    /// [`Served::start`] with extra environment for the server.
    fn start_with(config: Option<&str>, env: &[(&str, &str)]) -> Option<Served> {
        let pg = backend().ok()?;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
        std::fs::write(dir.path().join("templates/op_shell.yaml"), OPERATOR_SHELL).expect("write");
        if let Some(config) = config {
            std::fs::write(dir.path().join("weft.toml"), config).expect("write");
        }
        let db = pg.as_ref().map(|p| p.url.clone());
        let acme = cli(dir.path(), db.as_deref(), &["tenants", "create", "acme"]);
        let other = cli(dir.path(), db.as_deref(), &["tenants", "create", "other"]);
        let mut child = weft(dir.path(), db.as_deref())
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start weft serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut banner = String::new();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("serve exited early: {banner}"))
                .expect("read");
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.strip_prefix("weft serving http://") {
                break rest.split_whitespace().next().expect("addr").to_string();
            }
        };
        // The next line says how processes are confined.
        if let Some(Ok(line)) = lines.next() {
            banner.push_str(&line);
        }
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Some(Served {
            dir,
            child,
            addr,
            acme: acme.trim().to_string(),
            other: other.trim().to_string(),
            banner,
            pg,
        })
    }

    fn db(&self) -> Option<String> {
        self.pg.as_ref().map(|p| p.url.clone())
    }

    /// `weft ARGS` as the operator, on this server's store; its stdout.
    fn operator(&self, args: &[&str]) -> String {
        cli(self.dir.path(), self.db().as_deref(), args)
    }

    fn register(&self, key: &str, yaml: &str) -> (u16, Value) {
        request(
            &self.addr,
            "POST",
            "/v1/templates",
            key,
            "application/yaml",
            yaml,
        )
    }

    fn call(&self, method: &str, path: &str, key: &str, body: &Value) -> (u16, Value) {
        request(
            &self.addr,
            method,
            path,
            key,
            "application/json",
            &body.to_string(),
        )
    }

    fn start_run(&self, key: &str, template: &str, inputs: Value) -> String {
        let (status, run) = self.call(
            "POST",
            "/v1/runs",
            key,
            &json!({"template": template, "inputs": inputs}),
        );
        assert_eq!(status, 201, "{run}");
        run["id"].as_str().expect("run id").to_string()
    }

    /// Waits for a run to end; its detail.
    fn wait(&self, key: &str, run_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, run) = self.call("GET", &format!("/v1/runs/{run_id}"), key, &json!(null));
            assert_eq!(status, 200, "{run}");
            if matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {run_id} did not end: {run}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `template` for `key` to its end; its detail.
    fn run(&self, key: &str, template: &str, inputs: Value) -> Value {
        let id = self.start_run(key, template, inputs);
        self.wait(key, &id)
    }
}

fn weft(dir: &Path, db: Option<&str>) -> Command {
    let mut cmd = Command::new(WEFT);
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env_remove("WEFT_SECRET_KEY");
    if let Some(db) = db {
        cmd.args(["--db", db]);
    }
    cmd
}

fn cli(dir: &Path, db: Option<&str>, args: &[&str]) -> String {
    let out = weft(dir, db).args(args).output().expect("run weft");
    assert!(out.status.success(), "weft {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// One HTTP/1.0 request; (status, JSON body or the text as a string).
fn request(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let (status, _, text) = raw_request(addr, method, path, key, content_type, body, &[]);
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// One HTTP/1.0 request with extra headers; (status, headers, body).
fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut extra = String::new();
    for (name, value) in headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

/// Where `needle` starts in `text`, as 1-based (line, column).
fn position_of(text: &str, needle: &str) -> (u64, u64) {
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(needle) {
            return (i as u64 + 1, col as u64 + 1);
        }
    }
    panic!("`{needle}` is not in the text");
}

fn error_of(run: &Value) -> String {
    let mut errors = vec![run["error"].as_str().unwrap_or_default().to_string()];
    for step in run["steps"].as_array().into_iter().flatten() {
        errors.push(step["error"].as_str().unwrap_or_default().to_string());
    }
    errors.join(" | ")
}

/// The child run a `workflow:` step started, from the parent's detail.
fn child_of(run: &Value) -> String {
    run["children"][0]["id"]
        .as_str()
        .or_else(|| run["children"][0]["run_id"].as_str())
        .unwrap_or_else(|| panic!("no child in {run}"))
        .to_string()
}

/// Calls a template's tool over MCP's streamable HTTP at `/mcp` as `key`; the tool's result.
fn mcp_call(addr: &str, key: &str, tool: &str, arguments: Value) -> Value {
    let accept = [("Accept", "application/json, text/event-stream")];
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "hostile", "version": "1"}}});
    let (status, head, body) = raw_request(
        addr,
        "POST",
        "/mcp",
        key,
        "application/json",
        &init.to_string(),
        &accept,
    );
    assert_eq!(status, 200, "{head}\n{body}");
    let session = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("mcp-session-id")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no session id in {head}"));
    let with_session = [accept[0], ("Mcp-Session-Id", session.as_str())];
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    raw_request(
        addr,
        "POST",
        "/mcp",
        key,
        "application/json",
        &note.to_string(),
        &with_session,
    );
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}});
    let (status, _, body) = raw_request(
        addr,
        "POST",
        "/mcp",
        key,
        "application/json",
        &call.to_string(),
        &with_session,
    );
    assert_eq!(status, 200, "{body}");
    // The answer comes as one server-sent event (or plain JSON).
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .chain(std::iter::once(body.as_str()))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id") == Some(&json!(2)))
        .unwrap_or_else(|| panic!("no answer to tools/call in {body}"))["result"]
        .clone()
}

/// The run id a template's MCP tool started.
fn mcp_run_id(result: &Value) -> String {
    let body = result
        .get("structuredContent")
        .cloned()
        .or_else(|| {
            result["content"][0]["text"]
                .as_str()
                .and_then(|t| serde_json::from_str(t).ok())
        })
        .unwrap_or_else(|| panic!("no body in {result}"));
    body["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id in {body}"))
        .to_string()
}

/// The first finding, refused: a tenant's `command` template is a 422 with the
/// position of its `tool:` and the command that grants it; after the operator's grant it
/// registers and runs; taken back, every path that reaches the tool fails the step with a
/// clear error (the API, a `workflow:` child, an action, a schedule, MCP), while the
/// operator's own template keeps running. Another tenant is never granted by acme's grant.
#[test]
fn process_tools_are_the_operators_to_grant_on_every_path() {
    if !bwrap_works() {
        return;
    }
    let Some(s) = Served::start(None) else { return };

    // Refused at registration, with FILE:LINE:COL at the tool.
    let (status, problem) = s.register(&s.acme, SHELL);
    assert_eq!(status, 422, "{problem}");
    let d = &problem["diagnostics"][0];
    let (line, col) = position_of(SHELL, "command");
    assert_eq!(d["code"], "WEFT-E015", "{problem}");
    assert_eq!(
        (d["line"].as_u64(), d["col"].as_u64()),
        (Some(line), Some(col)),
        "{problem}"
    );
    assert_eq!(d["file"], "<api>");
    let message = d["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("weft tenants update acme --allow-tools command"),
        "{message}"
    );
    let (_, tenant) = s.call("GET", "/v1/tenant", &s.acme, &json!(null));
    assert_eq!(tenant["allowed_tools"], json!([]), "{tenant}");

    // The operator grants `command` to acme only.
    s.operator(&["tenants", "update", "acme", "--allow-tools", "command"]);
    let (_, tenant) = s.call("GET", "/v1/tenant", &s.acme, &json!(null));
    assert_eq!(tenant["allowed_tools"], json!(["command"]), "{tenant}");
    let listed = s.operator(&["tenants", "list"]);
    let acme_line = listed
        .lines()
        .find(|l| l.starts_with("acme\t"))
        .expect("acme");
    assert!(acme_line.contains("tools command"), "{listed}");
    let listed: Value =
        serde_json::from_str(&s.operator(&["--json", "tenants", "list"])).expect("json");
    let other = listed
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == "other"))
        .expect("other");
    assert_eq!(other["allowed_tools"], json!([]));
    let (status, problem) = s.register(&s.other, SHELL);
    assert_eq!(
        status, 422,
        "another tenant is not granted by acme's grant: {problem}"
    );

    for yaml in [SHELL, PARENT, OFFER] {
        let (status, body) = s.register(&s.acme, yaml);
        assert_eq!(status, 201, "{body}");
    }
    let run = s.run(&s.acme, "shell", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], "hi");

    // Taken back: the runs of templates registered meanwhile fail at the tool.
    s.operator(&["tenants", "update", "acme", "--allow-tools", "none"]);
    let refused = |run: &Value, path: &str| {
        assert_eq!(run["status"], "failed", "{path}: {run}");
        let error = error_of(run);
        assert!(
            error.contains("tool `command`") && error.contains("not granted to tenant `acme`"),
            "{path}: {error}"
        );
    };
    refused(&s.run(&s.acme, "shell", json!({})), "the API");

    let parent = s.run(&s.acme, "parent", json!({}));
    assert_eq!(parent["status"], "failed", "{parent}");
    let child = s.wait(&s.acme, &child_of(&parent));
    refused(&child, "a workflow: step");

    let offer = s.run(&s.acme, "offer", json!({}));
    assert_eq!(offer["status"], "succeeded", "{offer}");
    let offer_id = offer["id"].as_str().expect("id");
    let (status, action) = s.call(
        "POST",
        &format!("/v1/runs/{offer_id}/actions/again"),
        &s.acme,
        &json!({}),
    );
    assert_eq!(status, 201, "{action}");
    refused(
        &s.wait(&s.acme, action["id"].as_str().expect("id")),
        "an action",
    );

    let shell_runs = |s: &Served| -> Vec<String> {
        let (_, runs) = s.call("GET", "/v1/runs?limit=100", &s.acme, &json!(null));
        runs["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["template"] == "shell")
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect()
    };
    let before = shell_runs(&s);
    let (status, schedule) = s.call(
        "POST",
        "/v1/schedules",
        &s.acme,
        &json!({"template": "shell", "cron": "* * * * * *"}),
    );
    assert_eq!(status, 201, "{schedule}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let fired = loop {
        if let Some(id) = shell_runs(&s).into_iter().find(|id| !before.contains(id)) {
            break id;
        }
        assert!(Instant::now() < deadline, "the schedule did not fire");
        std::thread::sleep(Duration::from_millis(200));
    };
    let schedule_id = schedule["id"].as_str().expect("id");
    s.call(
        "DELETE",
        &format!("/v1/schedules/{schedule_id}"),
        &s.acme,
        &json!(null),
    );
    refused(&s.wait(&s.acme, &fired), "a schedule");

    let result = mcp_call(&s.addr, &s.acme, "shell", json!({}));
    refused(&s.wait(&s.acme, &mcp_run_id(&result)), "MCP at /mcp");

    // The operator's own template keeps the operator's rights, for any tenant.
    let run = s.run(&s.acme, "op_shell", json!({"script": "echo operator"}));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], "operator");
}

/// A tenant's script, run through its own registered template once `command` is granted.
const PROBE: &str = "name: probe
version: 1
inputs:
  script: { type: string }
steps:
  - id: sh
    tool: command
    with:
      argv: [\"bash\", \"-c\", \"{{ input.script }}\"]
      env: { DECLARED: \"yes\" }
";

/// `bash` lines that print `LEAK: what` when the confined step reaches what it must not.
fn probes(s: &Served) -> Vec<(&'static str, String)> {
    let pid = s.child.id();
    let dir = s.dir.path().display().to_string();
    let port = s.addr.rsplit(':').next().expect("port").to_string();
    vec![
        (
            "the server's environment",
            format!("cat /proc/{pid}/environ 2>/dev/null | grep -q . && echo LEAK"),
        ),
        (
            "the server's folder",
            format!("ls {dir} >/dev/null 2>&1 && echo LEAK"),
        ),
        (
            "the store file",
            format!("test -e {dir}/.weft/weft.db && echo LEAK"),
        ),
        (
            "the weft binary",
            format!(
                "{WEFT} keys create --tenant other >/dev/null 2>&1 && echo LEAK; test -e {WEFT} && echo LEAK"
            ),
        ),
        (
            "the server's port on loopback",
            format!("(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo LEAK"),
        ),
        (
            "the PostgreSQL port on loopback",
            "(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo LEAK".to_string(),
        ),
        (
            "a write outside its scratch folder",
            "touch /usr/weft-was-here 2>/dev/null && echo LEAK".to_string(),
        ),
        (
            "the host's secrets in /etc and /root",
            "cat /etc/shadow >/dev/null 2>&1 && echo LEAK; ls /root >/dev/null 2>&1 && echo LEAK"
                .to_string(),
        ),
    ]
}

/// After the operator grants `command`, a tenant's step runs confined with default settings:
/// it cannot read the server's `/proc/PID/environ` (which no longer holds
/// `WEFT_SECRET_KEY`), the server's folder or the store file, cannot run the weft binary to
/// mint a key, cannot reach a loopback port, cannot write outside its scratch folder; its
/// environment is what the step declares plus the task variables; its limits hold.
#[test]
fn a_granted_tool_runs_confined() {
    if !bwrap_works() {
        return;
    }
    let Some(s) = Served::start(None) else { return };
    assert!(
        s.banner.contains("confined with bwrap"),
        "serve says how it confines: {}",
        s.banner
    );
    s.operator(&["tenants", "update", "acme", "--allow-tools", "command"]);
    let (status, body) = s.register(&s.acme, PROBE);
    assert_eq!(status, 201, "{body}");

    for (what, script) in probes(&s) {
        let run = s.run(
            &s.acme,
            "probe",
            json!({"script": format!("{script}; echo done")}),
        );
        assert_eq!(run["status"], "succeeded", "{what}: {run}");
        assert_eq!(run["output"], "done", "{what}: the step reached it: {run}");
    }

    // The environment: the step's own variables and the task's, nothing of the server's.
    let run = s.run(
        &s.acme,
        "probe",
        json!({"script": "env | cut -d= -f1 | sort | tr '\\n' ' '"}),
    );
    assert_eq!(run["status"], "succeeded", "{run}");
    let names: Vec<&str> = run["output"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for name in &names {
        assert!(
            name.starts_with("WEFT_")
                || [
                    "DECLARED", "PATH", "HOME", "TMPDIR", "LANG", "PWD", "SHLVL", "_"
                ]
                .contains(name),
            "unexpected variable {name} in {names:?}"
        );
    }
    assert!(
        names.contains(&"DECLARED") && names.contains(&"WEFT_RUN_ID"),
        "{names:?}"
    );
    assert!(!names.contains(&"WEFT_SECRET_KEY"), "{names:?}");

    // The limits: open files, file size, CPU seconds, processes.
    let run = s.run(
        &s.acme,
        "probe",
        json!({"script": "echo $(ulimit -n) $(ulimit -f) $(ulimit -t) $(ulimit -u)"}),
    );
    assert_eq!(run["output"], "256 65536 60 64", "{run}");
    // A file past the size limit is cut off.
    let run = s.run(
        &s.acme,
        "probe",
        json!({"script": "head -c 70000000 /dev/zero > /tmp/big; echo $?"}),
    );
    assert_ne!(run["output"], "0", "{run}");
}

/// The operator's own templates keep the operator's rights by default; with `[sandbox]` they
/// run under the same confinement, writing only where it says.
#[test]
fn operator_templates_are_confined_only_with_a_sandbox_section() {
    if !bwrap_works() {
        return;
    }
    let Some(s) = Served::start(None) else { return };
    let dir = s.dir.path().display().to_string();
    let script = format!("ls {dir}/.weft >/dev/null && echo sees-the-store");
    let run = s.run(&s.acme, "op_shell", json!({"script": script}));
    assert_eq!(run["output"], "sees-the-store", "{run}");
    assert!(
        s.banner.contains("run with this process's rights"),
        "{}",
        s.banner
    );
    drop(s);

    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().display().to_string();
    let config = format!("[sandbox]\nwritable = [\"{out_dir}\"]\n");
    let Some(s) = Served::start(Some(&config)) else {
        return;
    };
    assert!(s.banner.contains("confined by [sandbox]"), "{}", s.banner);
    let dir = s.dir.path().display().to_string();
    let script = format!(
        "ls {dir}/.weft >/dev/null 2>&1 && echo LEAK; echo kept > {out_dir}/report.txt && echo done"
    );
    let run = s.run(&s.acme, "op_shell", json!({"script": script}));
    assert_eq!(run["output"], "done", "{run}");
    assert_eq!(
        std::fs::read_to_string(out.path().join("report.txt")).expect("written"),
        "kept\n"
    );
}

/// A 32-byte key, base64, as `WEFT_SECRET_KEY` takes it.
const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// `weft serve` started with `WEFT_SECRET_KEY` keeps using the key (a tenant's secret is
/// sealed with it: no key file appears) but its environment no longer holds it; the operator
/// sets, lists and deletes another tenant's secrets with `--tenant`.
#[test]
fn the_server_drops_its_secret_key_from_its_environment() {
    let Some(s) = Served::start_with(None, &[("WEFT_SECRET_KEY", SECRET_KEY)]) else {
        return;
    };
    let environ = std::fs::read(format!("/proc/{}/environ", s.child.id())).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains(SECRET_KEY),
        "the key is still in the environment"
    );
    assert!(!environ.contains("WEFT_SECRET_KEY="), "{environ}");

    let (status, body) = s.call(
        "PUT",
        "/v1/secrets/API_TOKEN",
        &s.acme,
        &json!({"value": "tenant-secret-value"}),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    assert!(
        !s.dir.path().join(".weft/secret.key").exists(),
        "the handed-over key sealed it, not a new key file"
    );

    let mut set = weft(s.dir.path(), s.db().as_deref())
        .env("WEFT_SECRET_KEY", SECRET_KEY)
        .args(["secrets", "set", "--tenant", "acme", "OPERATOR_SET"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("weft secrets set");
    set.stdin
        .take()
        .expect("stdin")
        .write_all(b"from-the-operator")
        .expect("write");
    assert!(set.wait().expect("wait").success());
    let listed = s.operator(&["secrets", "list", "--tenant", "acme"]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["API_TOKEN", "OPERATOR_SET"]
    );
    let (_, names) = s.call("GET", "/v1/secrets", &s.acme, &json!(null));
    assert!(names.to_string().contains("OPERATOR_SET"), "{names}");
    s.operator(&["secrets", "delete", "--tenant", "acme", "OPERATOR_SET"]);
    let listed = s.operator(&["secrets", "list", "--tenant", "acme"]);
    assert_eq!(listed.trim(), "API_TOKEN");
    assert!(
        s.operator(&["secrets", "list"]).trim().is_empty(),
        "tenant default has none"
    );
    let out = weft(s.dir.path(), s.db().as_deref())
        .args(["secrets", "list", "--tenant", "nobody"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `weft serve` is non-dumpable: run as an ordinary user, another process of that same user
/// cannot read its `/proc/PID/environ`, while it can read that of a plain process of its own.
#[test]
fn the_server_is_not_dumpable() {
    if backend().map(|pg| pg.is_some()) != Ok(false) {
        return; // one backend is enough: this is about the process, not the store
    }
    if !is_root() {
        eprintln!("skipping: the non-dumpable check runs as root (it switches users)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let chown = Command::new("chown")
        .args(["65534:65534", &dir.path().display().to_string()])
        .status()
        .expect("chown");
    assert!(chown.success());
    let read_environ = |pid: u32| {
        Command::new("setpriv")
            .args(nobody)
            .args(["cat", &format!("/proc/{pid}/environ")])
            .output()
            .expect("setpriv cat")
            .status
            .success()
    };
    let mut plain = Command::new("setpriv")
        .args(nobody)
        .args(["sleep", "30"])
        .spawn()
        .expect("setpriv sleep");
    std::thread::sleep(Duration::from_millis(200));
    let control = read_environ(plain.id());
    let _ = plain.kill();
    let _ = plain.wait();
    assert!(
        control,
        "a plain process of the same user is readable (the check works)"
    );

    let mut server = Command::new("setpriv")
        .args(nobody)
        .arg(WEFT)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve as nobody");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve exited early: {log}"))
            .expect("read");
        log.push_str(&line);
        if line.starts_with("weft serving") {
            break;
        }
    }
    let readable = read_environ(server.id());
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        !readable,
        "weft serve's environ is readable by its own user"
    );
}

/// The operator shows, cancels and resumes another tenant's run with `--tenant`; without it
/// the CLI acts for tenant `default` and does not find the run.
#[test]
fn the_operator_acts_on_any_tenants_runs() {
    let Some(s) = Served::start(None) else { return };
    let nap =
        "name: nap\nversion: 1\nsteps:\n  - id: z\n    tool: sleep\n    with: { duration: 30s }\n";
    let (status, body) = s.register(&s.acme, nap);
    assert_eq!(status, 201, "{body}");
    let id = s.start_run(&s.acme, "nap", json!({}));

    let out = weft(s.dir.path(), s.db().as_deref())
        .args(["runs", "show", &id])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "not tenant default's run: {out:?}"
    );
    let shown = s.operator(&["--json", "runs", "show", &id, "--tenant", "acme"]);
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["id"], id.as_str(), "{shown}");

    s.operator(&["runs", "cancel", &id, "--tenant", "acme"]);
    let run = s.wait(&s.acme, &id);
    assert_eq!(run["status"], "cancelled", "{run}");
    let (_, audit) = s.call("GET", "/v1/audit", &s.acme, &json!(null));
    assert!(
        audit.to_string().contains("run.cancelled"),
        "the cancel is on acme's trail: {audit}"
    );

    // Resume finds the run (exit 1: it ends cancelled again or fails, never "no run").
    let out = weft(s.dir.path(), s.db().as_deref())
        .args(["runs", "resume", &id, "--tenant", "acme"])
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(2), "{out:?}");
}
