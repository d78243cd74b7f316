//! The bundled US gazetteer: the most populous places of each state (at most 50 per state, the
//! 50 states and DC), compiled in from `data/us_cities.tsv` (GeoNames, CC BY 4.0; see
//! `data/README.md`).
//!
//! One table for two readers: the `geo.cities` tool (a state's largest cities) and the intent
//! matcher (which state a named city is in), so both agree on what a city is.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::inputs::US_STATE_CODES;

const GAZETTEER: &str = include_str!("../data/us_cities.tsv");

/// A place of the gazetteer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// USPS code of its state, e.g. `"TX"`.
    pub state: &'static str,
    pub name: &'static str,
    pub population: u64,
}

struct Gazetteer {
    /// Per state code, most populous first (the file's order).
    by_state: HashMap<&'static str, Vec<Place>>,
    /// Per lower-case name, every state that has a place of that name, most populous first.
    by_name: HashMap<String, Vec<Place>>,
    /// The most words in a place name.
    longest: usize,
}

static GAZ: LazyLock<Gazetteer> = LazyLock::new(|| {
    let mut g = Gazetteer {
        by_state: HashMap::new(),
        by_name: HashMap::new(),
        longest: 1,
    };
    for line in GAZETTEER.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(state), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        let population = fields
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        let place = Place {
            state,
            name,
            population,
        };
        g.by_state.entry(state).or_default().push(place);
        g.by_name
            .entry(name.to_lowercase())
            .or_default()
            .push(place);
        g.longest = g.longest.max(name.split_whitespace().count());
    }
    for places in g.by_name.values_mut() {
        places.sort_by_key(|p| std::cmp::Reverse(p.population));
    }
    g
});

/// Finds a state by its code or name, ignoring case and surrounding spaces: its USPS code.
pub fn state_code(state: &str) -> Option<&'static str> {
    let wanted = state.trim();
    US_STATE_CODES
        .iter()
        .find(|(code, name)| code.eq_ignore_ascii_case(wanted) || name.eq_ignore_ascii_case(wanted))
        .map(|(code, _)| *code)
}

/// A state's full name from its USPS code.
pub fn state_name(code: &str) -> Option<&'static str> {
    US_STATE_CODES
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map(|(_, name)| *name)
}

/// The `limit` most populous places of a state (by code or name), most populous first; `None`
/// when `state` is not a US state.
pub fn largest(state: &str, limit: usize) -> Option<Vec<&'static str>> {
    let code = state_code(state)?;
    Some(
        GAZ.by_state
            .get(code)
            .map(|places| places.iter().take(limit).map(|p| p.name).collect())
            .unwrap_or_default(),
    )
}

/// Every place called `name` (any case), most populous first: one per state that has one.
pub fn places_named(name: &str) -> &'static [Place] {
    GAZ.by_name
        .get(&name.trim().to_lowercase())
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The most words in a place name ("Salt Lake City" has three).
pub fn longest_name() -> usize {
    GAZ.longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_states() {
        assert_eq!(places_named("austin")[0].state, "TX");
        let springfield: Vec<&str> = places_named("Springfield")
            .iter()
            .map(|p| p.state)
            .collect();
        assert!(springfield.len() >= 3, "{springfield:?}");
        assert!(springfield.contains(&"IL") && springfield.contains(&"MO"));
        assert_eq!(largest("co", 2), Some(vec!["Denver", "Colorado Springs"]));
        assert_eq!(largest("Atlantis", 2), None);
        assert!(longest_name() >= 3);
        assert_eq!(state_name("tx"), Some("Texas"));
    }
}
