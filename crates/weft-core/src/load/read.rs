//! Small readers from YAML nodes to typed values, each reporting what is wrong where.
//!
//! Every reader records its problem and returns `None`, so loading goes on and the user sees
//! all problems of a template at once.

use std::num::NonZeroU32;
use std::time::Duration;

use super::suggest::did_you_mean;
use super::yaml::{Kind, Node, Pos};
use crate::diag::{Code, Diagnostic};

/// The problems found so far in one template.
pub(crate) struct Report {
    pub file: String,
    pub diags: Vec<Diagnostic>,
}

impl Report {
    pub fn new(file: &str) -> Report {
        Report {
            file: file.to_owned(),
            diags: Vec::new(),
        }
    }

    pub fn at(&mut self, pos: Pos, code: Code, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            code,
            message: message.into(),
        });
    }

    /// The mapping's entries, after reporting keys outside `known`. `what` names the mapping in
    /// messages ("step `fetch`", "`retry`").
    pub fn mapping<'a>(
        &mut self,
        node: &'a Node,
        known: &[&str],
        what: &str,
    ) -> Option<&'a [(Node, Node)]> {
        let Some(entries) = node.as_map() else {
            self.at(
                node.pos,
                Code::InvalidValue,
                format!("{what} must be a mapping, not {}", node.type_name()),
            );
            return None;
        };
        for (key, _) in entries {
            let text = key.key_text().unwrap_or_default();
            if !known.contains(&text.as_str()) {
                self.at(
                    key.pos,
                    Code::UnknownKey,
                    format!(
                        "unknown key `{text}` in {what}{}",
                        did_you_mean(&text, known.iter().copied())
                    ),
                );
            }
        }
        Some(entries)
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.wrong(node, what, "a string");
                None
            }
        }
    }

    /// A string, or a number written bare (`version: 3`), as text.
    pub fn string_or_number(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            _ => {
                self.wrong(node, what, "a string or a number");
                None
            }
        }
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.kind {
            Kind::Bool(b) => Some(*b),
            _ => {
                self.wrong(node, what, "true or false");
                None
            }
        }
    }

    pub fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        match &node.kind {
            Kind::Int(i) => Some(*i as f64),
            Kind::Float(f) => Some(*f),
            _ => {
                self.wrong(node, what, "a number");
                None
            }
        }
    }

    /// A whole number of at least 1.
    pub fn positive(&mut self, node: &Node, what: &str) -> Option<NonZeroU32> {
        let n = match &node.kind {
            Kind::Int(i) => u32::try_from(*i).ok().and_then(NonZeroU32::new),
            _ => None,
        };
        if n.is_none() {
            self.wrong(node, what, "a whole number of at least 1");
        }
        n
    }

    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            // A bare number is seconds; `0` is the only one people write.
            Kind::Int(i) if *i >= 0 => format!("{i}s"),
            _ => {
                self.wrong(node, what, "a duration like 50ms, 2s, 3m or 24h");
                return None;
            }
        };
        match crate::duration::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(node.pos, Code::InvalidValue, format!("{what}: {e}"));
                None
            }
        }
    }

    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Pos)>> {
        let Some(items) = node.as_seq() else {
            self.wrong(node, what, "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            if let Some(s) = self.string(item, &format!("each item of {what}")) {
                out.push((s, item.pos));
            }
        }
        Some(out)
    }

    fn wrong(&mut self, node: &Node, what: &str, wanted: &str) {
        self.at(
            node.pos,
            Code::InvalidValue,
            format!("{what} must be {wanted}, not {}", describe(node)),
        );
    }
}

/// A node for messages: its type, and short scalars themselves.
pub(crate) fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Str(s) if s.chars().count() <= 40 => format!("the string `{s}`"),
        Kind::Int(i) => format!("the number {i}"),
        Kind::Float(f) => format!("the number {f}"),
        Kind::Bool(b) => format!("`{b}`"),
        _ => node.type_name().to_owned(),
    }
}

/// The value under `key` in a mapping.
pub(crate) fn get<'a>(entries: &'a [(Node, Node)], key: &str) -> Option<&'a Node> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The key node itself, for messages about a key.
pub(crate) fn get_key<'a>(entries: &'a [(Node, Node)], key: &str) -> Option<&'a Node> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(k, _)| k)
}

/// Whether text holds Jinja (`{{ }}` or `{% %}`) and so is evaluated, not taken literally.
pub(crate) fn is_dynamic(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Whether any string under this node is dynamic.
pub(crate) fn has_dynamic(node: &Node) -> bool {
    match &node.kind {
        Kind::Str(s) => is_dynamic(s),
        Kind::Seq(items) => items.iter().any(has_dynamic),
        Kind::Map(entries) => entries.iter().any(|(_, v)| has_dynamic(v)),
        _ => false,
    }
}

/// Whether `name` can be a step id or input name: `[A-Za-z_][A-Za-z0-9_-]*`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
