//! Strict `application/x-www-form-urlencoded` parsing that keeps every
//! parameter, in order, repeated names included.
//!
//! Strict because the signature is computed over decoded values: a body whose
//! percent-encoding or UTF-8 is broken cannot be what Twilio signed, so it is
//! refused rather than decoded lossily.

use percent_encoding::percent_decode;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("invalid percent-encoding in parameter {index}")]
    BadPercentEncoding { index: usize },
    #[error("parameter {index} is not valid UTF-8")]
    InvalidUtf8 { index: usize },
}

/// Form parameters in the order they were sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormParams {
    pairs: Vec<(String, String)>,
}

impl FormParams {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            pairs: pairs.into_iter().collect(),
        }
    }

    /// Parses a form body (or a URL query string).
    pub fn parse(input: &[u8]) -> Result<Self, FormError> {
        let mut pairs = Vec::new();
        for (index, segment) in input.split(|&b| b == b'&').enumerate() {
            if segment.is_empty() {
                continue;
            }
            let (name, value) = match segment.iter().position(|&b| b == b'=') {
                Some(eq) => (&segment[..eq], &segment[eq + 1..]),
                None => (segment, &b""[..]),
            };
            pairs.push((decode(name, index)?, decode(value, index)?));
        }
        Ok(Self { pairs })
    }

    /// Serialises back to a form body; `parse(encode(p)) == p`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (name, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.extend(form_component(name));
            out.push('=');
            out.extend(form_component(value));
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The first value sent for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// How many times `name` was sent.
    pub fn count(&self, name: &str) -> usize {
        self.iter().filter(|(k, _)| *k == name).count()
    }

    /// The pairs in the order Twilio signs them: names by byte order, each
    /// name's distinct values by byte order.
    pub fn signing_order(&self) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self.iter().collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }

    /// A JSON object of every parameter: one string per name, or an array of
    /// strings (in the order sent) for a name sent more than once.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (name, value) in self.iter() {
            match object.get_mut(name) {
                None => {
                    object.insert(name.to_owned(), Value::String(value.to_owned()));
                }
                Some(Value::Array(values)) => values.push(Value::String(value.to_owned())),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(value.to_owned())]);
                }
            }
        }
        Value::Object(object)
    }
}

fn decode(raw: &[u8], index: usize) -> Result<String, FormError> {
    check_percent_escapes(raw).map_err(|()| FormError::BadPercentEncoding { index })?;
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&spaced).collect();
    String::from_utf8(bytes).map_err(|_| FormError::InvalidUtf8 { index })
}

fn check_percent_escapes(raw: &[u8]) -> Result<(), ()> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex_pair = raw.get(i + 1..i + 3).ok_or(())?;
            if !hex_pair.iter().all(u8::is_ascii_hexdigit) {
                return Err(());
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Encodes one name or value as browsers and Twilio do (space as `+`).
fn form_component(s: &str) -> impl Iterator<Item = char> + '_ {
    s.bytes().flat_map(|b| {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*');
        let chars: Vec<char> = if unreserved {
            vec![char::from(b)]
        } else if b == b' ' {
            vec!['+']
        } else {
            let hex = format!("%{b:02X}");
            hex.chars().collect()
        };
        chars
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_repeats_and_unknown_names() {
        let p = FormParams::parse(b"MediaUrl=a&Body=hi&MediaUrl=b&NewThing=1").unwrap();
        let names: Vec<&str> = p.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["MediaUrl", "Body", "MediaUrl", "NewThing"]);
        assert_eq!(p.count("MediaUrl"), 2);
        assert_eq!(p.get("MediaUrl"), Some("a"));
    }

    #[test]
    fn decodes_plus_percent_and_utf8() {
        let p = FormParams::parse(b"Body=h%C3%A9llo+%E2%9C%93&From=%2B1&Empty=&Bare").unwrap();
        assert_eq!(p.get("Body"), Some("héllo ✓"));
        assert_eq!(p.get("From"), Some("+1"));
        assert_eq!(p.get("Empty"), Some(""));
        assert_eq!(p.get("Bare"), Some(""));
    }

    #[test]
    fn refuses_broken_percent_encoding_and_invalid_utf8() {
        let cases: [(&[u8], FormError); 4] = [
            (b"A=1&B=%zz", FormError::BadPercentEncoding { index: 1 }),
            (b"A=%4", FormError::BadPercentEncoding { index: 0 }),
            (b"A=%FF%FE", FormError::InvalidUtf8 { index: 0 }),
            (b"A=\xff", FormError::InvalidUtf8 { index: 0 }),
        ];
        for (body, refusal) in cases {
            assert_eq!(FormParams::parse(body), Err(refusal), "{body:?}");
        }
    }

    #[test]
    fn encode_round_trips() {
        let p = FormParams::from_pairs([
            ("Body".to_owned(), "héllo ✓ a+b=c&d%".to_owned()),
            ("To".to_owned(), "whatsapp:+15558675310".to_owned()),
            ("To".to_owned(), String::new()),
        ]);
        assert_eq!(FormParams::parse(p.encode().as_bytes()), Ok(p));
    }

    #[test]
    fn signing_order_sorts_bytes_and_drops_identical_pairs() {
        let p = FormParams::parse(b"b=1&B=2&a=3&A=4&a=0&a=3").unwrap();
        assert_eq!(
            p.signing_order(),
            [("A", "4"), ("B", "2"), ("a", "0"), ("a", "3"), ("b", "1")]
        );
    }

    #[test]
    fn json_keeps_repeated_values_as_arrays() {
        let p = FormParams::parse(b"MediaUrl=a&To=x&MediaUrl=b&MediaUrl=c").unwrap();
        assert_eq!(
            p.to_json(),
            serde_json::json!({"MediaUrl": ["a", "b", "c"], "To": "x"})
        );
    }
}
