//! The `[http]` and `[tools]` parts of `weft.toml` that built-in tools read.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    pub http: HttpConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Hosts (`name` or `name:port`) the `http` tool may reach even when they resolve to
    /// loopback, private or link-local addresses.
    pub allow: Vec<String>,
    /// Largest response body read, in bytes.
    pub max_response_bytes: u64,
    /// Whole-request time limit, in seconds.
    pub timeout_secs: u64,
    /// Most redirects followed (each re-checked against the guard).
    pub max_redirects: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allow: Vec::new(),
            max_response_bytes: 10 * 1024 * 1024,
            timeout_secs: 30,
            max_redirects: 5,
        }
    }
}
