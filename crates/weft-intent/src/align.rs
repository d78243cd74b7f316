//! Aligning one intent example with a sentence: an edit distance over tokens in which a
//! `{slot}` consumes a span of the sentence that fits the input's type.
//!
//! Literal words match exactly (cost 0) or within a small typo (0.3); a literal the sentence
//! lacks, or a sentence word the example lacks, costs more for content words than for
//! stopwords; a slot costs a little per word it takes, so an extra adjective joins the slot
//! ("HVAC repair") rather than being dropped, while a literal the sentence has is matched, not
//! swallowed.

use serde_json::Value;

use crate::text::{Kind, Token, Vocab, is_instruction, is_stopword};

/// How a slot's value is read from the sentence, from the input's declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotType {
    State,
    /// Any other `enum` of strings.
    Choice(Vec<String>),
    Integer,
    Number,
    Url,
    UrlList,
    /// A repository, `owner/name`: one token, never the word after it.
    Repo,
    /// Free text: a run of words, read as its flavour says.
    Text(Flavour),
}

/// What kind of free text an input takes, from its declaration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flavour {
    /// What to research or ask about: taken as written ("the history of Rome", "how plumbers
    /// find customers"), across commas.
    Query,
    /// A category or a title ("HVAC", "data engineer"): no article or "good" in front, no
    /// pronoun, never across a comma.
    Term,
    /// A place ("Denver", "Texas"): a term that may be a state.
    Place,
    /// A person's or a company's name ("Acme Corp"): when the sentence is written with
    /// capitals (`cased`), capitalized words only.
    Name { cased: bool },
}

/// A slot's declaration as the aligner needs it.
#[derive(Debug, Clone)]
pub struct SlotSpec {
    pub ty: SlotType,
    /// Whether leaving it out makes the run impossible (required, no default).
    pub required: bool,
}

/// The best alignment of one example.
#[derive(Debug, Clone)]
pub struct Alignment {
    pub cost: f64,
    /// Content (non-stop) literals of the example matched in the sentence, and their total.
    pub matched_literals: usize,
    pub content_literals: usize,
    /// Slots of a typed input (a state, a number, a URL...) in the example, and how many took
    /// a value: a value of the right type is evidence like a matched word.
    pub typed_slots: usize,
    pub typed_filled: usize,
    /// Each filled slot: its input, value, and the sentence span it took.
    pub values: Vec<(String, Value)>,
    pub spans: Vec<(String, std::ops::Range<usize>)>,
    /// Sentence tokens the example had no place for.
    pub extras: Vec<usize>,
}

const FUZZY: f64 = 0.3;
const INFLECTED: f64 = 0.1;
const SUBSTITUTE: f64 = 0.8;
const MAX_TEXT: usize = 12;

fn literal_miss(norm: &str) -> f64 {
    if is_stopword(norm) { 0.3 } else { 1.0 }
}

/// What a sentence word costs when the example has no place for it.
pub fn extra_word(token: &Token) -> f64 {
    if token.claimed {
        return 0.0;
    }
    match token.kind {
        Kind::Word if is_stopword(&token.norm) => 0.2,
        // Another template's word says this one may be the wrong one; a word of this
        // template's own description says it may be the right one.
        Kind::Word if token.vocab == Vocab::Foreign => 1.0,
        Kind::Word if token.vocab == Vocab::Own => 0.45,
        Kind::Word => 0.6,
        // A typed value the example has no place for says the example is the wrong one.
        _ => 0.8,
    }
}

/// The cost of a literal example word against a sentence word, if they may match.
fn literal_match(lit: &str, token: &Token) -> Option<(f64, bool)> {
    if token.kind != Kind::Word {
        return None;
    }
    if lit == token.norm {
        return Some((0.0, true));
    }
    // Another form of the same verb: "reading" for "read", "known" for "know".
    if lit.len() >= 3
        && crate::text::verb_bases(&token.norm)
            .iter()
            .any(|b| b == lit)
    {
        return Some((INFLECTED, true));
    }
    if lit.chars().count() >= 4 && token.norm.chars().count() >= 4 {
        let sim = strsim::normalized_damerau_levenshtein(lit, &token.norm);
        if sim >= 0.75 {
            return Some((FUZZY, true));
        }
    }
    None
}

/// The cost and value of a slot taking `span`, if the span fits the slot's type.
fn fill(ty: &SlotType, span: &[Token]) -> Option<(f64, Value)> {
    let one = || (span.len() == 1).then(|| &span[0]);
    match ty {
        SlotType::State => match &one()?.kind {
            Kind::State(name) => Some((0.0, Value::String((*name).to_string()))),
            // Cities stand where their state would ("roofers in Austin and Dallas").
            Kind::Cities(states) => states
                .first()
                .map(|s| (0.05, Value::String((*s).to_string()))),
            _ => None,
        },
        SlotType::Repo => {
            let token = one()?;
            (token.kind == Kind::Word && crate::text::is_repo(&token.surface))
                .then(|| (0.0, Value::String(token.surface.clone())))
        }
        SlotType::Integer => match one()?.kind {
            Kind::Number(n) if n.fract() == 0.0 && n.abs() < 1e12 => {
                Some((0.0, Value::from(n as i64)))
            }
            _ => None,
        },
        SlotType::Number => match one()?.kind {
            Kind::Number(n) => serde_json::Number::from_f64(n).map(|n| (0.0, Value::Number(n))),
            _ => None,
        },
        SlotType::Url => match &one()?.kind {
            Kind::Url(url) => Some((0.0, Value::String(url.clone()))),
            _ => None,
        },
        SlotType::UrlList => {
            let first_last_url = matches!(span.first()?.kind, Kind::Url(_))
                && matches!(span.last()?.kind, Kind::Url(_));
            if !first_last_url {
                return None;
            }
            let mut urls = Vec::new();
            for token in span {
                match &token.kind {
                    Kind::Url(url) => urls.push(Value::String(url.clone())),
                    Kind::Word
                        if token.norm == "compare"
                            || token.norm == "&"
                            || is_stopword(&token.norm) => {}
                    _ => return None,
                }
            }
            Some((0.0, Value::Array(urls)))
        }
        SlotType::Choice(allowed) => {
            if span.iter().any(|t| t.claimed) {
                return None;
            }
            let text = join(span);
            let lower = text.to_lowercase();
            // "any remote roles": "any" is a word before it is a value.
            let common = matches!(span, [t] if is_stopword(&t.norm) || t.keyword);
            if let Some(a) = allowed.iter().find(|a| a.to_lowercase() == lower)
                && !common
            {
                return Some((0.0, Value::String(a.clone())));
            }
            // A typo of a value, never another word: "many" is not "any", "mid" not "mind".
            if let [token] = span
                && (token.kind != Kind::Word || is_stopword(&token.norm) || token.keyword)
            {
                return None;
            }
            allowed
                .iter()
                .filter(|a| {
                    a.chars().count() >= 5
                        && a.chars().next().map(|c| c.to_ascii_lowercase()) == lower.chars().next()
                })
                .map(|a| (strsim::normalized_levenshtein(&a.to_lowercase(), &lower), a))
                .filter(|(sim, _)| *sim >= 0.75)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(sim, a)| ((1.0 - sim) * 2.0, Value::String(a.clone())))
        }
        SlotType::Text(flavour) => {
            if span.len() > MAX_TEXT
                || span
                    .iter()
                    .any(|t| t.claimed || matches!(t.kind, Kind::Url(_) | Kind::Cities(_)))
            {
                return None;
            }
            if let [token] = span
                && token.kind == Kind::Quoted
            {
                return Some((0.0, Value::String(token.surface.clone())));
            }
            // A value never runs on into the next instruction ("X and give me the gist").
            let new_instruction = span.windows(2).any(|w| {
                matches!(w[0].surface.to_lowercase().as_str(), "and" | "then" | "&")
                    && w[1].kind == Kind::Word
                    && is_instruction(&w[1].norm)
            });
            if new_instruction {
                return None;
            }
            let last = span.len() - 1;
            let crosses_clause = span[..last].iter().any(|t| t.ends_clause);
            match flavour {
                Flavour::Query => {}
                Flavour::Term | Flavour::Place => {
                    // A category is no one's ("my dentist appointment" is not a niche), has no
                    // relative clause ("New York that are remote-friendly") and no typed value
                    // ("Colorado HVAC").
                    // "gather all the tree service": a determiner inside starts the value.
                    let lead = span
                        .iter()
                        .take_while(|t| DETERMINERS.contains(&t.surface.to_lowercase().as_str()))
                        .count();
                    let inner_determiner = span[lead..]
                        .iter()
                        .any(|t| DETERMINERS.contains(&t.surface.to_lowercase().as_str()));
                    if crosses_clause
                        || inner_determiner
                        || span.iter().any(|t| {
                            let lower = t.surface.to_lowercase();
                            PRONOUNS.contains(&lower.as_str())
                                || matches!(lower.as_str(), "that" | "which" | "who" | "whose")
                                || matches!(t.kind, Kind::Number(_))
                                || (matches!(t.kind, Kind::State(_)) && *flavour == Flavour::Term)
                        })
                    {
                        return None;
                    }
                }
                Flavour::Name { cased } => {
                    if crosses_clause || !name_words(span, *cased) {
                        return None;
                    }
                }
            }
            let text = trim_text(span, *flavour);
            if text.is_empty() {
                return None;
            }
            Some((0.1 + text_cost(span, *flavour), Value::String(text)))
        }
    }
}

/// Words that open a noun phrase: inside a category they start it.
const DETERMINERS: &[&str] = &["all", "every", "each", "the", "a", "an", "some", "any"];

/// Words that point at someone: never part of a category.
const PRONOUNS: &[&str] = &[
    "my", "me", "i", "you", "your", "our", "us", "we", "they", "them", "their", "it", "its", "his",
    "her", "him", "she", "he", "mine", "yours",
];

/// Whether a span can be a name: in a sentence written with capitals, capitalized words
/// (joined by "&", "of", "and" or "de" inside), none of them a job word ("Find").
fn name_words(span: &[Token], cased: bool) -> bool {
    let last = span.len() - 1;
    span.iter().enumerate().all(|(idx, t)| {
        let lower = t.surface.to_lowercase();
        let joiner = matches!(lower.as_str(), "&" | "of" | "and" | "de" | "the");
        match t.kind {
            Kind::Word if t.keyword || PRONOUNS.contains(&lower.as_str()) => false,
            Kind::Word if joiner => idx > 0 && idx < last,
            Kind::Word if !cased => !is_stopword(&t.norm),
            Kind::Word => t
                .surface
                .chars()
                .next()
                .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit()),
            Kind::Quoted => true,
            _ => false,
        }
    })
}

/// What free text costs per word: little for content words, more for words that belong to
/// the sentence's frame (a stopword at either edge, a job word such as "find" or "in", a typed
/// value), so a slot takes "HVAC repair" but not "me every" or "in production". A query may
/// start with a question word or an article ("how plumbers find customers", "the history of
/// jazz").
fn text_cost(span: &[Token], flavour: Flavour) -> f64 {
    let last = span.len().saturating_sub(1);
    span.iter()
        .enumerate()
        .map(|(idx, token)| match token.kind {
            // A query is about anything: "the rise of e-bikes in Europe", "reviews of
            // roofing companies".
            Kind::Word if token.keyword && flavour == Flavour::Query => {
                if idx == 0 {
                    1.2
                } else if idx == last {
                    0.35
                } else {
                    0.1
                }
            }
            Kind::Word if token.keyword && (idx == 0 || idx == last) => 1.2,
            Kind::Word if token.keyword => 0.8,
            Kind::Word
                if idx == 0
                    && idx < last
                    && flavour == Flavour::Query
                    && QUERY_OPENERS.contains(&token.surface.to_lowercase().as_str()) =>
            {
                0.05
            }
            // A value does not start with "for", "me" or "how".
            Kind::Word if is_stopword(&token.norm) && idx == 0 => 1.0,
            Kind::Word if is_stopword(&token.norm) && idx == last => 0.45,
            Kind::Word if token.vocab == Vocab::Foreign => 0.6,
            Kind::Word | Kind::Quoted => 0.05,
            Kind::State(_) if flavour == Flavour::Place => 0.0,
            _ => 0.5,
        })
        .sum()
}

/// Words a query may start with.
const QUERY_OPENERS: &[&str] = &[
    "the", "a", "an", "how", "what", "why", "when", "where", "who", "which", "whether",
];

fn join(span: &[Token]) -> String {
    span.iter()
        .map(|t| t.surface.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A free-text value read from `span`, as a `{slot}` would take it.
pub fn text_value(span: &[Token], flavour: Flavour) -> Option<String> {
    match fill(&SlotType::Text(flavour), span) {
        Some((_, Value::String(s))) => Some(s),
        _ => None,
    }
}

/// Words in front of a category or a name that are not part of it: "the", "every", "good"
/// ("any good auto repair shops" are "auto repair" shops).
const NOT_PART_OF_A_TERM: &[&str] = &[
    "the",
    "a",
    "an",
    "some",
    "any",
    "all",
    "every",
    "each",
    "good",
    "great",
    "best",
    "decent",
    "reliable",
    "reputable",
    "trusted",
    "local",
    "nearby",
    "new",
    "top-rated",
];

/// Whether a word stands in front of a category without being part of it ("the", "new").
pub fn is_lead_word(token: &Token) -> bool {
    token.kind == Kind::Word && NOT_PART_OF_A_TERM.contains(&token.surface.to_lowercase().as_str())
}

/// Free text without trailing stopwords ("rust async runtimes for me" is "rust async
/// runtimes"); a category or name also without what stands in front of it ("the", "every",
/// "good"), a query as written ("the history of Rome").
fn trim_text(span: &[Token], flavour: Flavour) -> String {
    let mut start = 0;
    let mut end = span.len();
    let lead: &[&str] = match flavour {
        Flavour::Query => &["some", "any", "all"],
        Flavour::Term | Flavour::Place | Flavour::Name { .. } => NOT_PART_OF_A_TERM,
    };
    while start < end
        && span[start].kind == Kind::Word
        && lead.contains(&span[start].surface.to_lowercase().as_str())
    {
        start += 1;
    }
    while end > start && span[end - 1].kind == Kind::Word && is_stopword(&span[end - 1].norm) {
        end -= 1;
    }
    join(&span[start..end])
}

#[derive(Clone, Copy)]
enum Step {
    Start,
    Match(bool),
    MissLiteral,
    Extra,
    Slot(usize),
    SkipSlot,
}

/// Aligns `example` (tokens with `Slot`s) with `sentence`; `slot` looks up a slot's
/// declaration by name (`None`: the example names an input the template lacks; such a slot
/// only matches free text).
pub fn align(
    example: &[Token],
    sentence: &[Token],
    slot: &dyn Fn(&str) -> Option<SlotSpec>,
) -> Alignment {
    let (m, n) = (example.len(), sentence.len());
    let mut cost = vec![vec![f64::INFINITY; n + 1]; m + 1];
    let mut back = vec![vec![Step::Start; n + 1]; m + 1];
    cost[0][0] = 0.0;
    for i in 0..=m {
        for j in 0..=n {
            let here = cost[i][j];
            if !here.is_finite() {
                continue;
            }
            // A sentence word the example has no place for.
            if j < n {
                let c = here + extra_word(&sentence[j]);
                if c < cost[i][j + 1] {
                    cost[i][j + 1] = c;
                    back[i][j + 1] = Step::Extra;
                }
            }
            if i == m {
                continue;
            }
            match &example[i].kind {
                Kind::Slot(name) => {
                    let spec = slot(name).unwrap_or(SlotSpec {
                        ty: SlotType::Text(Flavour::Term),
                        required: false,
                    });
                    let skip = here + if spec.required { 1.5 } else { 0.5 };
                    if skip < cost[i + 1][j] {
                        cost[i + 1][j] = skip;
                        back[i + 1][j] = Step::SkipSlot;
                    }
                    // A slot starts where it is introduced: a content word passed over just
                    // before it ("of db7, flag anything") is the value, not an extra.
                    let passed_over = j > 0
                        && matches!(back[i][j], Step::Extra)
                        && sentence[j - 1].kind == Kind::Word
                        && !sentence[j - 1].claimed
                        && !is_stopword(&sentence[j - 1].norm);
                    let late = if passed_over { 0.6 } else { 0.0 };
                    // The word that introduces a slot ("about {query}") is where the value
                    // starts: a value holding it ("more about solid state batteries") began
                    // too early.
                    let anchor = i
                        .checked_sub(1)
                        .map(|p| &example[p])
                        .filter(|t| t.kind == Kind::Word)
                        .map(|t| t.norm.as_str());
                    for k in j + 1..=n.min(j + MAX_TEXT) {
                        if let Some((c, _)) = fill(&spec.ty, &sentence[j..k]) {
                            let early = anchor.is_some_and(|a| {
                                sentence[j..k - 1]
                                    .iter()
                                    .any(|t| t.kind == Kind::Word && t.norm == a)
                            });
                            let c = here + c + late + if early { 0.6 } else { 0.0 };
                            if c < cost[i + 1][k] {
                                cost[i + 1][k] = c;
                                back[i + 1][k] = Step::Slot(j);
                            }
                        }
                    }
                }
                _ => {
                    let lit = &example[i].norm;
                    let miss = here + literal_miss(lit);
                    if miss < cost[i + 1][j] {
                        cost[i + 1][j] = miss;
                        back[i + 1][j] = Step::MissLiteral;
                    }
                    if j < n
                        && let Some((c, _)) = literal_match(lit, &sentence[j])
                    {
                        let c = here + c;
                        if c < cost[i + 1][j + 1] {
                            cost[i + 1][j + 1] = c;
                            back[i + 1][j + 1] = Step::Match(!is_stopword(lit));
                        }
                    } else if j < n
                        && example[i].keyword
                        && sentence[j].keyword
                        && sentence[j].kind == Kind::Word
                        && sentence[j].vocab == Vocab::Own
                        && !sentence[j].claimed
                    {
                        // Another of the template's own job words where the example has one
                        // ("find" where it says "track"): cheaper than a miss and an extra,
                        // but no evidence.
                        let c = here + SUBSTITUTE;
                        if c < cost[i + 1][j + 1] {
                            cost[i + 1][j + 1] = c;
                            back[i + 1][j + 1] = Step::Match(false);
                        }
                    }
                }
            }
        }
    }

    // Walk back to read the slots' values.
    let content_literals = example
        .iter()
        .filter(|t| t.kind == Kind::Word && !is_stopword(&t.norm))
        .count();
    let typed = |name: &str| slot(name).is_some_and(|s| !matches!(s.ty, SlotType::Text(_)));
    let typed_slots = example
        .iter()
        .filter(|t| matches!(&t.kind, Kind::Slot(name) if typed(name)))
        .count();
    let mut typed_filled = 0;
    let mut values = Vec::new();
    let mut spans = Vec::new();
    let mut extras = Vec::new();
    let mut matched_literals = 0;
    let (mut i, mut j) = (m, n);
    while i > 0 || j > 0 {
        match back[i][j] {
            Step::Start => break,
            Step::Extra => {
                j -= 1;
                extras.push(j);
            }
            Step::MissLiteral | Step::SkipSlot => i -= 1,
            Step::Match(content) => {
                matched_literals += usize::from(content);
                i -= 1;
                j -= 1;
            }
            Step::Slot(from) => {
                if let Kind::Slot(name) = &example[i - 1].kind {
                    let spec = slot(name)
                        .map(|s| s.ty)
                        .unwrap_or(SlotType::Text(Flavour::Term));
                    if let Some((_, value)) = fill(&spec, &sentence[from..j]) {
                        typed_filled += usize::from(typed(name));
                        values.push((name.clone(), value));
                        spans.push((name.clone(), from..j));
                    }
                }
                i -= 1;
                j = from;
            }
        }
    }
    values.reverse();
    spans.reverse();
    extras.reverse();
    Alignment {
        cost: cost[m][n],
        matched_literals,
        content_literals,
        typed_slots,
        typed_filled,
        values,
        spans,
        extras,
    }
}
