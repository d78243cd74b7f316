//! What the CLI tests share: a command's output as text and a template whose step fails.

use std::process::Output;

/// A one-step template whose `command` writes "kaput" to stderr and exits 3.
pub const FAILING_TEMPLATE: &str = "name: fail\nsteps:\n  - id: boom\n    tool: command\n    with: { argv: [sh, -c, 'echo kaput >&2; exit 3'] }\n";

/// A finished command's stdout and stderr, lossily decoded.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}
