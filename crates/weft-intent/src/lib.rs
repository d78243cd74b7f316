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

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};
use weft_core::Plan;
use weft_core::inputs::US_STATES;
use weft_core::plan::{InputSpec, InputType};

pub mod align;
pub mod eval;
pub mod text;

use align::{Flavour, SlotSpec, SlotType, align};
use text::{CityRun, Token, Vocab, city_runs, tokenize};

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

/// What kind of value an input takes, read from its declaration (type, enum, name,
/// description, `phrases`), so a template the matcher has never seen is filled by type.
#[derive(Debug, Clone, PartialEq)]
enum InputKind {
    State,
    Choice(Vec<String>),
    Integer,
    Number,
    Url,
    UrlList,
    Repo,
    /// A list of US cities (an array input about cities).
    CityList,
    /// A boolean: the phrases (tokenized, stopwords left out) that switch it on, and the
    /// words of its description that the template's examples do not use (two of them close
    /// together switch it on too: "copy accounting", "work from home").
    Switch(Vec<Vec<String>>, Vec<(String, bool)>),
    /// Free text that names a place ("a US state or city"): a state or a capitalized name
    /// after "in" left over fills it.
    Place,
    /// A deployment environment: production, staging...
    Environment,
    /// Free text, and what kind (`Name` is completed with the sentence's casing when read).
    Text(Flavour),
    /// Objects and other arrays: never read from a sentence.
    Other,
}

struct Entry {
    name: String,
    /// The words that say this template's job: its examples' content words, enum values,
    /// feature phrases.
    signature: HashSet<String>,
    /// Every word of its own: the signature, its description, its inputs' names and
    /// descriptions.
    own: HashSet<String>,
    /// Other templates' signature words that are not its own.
    foreign: HashSet<String>,
    description: Option<String>,
    examples: Vec<Vec<Token>>,
    inputs: IndexMap<String, InputSpec>,
    kinds: IndexMap<String, InputKind>,
    /// Each numeric input's words (name and description), for "3 largest cities".
    counts: IndexMap<String, Vec<String>>,
    /// Each enum input's values with what its description says of them.
    notes: IndexMap<String, Vec<ValueNote>>,
    /// The city-list input and the state input, when the template has both.
    cities_and_state: Option<(String, String)>,
}

/// The templates a sentence may mean, prepared for matching.
pub struct Matcher {
    entries: Vec<Entry>,
}

impl Matcher {
    /// Prepares every plan's examples; a template without examples is matched on its name
    /// and description.
    pub fn new<'a>(plans: impl IntoIterator<Item = &'a Plan>) -> Matcher {
        let mut entries: Vec<Entry> = plans.into_iter().map(entry).collect();
        // A word that says one template's job ("jobs", "senior", "invoices") is a sign
        // against the others, unless many templates use it ("find").
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for e in &entries {
            for w in &e.signature {
                *uses.entry(w.as_str()).or_default() += 1;
            }
        }
        let generic = |w: &str| uses.get(w).copied().unwrap_or(0) * 2 > entries.len().max(2);
        let foreign: Vec<HashSet<String>> = (0..entries.len())
            .map(|i| {
                entries
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != i)
                    .flat_map(|(_, e)| e.signature.iter())
                    .filter(|w| !entries[i].own.contains(*w) && !generic(w))
                    .cloned()
                    .collect()
            })
            .collect();
        for (e, f) in entries.iter_mut().zip(foreign) {
            e.foreign = f;
        }
        Matcher { entries }
    }

    /// The template the sentence most likely means, its inputs, and the others.
    pub fn ask(&self, sentence: &str) -> Answer {
        let tokens = tokenize(sentence);
        let cased = text::is_cased(sentence);
        let mut scored: Vec<(Reading, usize)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(idx, entry)| (best_reading(entry, &tokens, cased), idx))
            .collect();
        scored.sort_by(|a, b| {
            b.0.confidence
                .total_cmp(&a.0.confidence)
                .then(a.1.cmp(&b.1))
        });
        let Some((best, idx)) = scored.first().cloned() else {
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
        let runner_up = scored.get(1).map(|(r, _)| r.confidence).unwrap_or(0.0);
        let confidence = calibrate(best.confidence, runner_up);
        let alternatives: Vec<Alternative> = scored[1..]
            .iter()
            .filter(|(r, _)| r.confidence > 0.05)
            .take(3)
            .map(|(r, i)| Alternative {
                template: self.entries[*i].name.clone(),
                confidence: round(calibrate(r.confidence, best.confidence)),
                description: self.entries[*i].description.clone(),
            })
            .collect();
        let inputs = best.inputs;
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
        } else if let Some(q) = best.question {
            Some(q)
        } else if !missing.is_empty() {
            Some(ask_for(&entry.name, &missing, &entry.inputs))
        } else {
            None
        };
        Answer {
            template: (best.confidence > 0.0).then(|| entry.name.clone()),
            inputs,
            confidence: round(confidence),
            alternatives,
            missing,
            question,
        }
    }
}

/// How sure the matcher is of a template that read `best` when the next best read
/// `runner_up`: its own fit, less when another template reads the sentence almost as well.
fn calibrate(best: f64, runner_up: f64) -> f64 {
    let margin = (best - runner_up).max(0.0);
    let closeness = if margin >= 0.15 {
        1.0
    } else {
        0.7 + 2.0 * margin
    };
    (best * closeness).clamp(0.0, 1.0)
}

fn entry(plan: &Plan) -> Entry {
    let mut examples: Vec<Vec<Token>> = plan.intent_examples.iter().map(|e| tokenize(e)).collect();
    if examples.is_empty() {
        examples.push(tokenize(&plan.name.replace(['-', '_'], " ")));
        if let Some(d) = &plan.description {
            examples.push(tokenize(d));
        }
    }
    let literals: Vec<String> = examples
        .iter()
        .flatten()
        .filter(|t| t.kind == text::Kind::Word)
        .map(|t| t.norm.clone())
        .collect();
    let kinds: IndexMap<String, InputKind> = plan
        .inputs
        .iter()
        .map(|(name, spec)| (name.clone(), input_kind(name, spec, &literals)))
        .collect();
    let counts = plan
        .inputs
        .iter()
        .filter(|(_, spec)| matches!(spec.ty, InputType::Integer | InputType::Number))
        .map(|(name, spec)| {
            let about = format!(
                "{} {}",
                name.replace('_', " "),
                spec.description.as_deref().unwrap_or("")
            );
            let words = tokenize(&about)
                .into_iter()
                .filter(|t| t.kind == text::Kind::Word && !text::is_stopword(&t.norm))
                .map(|t| t.norm)
                .collect();
            (name.clone(), words)
        })
        .collect();
    let mut signature: HashSet<String> = literals
        .iter()
        .filter(|w| !text::is_stopword(w))
        .cloned()
        .collect();
    for kind in kinds.values() {
        match kind {
            InputKind::Choice(allowed) => signature.extend(
                allowed
                    .iter()
                    .map(|a| text::normalize(&a.to_lowercase()))
                    .filter(|w| !text::is_stopword(w) && !text::is_keyword(w)),
            ),
            InputKind::Switch(phrases, _) => signature.extend(phrases.iter().flatten().cloned()),
            _ => {}
        }
    }
    let notes = plan
        .inputs
        .iter()
        .filter_map(|(name, spec)| match kinds.get(name) {
            Some(InputKind::Choice(allowed)) => Some((
                name.clone(),
                value_notes(
                    allowed,
                    spec.description.as_deref().unwrap_or(""),
                    &signature,
                ),
            )),
            _ => None,
        })
        .collect();
    let mut own = signature.clone();
    let about = plan.inputs.iter().fold(
        plan.description.clone().unwrap_or_default(),
        |mut acc, (name, spec)| {
            acc.push(' ');
            acc.push_str(&name.replace('_', " "));
            acc.push(' ');
            acc.push_str(spec.description.as_deref().unwrap_or(""));
            acc
        },
    );
    own.extend(content_norms(&about));
    let city_input = kinds
        .iter()
        .find(|(_, k)| **k == InputKind::CityList)
        .map(|(n, _)| n.clone());
    let state_input = kinds
        .iter()
        .find(|(_, k)| **k == InputKind::State)
        .map(|(n, _)| n.clone());
    Entry {
        name: plan.name.clone(),
        description: plan.description.clone(),
        examples,
        inputs: plan.inputs.clone(),
        kinds,
        counts,
        cities_and_state: city_input.zip(state_input),
        notes,
        signature,
        own,
        foreign: HashSet::new(),
    }
}

/// `literals`: the words of the template's examples.
fn input_kind(name: &str, spec: &InputSpec, literals: &[String]) -> InputKind {
    let about = format!(
        "{} {}",
        name.to_lowercase(),
        spec.description.as_deref().unwrap_or("").to_lowercase()
    );
    let has = |words: &[&str]| words.iter().any(|w| about.contains(w));
    let url_like = ["url", "link", "page", "site", "address"]
        .iter()
        .any(|w| name.contains(w));
    if name == "api" || has(&["api base url", "base url"]) {
        return InputKind::Other;
    }
    match spec.ty {
        InputType::Integer => InputKind::Integer,
        InputType::Number => InputKind::Number,
        InputType::Boolean => {
            let mut phrases: Vec<Vec<String>> =
                spec.phrases.iter().map(|p| content_norms(p)).collect();
            phrases.push(content_norms(&name.replace('_', " ")));
            phrases.retain(|p| !p.is_empty());
            let mut words = content_norms(spec.description.as_deref().unwrap_or(""));
            words.extend(content_norms(&name.replace('_', " ")));
            words.retain(|w| !text::is_keyword(w));
            words.sort();
            words.dedup();
            // Each word, and whether the examples use it too (such a word alone is no sign).
            let words = words
                .into_iter()
                .map(|w| {
                    let shared = literals.contains(&w);
                    (w, shared)
                })
                .collect();
            InputKind::Switch(phrases, words)
        }
        InputType::Array if url_like || has(&["urls", "pages to"]) => InputKind::UrlList,
        InputType::Array if has(&["city", "cities"]) => InputKind::CityList,
        InputType::String => match &spec.allowed {
            Some(allowed) if is_us_states(allowed) => InputKind::State,
            Some(allowed) => InputKind::Choice(
                allowed
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            None if url_like || has(&[" url", "web page", "the page"]) => InputKind::Url,
            None if name.contains("repo") || has(&["owner/name", "repository"]) => InputKind::Repo,
            None if matches!(name, "environment" | "env" | "stage") => InputKind::Environment,
            None if matches!(name, "location" | "place" | "city" | "where" | "region")
                || has(&["us state or city", "city or state"]) =>
            {
                InputKind::Place
            }
            None => InputKind::Text(flavour(name, &about)),
        },
        _ => InputKind::Other,
    }
}

/// What kind of free text an input takes, from its name and description (`about`, lower
/// case): what to research or ask is a query; who to greet or chase is a name; anything else
/// (a category, a title, a host) is a term.
fn flavour(name: &str, about: &str) -> Flavour {
    let words: Vec<&str> = about
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    let query_name = [
        "query", "topic", "question", "prompt", "q", "subject", "about", "search", "research",
        "ask",
    ];
    if query_name.contains(&name) || has(&["research", "topic", "query", "question"]) {
        return Flavour::Query;
    }
    let name_words = [
        "who",
        "whom",
        "whose",
        "customer",
        "client",
        "company",
        "person",
        "people",
        "organization",
        "organisation",
        "recipient",
        "greet",
    ];
    if has(&name_words) {
        return Flavour::Name { cased: true };
    }
    Flavour::Term
}

/// A phrase's words as the matcher compares them: normalized, stopwords left out.
fn content_norms(phrase: &str) -> Vec<String> {
    tokenize(phrase)
        .into_iter()
        .filter(|t| !text::is_stopword(&t.norm))
        .map(|t| t.norm)
        .collect()
}

/// One template's best reading of the sentence.
#[derive(Debug, Clone)]
struct Reading {
    confidence: f64,
    inputs: Map<String, Value>,
    /// Set when the reading itself needs a question ("Springfield" is in several states).
    question: Option<String>,
}

/// The sentence as a template may read it: as written, with a relative clause moved
/// ("companies in Ohio that do roofing" -> "roofing companies in Ohio"), and with its named
/// cities standing where a state would.
struct Variant {
    tokens: Vec<Token>,
    /// Inputs read before aligning (feature phrases, counted numbers, sizes).
    claimed: Map<String, Value>,
    /// A question the claimed values raise ("90 minutes" for a count of hours).
    question: Option<String>,
    /// The cities each `Cities` token stands for, by token index.
    cities: Vec<(usize, CityRun)>,
    /// What reading the sentence this way costs.
    penalty: f64,
    /// Whether the sentence is written with capitals ([`text::is_cased`]).
    cased: bool,
}

fn variants(entry: &Entry, sentence: &[Token], cased: bool) -> Vec<Variant> {
    let mut sentence = sentence.to_vec();
    for token in &mut sentence {
        if token.kind == text::Kind::Word && !text::is_stopword(&token.norm) {
            token.vocab = if entry.own.contains(&token.norm) {
                Vocab::Own
            } else if entry.foreign.contains(&token.norm) {
                Vocab::Foreign
            } else {
                Vocab::Neutral
            };
        }
    }
    let sentence = sentence.as_slice();
    let mut shapes = vec![(sentence.to_vec(), 0.0)];
    if let Some(moved) = reorder_relative(sentence) {
        shapes.push((moved, 0.1));
    }
    let mut out = Vec::new();
    for (mut tokens, penalty) in shapes {
        let (claimed, question) = claim(entry, &mut tokens);
        if entry.cities_and_state.is_some() {
            let runs = city_runs(&tokens);
            if !runs.is_empty() {
                let mut with_cities = Vec::new();
                let mut cities = Vec::new();
                let mut at = 0;
                for run in runs {
                    with_cities.extend_from_slice(&tokens[at..run.range.start]);
                    let surface = tokens[run.range.clone()]
                        .iter()
                        .map(|t| t.surface.as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    cities.push((with_cities.len(), run.clone()));
                    with_cities.push(Token {
                        norm: surface.to_lowercase(),
                        surface,
                        kind: text::Kind::Cities(run.states.clone()),
                        keyword: false,
                        claimed: false,
                        ends_clause: tokens[run.range.end - 1].ends_clause,
                        vocab: Vocab::Neutral,
                    });
                    at = run.range.end;
                }
                with_cities.extend_from_slice(&tokens[at..]);
                out.push(Variant {
                    tokens: with_cities,
                    claimed: claimed.clone(),
                    question: question.clone(),
                    cities,
                    penalty,
                    cased,
                });
            }
        }
        out.push(Variant {
            tokens,
            claimed,
            question,
            cities: Vec::new(),
            penalty,
            cased,
        });
    }
    out
}

/// "companies in Ohio that do roofing" -> "roofing companies in Ohio": a clause saying what
/// the businesses do moves before the noun it describes, where examples put the category.
fn reorder_relative(tokens: &[Token]) -> Option<Vec<Token>> {
    const VERBS: &[&str] = &[
        "do",
        "does",
        "doing",
        "offer",
        "offers",
        "offering",
        "provide",
        "provides",
        "providing",
        "specialize",
        "specializes",
        "specializing",
        "sell",
        "sells",
        "selling",
        "install",
        "installs",
        "installing",
        "handle",
        "handles",
        "focus",
        "focusing",
        "work",
        "working",
        "are",
        "is",
    ];
    const PRONOUNS: &[&str] = &["that", "who", "which"];
    let lower = |i: usize| tokens[i].surface.to_lowercase();
    let (clause, mut x0) = (1..tokens.len()).find_map(|k| {
        let word = lower(k);
        if PRONOUNS.contains(&word.as_str()) && k + 1 < tokens.len() {
            VERBS.contains(&lower(k + 1).as_str()).then_some((k, k + 2))
        } else if word.ends_with("ing")
            && VERBS.contains(&word.as_str())
            && tokens[k - 1].norm == "business"
        {
            Some((k, k + 1))
        } else if k >= 3
            && VERBS.contains(&word.as_str())
            && !matches!(word.as_str(), "are" | "is")
            && (tokens[k - 1].kind != text::Kind::Word
                || tokens[k - 1]
                    .surface
                    .chars()
                    .next()
                    .is_some_and(char::is_uppercase))
            && matches!(lower(k - 2).as_str(), "in" | "across" | "near" | "around")
            && tokens[k - 3].norm == "business"
        {
            // "businesses in Michigan do window cleaning".
            Some((k, k + 1))
        } else {
            None
        }
    })?;
    while x0 < tokens.len() && matches!(lower(x0).as_str(), "in" | "on" | "with" | "the") {
        x0 += 1;
    }
    let boundary = |i: usize| {
        !matches!(tokens[i].kind, text::Kind::Word | text::Kind::Quoted)
            || (matches!(
                lower(i).as_str(),
                "in" | "across" | "near" | "around" | "throughout"
            ) && tokens.get(i + 1).is_some_and(|t| {
                t.kind != text::Kind::Word
                    || t.surface.chars().next().is_some_and(char::is_uppercase)
            }))
    };
    let x1 = (x0..tokens.len())
        .find(|&i| boundary(i))
        .unwrap_or(tokens.len());
    if x1 <= x0 {
        return None;
    }
    let noun = (0..clause).rev().find(|&i| tokens[i].norm == "business")?;
    let mut out = tokens[..noun].to_vec();
    out.extend_from_slice(&tokens[x0..x1]);
    out.extend_from_slice(&tokens[noun..clause]);
    out.extend_from_slice(&tokens[x1..]);
    Some(out)
}

/// What an enum input's description says of one value: "digest: no LLM" in
/// "auto: ...; llm: the LLM summary or fail; digest: no LLM".
#[derive(Debug, Clone)]
struct ValueNote {
    value: String,
    /// The note's words (normalized, stopwords left out).
    words: Vec<String>,
    /// The note's words that no other value's note has and the template's examples do not
    /// use ("polite" for a friendly tone): a sentence word among them names the value.
    marks: Vec<String>,
    /// The note says "no ..." or "without ...": the value that turns the input's thing off.
    off: bool,
}

/// Reads `value: note; value: note` from an enum input's description. `signature`: the
/// template's own job words, which name no value.
fn value_notes(
    allowed: &[String],
    description: &str,
    signature: &HashSet<String>,
) -> Vec<ValueNote> {
    let mut notes: Vec<ValueNote> = allowed
        .iter()
        .map(|value| {
            let lower = value.to_lowercase();
            let said = description
                .split(';')
                .filter_map(|part| part.split_once(':'))
                .find(|(v, _)| v.trim().to_lowercase() == lower)
                .map(|(_, note)| note.trim().to_lowercase())
                .unwrap_or_default();
            let off = said
                .split_whitespace()
                .next()
                .is_some_and(|w| matches!(w, "no" | "without" | "none" | "skip" | "never"));
            ValueNote {
                value: value.clone(),
                words: content_norms(&said),
                marks: Vec::new(),
                off,
            }
        })
        .collect();
    for idx in 0..notes.len() {
        let marks = notes[idx]
            .words
            .iter()
            .filter(|w| {
                w.len() >= 4
                    && !text::is_keyword(w)
                    && !signature.contains(*w)
                    && notes
                        .iter()
                        .enumerate()
                        .all(|(k, other)| k == idx || !other.words.contains(w))
            })
            .cloned()
            .collect();
        notes[idx].marks = marks;
    }
    notes
}

/// Enum values said without their name: "no LLM" is the value whose note says "no LLM"
/// (`summarize: digest`), "without the summary" the value that turns the input's thing off,
/// "politely" the value whose note alone says "polite". A negated value ("not firm") is claimed
/// and set to nothing.
fn claim_choices(entry: &Entry, tokens: &mut [Token], inputs: &mut Map<String, Value>) {
    for (name, notes) in &entry.notes {
        if inputs.contains_key(name) {
            continue;
        }
        let name_norm = text::normalize(&name.replace('_', " "));
        let named = |t: &Token, w: &str| {
            t.kind == text::Kind::Word
                && (t.norm == w || text::verb_bases(&t.norm).iter().any(|b| b == w))
        };
        // Negated: "no LLM", "without the summary", "not firm".
        let mut done = false;
        for i in 0..tokens.len() {
            let lower = tokens[i].surface.to_lowercase();
            if tokens[i].claimed || !NEGATIONS.contains(&lower.as_str()) {
                continue;
            }
            let Some(k) = (i + 1..tokens.len().min(i + 4)).find(|&k| {
                !text::is_stopword(&tokens[k].norm) || tokens[k].kind != text::Kind::Word
            }) else {
                continue;
            };
            let word = tokens[k].surface.to_lowercase();
            let norm = tokens[k].norm.clone();
            let is_value = notes.iter().any(|n| n.value.to_lowercase() == word);
            let off_value = notes.iter().find(|n| {
                n.off
                    && (n.words.iter().any(|w| *w == norm || *w == word)
                        || norm == name_norm
                        || (is_value && n.value.to_lowercase() != word))
            });
            if off_value.is_none() && !is_value {
                continue;
            }
            if let Some(note) = off_value {
                inputs.insert(name.clone(), Value::String(note.value.clone()));
            }
            for token in &mut tokens[i..=k] {
                token.claimed = true;
            }
            done = true;
            break;
        }
        if done {
            continue;
        }
        // A value next to the input's own name: "an llm summary", "firm tone".
        let beside = (0..tokens.len()).find_map(|i| {
            let t = &tokens[i];
            let lower = t.surface.to_lowercase();
            let note = notes.iter().find(|n| n.value.to_lowercase() == lower)?;
            if t.claimed || t.kind != text::Kind::Word {
                return None;
            }
            [i.wrapping_sub(1), i + 1]
                .into_iter()
                .find(|&k| k < tokens.len() && !tokens[k].claimed && tokens[k].norm == name_norm)
                .map(|k| (i.min(k), i.max(k), note.value.clone()))
        });
        if let Some((from, to, value)) = beside {
            inputs.insert(name.clone(), Value::String(value));
            for token in &mut tokens[from..=to] {
                token.claimed = true;
            }
            continue;
        }
        // A word only one value's note has: "politely" -> the value noted "a polite nudge".
        let hit = (0..tokens.len()).find_map(|i| {
            let t = &tokens[i];
            if t.claimed {
                return None;
            }
            let mut found = notes.iter().filter(|n| n.marks.iter().any(|m| named(t, m)));
            let first = found.next()?;
            found.next().is_none().then(|| (i, first.value.clone()))
        });
        if let Some((i, value)) = hit {
            inputs.insert(name.clone(), Value::String(value));
            tokens[i].claimed = true;
        }
    }
}

/// Words before a phrase that turn it off ("without booking checks").
const NEGATIONS: &[&str] = &[
    "no", "not", "without", "skip", "don't", "dont", "never", "except",
];

/// Reads, before aligning, what belongs to an input wherever the sentence says it: phrases
/// that switch a boolean on ("and tell me which ones have online booking"), counted numbers
/// ("in the 3 largest cities", "top 5 results", "800 pixels wide") and sizes ("1920x1080").
/// The words used are marked `claimed`: free as extra words, never inside a free-text value.
fn claim(entry: &Entry, tokens: &mut [Token]) -> (Map<String, Value>, Option<String>) {
    let mut inputs = Map::new();
    claim_choices(entry, tokens, &mut inputs);
    // Phrases that switch a boolean on; "without booking" leaves it off.
    for (name, kind) in &entry.kinds {
        let InputKind::Switch(phrases, words) = kind else {
            continue;
        };
        // Two words of the description within four words of each other, one of them a word
        // the examples do not use.
        let word = |t: &Token| {
            if t.kind != text::Kind::Word || t.claimed {
                return None;
            }
            words
                .iter()
                .find(|(w, _)| *w == t.norm)
                .map(|(_, shared)| *shared)
        };
        let described = (0..tokens.len()).find_map(|i| {
            let first = word(&tokens[i])?;
            (i + 1..tokens.len().min(i + 5))
                .find(|&k| {
                    word(&tokens[k]).is_some_and(|second| !(first && second))
                        && tokens[k].norm != tokens[i].norm
                })
                .map(|k| i..k + 1)
        });
        let span = phrases
            .iter()
            .filter_map(|phrase| find_phrase(tokens, phrase))
            .chain(described)
            .next();
        if let Some(span) = span {
            let negation = (span.start.saturating_sub(2)..span.start)
                .find(|&i| NEGATIONS.contains(&tokens[i].surface.to_lowercase().as_str()));
            let from = negation.unwrap_or(span.start);
            for token in &mut tokens[from..span.end] {
                token.claimed = true;
            }
            if negation.is_none() {
                inputs.insert(name.clone(), Value::Bool(true));
            }
        }
    }
    // "1920x1080": width and height.
    let width = entry
        .counts
        .iter()
        .find(|(_, words)| words.iter().any(|w| w == "width"));
    let height = entry
        .counts
        .iter()
        .find(|(_, words)| words.iter().any(|w| w == "height"));
    if let (Some((wn, _)), Some((hn, _))) = (width, height) {
        for i in 0..tokens.len().saturating_sub(2) {
            if let (text::Kind::Number(w), "x" | "by", text::Kind::Number(h)) = (
                &tokens[i].kind,
                tokens[i + 1].norm.as_str(),
                &tokens[i + 2].kind,
            ) {
                inputs.insert(wn.clone(), number_value(&entry.inputs[wn], *w));
                inputs.insert(hn.clone(), number_value(&entry.inputs[hn], *h));
                for token in &mut tokens[i..i + 3] {
                    token.claimed = true;
                }
            }
        }
    }
    let question = claim_durations(entry, tokens, &mut inputs);
    // Counted numbers: the words after (or the word before) the number say what it counts.
    for i in 0..tokens.len() {
        let text::Kind::Number(n) = tokens[i].kind else {
            continue;
        };
        if tokens[i].claimed {
            continue;
        }
        let content =
            |k: &usize| tokens[*k].kind == text::Kind::Word && !text::is_stopword(&tokens[*k].norm);
        // Up to two words on, not past another number or value.
        let after: Vec<usize> = (i + 1..tokens.len())
            .take_while(|&k| tokens[k].kind == text::Kind::Word)
            .filter(content)
            .take(2)
            .collect();
        let before: Vec<usize> = (0..i)
            .rev()
            .take_while(|&k| tokens[k].kind == text::Kind::Word)
            .filter(content)
            .take(1)
            .collect();
        let mut scores: Vec<(usize, &String, Vec<usize>)> = entry
            .counts
            .iter()
            .filter(|(name, _)| !inputs.contains_key(*name))
            .map(|(name, words)| {
                let hits: Vec<usize> = after
                    .iter()
                    .chain(before.iter())
                    .copied()
                    .filter(|&k| words.contains(&tokens[k].norm))
                    .collect();
                (hits.len(), name, hits)
            })
            .filter(|(score, _, _)| *score > 0)
            .collect();
        scores.sort_by_key(|s| std::cmp::Reverse(s.0));
        let mut clear = match scores.as_slice() {
            [one] => Some(one.clone()),
            [a, b, ..] if a.0 > b.0 => Some(a.clone()),
            _ => None,
        };
        // "top 5", "the first 10", "25 of them": a count, for the one input that counts
        // ("How many ...") when no word names another.
        if clear.is_none() && scores.is_empty() {
            let word = |k: usize| tokens.get(k).map(|t| t.surface.to_lowercase());
            let before = i.checked_sub(1).and_then(word);
            let cue = matches!(before.as_deref(), Some("top" | "first" | "last"))
                || (word(i + 1).as_deref() == Some("of")
                    && matches!(word(i + 2).as_deref(), Some("them" | "those" | "these")));
            let counting: Vec<&String> = entry
                .counts
                .keys()
                .filter(|name| !inputs.contains_key(*name) && is_count(name, &entry.inputs[*name]))
                .collect();
            if cue && let [name] = counting.as_slice() {
                let mut hits = Vec::new();
                if word(i + 1).as_deref() == Some("of") {
                    hits = vec![i + 1, i + 2];
                }
                clear = Some((1, *name, hits));
            }
        }
        if let Some((_, name, hits)) = clear {
            let value = number_value(&entry.inputs[name], n);
            if value.is_null() {
                continue;
            }
            inputs.insert(name.clone(), value);
            let from = hits.iter().copied().chain([i]).min().unwrap_or(i);
            let from = quantifier_start(tokens, from);
            let to = hits.iter().copied().chain([i]).max().unwrap_or(i);
            for token in &mut tokens[from..=to] {
                token.claimed = true;
            }
        }
    }
    (inputs, question)
}

/// Whether a numeric input is a count of results: "How many ..." or named so.
fn is_count(name: &str, spec: &InputSpec) -> bool {
    spec.ty == InputType::Integer
        && (matches!(
            name,
            "count" | "limit" | "max" | "top" | "n" | "number" | "results"
        ) || spec
            .description
            .as_deref()
            .is_some_and(|d| d.to_lowercase().starts_with("how many")))
}

/// Units of time as people write them, in seconds.
const TIME_UNITS: &[(&str, f64)] = &[
    ("second", 1.0),
    ("sec", 1.0),
    ("secs", 1.0),
    ("minute", 60.0),
    ("min", 60.0),
    ("mins", 60.0),
    ("hour", 3600.0),
    ("hr", 3600.0),
    ("hrs", 3600.0),
    ("day", 86400.0),
    ("week", 604_800.0),
    ("wk", 604_800.0),
    ("wks", 604_800.0),
    ("fortnight", 1_209_600.0),
    ("month", 2_592_000.0),
    ("year", 31_536_000.0),
];

/// The seconds of one unit named by a (normalized) word: "weeks" -> 604800.
fn time_unit(norm: &str) -> Option<f64> {
    TIME_UNITS
        .iter()
        .find(|(unit, _)| *unit == norm)
        .map(|(_, secs)| *secs)
}

/// The unit a numeric input counts time in, from its name and description ("min_days_overdue"
/// counts days): the first unit written in full, never an abbreviation ("min" there is
/// "minimum").
fn input_time_unit(words: &[String]) -> Option<f64> {
    words
        .iter()
        .filter(|w| w.len() >= 3 && !matches!(w.as_str(), "sec" | "secs" | "min" | "mins" | "hrs"))
        .find_map(|w| time_unit(w))
}

/// Durations ("2 weeks", "a fortnight", "90 minutes", "48h", "half an hour") fill the numeric
/// input that counts time, converted to its unit ("2 weeks" is 14 for a count of days). With
/// several such inputs, the one whose words stand next to the duration; a value that is not
/// whole for an integer input is left to the question.
fn claim_durations(
    entry: &Entry,
    tokens: &mut [Token],
    inputs: &mut Map<String, Value>,
) -> Option<String> {
    let timed: Vec<(&String, f64)> = entry
        .counts
        .iter()
        .filter_map(|(name, words)| input_time_unit(words).map(|u| (name, u)))
        .collect();
    if timed.is_empty() {
        return None;
    }
    let mut question = None;
    let mut i = 0;
    while i < tokens.len() {
        let Some((from, to, secs)) = duration_at(tokens, i) else {
            i += 1;
            continue;
        };
        i = to;
        if tokens[from..to].iter().any(|t| t.claimed) {
            continue;
        }
        let open: Vec<&(&String, f64)> = timed
            .iter()
            .filter(|(name, _)| !inputs.contains_key(*name))
            .collect();
        let near = |name: &str| {
            let words = &entry.counts[name];
            (from.saturating_sub(3)..tokens.len().min(to + 3))
                .filter(|&k| k < from || k >= to)
                .filter(|&k| words.contains(&tokens[k].norm))
                .count()
        };
        let chosen = match open.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => {
                let mut by: Vec<(usize, &(&String, f64))> =
                    many.iter().map(|t| (near(t.0), *t)).collect();
                by.sort_by_key(|b| std::cmp::Reverse(b.0));
                (by[0].0 > by[1].0).then_some(by[0].1)
            }
        };
        let Some((name, unit)) = chosen else {
            continue;
        };
        let amount = secs / unit;
        let spec = &entry.inputs[*name];
        let rounded = amount.round();
        let value = if (amount - rounded).abs() < 1e-9 {
            number_value(spec, rounded)
        } else {
            number_value(spec, amount)
        };
        let said = tokens[from..to]
            .iter()
            .map(|t| t.surface.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let from = quantifier_start(tokens, from);
        for token in &mut tokens[from..to] {
            token.claimed = true;
        }
        if value.is_null() {
            // "90 minutes" for a whole number of hours: asked, never rounded.
            let unit_name = TIME_UNITS
                .iter()
                .find(|(w, secs)| *secs == *unit && w.len() > 3)
                .map(|(w, _)| *w)
                .unwrap_or("unit");
            question = Some(format!(
                "{name} is a whole number of {unit_name}s, and \"{said}\" is {amount} {unit_name}s. What should {name} be?",
            ));
            continue;
        }
        inputs.insert((*name).clone(), value);
    }
    question
}

/// Where the words that introduce a quantity begin ("older than 2 days", "at least 30",
/// "over 90 days", "the top 5"): they belong to the quantity, never to a free-text value.
fn quantifier_start(tokens: &[Token], at: usize) -> usize {
    let word = |i: usize| tokens[i].surface.to_lowercase();
    let mut from = at;
    loop {
        let Some(prev) = from.checked_sub(1) else {
            return from;
        };
        let w = word(prev);
        if w == "than" {
            // "more than", "older than", "no less than".
            from = prev;
            if let Some(p) = prev.checked_sub(1)
                && tokens[p].kind == text::Kind::Word
            {
                from = p;
            }
        } else if matches!(w.as_str(), "least" | "most")
            && prev.checked_sub(1).is_some_and(|p| word(p) == "at")
        {
            from = prev - 1;
        } else if matches!(
            w.as_str(),
            "over"
                | "under"
                | "past"
                | "within"
                | "about"
                | "around"
                | "approximately"
                | "roughly"
                | "exactly"
                | "only"
                | "top"
                | "first"
                | "last"
                | "just"
                | "beyond"
                | "after"
        ) {
            from = prev;
        } else {
            return from;
        }
    }
}

/// A duration starting at token `i`: its tokens (`from..to`) and length in seconds.
fn duration_at(tokens: &[Token], i: usize) -> Option<(usize, usize, f64)> {
    let unit_at = |k: usize| {
        tokens
            .get(k)
            .filter(|t| t.kind == text::Kind::Word)
            .and_then(|t| time_unit(&t.norm))
    };
    let token = &tokens[i];
    let lower = token.surface.to_lowercase();
    match &token.kind {
        // "2 weeks", "90 minutes", "2-week" (split by the tokenizer's number reading).
        text::Kind::Number(n) => {
            let unit = unit_at(i + 1)?;
            Some((i, i + 2, n * unit))
        }
        text::Kind::Word => {
            // "48h", "30d", "2wks", "2-week".
            let digits: String = lower
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if !digits.is_empty() {
                let rest = lower[digits.len()..].trim_start_matches('-');
                let unit = match rest {
                    "h" => Some(3600.0),
                    "d" => Some(86400.0),
                    "w" => Some(604_800.0),
                    "m" => Some(60.0),
                    "s" => Some(1.0),
                    other => time_unit(&text::normalize(other)),
                }?;
                let n: f64 = digits.parse().ok()?;
                return Some((i, i + 1, n * unit));
            }
            match lower.as_str() {
                // "a fortnight", "an hour", "one week" (numbers are tokens of their own).
                "a" | "an" => {
                    let unit = unit_at(i + 1)?;
                    Some((i, i + 2, unit))
                }
                // "half an hour", "half a day".
                "half"
                    if matches!(tokens.get(i + 1).map(|t| t.norm.as_str()), Some("a" | "an")) =>
                {
                    let unit = unit_at(i + 2)?;
                    Some((i, i + 3, unit / 2.0))
                }
                // "a couple of weeks".
                "couple" if tokens.get(i + 1).is_some_and(|t| t.norm == "of") => {
                    let unit = unit_at(i + 2)?;
                    Some((i, i + 3, 2.0 * unit))
                }
                // "fortnight" alone.
                _ if lower == "fortnight" => Some((i, i + 1, 1_209_600.0)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The best reading of a template: every example against every variant of the sentence.
fn best_reading(entry: &Entry, sentence: &[Token], cased: bool) -> Reading {
    let slot = |name: &str| {
        entry
            .kinds
            .get(name)
            .map(|kind| slot_spec(kind, &entry.inputs[name], cased))
    };
    let mut best = Reading {
        confidence: 0.0,
        inputs: Map::new(),
        question: None,
    };
    for variant in variants(entry, sentence, cased) {
        let tokens = &variant.tokens;
        for example in &entry.examples {
            let alignment = align(example, tokens, &slot);
            if !alignment.cost.is_finite() {
                continue;
            }
            let mut inputs = variant.claimed.clone();
            for (name, value) in &alignment.values {
                if entry.inputs.contains_key(name) {
                    inputs.insert(name.clone(), value.clone());
                }
            }
            let mut free: Vec<bool> = vec![false; tokens.len()];
            for &j in &alignment.extras {
                free[j] = !tokens[j].claimed;
            }
            let mut refund = 0.0;
            let question = fill_leftovers(
                entry,
                &variant,
                &alignment,
                &mut free,
                &mut inputs,
                &mut refund,
            )
            .or_else(|| variant.question.clone());
            // A value the template found no input for (a URL for a template that takes
            // none) says the template is the wrong one.
            let stray = (0..tokens.len())
                .filter(|&i| {
                    free[i]
                        && !matches!(
                            tokens[i].kind,
                            text::Kind::Word | text::Kind::Quoted | text::Kind::Number(_)
                        )
                })
                .count() as f64;
            // A sentence that opens with an action the template knows nothing of ("delete
            // the staging deployment of ...", "apply to the ... job") asks for something else.
            let other_action = tokens.first().is_some_and(|t| {
                free[0]
                    && t.kind == text::Kind::Word
                    && !t.keyword
                    && !t.claimed
                    && t.vocab == Vocab::Neutral
                    && !text::is_stopword(&t.norm)
            });
            let cost = (alignment.cost - refund).max(0.0)
                + variant.penalty
                + 0.7 * stray
                + if other_action { 1.2 } else { 0.0 };
            let length = sentence.len().max(example.len()).max(1) as f64;
            let fit = (1.0 - cost / length).max(0.0);
            // Another template's words left in the sentence ("senior", "jobs" read as a
            // business search) count against the reading like literals it lacks.
            let foreign = tokens
                .iter()
                .filter(|t| t.vocab == Vocab::Foreign && !t.claimed)
                .count();
            let evidence = alignment.content_literals + alignment.typed_slots;
            let literals = if evidence == 0 {
                0.5 * (1.0 / (1.0 + foreign as f64))
            } else {
                (alignment.matched_literals + alignment.typed_filled) as f64
                    / (evidence + foreign) as f64
            };
            // A reading that leaves a required input out is a weaker one (unless the
            // question about it is already asked).
            let missing = entry
                .inputs
                .iter()
                .filter(|(name, spec)| {
                    spec.required && spec.default.is_none() && !inputs.contains_key(*name)
                })
                .count();
            let missing = if question.is_some() { 0 } else { missing };
            let confidence = fit * (0.4 + 0.6 * literals) * 0.75f64.powi(missing as i32);
            if confidence > best.confidence {
                best = Reading {
                    confidence,
                    inputs,
                    question,
                };
            }
        }
    }
    best
}

/// Words that name a deployment environment.
const ENVIRONMENTS: &[&str] = &[
    "production",
    "prod",
    "staging",
    "stage",
    "dev",
    "development",
    "preview",
    "qa",
    "uat",
    "canary",
    "sandbox",
];

/// Whether the word at `i` names where something was deployed, by where it stands: "the
/// github-pages deploy of ...", "deployed to edge-eu", "shipped to canary".
fn names_a_deployment_target(tokens: &[Token], i: usize) -> bool {
    let t = &tokens[i];
    let plain = t.kind == text::Kind::Word
        && !t.keyword
        && !t.claimed
        && !text::is_stopword(&t.norm)
        && t.surface
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !plain {
        return false;
    }
    let norm = |k: Option<usize>| k.and_then(|k| tokens.get(k)).map(|t| t.norm.as_str());
    let before = norm(i.checked_sub(1));
    let after = norm(Some(i + 1));
    let determiner = matches!(before, Some("the" | "a" | "its" | "their" | "latest"));
    (determiner && after == Some("deployment"))
        || (matches!(before, Some("to" | "on")) && norm(i.checked_sub(2)) == Some("deployment"))
}

/// Fills what the example had no slot for from the words it left over (`free`): named cities
/// and their state, enum values (also from the edge of a free-text value: "senior data
/// engineer"), repositories, URLs, states and environments. Each word used is refunded what
/// it cost as an extra word. Returns a question when the cities leave the state open.
fn fill_leftovers(
    entry: &Entry,
    variant: &Variant,
    alignment: &align::Alignment,
    free: &mut [bool],
    inputs: &mut Map<String, Value>,
    refund: &mut f64,
) -> Option<String> {
    let tokens = &variant.tokens;
    let take = |free: &mut [bool], idx: usize, refund: &mut f64| {
        if free[idx] {
            free[idx] = false;
            *refund += align::extra_word(&tokens[idx]);
        }
    };
    let mut question = None;
    // Cities: the list fills the city input, its state the state input (or a question).
    if let Some((city_input, state_input)) = &entry.cities_and_state {
        let state_span = alignment
            .spans
            .iter()
            .find(|(name, _)| name == state_input)
            .map(|(_, span)| span.clone());
        for (idx, run) in &variant.cities {
            let in_state_slot = state_span.as_ref().is_some_and(|s| s.contains(idx));
            if !in_state_slot && !free[*idx] {
                continue;
            }
            if !in_state_slot && inputs.contains_key(state_input) {
                // A state was named as well: the cities must be in it.
                let named = inputs.get(state_input).and_then(Value::as_str);
                if !run.states.iter().any(|s| Some(*s) == named) {
                    continue;
                }
            }
            take(free, *idx, refund);
            inputs.insert(
                city_input.clone(),
                Value::Array(
                    run.names
                        .iter()
                        .map(|n| Value::String((*n).into()))
                        .collect(),
                ),
            );
            if !in_state_slot && inputs.contains_key(state_input) {
                break;
            }
            match run.states.as_slice() {
                [state] => {
                    inputs.insert(state_input.clone(), Value::String((*state).into()));
                }
                [] => {
                    inputs.remove(state_input);
                    let each: Vec<String> = run
                        .apart
                        .iter()
                        .map(|(city, states)| format!("{city} ({})", states.join(", ")))
                        .collect();
                    question = Some(format!(
                        "{} are not in one state, and `{}` searches one state at a time. Which state ({state_input})?",
                        each.join(", "),
                        entry.name
                    ));
                }
                states => {
                    inputs.remove(state_input);
                    question = Some(format!(
                        "{} is in several states: {}. Which state ({state_input}) do you mean?",
                        run.names.join(" and "),
                        states.join(", ")
                    ));
                }
            }
            break;
        }
    }
    // Free-text values as the example read them, whose edge words may belong to an enum.
    let mut texts: Vec<(String, std::ops::Range<usize>)> = alignment
        .spans
        .iter()
        .filter(|(name, _)| {
            matches!(
                entry.kinds.get(name),
                Some(InputKind::Text(_) | InputKind::Place)
            )
        })
        .cloned()
        .collect();
    for (name, kind) in &entry.kinds {
        let InputKind::Choice(allowed) = kind else {
            continue;
        };
        if inputs.contains_key(name) {
            continue;
        }
        let hit = (0..tokens.len()).find_map(|i| {
            let token = &tokens[i];
            let lower = token.surface.to_lowercase();
            if token.kind != text::Kind::Word || lower.len() < 3 {
                return None;
            }
            // "mid-level" says "mid".
            let head = lower.split('-').next().unwrap_or_default();
            let value = allowed
                .iter()
                .find(|a| a.to_lowercase() == lower)
                .or_else(|| {
                    (lower.contains('-') && head.len() >= 3)
                        .then(|| allowed.iter().find(|a| a.to_lowercase() == head))
                        .flatten()
                })?;
            // "any" is a word before it is the default value.
            let common = token.keyword || text::is_stopword(&token.norm);
            if common && entry.inputs[name].default.as_ref().and_then(Value::as_str) == Some(value)
            {
                return None;
            }
            if free[i] {
                return Some((i, value.clone(), None));
            }
            // The first or last word of a longer free-text value.
            texts.iter().enumerate().find_map(|(t, (_, r))| {
                let lead = (r.start..i).all(|k| align::is_lead_word(&tokens[k]));
                if r.len() < 2 {
                    None
                } else if r.start == i || (r.start < i && lead) {
                    Some((i, value.clone(), Some((t, true))))
                } else if r.end == i + 1 {
                    Some((i, value.clone(), Some((t, false))))
                } else {
                    None
                }
            })
        });
        let Some((i, value, edge)) = hit else {
            continue;
        };
        if let Some((t, front)) = edge {
            let (text_name, range) = &mut texts[t];
            if front {
                range.start = i + 1;
            } else {
                range.end -= 1;
            }
            let flavour = match entry.kinds.get(text_name.as_str()) {
                Some(InputKind::Text(Flavour::Name { .. })) => Flavour::Name {
                    cased: variant.cased,
                },
                Some(InputKind::Text(flavour)) => *flavour,
                Some(InputKind::Place) => Flavour::Place,
                _ => Flavour::Term,
            };
            match align::text_value(&tokens[range.clone()], flavour) {
                Some(v) => inputs.insert(text_name.clone(), Value::String(v)),
                None => inputs.remove(text_name.as_str()),
            };
        }
        take(free, i, refund);
        // "firm tone": the input's own name next to its value.
        let name_norm = text::normalize(name);
        for k in [i.wrapping_sub(1), i + 1] {
            if k < tokens.len() && tokens[k].norm == name_norm {
                take(free, k, refund);
            }
        }
        inputs.insert(name.clone(), Value::String(value));
    }
    // Typed values left over, for inputs of their type the example did not fill. Inputs with
    // a default (an API base URL) are only filled where an example puts them.
    for (name, kind) in &entry.kinds {
        if inputs.contains_key(name) {
            continue;
        }
        let optional_url = matches!(kind, InputKind::Url | InputKind::UrlList)
            && entry.inputs[name].default.is_some();
        if optional_url {
            continue;
        }
        let found: Vec<(usize, Value)> = (0..tokens.len())
            .filter(|&i| free[i])
            .filter_map(|i| {
                let token = &tokens[i];
                let lower = token.surface.to_lowercase();
                let value = match (kind, &token.kind) {
                    (InputKind::State, text::Kind::State(s)) => Value::String((*s).into()),
                    (InputKind::Url | InputKind::UrlList, text::Kind::Url(u)) => {
                        Value::String(u.clone())
                    }
                    (InputKind::Repo, text::Kind::Word) if text::is_repo(&token.surface) => {
                        Value::String(token.surface.clone())
                    }
                    (InputKind::Environment, text::Kind::Word)
                        if ENVIRONMENTS.contains(&lower.as_str())
                            || names_a_deployment_target(tokens, i) =>
                    {
                        Value::String(lower)
                    }
                    (InputKind::Place, text::Kind::State(_)) => {
                        Value::String(token.surface.clone())
                    }
                    (InputKind::Place, text::Kind::Word)
                        if i > 0
                            && matches!(
                                tokens[i - 1].surface.to_lowercase().as_str(),
                                "in" | "near" | "around"
                            )
                            && token.surface.chars().next().is_some_and(char::is_uppercase) =>
                    {
                        // "in Salt Lake City": the capitalized words after "in".
                        let words: Vec<&str> = tokens[i..]
                            .iter()
                            .take_while(|t| {
                                t.kind == text::Kind::Word
                                    && t.surface.chars().next().is_some_and(char::is_uppercase)
                            })
                            .map(|t| t.surface.as_str())
                            .collect();
                        Value::String(words.join(" "))
                    }
                    _ => return None,
                };
                Some((i, value))
            })
            .collect();
        if found.is_empty() {
            continue;
        }
        if *kind == InputKind::UrlList {
            let urls = found.iter().map(|(_, v)| v.clone()).collect();
            for (i, _) in &found {
                take(free, *i, refund);
            }
            inputs.insert(name.clone(), Value::Array(urls));
        } else {
            take(free, found[0].0, refund);
            inputs.insert(name.clone(), found[0].1.clone());
        }
    }
    // More URLs for a list the example filled ("compare A with B and C").
    for (name, kind) in &entry.kinds {
        if *kind != InputKind::UrlList {
            continue;
        }
        let Some(Value::Array(before)) = inputs.get(name) else {
            continue;
        };
        let before = before.clone();
        let span = alignment
            .spans
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, span)| span.clone())
            .unwrap_or_default();
        // In the order the sentence names them ("A vs B vs C"), wherever the example put
        // its slot.
        let mut urls = Vec::new();
        for i in 0..tokens.len() {
            let text::Kind::Url(u) = &tokens[i].kind else {
                continue;
            };
            let value = Value::String(u.clone());
            if (free[i] || span.contains(&i) || before.contains(&value)) && !urls.contains(&value) {
                urls.push(value);
                take(free, i, refund);
            }
        }
        if !urls.is_empty() {
            inputs.insert(name.clone(), Value::Array(urls));
        }
    }
    question
}

fn number_value(spec: &InputSpec, n: f64) -> Value {
    match spec.ty {
        InputType::Integer if n.fract() == 0.0 && n.abs() < 1e12 => Value::from(n as i64),
        InputType::Number => serde_json::Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Where a phrase's words occur in order, stopwords between them allowed; a long word may be
/// misspelt.
fn find_phrase(tokens: &[Token], phrase: &[String]) -> Option<std::ops::Range<usize>> {
    let same = |t: &Token, w: &str| {
        // An address is a page: "the whole of https://..." is the whole page.
        if matches!(t.kind, text::Kind::Url(_)) {
            return w == "page";
        }
        t.kind == text::Kind::Word
            && (t.norm == w
                // "remote-friendly" says "remote".
                || (t.norm.contains('-') && t.norm.split('-').any(|part| part == w))
                || (w.len() >= 5
                    && t.norm.chars().next() == w.chars().next()
                    && strsim::damerau_levenshtein(&t.norm, w) <= 1))
    };
    let first = phrase.first()?;
    for start in 0..tokens.len() {
        if !same(&tokens[start], first) {
            continue;
        }
        let mut at = start;
        let mut ok = true;
        for word in &phrase[1..] {
            let mut next = at + 1;
            while next < tokens.len()
                && text::is_stopword(&tokens[next].norm)
                && !same(&tokens[next], word)
            {
                next += 1;
            }
            if next < tokens.len() && same(&tokens[next], word) {
                at = next;
            } else {
                ok = false;
                break;
            }
        }
        if ok {
            return Some(start..at + 1);
        }
    }
    None
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The required inputs of a template that `inputs` lacks.
pub fn missing_inputs(plan: &Plan, inputs: &Map<String, Value>) -> Vec<String> {
    plan.inputs
        .iter()
        .filter(|(name, spec)| {
            spec.required && spec.default.is_none() && !inputs.contains_key(*name)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The question for missing inputs: "To run `state-discovery` I also need: state (A US
/// state). Which state?"
pub fn missing_question(plan: &Plan, missing: &[String]) -> String {
    ask_for(&plan.name, missing, &plan.inputs)
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

/// How an input's value is read from a sentence.
fn slot_spec(kind: &InputKind, spec: &InputSpec, cased: bool) -> SlotSpec {
    let ty = match kind {
        InputKind::Text(Flavour::Name { .. }) => SlotType::Text(Flavour::Name { cased }),
        InputKind::Text(flavour) => SlotType::Text(*flavour),
        InputKind::State => SlotType::State,
        InputKind::Choice(allowed) => SlotType::Choice(allowed.clone()),
        InputKind::Integer => SlotType::Integer,
        InputKind::Number => SlotType::Number,
        InputKind::Url => SlotType::Url,
        InputKind::UrlList => SlotType::UrlList,
        InputKind::Repo => SlotType::Repo,
        InputKind::Place => SlotType::Text(Flavour::Place),
        _ => SlotType::Text(Flavour::Term),
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
