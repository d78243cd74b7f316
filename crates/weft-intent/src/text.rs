//! What a sentence is made of, for matching: words folded to a canonical form (case, plurals,
//! synonyms), and the typed things people write that templates take as inputs — US states (by
//! name, code or a near miss), numbers, URLs and quoted strings — each kept as one token.
//!
//! Intent examples go through the same tokenizer, so "companies" in a sentence meets
//! "businesses" in an example as the same word.

use std::ops::Range;

use weft_core::geo;
use weft_core::inputs::US_STATE_CODES;

/// One unit of a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// As written (for a quoted string, without the quotes).
    pub surface: String,
    /// Lower case, singular, synonyms folded: what literals are compared on.
    pub norm: String,
    pub kind: Kind,
    /// Whether the word says what the job is ([`is_keyword`]), worked out once.
    pub keyword: bool,
    /// Read already as another input's value ("3 largest cities", "online booking"): free as
    /// an extra word, never part of a free-text value.
    pub claimed: bool,
    /// Written with a clause mark after it ("Chicago, 25 of them"): a name or a category ends
    /// there.
    pub ends_clause: bool,
    /// Whose word it is, for the template being read ([`Vocab`]).
    pub vocab: Vocab,
}

/// Whether a word belongs to the template being read: its own (its examples, description,
/// inputs), another template's and not its own ("jobs" read as a business search), or
/// nobody's in particular.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Vocab {
    #[default]
    Neutral,
    Own,
    Foreign,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Word,
    /// `{name}` in an intent example.
    Slot(String),
    /// A US state; the value is its full name.
    State(&'static str),
    Number(f64),
    /// An address, with a scheme added when it had none.
    Url(String),
    Quoted,
    /// Named cities standing where a state would: the states they may all be in, the likeliest
    /// first (made by [`city_runs`] users, never by [`tokenize`]).
    Cities(Vec<&'static str>),
}

/// Words that carry little meaning: cheap to add to or leave out of a sentence.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "me", "my", "can", "could", "would", "you", "i", "like", "to", "for", "of",
    "all", "some", "our", "us", "up", "out", "and", "with", "on", "in", "at", "want", "need", "do",
    "let", "give", "that", "this", "these", "those", "what", "is", "are", "be", "there", "it",
    "its", "go", "across", "how", "will", "we", "from", "about", "by", "just", "quick", "quickly",
    "many", "much", "which", "who", "where", "ones", "have", "has", "had", "tell", "know",
    "whether", "if", "does", "doing", "also", "them", "they", "their", "then", "so", "as", "into",
    "really", "looking", "i'm", "im", "wanna", "trying", "help", "see", "using", "via", "only",
];

/// Words dropped before matching: politeness says nothing about the job.
const FILLER: &[&str] = &["please", "pls", "thanks", "thx", "kindly"];

/// Synonym groups; every word of a group is folded to the first.
const SYNONYMS: &[&[&str]] = &[
    &[
        "business",
        "company",
        "firm",
        "shop",
        "contractor",
        "provider",
        "store",
        "outfit",
        "vendor",
        "place",
        "agency",
    ],
    &[
        "find", "search", "discover", "locate", "list", "lookup", "get", "show", "pull", "gather",
        "compile",
    ],
    &[
        "screenshot",
        "snapshot",
        "capture",
        "screengrab",
        "snap",
        "screencap",
        "image",
        "picture",
        "shot",
        "png",
        "jpeg",
        "jpg",
    ],
    &[
        "deployment",
        "deploy",
        "release",
        "rollout",
        "deployed",
        "ship",
        "shipped",
    ],
    &["research", "investigate", "study", "explore", "dig"],
    &[
        "summary",
        "summarize",
        "overview",
        "rundown",
        "brief",
        "digest",
        "gist",
        "sum",
        "tldr",
    ],
    &[
        "check", "verify", "inspect", "audit", "status", "healthy", "health",
    ],
    &["compare", "comparison", "contrast", "versus", "vs", "diff"],
    &["scrape", "crawl", "extract", "harvest"],
    &["every", "each", "any", "entire", "whole"],
    &[
        "across",
        "in",
        "throughout",
        "within",
        "around",
        "statewide",
        "over",
        "near",
    ],
    &["hello", "hi", "greet", "greeting", "hey"],
    &["page", "site", "website", "webpage", "url", "link"],
    &["latest", "last", "recent", "newest", "current"],
    &["web", "internet", "online"],
    &["width", "wide"],
    &["height", "tall", "high"],
    &["pixel", "px"],
    &["largest", "biggest", "top", "major", "populous"],
    &["source", "article", "result"],
    &["remind", "reminder", "chase", "nudge", "notice", "dunning"],
    &[
        "job", "posting", "opening", "position", "vacancy", "listing", "hiring", "role", "career",
    ],
    &["monitor", "watch", "track", "alert"],
    &[
        "overdue",
        "unpaid",
        "outstanding",
        "late",
        "delinquent",
        "owe",
        "owes",
        "owed",
        "owing",
    ],
    &["cc", "copy", "bcc"],
    &["invoice", "bill"],
];

/// Phrases folded into one word before matching.
const PHRASES: &[(&str, &str)] = &[
    ("look up", "lookup"),
    ("look into", "investigate"),
    ("read about", "research"),
    ("keep an eye on", "watch"),
    ("keep track of", "track"),
    ("notify me about", "alert"),
    ("past due", "overdue"),
    ("find out about", "research"),
    ("find out", "research"),
    ("learn about", "research"),
    ("pull together", "find"),
    ("round up", "find"),
    ("ping me", "alert"),
    ("let me know", "alert"),
    ("loop in", "cc"),
    ("sum up", "summarize"),
    ("hasn't paid", "unpaid"),
    ("has not paid", "unpaid"),
    ("haven't paid", "unpaid"),
    ("have not paid", "unpaid"),
    ("didn't pay", "unpaid"),
    ("did not pay", "unpaid"),
    ("not paid", "unpaid"),
    ("not yet paid", "unpaid"),
];

/// Small numbers people write as words.
const NUMBER_WORDS: &[(&str, f64)] = &[
    ("one", 1.0),
    ("two", 2.0),
    ("three", 3.0),
    ("four", 4.0),
    ("five", 5.0),
    ("six", 6.0),
    ("seven", 7.0),
    ("eight", 8.0),
    ("nine", 9.0),
    ("ten", 10.0),
    ("twelve", 12.0),
    ("fifteen", 15.0),
    ("twenty", 20.0),
    ("thirty", 30.0),
    ("fifty", 50.0),
];

/// Two-letter words that are also state codes; taken as a state only when written in capitals.
const CODE_WORDS: &[&str] = &[
    "in", "or", "me", "ok", "hi", "oh", "id", "al", "la", "pa", "ma", "de",
];

pub fn is_stopword(norm: &str) -> bool {
    STOPWORDS.contains(&norm)
}

/// Whether a (normalized) word is the head of a synonym group: words like "find", "business"
/// or "screenshot" that say what the job is, rather than what it is about.
pub fn is_keyword(norm: &str) -> bool {
    SYNONYMS.iter().any(|group| {
        group[0] == norm
            || (norm.len() >= 6
                && group.iter().any(|w| {
                    w.len() >= 6 && strsim::normalized_damerau_levenshtein(w, norm) >= 0.8
                }))
    })
}

/// Verbs that start a new instruction after "and" ("... and give me the gist", "... and loop
/// in accounting"): a free-text value ends before them.
const INSTRUCTIONS: &[&str] = &[
    "give", "tell", "send", "show", "let", "make", "take", "write", "email", "ping", "loop", "cc",
    "copy", "visit", "tour", "post", "read", "include", "keep", "put", "add", "save", "note",
    "notify", "draft", "run", "store", "rank", "sort", "flag", "mark", "report",
];

/// Groups of [`SYNONYMS`] whose head is a verb of a job ("find", "check", "summarize").
const VERB_HEADS: &[&str] = &[
    "find",
    "screenshot",
    "research",
    "summary",
    "check",
    "compare",
    "scrape",
    "hello",
    "remind",
    "monitor",
];

/// Whether a (normalized) word starts an instruction of its own after "and".
pub fn is_instruction(norm: &str) -> bool {
    INSTRUCTIONS.contains(&norm) || VERB_HEADS.contains(&norm)
}

/// Whether a sentence is written with capitals: a capitalized word ("Oregon", "Priya") past
/// the first word; acronyms ("HVAC", "LLM") say nothing, people type them in capitals anyway.
pub fn is_cased(text: &str) -> bool {
    text.split_whitespace().skip(1).any(|w| {
        let w = w.trim_start_matches(|c: char| !c.is_alphanumeric());
        let mut chars = w.chars();
        chars.next().is_some_and(char::is_uppercase) && chars.any(char::is_lowercase)
    })
}

/// Splits a sentence (or an intent example) into tokens.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut raw: Vec<(String, bool)> = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let mut prev_space = true;
    while let Some(c) = chars.next() {
        let opens_quote = matches!(c, '"' | '“' | '«') || (c == '\'' && prev_space);
        if opens_quote {
            let close = match c {
                '“' => '”',
                '«' => '»',
                other => other,
            };
            let rest: String = chars.clone().collect();
            if let Some(end) = rest.find(close) {
                if !word.is_empty() {
                    raw.push((std::mem::take(&mut word), false));
                }
                raw.push((rest[..end].trim().to_string(), true));
                let n = rest[..end].chars().count() + 1;
                for _ in 0..n {
                    chars.next();
                }
                prev_space = false;
                continue;
            }
        }
        if c.is_whitespace() {
            if !word.is_empty() {
                raw.push((std::mem::take(&mut word), false));
            }
            prev_space = true;
        } else {
            word.push(c);
            prev_space = false;
        }
    }
    if !word.is_empty() {
        raw.push((word, false));
    }

    let mut tokens = Vec::new();
    for (chunk, quoted) in raw {
        if quoted {
            if !chunk.is_empty() {
                tokens.push(Token {
                    norm: chunk.to_lowercase(),
                    surface: chunk,
                    kind: Kind::Quoted,
                    keyword: false,
                    claimed: false,
                    ends_clause: false,
                    vocab: Vocab::Neutral,
                });
            }
            continue;
        }
        let before = tokens.len();
        push_chunk(&chunk, &mut tokens);
        let marked = chunk
            .trim_end_matches(['"', '\'', ')', ']'])
            .ends_with([',', ';', ':', '.', '!', '?']);
        if marked
            && tokens.len() > before
            && let Some(last) = tokens.last_mut()
        {
            last.ends_clause = true;
        }
    }
    // Phrases that say one word ("look up" is "lookup", "keep an eye on" is "watch").
    let mut i = 0;
    while i < tokens.len() {
        let fold = PHRASES.iter().find(|(words, _)| {
            let words: Vec<&str> = words.split(' ').collect();
            tokens.len() >= i + words.len()
                && words
                    .iter()
                    .zip(&tokens[i..])
                    .all(|(w, t)| t.kind == Kind::Word && t.surface.to_lowercase() == *w)
        });
        if let Some((words, word)) = fold {
            let width = words.split(' ').count();
            let surface = tokens[i..i + width]
                .iter()
                .map(|t| t.surface.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            tokens.splice(
                i..i + width,
                [Token {
                    surface,
                    norm: normalize(word),
                    kind: Kind::Word,
                    keyword: false,
                    claimed: false,
                    ends_clause: tokens[i + width - 1].ends_clause,
                    vocab: Vocab::Neutral,
                }],
            );
        }
        i += 1;
    }
    // "thank you" is politeness; "thank Priya" is a job.
    let mut k = 0;
    while k + 1 < tokens.len() {
        if tokens[k].surface.eq_ignore_ascii_case("thank")
            && tokens[k + 1].surface.eq_ignore_ascii_case("you")
        {
            tokens.drain(k..k + 2);
        } else {
            k += 1;
        }
    }
    mark_states(&mut tokens);
    for token in &mut tokens {
        token.keyword = token.kind == Kind::Word && is_keyword(&token.norm);
    }
    tokens
}

fn push_chunk(chunk: &str, tokens: &mut Vec<Token>) {
    // `{name}` slots in examples, possibly with punctuation around them.
    if let Some(start) = chunk.find('{')
        && let Some(len) = chunk[start..].find('}')
    {
        let name = &chunk[start + 1..start + len];
        if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            tokens.push(Token {
                surface: chunk.to_string(),
                norm: String::new(),
                kind: Kind::Slot(name.to_string()),
                keyword: false,
                claimed: false,
                ends_clause: false,
                vocab: Vocab::Neutral,
            });
            return;
        }
    }
    let trimmed = chunk.trim_matches(|c: char| {
        matches!(
            c,
            ',' | '.' | ';' | ':' | '!' | '?' | '(' | ')' | '[' | ']' | '<' | '>' | '"' | '\''
        )
    });
    if trimmed.is_empty() {
        return;
    }
    // "octo/site's latest deploy": the possessive is not part of a repository or an address.
    let trimmed = match trimmed
        .strip_suffix("'s")
        .or_else(|| trimmed.strip_suffix("’s"))
    {
        Some(base) if base.contains('/') || as_url(base).is_some() => base,
        _ => trimmed,
    };
    if let Some(url) = as_url(trimmed) {
        tokens.push(Token {
            surface: trimmed.to_string(),
            norm: trimmed.to_lowercase(),
            kind: Kind::Url(url),
            keyword: false,
            claimed: false,
            ends_clause: false,
            vocab: Vocab::Neutral,
        });
        return;
    }
    // "HVAC," or "roofers/plumbers" stay words; "3" and "three" are numbers.
    let lower = trimmed.to_lowercase();
    // "800px" is a number and its unit; "1920x1080" two numbers.
    if let Some(n) = lower.strip_suffix("px").and_then(|n| n.parse::<f64>().ok()) {
        tokens.push(number(trimmed, n));
        tokens.push(Token {
            surface: "px".into(),
            norm: "pixel".into(),
            kind: Kind::Word,
            keyword: false,
            claimed: false,
            ends_clause: false,
            vocab: Vocab::Neutral,
        });
        return;
    }
    if let Some((w, h)) = lower.split_once('x')
        && let (Ok(w), Ok(h)) = (w.parse::<u32>(), h.parse::<u32>())
    {
        tokens.push(number(trimmed, f64::from(w)));
        tokens.push(Token {
            surface: "x".into(),
            norm: "x".into(),
            kind: Kind::Word,
            keyword: false,
            claimed: false,
            ends_clause: false,
            vocab: Vocab::Neutral,
        });
        tokens.push(number(trimmed, f64::from(h)));
        return;
    }
    if let Ok(n) = lower.replace(',', "").parse::<f64>()
        && n.is_finite()
    {
        tokens.push(Token {
            surface: trimmed.to_string(),
            norm: lower,
            kind: Kind::Number(n),
            keyword: false,
            claimed: false,
            ends_clause: false,
            vocab: Vocab::Neutral,
        });
        return;
    }
    if let Some((_, n)) = NUMBER_WORDS.iter().find(|(w, _)| *w == lower) {
        tokens.push(Token {
            surface: trimmed.to_string(),
            norm: lower,
            kind: Kind::Number(*n),
            keyword: false,
            claimed: false,
            ends_clause: false,
            vocab: Vocab::Neutral,
        });
        return;
    }
    if FILLER.contains(&lower.as_str()) {
        return;
    }
    // "what's" -> "what", "Colorado's" -> "colorado".
    let base = lower
        .strip_suffix("'s")
        .or_else(|| lower.strip_suffix("’s"))
        .unwrap_or(&lower);
    // "US" and "IT" written in capitals are names, not "us" and "it".
    let acronym = trimmed.len() >= 2 && trimmed.chars().all(|c| c.is_ascii_uppercase());
    let norm = if acronym && is_stopword(base) {
        trimmed.to_string()
    } else {
        normalize(base)
    };
    tokens.push(Token {
        surface: trimmed.to_string(),
        norm,
        kind: Kind::Word,
        keyword: false,
        claimed: false,
        ends_clause: false,
        vocab: Vocab::Neutral,
    });
}

fn number(surface: &str, n: f64) -> Token {
    Token {
        surface: surface.to_string(),
        norm: n.to_string(),
        kind: Kind::Number(n),
        keyword: false,
        claimed: false,
        ends_clause: false,
        vocab: Vocab::Neutral,
    }
}

/// Whether a word is a repository name, `owner/name` (letters in both, no scheme).
pub fn is_repo(text: &str) -> bool {
    let Some((owner, name)) = text.split_once('/') else {
        return false;
    };
    let part = |p: &str| {
        !p.is_empty()
            && p.chars().any(|c| c.is_ascii_alphabetic())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    part(owner) && part(name) && !owner.contains('.')
}

/// A list of named cities in a sentence ("Austin and Dallas", "Springfield", "Reno, NV").
#[derive(Debug, Clone, PartialEq)]
pub struct CityRun {
    /// The tokens it covers (a state written right after it included).
    pub range: Range<usize>,
    /// The cities as the gazetteer spells them.
    pub names: Vec<&'static str>,
    /// The states they may all be in, likeliest first: one when it is clear.
    pub states: Vec<&'static str>,
    /// The cities are in no single state (each city's states, for the question).
    pub apart: Vec<(&'static str, Vec<&'static str>)>,
}

/// Lower-case words that are also places of the gazetteer; in lower case they are words.
const COMMON_PLACE_WORDS: &[&str] = &[
    "mobile",
    "bear",
    "bath",
    "bend",
    "brick",
    "central",
    "college",
    "crystal",
    "eagle",
    "enterprise",
    "fountain",
    "gateway",
    "golden",
    "hope",
    "independence",
    "liberty",
    "liberal",
    "mission",
    "normal",
    "opportunity",
    "orange",
    "paradise",
    "pearl",
    "plum",
    "plantation",
    "reading",
    "airport",
    "anthem",
    "badger",
    "magnolia",
    "hurricane",
    "laurel",
    "mentor",
    "mustang",
    "nitro",
    "lakes",
    "highland",
    "homestead",
    "surprise",
    "commerce",
    "alliance",
    "aloha",
    "beverly",
    "chase",
    "dover",
    "encanto",
    "florence",
    "gary",
    "logan",
    "marion",
    "mason",
    "murray",
    "national",
    "parker",
    "sterling",
    "warren",
    "wayne",
    "union",
    "justice",
    "essex",
    "pomona",
    "salem",
    "moore",
    "perry",
    "powell",
    "harvey",
    "hudson",
    "gilbert",
    "allen",
    "jackson",
    "franklin",
    "lincoln",
    "madison",
    "monroe",
    "clinton",
    "fairfield",
    "riverside",
    "columbia",
    "ontario",
    "cypress",
    "hollywood",
    "kent",
    "lawrence",
    "newton",
];

/// Words after which a lower-case place name is a place ("roofers in austin and dallas").
const PLACE_CONTEXT: &[&str] = &[
    "in",
    "across",
    "near",
    "around",
    "throughout",
    "between",
    "and",
    "or",
    "&",
    "plus",
    "within",
];

/// The place (its width in tokens and the gazetteer's entries) starting at token `i`.
fn place_at(
    tokens: &[Token],
    i: usize,
    after_context: bool,
) -> Option<(usize, &'static [geo::Place])> {
    for width in (1..=geo::longest_name()).rev() {
        let Some(span) = tokens.get(i..i + width) else {
            continue;
        };
        let ok = span.iter().enumerate().all(|(k, t)| match t.kind {
            Kind::Word => true,
            // "Kansas City", "New York City".
            Kind::State(_) => width > 1 && k == 0,
            _ => false,
        });
        if !ok {
            continue;
        }
        let text = span
            .iter()
            .map(|t| t.surface.trim_end_matches(',').to_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        let places = geo::places_named(&text);
        if places.is_empty() {
            continue;
        }
        let capitalized = span
            .iter()
            .all(|t| t.surface.chars().next().is_some_and(char::is_uppercase));
        let accepted =
            after_context && (capitalized || !COMMON_PLACE_WORDS.contains(&text.as_str()));
        if accepted {
            return Some((width, places));
        }
    }
    None
}

/// Every list of named cities in the sentence, with the state they share.
///
/// A city is a gazetteer place named after "in", "across", "near", "and"...: with capitals, or
/// in lower case unless it is also a common word ("mobile").
/// The state is the one all of them are in, or the one written after them; a name several
/// states have ("Springfield") leaves every candidate, unless one place is at least ten times
/// the next in population ("Austin" is Austin, Texas).
pub fn city_runs(tokens: &[Token]) -> Vec<CityRun> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let context = |p: usize| {
            p.checked_sub(1)
                .is_some_and(|q| PLACE_CONTEXT.contains(&tokens[q].surface.to_lowercase().as_str()))
        };
        let Some((width, first)) = place_at(tokens, i, context(i)) else {
            i += 1;
            continue;
        };
        let start = i;
        let mut found = vec![first];
        let mut p = i + width;
        loop {
            let connector = tokens.get(p).is_some_and(|t| {
                matches!(
                    t.surface.to_lowercase().as_str(),
                    "and" | "or" | "&" | "plus"
                )
            });
            let next = if connector { p + 1 } else { p };
            match place_at(tokens, next, true) {
                Some((w, places)) if next < tokens.len() => {
                    found.push(places);
                    p = next + w;
                }
                _ => break,
            }
        }
        let explicit = match tokens.get(p).map(|t| &t.kind) {
            Some(Kind::State(name)) => {
                p += 1;
                Some(*name)
            }
            _ => None,
        };
        runs.push(city_run(start..p, &found, explicit));
        i = p;
    }
    runs
}

fn city_run(
    range: Range<usize>,
    found: &[&'static [geo::Place]],
    explicit: Option<&'static str>,
) -> CityRun {
    let names: Vec<&'static str> = found
        .iter()
        .filter_map(|places| places.first().map(|p| p.name))
        .collect();
    let state_of = |code: &str| geo::state_name(code).unwrap_or_default();
    if let Some(state) = explicit {
        // "Springfield, IL": the place of that name in that state.
        let names = found
            .iter()
            .filter_map(|places| {
                places
                    .iter()
                    .find(|p| state_of(p.state) == state)
                    .or(places.first())
                    .map(|p| p.name)
            })
            .collect();
        return CityRun {
            range,
            names,
            states: vec![state],
            apart: Vec::new(),
        };
    }
    // States every city is in, with the people the named places have there.
    let mut shared: Vec<(&'static str, u64)> = found
        .first()
        .map(|places| places.iter().map(|p| (p.state, 0)).collect())
        .unwrap_or_default();
    for places in found {
        shared.retain_mut(
            |(state, people)| match places.iter().find(|p| p.state == *state) {
                Some(p) => {
                    *people += p.population;
                    true
                }
                None => false,
            },
        );
    }
    shared.sort_by_key(|s| std::cmp::Reverse(s.1));
    if let [(top, a), (_, b), ..] = shared.as_slice()
        && *a >= 10 * *b
    {
        shared = vec![(top, *a)];
    }
    let apart = if shared.is_empty() {
        found
            .iter()
            .filter_map(|places| {
                let first = places.first()?;
                Some((
                    first.name,
                    places.iter().map(|p| state_of(p.state)).collect(),
                ))
            })
            .collect()
    } else {
        Vec::new()
    };
    CityRun {
        range,
        names,
        states: shared.iter().map(|(code, _)| state_of(code)).collect(),
        apart,
    }
}

/// An address as written: with a scheme, `www.`, or a dotted host name with a known-looking
/// top-level domain.
fn as_url(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return (text.len() > 8).then(|| text.to_string());
    }
    if lower.starts_with("www.") && text.len() > 5 {
        return Some(format!("https://{text}"));
    }
    let host = lower.split('/').next().unwrap_or_default();
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let tld = labels.last().copied().unwrap_or_default();
    let host_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':');
    let tld_ok = (2..=6).contains(&tld.len()) && tld.chars().all(|c| c.is_ascii_lowercase());
    (host_ok && tld_ok).then(|| format!("https://{text}"))
}

/// Lower case, singular, synonyms folded.
pub fn normalize(word: &str) -> String {
    let word = word.trim_matches(|c: char| !c.is_alphanumeric());
    if STOPWORDS.contains(&word) {
        // "does" is not the plural of "doe".
        return word.to_string();
    }
    let stem = singular(word);
    let bases = verb_bases(word);
    for group in SYNONYMS {
        // Verb forms fold only into groups of verbs ("deploying"), not nouns ("billing").
        let verbs = VERB_HEADS.contains(&group[0]) || group[0] == "deployment";
        if group
            .iter()
            .any(|w| *w == stem || *w == word || (verbs && bases.iter().any(|b| b == w)))
        {
            return group[0].to_string();
        }
    }
    stem
}

/// What a verb form may come from: "deploying" -> deploy, "shipped" -> ship, "hiring" ->
/// hire, "known" -> know.
pub fn verb_bases(word: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !word.is_ascii() {
        return out;
    }
    for suffix in ["ing", "ed", "en", "n", "ly"] {
        let Some(base) = word.strip_suffix(suffix) else {
            continue;
        };
        if base.len() < 3 {
            continue;
        }
        out.push(base.to_string());
        // "shipped" -> "ship", "running" -> "run".
        let b = base.as_bytes();
        if b.len() >= 4 && b[b.len() - 1] == b[b.len() - 2] {
            out.push(base[..base.len() - 1].to_string());
        }
        // "hiring" -> "hire", "used" -> "use".
        if suffix != "n" {
            out.push(format!("{base}e"));
        }
    }
    out
}

/// A crude singular: enough that "businesses", "companies" and "shops" meet their examples.
fn singular(word: &str) -> String {
    let n = word.chars().count();
    if n <= 3 || !word.is_ascii() {
        return word.to_string();
    }
    if let Some(base) = word.strip_suffix("ies") {
        return format!("{base}y");
    }
    for suffix in ["sses", "shes", "ches", "xes"] {
        if word.ends_with(suffix) {
            return word[..word.len() - 2].to_string();
        }
    }
    if word.ends_with("ss") || word.ends_with("us") || word.ends_with("is") {
        return word.to_string();
    }
    if let Some(base) = word.strip_suffix('s') {
        return base.to_string();
    }
    word.to_string()
}

/// Merges the words that name a US state into one `State` token: full names (one to three
/// words, any case, or within a small typo), and codes (in capitals, or in lower case after
/// "in"/"across" unless the code is also a common word).
fn mark_states(tokens: &mut Vec<Token>) {
    let mut i = 0;
    while i < tokens.len() {
        let mut found = None;
        for width in (1..=3).rev() {
            if i + width > tokens.len() {
                continue;
            }
            let span = &tokens[i..i + width];
            if span.iter().any(|t| t.kind != Kind::Word) {
                continue;
            }
            let text = span
                .iter()
                .map(|t| t.surface.to_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(name) = state_by_name(&text, width) {
                found = Some((width, name));
                break;
            }
        }
        if found.is_none() && tokens[i].kind == Kind::Word {
            let surface = tokens[i].surface.trim_end_matches('.');
            let prev = i
                .checked_sub(1)
                .map(|p| tokens[p].norm.as_str())
                .unwrap_or_default();
            let after_preposition = matches!(prev, "in" | "across" | "of" | "for");
            if surface.len() == 2 {
                let upper = surface.to_ascii_uppercase();
                let capitals = surface == upper;
                let lower_ok = after_preposition && !CODE_WORDS.contains(&surface);
                if (capitals || lower_ok)
                    && let Some((_, name)) = US_STATE_CODES.iter().find(|(c, _)| *c == upper)
                {
                    found = Some((1, *name));
                }
            }
        }
        if let Some((width, name)) = found {
            let surface = tokens[i..i + width]
                .iter()
                .map(|t| t.surface.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            tokens.splice(
                i..i + width,
                [Token {
                    surface,
                    norm: name.to_lowercase(),
                    kind: Kind::State(name),
                    keyword: false,
                    claimed: false,
                    ends_clause: tokens[i + width - 1].ends_clause,
                    vocab: Vocab::Neutral,
                }],
            );
        }
        i += 1;
    }
}

fn state_by_name(text: &str, width: usize) -> Option<&'static str> {
    let words = |name: &str| name.split(' ').count();
    if let Some((_, name)) = US_STATE_CODES
        .iter()
        .find(|(_, name)| name.to_lowercase() == text)
    {
        return Some(name);
    }
    // A near miss ("Colorodo", "new jersy"), only for names long enough that a typo cannot
    // turn an ordinary word into a state.
    if text.len() < 6 {
        return None;
    }
    US_STATE_CODES
        .iter()
        .filter(|(_, name)| words(name) == width && name.len() >= 6)
        .map(|(_, name)| {
            let lower = name.to_lowercase();
            (
                strsim::normalized_damerau_levenshtein(&lower, text),
                lower.chars().next() == text.chars().next(),
                *name,
            )
        })
        .filter(|(sim, same_start, _)| *sim >= 0.8 && *same_start)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, _, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(String, Kind)> {
        tokenize(text)
            .into_iter()
            .map(|t| (t.norm, t.kind))
            .collect()
    }

    #[test]
    fn states_by_name_code_and_typo() {
        for (text, want) in [
            ("in Colorado", "Colorado"),
            ("in colorado", "Colorado"),
            ("in CO", "Colorado"),
            ("in co.", "Colorado"),
            ("across new york", "New York"),
            ("in Colorodo", "Colorado"),
            ("in North Carolina", "North Carolina"),
            ("in tx", "Texas"),
        ] {
            let tokens = tokenize(text);
            assert_eq!(
                tokens.last().map(|t| &t.kind),
                Some(&Kind::State(want)),
                "{text}"
            );
        }
        // "in" and "or" are words, not Indiana and Oregon.
        let tokens = kinds("find roofers in or near denver");
        assert!(tokens.iter().all(|(_, k)| *k == Kind::Word), "{tokens:?}");
    }

    #[test]
    fn urls_numbers_quotes_and_plurals() {
        let tokens =
            tokenize("Compare example.com, https://a.org/x. and \"rust async\" 3 businesses");
        assert_eq!(tokens[1].kind, Kind::Url("https://example.com".into()));
        assert_eq!(tokens[2].kind, Kind::Url("https://a.org/x".into()));
        assert_eq!(tokens[4].kind, Kind::Quoted);
        assert_eq!(tokens[4].surface, "rust async");
        assert_eq!(tokens[5].kind, Kind::Number(3.0));
        assert_eq!(tokens[6].norm, "business");
        assert_eq!(normalize("companies"), "business");
    }
}
