//! The built-in tools every weft process has, and what they share: strict input parsing and
//! friendly durations.
//!
//! Their names and inputs are part of the template language (DESIGN.md §4), so renaming a tool
//! or a field breaks users' templates.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Error, Registry, Result, ToolsConfig};

pub mod command;
pub mod geo;
pub mod http;
pub mod places;
pub mod render;
pub mod sleep;
pub mod ssrf;
pub mod transform;

pub use geo::us_states;

/// Inserts every built-in tool, configured from `weft.toml`.
pub fn register_all(registry: &mut Registry, config: &ToolsConfig) {
    registry.insert(Arc::new(transform::Transform::new()));
    registry.insert(Arc::new(render::Render::new()));
    registry.insert(Arc::new(http::Http::new(config.http.clone())));
    registry.insert(Arc::new(command::Command::new()));
    registry.insert(Arc::new(sleep::Sleep));
    registry.insert(Arc::new(geo::Cities));
}

/// Reads a tool's input into its typed form; a mismatch is the caller's mistake, never retried.
pub(crate) fn parse_input<T: DeserializeOwned>(tool: &str, input: &Value) -> Result<T> {
    T::deserialize(input).map_err(|error| Error::Input(format!("{tool}: {error}")))
}

/// Parses a friendly duration such as `50ms`, `2s` or `1m 30s`.
pub(crate) fn parse_duration(field: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        Error::Input(format!(
            "{field}: {text:?} is not a duration ({error}); write e.g. \"50ms\", \"2s\" or \"1m\""
        ))
    })
}

/// The JSON Schema of a friendly duration string.
pub(crate) fn duration_schema(description: &str) -> Value {
    serde_json::json!({
        "type": "string",
        "pattern": "^\\s*[0-9]+\\s*[a-zA-Zµ]+(\\s*[0-9]+\\s*[a-zA-Zµ]+)*\\s*$",
        "description": description,
    })
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The last `max` bytes of `text`, on a character boundary, marking the cut.
pub(crate) fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}
