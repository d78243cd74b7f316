//! From a sentence to a template and its inputs, offline.
//!
//! Each template's `intent.examples` ("Find all {niche} businesses in {state}") is aligned
//! with the sentence word by word ([`align`]): literals match exactly, within a typo, or
//! through a synonym; each `{input}` takes a span of the sentence that fits the input's type
//! (a US state by name, code or near miss; a number; a URL or a list of them; a quoted string;
//! free text). The cheapest alignment of each template gives its confidence; the best template
//! wins, the others are alternatives. When the best is unsure, or a required input is missing,
//! the answer carries a clarifying question instead of a guess.
//!
//! No model, no network: the matcher is a pure function of the plans and the sentence.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};
use weft_core::Plan;
use weft_core::inputs::US_STATES;
use weft_core::plan::{InputSpec, InputType};

pub mod align;
pub mod eval;
pub mod text;

use align::{SlotSpec, SlotType, align};
use text::{Token, tokenize};

/// Below this confidence the matcher asks rather than guesses.
pub const MIN_CONFIDENCE: f64 = 0.45;

/// The matcher's answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Answer {
    /// The chosen template; `None` when nothing matched at all.
    pub template: Option<String>,
    /// Inputs read from the sentence (defaults are left to the run).
    pub inputs: Map<String, Value>,
    /// 0..1.
    pub confidence: f64,
    /// The runners-up, best first.
    pub alternatives: Vec<Alternative>,
    /// Required inputs the sentence did not give.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Set when the matcher will not start a run on this answer: what to ask the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

impl Answer {
    /// Whether a run may start from this answer without asking.
    pub fn is_confident(&self) -> bool {
        self.template.is_some() && self.question.is_none()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alternative {
    pub template: String,
    pub confidence: f64,
    pub description: Option<String>,
}

struct Entry {
    name: String,
    description: Option<String>,
    examples: Vec<Vec<Token>>,
    inputs: IndexMap<String, InputSpec>,
}

/// The templates a sentence may mean, prepared for matching.
pub struct Matcher {
    entries: Vec<Entry>,
}

impl Matcher {
    /// Prepares every plan's examples; a template without examples is matched on its name
    /// and description.
    pub fn new<'a>(plans: impl IntoIterator<Item = &'a Plan>) -> Matcher {
        let entries = plans
            .into_iter()
            .map(|plan| {
                let mut examples: Vec<Vec<Token>> =
                    plan.intent_examples.iter().map(|e| tokenize(e)).collect();
                if examples.is_empty() {
                    examples.push(tokenize(&plan.name.replace(['-', '_'], " ")));
                    if let Some(d) = &plan.description {
                        examples.push(tokenize(d));
                    }
                }
                Entry {
                    name: plan.name.clone(),
                    description: plan.description.clone(),
                    examples,
                    inputs: plan.inputs.clone(),
                }
            })
            .collect();
        Matcher { entries }
    }

    /// The template the sentence most likely means, its inputs, and the others.
    pub fn ask(&self, sentence: &str) -> Answer {
        let tokens = tokenize(sentence);
        let mut scored: Vec<(f64, usize, Map<String, Value>)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(idx, entry)| {
                let (confidence, inputs) = best_example(entry, &tokens);
                (confidence, idx, inputs)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let Some((confidence, idx, inputs)) = scored.first().cloned() else {
            return Answer {
                template: None,
                inputs: Map::new(),
                confidence: 0.0,
                alternatives: Vec::new(),
                missing: Vec::new(),
                question: Some("No templates are available to match against.".into()),
            };
        };
        let entry = &self.entries[idx];
        let alternatives: Vec<Alternative> = scored[1..]
            .iter()
            .filter(|(c, _, _)| *c > 0.05)
            .take(3)
            .map(|(c, i, _)| Alternative {
                template: self.entries[*i].name.clone(),
                confidence: round(*c),
                description: self.entries[*i].description.clone(),
            })
            .collect();
        let missing: Vec<String> = entry
            .inputs
            .iter()
            .filter(|(name, spec)| {
                spec.required && spec.default.is_none() && !inputs.contains_key(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let question = if confidence < MIN_CONFIDENCE {
            let mut names = vec![entry.name.as_str()];
            names.extend(alternatives.iter().map(|a| a.template.as_str()));
            Some(format!(
                "I am not sure what you mean. Did you want one of these: {}? Try rephrasing, or name the template.",
                names.join(", ")
            ))
        } else if !missing.is_empty() {
            Some(ask_for(&entry.name, &missing, &entry.inputs))
        } else {
            None
        };
        Answer {
            template: (confidence > 0.0).then(|| entry.name.clone()),
            inputs,
            confidence: round(confidence),
            alternatives,
            missing,
            question,
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// "Which state (a US state)? `state-discovery` needs it."
fn ask_for(template: &str, missing: &[String], inputs: &IndexMap<String, InputSpec>) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(
            |name| match inputs.get(name).and_then(|s| s.description.as_deref()) {
                Some(d) => format!("{name} ({d})"),
                None => name.clone(),
            },
        )
        .collect();
    format!(
        "To run `{template}` I also need: {}. Which {}?",
        parts.join("; "),
        missing.join(" and ")
    )
}

/// The best example of a template for the sentence: its confidence and the inputs it read.
fn best_example(entry: &Entry, sentence: &[Token]) -> (f64, Map<String, Value>) {
    let slot = |name: &str| entry.inputs.get(name).map(|spec| slot_spec(name, spec));
    let mut best = (0.0, Map::new());
    for example in &entry.examples {
        let alignment = align(example, sentence, &slot);
        if !alignment.cost.is_finite() {
            continue;
        }
        let length = sentence.len().max(example.len()).max(1) as f64;
        let fit = (1.0 - alignment.cost / length).max(0.0);
        let literals = if alignment.content_literals == 0 {
            0.5
        } else {
            alignment.matched_literals as f64 / alignment.content_literals as f64
        };
        let confidence = fit * (0.4 + 0.6 * literals);
        if confidence > best.0 {
            let mut inputs: Map<String, Value> = alignment
                .values
                .into_iter()
                .filter(|(name, _)| entry.inputs.contains_key(name))
                .collect();
            counted_number(entry, sentence, &mut inputs);
            best = (confidence, inputs);
        }
    }
    best
}

/// "in 5 cities": a number the example had no slot for, followed by a word that names what an
/// unfilled numeric input counts (its name or description says "cities"), fills that input.
fn counted_number(entry: &Entry, sentence: &[Token], inputs: &mut Map<String, Value>) {
    for (idx, token) in sentence.iter().enumerate() {
        let text::Kind::Number(n) = token.kind else {
            continue;
        };
        let Some(next) = sentence.get(idx + 1) else {
            continue;
        };
        if inputs.values().any(|v| v.as_f64() == Some(n)) {
            continue;
        }
        let wanted = entry.inputs.iter().find(|(name, spec)| {
            matches!(spec.ty, InputType::Integer | InputType::Number)
                && !inputs.contains_key(*name)
                && {
                    let about = format!("{} {}", name, spec.description.as_deref().unwrap_or(""));
                    tokenize(&about).iter().any(|t| t.norm == next.norm)
                }
        });
        if let Some((name, spec)) = wanted {
            let value = match spec.ty {
                InputType::Integer if n.fract() == 0.0 => Value::from(n as i64),
                InputType::Number => serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                _ => continue,
            };
            if !value.is_null() {
                inputs.insert(name.clone(), value);
            }
        }
    }
}

/// How an input's value is read from a sentence.
fn slot_spec(name: &str, spec: &InputSpec) -> SlotSpec {
    let url_like = ["url", "link", "page", "site", "address"]
        .iter()
        .any(|w| name.contains(w));
    let ty = match spec.ty {
        InputType::Integer => SlotType::Integer,
        InputType::Number => SlotType::Number,
        InputType::Array if url_like => SlotType::UrlList,
        InputType::String if url_like => SlotType::Url,
        InputType::String => match &spec.allowed {
            Some(allowed) if is_us_states(allowed) => SlotType::State,
            Some(allowed) => SlotType::Choice(
                allowed
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            None => SlotType::Text,
        },
        _ => SlotType::Text,
    };
    SlotSpec {
        ty,
        required: spec.required && spec.default.is_none(),
    }
}

fn is_us_states(allowed: &[Value]) -> bool {
    allowed.len() == US_STATES.len()
        && allowed
            .iter()
            .zip(US_STATES.iter())
            .all(|(v, s)| v.as_str() == Some(s))
}
