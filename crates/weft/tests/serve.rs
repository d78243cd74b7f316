//! `weft serve`, `weft tenants` and `weft keys` as a user runs them: the first start makes
//! tenant `default` with its key in a 0600 file (never in the log), keys are created, listed
//! and revoked, and a run started by `weft run` shows in the API of tenant `default`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG");
    cmd
}

/// A plain HTTP/1.0 GET; returns (status, body).
fn get(addr: &str, path: &str, key: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[test]
fn tenants_and_keys_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(dir.path())
        .args(["tenants", "create", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("wft_ak_") && key.len() == 50, "{key}");
    let again = weft(dir.path())
        .args(["tenants", "create", "acme"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let bad = weft(dir.path())
        .args(["tenants", "create", "Not OK"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));

    let out = weft(dir.path())
        .args([
            "--json", "keys", "create", "--tenant", "acme", "--label", "ci",
        ])
        .output()
        .unwrap();
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["key_id"].as_str().unwrap().to_string();
    let out = weft(dir.path())
        .args(["--json", "keys", "list", "--tenant", "acme"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(&key) && !text.contains(created["key"].as_str().unwrap()));
    let out = weft(dir.path())
        .args(["keys", "revoke", "--tenant", "acme", &id])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = weft(dir.path())
        .args(["keys", "revoke", "--tenant", "acme", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a key is revoked once");
    let out = weft(dir.path())
        .args(["keys", "list", "--tenant", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn first_start_writes_the_admin_key_and_serves_cli_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = weft(dir.path())
        .args(["--json", "run", "hello", "-i", "cities=2"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let run: Value = serde_json::from_slice(&run.stdout).unwrap();

    let mut child = weft(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited early").unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.strip_prefix("weft serving http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let key_file = dir.path().join(".weft/admin.key");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(log.contains(".weft/admin.key"), "{log}");
    assert!(!log.contains(&key), "the key never goes to the log");

    let (status, body) = get(&addr, "/healthz", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&addr, "/v1/runs", &key);
    assert_eq!(status, 200, "{body}");
    let runs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        runs["runs"][0]["id"], run["id"],
        "the CLI's runs are tenant default's"
    );
    let (status, _) = get(&addr, "/v1/runs", "wft_ak_wrong");
    assert_eq!(status, 401);
    let (status, body) = get(&addr, "/v1/templates/hello", &key);
    assert_eq!(status, 200, "{body}");
    child.kill().ok();
    child.wait().ok();

    // A second start finds the tenant and leaves the key alone.
    let mut child = weft(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("weft serving"), "{first}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    child.kill().ok();
    child.wait().ok();
}

/// Issue 16: `weft tenants create acme` before the first `weft serve` used to leave no tenant
/// `default`, so the CLI's runs showed to no key. Now serve makes `default` (and its key file)
/// whenever it is missing, and `weft run --tenant` / `weft runs list --tenant` name a tenant.
#[test]
fn a_tenant_made_before_the_first_serve_leaves_cli_runs_visible() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(dir.path())
        .args(["tenants", "create", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let acme_key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let run_as = |tenant: Option<&str>| -> Value {
        let mut cmd = weft(dir.path());
        cmd.args(["--json", "run", "hello", "-i", "cities=1"]);
        if let Some(t) = tenant {
            cmd.args(["--tenant", t]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mine = run_as(None);
    let theirs = run_as(Some("acme"));
    let nobody = weft(dir.path())
        .args(["run", "hello", "--tenant", "nobody"])
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(2), "{nobody:?}");
    let listed = weft(dir.path())
        .args(["--json", "runs", "list", "--tenant", "acme"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], theirs["id"]);

    let mut child = weft(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited early").unwrap();
        if let Some(rest) = line.strip_prefix("weft serving http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let key = std::fs::read_to_string(dir.path().join(".weft/admin.key"))
        .expect("serve made tenant default and its key")
        .trim()
        .to_string();
    let (status, body) = get(&addr, "/v1/runs", &key);
    assert_eq!(status, 200, "{body}");
    let runs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(runs["runs"][0]["id"], mine["id"]);
    let (_, body) = get(&addr, "/v1/runs", &acme_key);
    let runs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(runs["runs"][0]["id"], theirs["id"], "{body}");
    let (_, body) = get(&addr, "/v1/tenant", &acme_key);
    assert!(body.contains("\"name\":\"acme\""), "{body}");
    child.kill().ok();
    child.wait().ok();
}
