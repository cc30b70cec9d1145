//! Lenient argument decoding: every way arguments can be malformed becomes our own `validation`
//! envelope naming the field, never the SDK's plain-text error.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;

/// Decodes tool arguments into `T`, naming the offending field on failure.
pub fn decode<T: DeserializeOwned>(args: Option<&Map<String, Value>>) -> Result<T, Error> {
    // An absent `arguments` is an empty object: a tool without required fields still works.
    // Deserializing from the borrowed map avoids copying the whole argument tree first.
    let empty = Map::new();
    let map = args.unwrap_or(&empty);
    serde_path_to_error::deserialize(map).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let field = field_of(&path, &message);
        Error::validation(field, humanize(&message))
    })
}

/// serde_path_to_error's path already ends in an unknown field's name, but a missing field is
/// reported at its parent's path with the name only in the message, in backticks.
fn field_of(path: &str, message: &str) -> String {
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (path, named) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "arguments".to_owned(),
        (p, Some(name)) => format!("{p}.{name}"),
        (p, None) => p.to_owned(),
    };
    // A field whose name is empty (`{"": 1}`) still needs a field the caller can act on.
    let trimmed = field.trim_end_matches('.');
    if trimmed.is_empty() {
        "arguments".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn humanize(message: &str) -> String {
    if message.starts_with("unknown field") {
        // Keep serde's list of expected fields: it tells the model what it may send instead.
        format!("{message}; unknown fields are refused")
    } else if message.starts_with("missing field") {
        format!("{message}; it is required")
    } else {
        // Name JSON types, not Rust ones: the reader is a model that sent JSON.
        message
            .replace("expected i64", "expected an integer")
            .replace("expected u32", "expected an integer")
            .replace("expected a sequence", "expected an array")
            .replace("expected a map", "expected an object")
            .replace("expected a borrowed string", "expected a string")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        product_id: String,
        #[serde(default)]
        quantity: i64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Args {
        name: String,
        items: Vec<Item>,
    }

    fn err(v: Value) -> Error {
        decode::<Args>(v.as_object()).unwrap_err()
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        let e = err(
            serde_json::json!({"name": "x", "items": [{"product_id": "a", "quantity": "two"}]}),
        );
        assert_eq!(e.field(), Some("items[0].quantity"));
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = err(serde_json::json!({"name": "x", "items": [], "colour": "red"}));
        assert_eq!(e.field(), Some("colour"));
        let e = err(serde_json::json!({"items": []}));
        assert_eq!(e.field(), Some("name"));
        let e = err(serde_json::json!({"name": "x", "items": [{"quantity": 1}]}));
        assert_eq!(e.field(), Some("items[0].product_id"));
        let e = err(serde_json::json!({"name": "x", "items": [{"product_id": "a", "qty": 1}]}));
        assert_eq!(e.field(), Some("items[0].qty"));
    }

    #[test]
    fn an_unknown_field_with_an_empty_name_still_names_something() {
        let e = err(serde_json::json!({"name": "x", "items": [], "": 1}));
        assert_eq!(e.field(), Some("arguments"));
        let e = err(serde_json::json!({"name": "x", "items": [{"product_id": "a", "": 1}]}));
        assert_eq!(e.field(), Some("items[0]"));
    }

    #[test]
    fn absent_arguments_are_an_empty_object() {
        let e = decode::<Args>(None).unwrap_err();
        assert_eq!(e.field(), Some("name"));
    }
}
