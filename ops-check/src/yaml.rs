//! Reading YAML the way docker compose and Kubernetes do, merge keys
//! (`<<: *anchor`) applied, into `serde_json::Value` so that every check walks
//! one kind of tree (Grafana's dashboard is JSON).
//!
//! Parsing and merge keys are serde-saphyr's: it is actively maintained,
//! applies `<<` by default (keys written in the mapping win, then earlier
//! merged mappings over later ones, as YAML 1.1 says) and rejects duplicate
//! keys. yaml-rust2 and saphyr parse but leave `<<` as an ordinary key;
//! serde_yaml_ng merges on request but is a little-maintained fork of the
//! archived serde_yaml on top of a C-to-Rust libyaml translation.

use crate::files::{read, relative};
use serde_json::Value;
use std::path::Path;

/// Every non-empty document of `text`; `origin` names it in the error.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Value>, String> {
    serde_saphyr::from_multiple::<Value>(text)
        .map_err(|e| format!("{origin} is not valid YAML: {e}"))
}

/// Every non-empty document of the file at `path`.
pub fn load(path: &Path) -> Result<Vec<Value>, String> {
    parse(&read(path)?, &relative(path))
}

/// A scalar as text; `None` for null, mappings and sequences.
pub fn scalar(node: &Value) -> Option<String> {
    match node {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The scalars of a sequence, or the one scalar.
pub fn strings(node: &Value) -> Vec<String> {
    match node {
        Value::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

/// The entries of a mapping (none for anything else).
pub fn entries(node: &Value) -> Vec<(String, &Value)> {
    node.as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v)).collect())
        .unwrap_or_default()
}

/// The entries of a mapping whose values are scalars, as text.
pub fn scalar_entries(node: &Value) -> Vec<(String, String)> {
    entries(node)
        .into_iter()
        .filter_map(|(k, v)| scalar(v).map(|v| (k, v)))
        .collect()
}

/// The items of a sequence (none for anything else).
pub fn items(node: &Value) -> impl Iterator<Item = &Value> {
    node.as_array().into_iter().flatten()
}

/// Whether the mapping has `key`, even with a null value.
pub fn has(node: &Value, key: &str) -> bool {
    node.get(key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keys_are_applied_with_yaml_precedence() {
        let text = "\
base: &base {a: 1, b: 1}
other: &other {b: 2, c: 2}
one:
  <<: *base
  a: own
many:
  <<: [*base, *other]
nested:
  env:
    <<: *base
    d: 4
";
        let docs = parse(text, "test.yml").unwrap();
        let doc = &docs[0];
        assert_eq!(scalar(&doc["one"]["a"]).as_deref(), Some("own"));
        assert_eq!(scalar(&doc["one"]["b"]).as_deref(), Some("1"));
        assert!(!has(&doc["one"], "<<"));
        // The first merged mapping wins over later ones.
        assert_eq!(scalar(&doc["many"]["b"]).as_deref(), Some("1"));
        assert_eq!(scalar(&doc["many"]["c"]).as_deref(), Some("2"));
        assert_eq!(scalar(&doc["nested"]["env"]["a"]).as_deref(), Some("1"));
        assert_eq!(scalar(&doc["nested"]["env"]["d"]).as_deref(), Some("4"));
    }

    #[test]
    fn documents_scalars_and_errors() {
        let docs = parse("a: 1\n---\n---\nb: [x, 2, true, null]\nc:\n", "t.yml").unwrap();
        assert_eq!(docs.len(), 2, "the empty document is skipped");
        assert_eq!(strings(&docs[1]["b"]), ["x", "2", "true"]);
        assert!(has(&docs[1], "c") && scalar(&docs[1]["c"]).is_none());
        assert!(!has(&docs[1], "d"));
        assert_eq!(scalar_entries(&docs[0]), [("a".to_owned(), "1".to_owned())]);

        let error = parse("a: [1, 2\n", "broken.yml").unwrap_err();
        assert!(error.starts_with("broken.yml is not valid YAML"), "{error}");
        let error = parse("a: 1\na: 2\n", "dup.yml").unwrap_err();
        assert!(error.starts_with("dup.yml is not valid YAML"), "{error}");
    }
}
