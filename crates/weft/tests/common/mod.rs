//! What the CLI tests share: the `weft` binary in a folder, a `weft serve` to talk to, a
//! command's output as text and a template whose step fails. Each test file uses part of it.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A one-step template whose `command` writes "kaput" to stderr and exits 3.
pub const FAILING_TEMPLATE: &str = "name: fail\nsteps:\n  - id: boom\n    tool: command\n    with: { argv: [sh, -c, 'echo kaput >&2; exit 3'] }\n";

/// A finished command's stdout and stderr, lossily decoded.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The `weft` binary run in `dir`, blind to the caller's `WEFT_DB` and `WEFT_CONFIG`.
pub fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG");
    cmd
}

/// Starts `weft serve` in `dir` on a free port with its log in `log`; returns it once it
/// listens, with its address (`127.0.0.1:PORT`).
pub fn serve(dir: &Path, log: &Path) -> (Child, String) {
    let file = std::fs::File::create(log).expect("serve log");
    let child = weft(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start weft serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = said.split("weft serving http://").nth(1) {
            break rest
                .split([' ', '/'])
                .next()
                .unwrap_or_default()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "weft serve never listened: {said}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (child, addr)
}

/// `GET path` without credentials: the status and the body.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}
