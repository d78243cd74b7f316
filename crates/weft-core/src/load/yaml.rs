//! A YAML tree that remembers where every key and value was written.
//!
//! serde-based YAML crates only give a position for syntax errors, but every template diagnostic
//! must point at the key or value at fault. So the template is read from `saphyr-parser`'s
//! event stream into this small tree, with YAML 1.2 core-schema typing of plain scalars, and
//! converted to JSON only where the plan wants JSON.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::Value;

use crate::limits::{MAX_YAML_DEPTH, MAX_YAML_NODES};

/// A place in the source: 1-based line and column (in characters), and the character index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
    pub index: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
            index: span.start.index(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Pos,
    /// How a scalar was written; `None` for collections.
    pub style: Option<ScalarStyle>,
}

/// A syntax problem: where, and what the parser said.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The text a scalar key stands for (`1:` is the key "1").
    pub fn key_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Null => Some("null".to_owned()),
            Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    /// A short name for the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The node as JSON. Mapping keys become their text.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The value at a JSON pointer below this node (`/a/0/b`), or the deepest node on the way.
    pub fn at_pointer(&self, pointer: &str) -> &Node {
        let mut node = self;
        for raw in pointer.split('/').skip(1) {
            let part = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.key_text().as_deref() == Some(part.as_str()))
                    .map(|(_, v)| v),
                Kind::Seq(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

/// Parses one YAML document. An empty document is `null`.
///
/// Nesting deeper than [`MAX_YAML_DEPTH`] and aliases that would expand past
/// [`MAX_YAML_NODES`] nodes are syntax errors raised while reading the events, before the
/// tree grows: a "billion laughs" document costs no more than its first hundred thousand nodes.
pub(crate) fn parse(source: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder {
        stack: Vec::new(),
        frames: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
    };
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|e| SyntaxError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
                index: e.marker().index(),
            },
            message: e.info().to_owned(),
        })?;
        builder.event(event, &span)?;
    }
    Ok(builder.root.unwrap_or(Node {
        kind: Kind::Null,
        pos: Pos {
            line: 1,
            col: 1,
            index: 0,
        },
        style: None,
    }))
}

enum Open {
    Seq(Node, usize, Vec<Node>),
    /// A mapping, its anchor, its entries and the key waiting for its value.
    Map(Node, usize, Vec<(Node, Node)>, Option<Node>),
}

/// What the builder knows of an open collection beside its contents.
struct Frame {
    /// `Builder::nodes` when the collection opened.
    nodes_at_start: usize,
    /// The deepest child so far (0: only scalars).
    depth: usize,
}

/// An anchored node with its size in nodes and its depth, so an alias to it is counted
/// without walking it.
struct Anchored {
    node: Node,
    nodes: usize,
    depth: usize,
}

struct Builder {
    stack: Vec<Open>,
    /// One per entry of `stack`.
    frames: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    /// Nodes in the tree so far, aliases counted as the nodes they expand to.
    nodes: usize,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), SyntaxError> {
        let pos = Pos::from_span(span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(SyntaxError {
                        pos,
                        message: "a template file holds one YAML document, found a second"
                            .to_owned(),
                    });
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, pos)?;
                let node = scalar(&text, style, tag.as_deref(), pos)?;
                self.push(node, anchor, 1, 0)?;
            }
            Event::Alias(id) => {
                let unknown = || SyntaxError {
                    pos,
                    message: "alias to an unknown anchor".to_owned(),
                };
                let anchored = self.anchors.get(&id).ok_or_else(unknown)?;
                let (nodes, depth) = (anchored.nodes, anchored.depth);
                if self.stack.len() + depth > MAX_YAML_DEPTH {
                    return Err(too_deep(pos));
                }
                // Counted before it is copied: an alias past the budget copies nothing.
                self.count(nodes, pos)?;
                let anchored = self.anchors.get(&id).ok_or_else(unknown)?;
                let node = Node {
                    pos,
                    ..anchored.node.clone()
                };
                self.push(node, 0, nodes, depth)?;
            }
            Event::SequenceStart(anchor, _) => {
                let shell = self.open(pos)?;
                self.stack.push(Open::Seq(shell, anchor, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                let shell = self.open(pos)?;
                self.stack.push(Open::Map(shell, anchor, Vec::new(), None));
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq(shell, anchor, items)) = self.stack.pop() {
                    let node = Node {
                        kind: Kind::Seq(items),
                        ..shell
                    };
                    self.close(node, anchor)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(shell, anchor, entries, _)) = self.stack.pop() {
                    let node = Node {
                        kind: Kind::Map(entries),
                        ..shell
                    };
                    self.close(node, anchor)?;
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// Counts `n` more nodes, refusing past [`MAX_YAML_NODES`].
    fn count(&mut self, n: usize, pos: Pos) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_YAML_NODES {
            return Err(SyntaxError {
                pos,
                message: format!(
                    "the document stands for more than {MAX_YAML_NODES} values once its \
                     aliases are expanded (`*name` repeats what `&name` marked)"
                ),
            });
        }
        Ok(())
    }

    /// A collection opens: one level deeper, refused past [`MAX_YAML_DEPTH`].
    fn open(&mut self, pos: Pos) -> Result<Node, SyntaxError> {
        if self.stack.len() >= MAX_YAML_DEPTH {
            return Err(too_deep(pos));
        }
        self.count(1, pos)?;
        self.frames.push(Frame {
            nodes_at_start: self.nodes,
            depth: 0,
        });
        Ok(Node {
            kind: Kind::Null,
            pos,
            style: None,
        })
    }

    /// A collection closes: it is a node of its parent, sized and measured.
    fn close(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        let frame = self.frames.pop().unwrap_or(Frame {
            nodes_at_start: self.nodes,
            depth: 0,
        });
        let nodes = self.nodes - frame.nodes_at_start + 1;
        self.push(node, anchor, nodes, frame.depth + 1)
    }

    fn push(
        &mut self,
        node: Node,
        anchor: usize,
        nodes: usize,
        depth: usize,
    ) -> Result<(), SyntaxError> {
        if let Some(parent) = self.frames.last_mut() {
            parent.depth = parent.depth.max(depth);
        }
        if anchor != 0 {
            let anchored = Anchored {
                node: node.clone(),
                nodes,
                depth,
            };
            self.anchors.insert(anchor, anchored);
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, _, items)) => items.push(node),
            Some(Open::Map(_, _, entries, pending)) => match pending.take() {
                None => {
                    if matches!(node.kind, Kind::Seq(_) | Kind::Map(_)) {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: "a mapping key must be a plain value, not a list or mapping"
                                .to_owned(),
                        });
                    }
                    let text = node.key_text();
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.key_text() == text) {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: format!(
                                "duplicate key `{}` (first written at {}:{})",
                                text.unwrap_or_default(),
                                first.pos.line,
                                first.pos.col
                            ),
                        });
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

/// Types a scalar by the YAML 1.2 core schema: only plain scalars can be anything but strings.
fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    pos: Pos,
) -> Result<Node, SyntaxError> {
    let make = |kind| Node {
        kind,
        pos,
        style: Some(style),
    };
    if let Some(tag) = tag.filter(|t| t.is_yaml_core_schema()) {
        let kind = match tag.suffix.as_str() {
            "str" => Kind::Str(text.to_owned()),
            "null" => Kind::Null,
            "bool" => match plain(text) {
                k @ Kind::Bool(_) => k,
                _ => return Err(bad_tag(text, "bool", pos)),
            },
            "int" => match plain(text) {
                k @ Kind::Int(_) => k,
                _ => return Err(bad_tag(text, "int", pos)),
            },
            "float" => match plain(text) {
                Kind::Int(i) => Kind::Float(i as f64),
                k @ Kind::Float(_) => k,
                _ => return Err(bad_tag(text, "float", pos)),
            },
            _ => Kind::Str(text.to_owned()),
        };
        return Ok(make(kind));
    }
    if style != ScalarStyle::Plain || tag.is_some() {
        return Ok(make(Kind::Str(text.to_owned())));
    }
    Ok(make(plain(text)))
}

fn too_deep(pos: Pos) -> SyntaxError {
    SyntaxError {
        pos,
        message: format!("lists and mappings nest more than {MAX_YAML_DEPTH} levels deep here"),
    }
}

fn bad_tag(text: &str, tag: &str, pos: Pos) -> SyntaxError {
    SyntaxError {
        pos,
        message: format!("`{text}` is not a valid !!{tag}"),
    }
}

fn plain(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return Kind::Int(i);
    }
    if is_float(text)
        && let Ok(f) = text.parse::<f64>()
        && f.is_finite()
    {
        return Kind::Float(f);
    }
    Kind::Str(text.to_owned())
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok()
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (whole, frac) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => digits(whole) && digits(f) && !(whole.is_empty() && f.is_empty()),
        None => !whole.is_empty() && digits(whole),
    };
    let exponent_ok = match exponent {
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
        None => true,
    };
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_are_typed_quoted_ones_are_strings() {
        let node = parse("a: 1\nb: '1'\nc: 1.5\nd: true\ne: ~\nf: hi\ng: 1e3\n").unwrap();
        let json = node.to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": 1, "b": "1", "c": 1.5, "d": true, "e": null, "f": "hi", "g": 1000.0})
        );
    }

    #[test]
    fn every_key_and_value_has_its_position() {
        let node = parse("name: x\nsteps:\n  - id: a\n    tool: t\n").unwrap();
        let map = node.as_map().unwrap();
        assert_eq!((map[1].0.pos.line, map[1].0.pos.col), (2, 1));
        let step = &map[1].1.as_seq().unwrap()[0];
        assert_eq!((step.pos.line, step.pos.col), (3, 5));
        let tool = &step.as_map().unwrap()[1];
        assert_eq!((tool.1.pos.line, tool.1.pos.col), (4, 11));
    }

    #[test]
    fn billion_laughs_is_refused_before_it_expands() {
        let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&doc).unwrap_err();
        assert!(
            err.message.contains("aliases are expanded"),
            "{}",
            err.message
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let doc: String = (0..10_000)
            .map(|i| format!("{}- \n", "  ".repeat(i)))
            .collect();
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("nest more than"), "{}", err.message);
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&flow).is_err());
    }

    #[test]
    fn aliases_cannot_stack_depth_past_the_limit() {
        let mut doc = String::from("a0: &a0 [[[[[[[[[[1]]]]]]]]]]\n");
        for i in 1..10 {
            doc.push_str(&format!("a{i}: &a{i} [[[[[[[[[*a{}]]]]]]]]]\n", i - 1));
        }
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("nest more than"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_syntax_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((err.pos.line, err.pos.col), (2, 1));
    }
}
