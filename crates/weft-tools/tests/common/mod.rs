//! Finding the real test peers (MCP servers from npm and PyPI, Chromium) and skipping clearly
//! when they are absent, unless `WEFT_REQUIRE_SERVICES=1` says they must be there.

#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `node_modules/.bin/NAME`, under `WEFT_NODE_MODULES` or the repository root.
pub fn node_bin(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("WEFT_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("node_modules"));
    let path = base.join(".bin").join(name);
    path.exists().then_some(path)
}

/// `venv/bin/NAME`, under `WEFT_VENV` or the repository root.
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("WEFT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("venv"));
    let path = base.join("bin").join(name);
    path.exists().then_some(path)
}

/// Returns the path, or says why the test is skipped (and fails when services are required).
pub fn need(found: Option<PathBuf>, what: &str, install: &str) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{what} is required (WEFT_REQUIRE_SERVICES=1) but missing; install with: {install}");
    }
    eprintln!("SKIPPED: {what} is not installed; install with: {install}");
    None
}

pub const NPM_INSTALL: &str = "npm install @modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/server-memory@2026.8.31 @modelcontextprotocol/server-filesystem@2026.8.31";
pub const PIP_INSTALL: &str = "python3 -m venv venv && venv/bin/pip install mcp-server-fetch==2026.10.24 mcp-server-time==2026.10.19";

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Debian's Chromium, or why the test is skipped.
pub fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    need(found, "Chromium", "apt-get install -y chromium")
}
