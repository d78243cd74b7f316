//! The built-in tools (placeholder; helper B).

use crate::{Registry, ToolsConfig};

pub fn register_all(_registry: &mut Registry, _config: &ToolsConfig) {}
