//! Tool schemas in the JSON Schema subset every major function-calling model accepts.
//!
//! schemars writes correct 2020-12 schemas, but several of its spellings are refused or mangled
//! by some providers' tool dialects (Gemini's OpenAPI subset, for one) and cost tokens on every
//! `tools/list`:
//!
//! - `"type": ["string", "null"]` for an `Option`: an optional input is simply not required (a
//!   `null` sent anyway still reads as absent); an optional output is `anyOf` a type and `null`,
//!   because an output field that is `null` is present, not absent;
//! - `$ref`/`$defs` in inputs: definitions are inlined (ours are small and not recursive). An
//!   output schema keeps, in its own `$defs`, the definitions it uses more than once (the money
//!   object: a link's three amounts, a line item's two) and inlines the rest: outputs are read by
//!   clients that validate results, not by the model's function-calling dialect, and MCP
//!   resolves a `$ref` within the schema document it is in;
//! - `oneOf` of `const` for an enum: written as `enum`;
//! - integer `format`s (`int64`, `uint32`): dropped, the bounds say what matters;
//! - `$schema`: dropped, 2020-12 is MCP's default dialect.
//!
//! `additionalProperties: false` is kept: unknown fields are refused by name.

use rmcp::model::JsonObject;
use serde_json::{Map, Value};

/// An input schema, made portable.
pub(crate) fn portable_input(schema: &JsonObject) -> JsonObject {
    portable(schema, Nullable::Drop)
}

/// An output schema, made portable, with the definitions it uses more than once shared in its
/// `$defs` instead of repeated.
pub(crate) fn portable_output(schema: &JsonObject) -> JsonObject {
    let defs = definitions(schema);
    let mut uses = Map::new();
    count_uses(&Value::Object(schema.clone()), &defs, &mut uses, 0);
    let (shared, inlined): (Map<String, Value>, Map<String, Value>) = defs
        .into_iter()
        .partition(|(name, _)| uses.get(name).and_then(Value::as_u64).unwrap_or(0) > 1);
    let mut out = portable_with(schema, &inlined, Nullable::AnyOf);
    if !shared.is_empty() {
        let shared = shared
            .into_iter()
            .map(|(name, def)| {
                let mut def = def;
                rewrite(&mut def, &inlined, Nullable::AnyOf, 0);
                (name, def)
            })
            .collect();
        out.insert("$defs".into(), Value::Object(shared));
    }
    out
}

fn definitions(schema: &JsonObject) -> Map<String, Value> {
    schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// How many times each definition would appear in `value` with every `$ref` inlined.
fn count_uses(
    value: &Value,
    defs: &Map<String, Value>,
    uses: &mut Map<String, Value>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Array(items) => items
            .iter()
            .for_each(|v| count_uses(v, defs, uses, depth + 1)),
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$defs", _) => {}
                    ("$ref", Value::String(reference)) => {
                        let Some(name) = reference.strip_prefix("#/$defs/") else {
                            continue;
                        };
                        let seen = uses.get(name).and_then(Value::as_u64).unwrap_or(0);
                        uses.insert(name.to_owned(), Value::from(seen + 1));
                        if let Some(def) = defs.get(name) {
                            count_uses(def, defs, uses, depth + 1);
                        }
                    }
                    (_, child) => count_uses(child, defs, uses, depth + 1),
                }
            }
        }
        _ => {}
    }
}

#[derive(Clone, Copy)]
enum Nullable {
    /// Inputs: `null` is not advertised (omit the field instead).
    Drop,
    /// Outputs: `null` stays possible, as its own `anyOf` branch.
    AnyOf,
}

fn portable(schema: &JsonObject, nullable: Nullable) -> JsonObject {
    portable_with(schema, &definitions(schema), nullable)
}

/// `schema` without `$schema` and `$defs`, every `$ref` to one of `defs` inlined.
fn portable_with(schema: &JsonObject, defs: &Map<String, Value>, nullable: Nullable) -> JsonObject {
    let mut out = schema.clone();
    out.remove("$defs");
    out.remove("$schema");
    let mut value = Value::Object(out);
    rewrite(&mut value, defs, nullable, 0);
    match value {
        Value::Object(map) => map,
        // `rewrite` keeps an object an object.
        _ => JsonObject::new(),
    }
}

/// Deeper than any of our types: a guard against a recursive definition, which would otherwise
/// inline forever.
const MAX_DEPTH: usize = 32;

fn rewrite(value: &mut Value, defs: &Map<String, Value>, nullable: Nullable, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Array(items) => {
            for item in items {
                rewrite(item, defs, nullable, depth + 1);
            }
        }
        Value::Object(map) => {
            inline_ref(map, defs);
            for (key, child) in map.iter_mut() {
                match (key.as_str(), child) {
                    // A map from names to schemas: its keys are data (a field may be named
                    // `type`), its values schemas.
                    ("properties" | "patternProperties", Value::Object(props)) => {
                        for prop in props.values_mut() {
                            rewrite(prop, defs, nullable, depth + 1);
                        }
                    }
                    // Values, not schemas.
                    ("enum" | "const" | "default" | "required" | "examples", _) => {}
                    (_, child) => rewrite(child, defs, nullable, depth + 1),
                }
            }
            one_of_consts_to_enum(map);
            let integer = |t: &Value| t.as_str() == Some("integer");
            let is_integer = map.get("type").is_some_and(|t| {
                integer(t) || t.as_array().is_some_and(|types| types.iter().any(integer))
            });
            if is_integer {
                map.remove("format");
            }
            collapse_null(map, nullable);
        }
        _ => {}
    }
}

/// Replaces `{"$ref": "#/$defs/X", ...}` with X's schema, keeping the referring schema's own
/// keywords (a description, say) over the definition's.
fn inline_ref(map: &mut Map<String, Value>, defs: &Map<String, Value>) {
    let Some(Value::String(reference)) = map.get("$ref") else {
        return;
    };
    let Some(Value::Object(def)) = reference
        .strip_prefix("#/$defs/")
        .and_then(|name| defs.get(name))
    else {
        return;
    };
    let def = def.clone();
    map.remove("$ref");
    for (k, v) in def {
        map.entry(k).or_insert(v);
    }
}

/// `{"oneOf": [{"const": "a"}, {"const": "b"}]}` (schemars' spelling of a documented enum) as
/// `{"type": "string", "enum": ["a", "b"]}`.
fn one_of_consts_to_enum(map: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = map.get("oneOf") else {
        return;
    };
    let consts: Option<Vec<Value>> = branches
        .iter()
        .map(|b| b.get("const").filter(|c| c.is_string()).cloned())
        .collect();
    let Some(consts) = consts else { return };
    map.remove("oneOf");
    map.insert("type".into(), Value::String("string".into()));
    map.insert("enum".into(), Value::Array(consts));
}

/// Rewrites a nullable schema: `"type": [T, "null"]`, or `anyOf` of one schema and `{"type":
/// "null"}`.
fn collapse_null(map: &mut Map<String, Value>, nullable: Nullable) {
    if let Some(Value::Array(types)) = map.get("type") {
        let non_null: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        let had_null = non_null.len() < types.len();
        if let [single] = non_null.as_slice() {
            map.insert("type".into(), single.clone());
        }
        if had_null && matches!(nullable, Nullable::AnyOf) {
            // The type-specific keywords go with the typed branch.
            let description = map.remove("description");
            let typed = Value::Object(std::mem::take(map));
            map.insert(
                "anyOf".into(),
                Value::Array(vec![typed, serde_json::json!({"type": "null"})]),
            );
            if let Some(d) = description {
                map.insert("description".into(), d);
            }
        }
        return;
    }
    if let (Nullable::Drop, Some(Value::Array(branches))) = (nullable, map.get("anyOf")) {
        let is_null = |b: &Value| b.get("type").and_then(Value::as_str) == Some("null");
        let mut rest = branches.iter().filter(|b| !is_null(b));
        if let (Some(Value::Object(only)), None) = (rest.next(), rest.next())
            && branches.iter().any(is_null)
        {
            let only = only.clone();
            map.remove("anyOf");
            for (k, v) in only {
                map.entry(k).or_insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> JsonObject {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn inputs_lose_nulls_refs_formats_and_const_branches() {
        let schema = obj(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "limit": {"type": ["integer", "null"], "format": "int64", "minimum": 1},
                "status": {"anyOf": [{"$ref": "#/$defs/S"}, {"type": "null"}], "description": "d"},
                "items": {"type": "array", "items": {"$ref": "#/$defs/I"}}
            },
            "required": ["items"],
            "$defs": {
                "S": {"oneOf": [{"const": "a", "description": "A"}, {"const": "b"}]},
                "I": {"type": "object", "properties": {"q": {"type": "integer", "format": "uint32"}}}
            }
        }));
        let out = Value::Object(portable_input(&schema));
        assert_eq!(
            out,
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "limit": {"type": "integer", "minimum": 1},
                    "status": {"type": "string", "enum": ["a", "b"], "description": "d"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {"q": {"type": "integer"}}}}
                },
                "required": ["items"]
            })
        );
        let text = out.to_string();
        for gone in ["$ref", "$defs", "null", "format", "oneOf", "$schema"] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
    }

    #[test]
    fn outputs_keep_null_as_its_own_branch() {
        let schema = obj(json!({
            "type": "object",
            "properties": {
                "url": {"type": ["string", "null"], "description": "u", "maxLength": 9},
                "count": {"type": ["integer", "null"], "format": "uint32"}
            }
        }));
        let out = Value::Object(portable_output(&schema));
        assert_eq!(
            out["properties"]["url"],
            json!({"anyOf": [{"type": "string", "maxLength": 9}, {"type": "null"}], "description": "u"})
        );
        assert_eq!(
            out["properties"]["count"],
            json!({"anyOf": [{"type": "integer"}, {"type": "null"}]})
        );
    }

    #[test]
    fn outputs_share_what_they_use_more_than_once_and_inline_the_rest() {
        let schema = obj(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "data": {"type": "array", "items": {"$ref": "#/$defs/Link"}}
            },
            "$defs": {
                "Link": {"type": "object", "properties": {
                    "total": {"anyOf": [{"$ref": "#/$defs/Money"}, {"type": "null"}], "description": "t"},
                    "paid": {"$ref": "#/$defs/Money"},
                    "status": {"$ref": "#/$defs/Status"}
                }},
                "Money": {"type": "object", "properties": {"minor": {"type": "integer", "format": "int64"}}},
                "Status": {"oneOf": [{"const": "a"}, {"const": "b"}]}
            }
        }));
        let out = Value::Object(portable_output(&schema));
        assert_eq!(
            out,
            json!({
                "type": "object",
                "properties": {
                    "data": {"type": "array", "items": {"type": "object", "properties": {
                        "total": {"anyOf": [{"$ref": "#/$defs/Money"}, {"type": "null"}], "description": "t"},
                        "paid": {"$ref": "#/$defs/Money"},
                        "status": {"type": "string", "enum": ["a", "b"]}
                    }}}
                },
                "$defs": {"Money": {"type": "object", "properties": {"minor": {"type": "integer"}}}}
            })
        );
    }

    #[test]
    fn a_recursive_definition_stops_instead_of_looping() {
        let schema = obj(json!({
            "type": "object",
            "properties": {"n": {"$ref": "#/$defs/N"}},
            "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}
        }));
        let _ = portable_input(&schema);
        let _ = portable_output(&schema);
    }
}
