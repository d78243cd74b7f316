//! Scrubbing secret values out of what a task leaves behind.
//!
//! A task that may read a secret (its token has `secret:NAME`) may also echo it, encode it or
//! fail with it in the message. Before its output, error or progress is recorded or emitted,
//! every form of every such value — raw, base64 (standard and URL-safe, at any alignment),
//! URL-encoded (also as Python's `quote()` and JavaScript's `encodeURIComponent` leave some
//! characters), hex and JSON-escaped — is replaced by `[REDACTED]`. Encoded forms are also found
//! when whitespace breaks them up: base64 wrapped at 76 columns as coreutils `base64` prints it,
//! hex with a space between bytes as `od -t x1` prints it, or in groups as `xxd` does. Values shorter than
//! [`MIN_LEN`] bytes are not scrubbed: replacing every `a` in an output protects nothing.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::Value;

/// What a scrubbed value becomes.
pub const REDACTED: &str = "[REDACTED]";
/// Shorter secrets are left alone (they would match ordinary text everywhere).
pub const MIN_LEN: usize = 4;
/// The shortest encoded fragment worth replacing (a base64 core of a short secret at an odd
/// alignment can be a few characters only).
const MIN_FRAGMENT: usize = 6;

/// The forms of a set of secret values to look for, longest first.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    needles: Vec<String>,
}

impl Scrubber {
    pub fn new<I, V>(values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut needles = Vec::new();
        for value in values {
            let value = value.as_ref();
            if value.len() < MIN_LEN {
                continue;
            }
            forms(value, &mut needles);
        }
        needles.retain(|n| n.len() >= MIN_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Scrubber { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every form of every value replaced.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.needles.is_empty() {
            return Cow::Borrowed(text);
        }
        let spaced = text.bytes().any(|b| b.is_ascii_whitespace());
        if !spaced && !self.needles.iter().any(|n| text.contains(n.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = self.across_whitespace(text).into_owned();
        // Longest first, so a raw value inside a longer form is not half-replaced first; a
        // few passes catch a form that a replacement brought together.
        for _ in 0..3 {
            let before = out.len();
            for needle in &self.needles {
                if out.contains(needle.as_str()) {
                    out = out.replace(needle.as_str(), REDACTED);
                }
            }
            if out.len() == before {
                break;
            }
        }
        Cow::Owned(out)
    }

    /// `text` with every needle that appears once whitespace is removed (a wrapped or spaced
    /// encoding) replaced, whitespace inside the match included.
    fn across_whitespace<'a>(&self, text: &'a str) -> Cow<'a, str> {
        // The text without whitespace, and where each of its bytes was in `text`.
        let mut packed = String::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            if !c.is_ascii_whitespace() {
                packed.push(c);
                origin.extend((0..c.len_utf8()).map(|k| i + k));
            }
        }
        if packed.len() == text.len() {
            return Cow::Borrowed(text);
        }
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for needle in &self.needles {
            if needle.bytes().any(|b| b.is_ascii_whitespace()) {
                continue;
            }
            for (start, _) in packed.match_indices(needle.as_str()) {
                let end = start + needle.len();
                ranges.push((origin[start], origin[end - 1] + 1));
            }
        }
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in ranges {
            if end <= at {
                continue;
            }
            out.push_str(&text[at..start.max(at)]);
            out.push_str(REDACTED);
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// A JSON value with every string (and object key) scrubbed.
    pub fn value(&self, value: Value) -> Value {
        if self.needles.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => match self.text(&s) {
                Cow::Borrowed(_) => Value::String(s),
                Cow::Owned(o) => Value::String(o),
            },
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k).into_owned(), self.value(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

fn forms(value: &[u8], out: &mut Vec<String>) {
    let text = String::from_utf8_lossy(value).into_owned();
    // JSON-escaped, as serde writes it and as Python's `json.dumps` (ASCII only) does.
    let json = serde_json::to_string(&text).unwrap_or_default();
    out.push(json.trim_matches('"').to_string());
    out.push(ascii_json(&text));
    out.push(text.clone());
    // URL-encoded: every byte but the unreserved ones, in upper and lower case hex, and the
    // form encoding that writes a space as `+`.
    let upper = percent(value, true, b"");
    out.push(upper.replace("%20", "+"));
    out.push(percent(value, false, b""));
    out.push(upper);
    // Python's `urllib.parse.quote()` keeps `/`; JavaScript's `encodeURIComponent` keeps
    // `!'()*`.
    out.push(percent(value, true, b"/"));
    out.push(percent(value, true, b"!'()*"));
    out.push(hex::encode(value));
    out.push(hex::encode_upper(value));
    // Base64 at each of the three alignments the value can start at inside a longer blob:
    // only the characters that depend on the value alone are stable.
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        out.push(engine.encode(value));
        for shift in 0..3usize {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(value);
            let encoded = engine.encode(&bytes);
            let start = (shift * 8).div_ceil(6);
            let end = (bytes.len() * 8) / 6;
            if end > start && end - start >= MIN_FRAGMENT {
                out.push(encoded[start..end].to_string());
            }
        }
    }
}

/// Percent-encoding of every byte but the unreserved ones and `keep`.
fn percent(value: &[u8], upper: bool, keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn ascii_json(text: &str) -> String {
    let json = serde_json::to_string(text).unwrap_or_default();
    let inner = json.trim_matches('"');
    let mut out = String::with_capacity(inner.len());
    for c in inner.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "canary-S3cr3t/+ \"quoted\" ünï";

    fn encodings() -> Vec<String> {
        let b = SECRET.as_bytes();
        vec![
            SECRET.to_string(),
            base64::engine::general_purpose::STANDARD.encode(b),
            base64::engine::general_purpose::URL_SAFE.encode(b),
            hex::encode(b),
            hex::encode_upper(b),
            percent(b, true, b""),
            percent(b, true, b"").replace("%20", "+"),
            // Python: urllib.parse.quote(secret)
            percent(b, true, b"/"),
            // JavaScript: encodeURIComponent(secret)
            percent(b, true, b"!'()*"),
            // coreutils: printf %s "$secret$secret$secret" | base64 (wrapped at 76 columns)
            wrap(
                &base64::engine::general_purpose::STANDARD.encode(SECRET.repeat(3)),
                76,
            ),
            // od -A n -t x1: a space before each byte, 16 bytes a line
            b.chunks(16)
                .map(|line| line.iter().map(|x| format!(" {x:02x}")).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n"),
            // xxd -p wraps at 60 hex digits; plain xxd groups two bytes
            wrap(&hex::encode(b), 60),
            wrap(&hex::encode(b), 4).replace('\n', " "),
            serde_json::to_string(SECRET).unwrap_or_default(),
            ascii_json(SECRET),
        ]
    }

    fn wrap(text: &str, width: usize) -> String {
        text.as_bytes()
            .chunks(width)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What is left of a form once the scrubber ran: no run of 8 of its non-space characters.
    fn survives(form: &str, out: &str) -> bool {
        let packed_out: String = out.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let packed: Vec<char> = form.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        packed
            .windows(12)
            .any(|w| packed_out.contains(&w.iter().collect::<String>()))
    }

    #[test]
    fn every_form_is_replaced() {
        let scrub = Scrubber::new([SECRET]);
        for form in encodings() {
            let text = format!("before {form} after");
            let out = scrub.text(&text);
            assert!(!survives(&form, &out), "{form} survived in {out}");
            assert!(out.contains(REDACTED), "{out}");
            assert!(
                out.starts_with("before ") && out.ends_with(" after"),
                "{out}"
            );
        }
    }

    #[test]
    fn base64_inside_a_longer_blob_at_any_alignment() {
        let scrub = Scrubber::new([SECRET]);
        for prefix in ["", "x", "xy", "xyz"] {
            let blob = base64::engine::general_purpose::STANDARD
                .encode(format!("{prefix}{SECRET}tail").as_bytes());
            let core = {
                let mut bytes = vec![0u8; prefix.len() % 3];
                bytes.extend_from_slice(SECRET.as_bytes());
                let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
                enc[(prefix.len() % 3 * 8).div_ceil(6)..bytes.len() * 8 / 6].to_string()
            };
            assert!(blob.contains(&core));
            assert!(!scrub.text(&blob).contains(&core), "{prefix:?}");
        }
    }

    #[test]
    fn values_keys_and_nested_strings() {
        let scrub = Scrubber::new(["hunter2-secret"]);
        let out = scrub.value(json!({"a": ["x hunter2-secret y", 1], "hunter2-secret": true}));
        assert_eq!(out, json!({"a": ["x [REDACTED] y", 1], "[REDACTED]": true}));
        assert!(Scrubber::new(["abc"]).is_empty());
        assert_eq!(
            Scrubber::default().text("nothing to do"),
            Cow::Borrowed("nothing to do")
        );
    }
}
