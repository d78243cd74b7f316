//! `sleep`: waits for a while. Useful for pacing calls to a rate-limited service and for
//! testing timeouts, retries and cancellation.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{duration_schema, parse_duration, parse_input};
use crate::{Context, Error, Result, Tool};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    duration: String,
}

/// The `sleep` tool. Its output is `null`.
pub struct Sleep;

#[async_trait]
impl Tool for Sleep {
    fn name(&self) -> &str {
        "sleep"
    }

    fn description(&self) -> &str {
        "Waits for `duration` (e.g. \"50ms\", \"2s\"); stops early when the step is cancelled."
    }

    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["duration"],
            "properties": {
                "duration": duration_schema("How long to wait, e.g. \"50ms\" or \"2s\".")
            },
            "additionalProperties": false
        }))
    }

    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        let input: Input = parse_input("sleep", &input)?;
        let duration = parse_duration("sleep: duration", &input.duration)?;
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(Value::Null),
            () = ctx.cancel.cancelled() => Err(Error::Cancelled),
        }
    }
}
