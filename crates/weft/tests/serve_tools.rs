//! Every kind of tool through the API: a tenant may not register the template with
//! `POST /v1/templates` (its tools start host processes: WEFT-E015), so the operator's copy in
//! `templates/`, run with `POST /v1/runs` on a real `weft serve`, calls two real MCP servers (npm's
//! server-everything, PyPI's mcp-server-time), a skill, memory, and headless Chromium whose
//! screenshot the artifacts hook stores; the artifact is then fetched from `/v1/artifacts/{id}`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The path if it exists; otherwise skip (or fail when services are required).
fn need(path: PathBuf, what: &str, install: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{what} is required (WEFT_REQUIRE_SERVICES=1) but missing; install with: {install}");
    }
    eprintln!("SKIPPED: {what} is not installed; install with: {install}");
    None
}

/// One HTTP/1.0 exchange; returns (status, body bytes).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<(&str, &[u8])>,
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n");
    if let Some((kind, bytes)) = body {
        request.push_str(&format!(
            "Content-Type: {kind}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    if let Some((_, bytes)) = body {
        stream.write_all(bytes).expect("write body");
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let status = std::str::from_utf8(&response[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    (status, response[at..].to_vec())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// A page for the screenshot, served by the test.
fn serve_page() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let body = "<html><body style='margin:0;background:#36c'><h1>through the API</h1></body></html>";
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TEMPLATE: &str = r#"name: every-tool
version: 1
description: One step per kind of tool.
inputs:
  url: { type: string }
steps:
  - id: now
    tool: mcp.time.get_current_time
    with: { timezone: Europe/Paris }
  - id: sum
    tool: mcp.everything.get-sum
    with: { a: 2, b: 40 }
  - id: words
    tool: skill.word_count
    with: { text: "four words right here" }
  - id: remember
    tool: memory.put
    with: { key: "sum", value: "{{ steps.sum.output }}" }
  - id: recall
    needs: [remember]
    tool: memory.get
    with: { key: "sum" }
  - id: shot
    tool: browser.screenshot
    with: { url: "{{ input.url }}", viewport: { width: 400, height: 300 } }
output:
  timezone: "{{ steps.now.output.timezone }}"
  sum: "{{ steps.sum.output }}"
  words: "{{ steps.words.output.words }}"
  recalled: "{{ steps.recall.output }}"
  image: "{{ steps.shot.output.image }}"
"#;

#[test]
fn a_template_with_every_kind_of_tool_runs_through_the_api() {
    let root = root();
    let npm = "npm install @modelcontextprotocol/server-everything@2026.8.31";
    let Some(everything) = need(
        root.join("node_modules/.bin/mcp-server-everything"),
        "@modelcontextprotocol/server-everything",
        npm,
    ) else {
        return;
    };
    let Some(time) = need(
        root.join("venv/bin/mcp-server-time"),
        "mcp-server-time",
        "python3 -m venv venv && venv/bin/pip install mcp-server-time==2026.10.19",
    ) else {
        return;
    };
    let Some(chromium) = need(
        PathBuf::from("/usr/bin/chromium"),
        "Chromium",
        "apt-get install -y chromium",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let skill = d.join("skills/word_count");
    std::fs::create_dir_all(&skill).expect("mkdir");
    for file in ["skill.yaml", "main.py"] {
        std::fs::copy(
            root.join("examples/tools/skills/word_count").join(file),
            skill.join(file),
        )
        .expect("copy the example skill");
    }
    std::fs::write(
        d.join("weft.toml"),
        format!(
            "[mcp.everything]\ncommand = \"{}\"\nargs = [\"stdio\"]\nstartup_timeout = \"60s\"\n\n\
             [mcp.time]\ncommand = \"{}\"\nargs = [\"--local-timezone\", \"UTC\"]\nstartup_timeout = \"60s\"\n\n\
             [skills]\ndirs = [\"skills\"]\n\n\
             [browser]\nchromium = \"{}\"\nallow = [\"127.0.0.1\"]\ntimeout = \"90s\"\n\n\
             [artifacts]\ndir = \"shots\"\ntools = [\"browser.*\"]\n",
            everything.display(),
            time.display(),
            chromium.display()
        ),
    )
    .expect("weft.toml");
    std::fs::create_dir_all(d.join("templates")).expect("mkdir templates");
    std::fs::write(d.join("templates/every-tool.yaml"), TEMPLATE).expect("operator template");

    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(d)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("weft serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let serve = Serve(child);
    let addr = loop {
        let line = lines.next().expect("serve exited early").expect("a line");
        if let Some(rest) = line.strip_prefix("weft serving http://") {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let key = std::fs::read_to_string(d.join(".weft/admin.key"))
        .expect("admin key")
        .trim()
        .to_string();

    let (status, body) = http(
        &addr,
        "POST",
        "/v1/templates",
        &key,
        Some(("application/yaml", TEMPLATE.as_bytes())),
    );
    // Stdio MCP servers and skills start processes on the host: a tenant may not register
    // them (issue 14), so the same template runs from the operator's own folder instead.
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    let problem = json_of(&body);
    assert_eq!(problem["diagnostics"][0]["code"], "WEFT-E015", "{problem}");

    let port = serve_page();
    let request = json!({
        "template": "every-tool",
        "inputs": { "url": format!("http://127.0.0.1:{port}/") }
    });
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/runs",
        &key,
        Some(("application/json", request.to_string().as_bytes())),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id = json_of(&body)["id"].as_str().expect("run id").to_string();

    let deadline = Instant::now() + Duration::from_secs(180);
    let run = loop {
        let (status, body) = http(&addr, "GET", &format!("/v1/runs/{id}"), &key, None);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let run = json_of(&body);
        if ["succeeded", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or("")) {
            break run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = &run["output"];
    assert_eq!(out["timezone"], "Europe/Paris", "{out}");
    assert_eq!(out["sum"], "The sum of 2 and 40 is 42.", "{out}");
    assert_eq!(out["words"], 4, "{out}");
    assert_eq!(out["recalled"], "The sum of 2 and 40 is 42.", "{out}");
    let image = &out["image"];
    assert_eq!(image["width"], 400, "{out}");
    assert_eq!(image["height"], 300, "{out}");
    assert_eq!(image["content_type"], "image/png", "{out}");
    assert!(
        !run.to_string().contains("iVBORw0KGgo"),
        "no base64 PNG in the run: {run}"
    );

    // The artifact comes back from the API, byte for byte what the hook described.
    let url = image["url"].as_str().expect("artifact url");
    let (status, bytes) = http(&addr, "GET", url, &key, None);
    assert_eq!(status, 200);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(image["bytes"].as_u64(), Some(bytes.len() as u64));
    drop(serve);
}
