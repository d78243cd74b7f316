//! Artifacts as a user meets them: a step that prints a PNG as base64 and writes
//! `post: [artifacts]` records `{url, content_type, width, height, bytes, sha256}` instead,
//! with no base64 anywhere in the store; a misspelt hook is a validation error at its line;
//! and with `[artifacts.s3]` the image goes to a real S3-compatible server (moto) and
//! `weft serve` hands the same bytes back at `/v1/artifacts/{id}`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env("NO_COLOR", "1");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// A real RGB PNG of `width` x `height` (stored, uncompressed deflate), each pixel its own
/// colour.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend([(x * 80) as u8, (y * 120) as u8, 200]);
        }
    }
    let mut zlib = vec![0x78, 0x01, 0x01];
    let len = raw.len() as u16;
    zlib.extend(len.to_le_bytes());
    zlib.extend((!len).to_le_bytes());
    zlib.extend(&raw);
    zlib.extend(adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", zlib), (b"IEND", Vec::new())] {
        out.extend((data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend(&data);
        out.extend(&chunk);
        out.extend(crc32(&chunk).to_be_bytes());
    }
    out
}

/// A folder with `pic.png` and a template whose `draw` step prints it as base64 in JSON.
fn project(post: bool) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = png(7, 5);
    std::fs::write(dir.path().join("pic.png"), &image).expect("png");
    write_template(dir.path(), post, false);
    (dir, image)
}

fn write_template(dir: &Path, post: bool, cache: bool) {
    let mut extra = String::new();
    if post {
        extra.push_str("    post: [artifacts]\n");
    }
    if cache {
        extra.push_str("    cache: { ttl: 1h }\n");
    }
    let post = extra;
    let template = format!(
        r#"name: draw-png
version: 1
steps:
  - id: draw
    tool: command
    with:
      argv: ["sh", "-c", "printf '{{\"image\": \"%s\", \"note\": \"kept\"}}' \"$(base64 -w0 pic.png)\""]
{post}output: "{{{{ steps.draw.output }}}}"
"#
    );
    std::fs::write(dir.join("draw.yaml"), template).expect("template");
}

fn run_json(dir: &Path, extra_env: &[(&str, &str)]) -> Value {
    let out = weft(dir)
        .envs(extra_env.iter().copied())
        .args(["--json", "run", "draw.yaml"])
        .output()
        .expect("run weft");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Every byte the SQLite store wrote (the database and its WAL).
fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["weft.db", "weft.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(".weft").join(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn step_output(doc: &Value) -> &Value {
    &doc["output"]
}

#[test]
fn post_artifacts_replaces_a_base64_png_with_a_reference() {
    let (dir, image) = project(true);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
    let doc = run_json(dir.path(), &[]);
    assert_eq!(doc["status"], "succeeded", "{doc}");
    let out = step_output(&doc);
    let img = &out["image"];
    let sha = hex(&Sha256::digest(&image));
    assert_eq!(img["content_type"], "image/png", "{out}");
    assert_eq!(img["width"], 7, "{out}");
    assert_eq!(img["height"], 5, "{out}");
    assert_eq!(img["bytes"], image.len(), "{out}");
    assert_eq!(img["sha256"], sha.as_str(), "{out}");
    let url = img["url"].as_str().expect("url");
    let id = url.strip_prefix("/v1/artifacts/").expect("an API url");
    assert_eq!(out["note"], "kept", "the rest of the output is untouched");
    // The bytes went to the default local artifact folder, under the tenant.
    let stored =
        std::fs::read(dir.path().join(".weft/artifacts/default").join(id)).expect("artifact file");
    assert_eq!(stored, image);
    // Nothing base64 reached the store: not the output, not an event, not the cache.
    let db = store_bytes(dir.path());
    assert!(!db.is_empty());
    assert!(
        !contains(&db, &encoded.as_bytes()[..40]),
        "base64 of the image is in the store"
    );
    assert!(contains(&db, sha.as_bytes()), "the reference is recorded");
}

#[test]
fn without_post_the_same_step_keeps_its_base64() {
    // The control: `command` matches no hook pattern, so only `post:` moves the image.
    let (dir, image) = project(false);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
    let doc = run_json(dir.path(), &[]);
    assert_eq!(step_output(&doc)["image"], encoded.as_str(), "{doc}");
    assert!(contains(
        &store_bytes(dir.path()),
        &encoded.as_bytes()[..40]
    ));
}

#[test]
fn a_cached_output_without_post_is_not_served_to_a_step_with_post() {
    let (dir, image) = project(false);
    write_template(dir.path(), false, true);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
    let plain = run_json(dir.path(), &[]);
    assert_eq!(step_output(&plain)["image"], encoded.as_str(), "{plain}");
    // Same tool, same input, now with `post`: the hook's output, not the cached base64.
    write_template(dir.path(), true, true);
    let hooked = run_json(dir.path(), &[]);
    assert_eq!(hooked["steps"][0]["cache_hits"], 0, "{hooked}");
    assert_eq!(
        step_output(&hooked)["image"]["content_type"],
        "image/png",
        "{hooked}"
    );
    // And a second run with `post` is a cache hit of the reference.
    let again = run_json(dir.path(), &[]);
    assert_eq!(again["steps"][0]["cache_hits"], 1, "{again}");
    assert_eq!(step_output(&again)["image"], step_output(&hooked)["image"]);
}

#[test]
fn the_example_template_stores_its_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tools/post_artifacts.yaml");
    let out = weft(dir.path())
        .arg("run")
        .arg(&example)
        .args(["-i", "size=24"])
        .output()
        .expect("run weft");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .split("/v1/artifacts/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an artifact url");
    assert!(stdout.contains("(24x24, "), "{stdout}");
    let bytes =
        std::fs::read(dir.path().join(".weft/artifacts/default").join(id)).expect("artifact");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn an_unknown_hook_name_is_a_validation_error_at_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\nversion: 1\nsteps:\n  - id: a\n    tool: command\n    with: { argv: [\"true\"] }\n    post: [artefacts]\n",
    )
    .expect("template");
    let out = weft(dir.path())
        .args(["validate", "bad.yaml"])
        .output()
        .expect("validate");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("bad.yaml:7:12")
            && all.contains("WEFT-E003")
            && all.contains("no post-processing hook is named `artefacts`")
            && all.contains("did you mean `artifacts`?"),
        "{all}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- S3 (moto) ----

fn moto_server() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("WEFT_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let venv = std::env::var_os("WEFT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../venv"));
    let bin = venv.join("bin/moto_server");
    bin.exists().then_some(bin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.0 request; returns (status, body bytes).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, response[split + 4..].to_vec()))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start_moto(bin: &Path) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let child = Killed(child);
    let addr = format!("127.0.0.1:{port}");
    // Until it answers; bounded.
    for _ in 0..300 {
        if let Ok((200, _)) = http(&addr, "GET", "/", None) {
            return (child, addr);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto_server did not answer on {addr}");
}

fn start_serve(dir: &Path, env: &[(&str, &str)]) -> (Killed, String, String) {
    let mut child = weft(dir)
        .envs(env.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("weft serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let child = Killed(child);
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited early")
            .expect("serve's log");
        if let Some(rest) = line.strip_prefix("weft serving http://") {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let key = std::fs::read_to_string(dir.join(".weft/admin.key"))
        .expect("admin key")
        .trim()
        .to_string();
    (child, addr, key)
}

#[test]
fn s3_store_keeps_the_image_and_serve_returns_the_same_bytes() {
    let Some(bin) = moto_server() else {
        assert!(
            std::env::var("WEFT_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "moto_server is required (pip install 'moto[server]==5.2.5' into ./venv)"
        );
        eprintln!(
            "SKIPPED: no moto_server (pip install 'moto[server]==5.2.5' into ./venv, or set \
             WEFT_VENV or WEFT_MOTO_SERVER)"
        );
        return;
    };
    let (_moto, s3) = start_moto(&bin);
    let bucket = "weft-artifacts";
    let (status, body) = http(&s3, "PUT", &format!("/{bucket}"), None).expect("create bucket");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let (dir, image) = project(true);
    std::fs::write(
        dir.path().join("weft.toml"),
        format!(
            "[artifacts.s3]\nbucket = \"{bucket}\"\nendpoint = \"http://{s3}\"\n\
             allow_http = true\naccess_key_id = \"${{S3_KEY_ID}}\"\n\
             secret_access_key = \"${{S3_SECRET}}\"\n"
        ),
    )
    .expect("weft.toml");
    let creds = [("S3_KEY_ID", "testing"), ("S3_SECRET", "testing-secret")];
    let doc = run_json(dir.path(), &creds);
    assert_eq!(doc["status"], "succeeded", "{doc}");
    let img = &step_output(&doc)["image"];
    let id = img["url"]
        .as_str()
        .and_then(|u| u.strip_prefix("/v1/artifacts/"))
        .expect("an artifact url")
        .to_string();
    assert_eq!(img["width"], 7);
    assert!(
        !dir.path().join(".weft/artifacts").exists(),
        "with [artifacts.s3] nothing is written to the local folder"
    );
    // The object is in the bucket, under the tenant, with the image's size (moto lists a
    // bucket without a signature).
    let (status, body) = http(&s3, "GET", &format!("/{bucket}"), None).expect("list the bucket");
    assert_eq!(status, 200);
    let listing = String::from_utf8_lossy(&body);
    assert!(
        listing.contains(&format!("<Key>default/{id}</Key>"))
            && listing.contains(&format!("<Size>{}</Size>", image.len())),
        "{listing}"
    );

    let (_serve, addr, key) = start_serve(dir.path(), &creds);
    let (status, body) =
        http(&addr, "GET", &format!("/v1/artifacts/{id}"), Some(&key)).expect("GET artifact");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, image, "the API returns the stored bytes");
    let run = doc["id"].as_str().expect("run id");
    let (status, body) = http(
        &addr,
        "GET",
        &format!("/v1/runs/{run}/artifacts"),
        Some(&key),
    )
    .expect("list artifacts");
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(listed["artifacts"][0]["id"], id.as_str(), "{listed}");
    // Unknown ids and no key are refused.
    let (status, _) = http(&addr, "GET", "/v1/artifacts/0000.png", Some(&key)).expect("GET");
    assert_eq!(status, 404);
    let (status, _) = http(&addr, "GET", &format!("/v1/artifacts/{id}"), None).expect("GET");
    assert_eq!(status, 401);
}
