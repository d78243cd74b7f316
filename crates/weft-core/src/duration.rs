//! Friendly durations (`50ms`, `3m`, `24h`) as the template language writes them.

use std::time::Duration;

/// Parses `"50ms"`, `"2s"`, `"3m"`, `"1h 30m"`, `"24h"`, `"7d"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like 50ms, 2s, 3m or 24h ({e})"))
}

/// Prints a duration the way a template would write it.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
