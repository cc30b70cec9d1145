//! Tool definitions, snapshotted: every tool's `tools/list` entry (name, title, description,
//! annotations, input and output schema) as the real binary lists it, one checked-in file per
//! tool under `tests/snapshots/tools/`. A schema change is then a reviewed change of a file,
//! never an accident. The Stripe server prunes what Stripe cannot honour: the tools whose Stripe
//! definition differs are snapshotted again under `tests/snapshots/tools/stripe/`.
//!
//! After an intended change, regenerate with `PAYLINK_UPDATE_SNAPSHOTS=1 cargo test --test it
//! schemas::` and review the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::harness::stdio::Server;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/tools");

/// Every listed tool, as JSON, by name.
async fn listed(args: &[&str], env: &[(&str, &str)]) -> BTreeMap<String, Value> {
    let server = Server::start(args, env).await;
    server
        .tools()
        .await
        .into_iter()
        .map(|t| {
            (
                t.name.to_string(),
                serde_json::to_value(&t).expect("a tool serializes"),
            )
        })
        .collect()
}

/// Compares `tools` with the files in `dir` (or writes them when updating). Returns the
/// differences, so that one run reports every changed tool.
fn compare(dir: &PathBuf, tools: &BTreeMap<String, &Value>) -> Vec<String> {
    let update = std::env::var_os("PAYLINK_UPDATE_SNAPSHOTS").is_some();
    let mut problems = Vec::new();
    for (name, tool) in tools {
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(tool).expect("JSON") + "\n";
        if update {
            std::fs::create_dir_all(dir).expect("snapshot dir");
            std::fs::write(&path, &text).expect("write snapshot");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == text => {}
            Ok(want) => problems.push(format!(
                "{} differs from the listed definition:\n--- snapshot\n{want}\n+++ listed\n{text}",
                path.display()
            )),
            Err(_) => problems.push(format!("{} is missing", path.display())),
        }
    }
    if !update && let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".json")
                && !tools.contains_key(name)
            {
                problems.push(format!("{file} is a snapshot of a tool that is not listed"));
            }
        }
    }
    problems
}

#[tokio::test]
async fn every_tool_definition_matches_its_snapshot() {
    let sandbox = listed(&[], &[]).await;
    let stream = listed(&["--backend", "stream"], &[]).await;
    assert_eq!(
        sandbox, stream,
        "the sandbox behaves like Stream: same definitions"
    );
    let stripe = listed(&["--backend", "stripe"], &[]).await;
    assert_eq!(
        sandbox.keys().collect::<Vec<_>>(),
        stripe.keys().collect::<Vec<_>>()
    );
    let differing: BTreeMap<String, &Value> = stripe
        .iter()
        .filter(|(name, tool)| sandbox.get(*name) != Some(*tool))
        .map(|(name, tool)| (name.clone(), tool))
        .collect();
    assert_eq!(
        differing.keys().collect::<Vec<_>>(),
        ["create_payment_link"],
        "only create_payment_link is pruned on Stripe"
    );

    let mut problems = compare(
        &PathBuf::from(DIR),
        &sandbox.iter().map(|(k, v)| (k.clone(), v)).collect(),
    );
    problems.extend(compare(&PathBuf::from(DIR).join("stripe"), &differing));
    assert!(
        problems.is_empty(),
        "tool definitions changed (regenerate with PAYLINK_UPDATE_SNAPSHOTS=1 and review):\n{}",
        problems.join("\n")
    );
}

/// What a model reads of every tool on every `tools/list` (name, title, description, input
/// schema) costs tokens in every conversation: together at most 8 KB of compact JSON.
const TOOL_TEXT_BUDGET: usize = 8 * 1024;

#[tokio::test]
async fn the_tool_definitions_fit_the_token_budget() {
    for args in [&[][..], &["--backend", "stripe"][..]] {
        let tools = listed(args, &[]).await;
        let read: Vec<Value> = tools
            .values()
            .map(|t| {
                serde_json::json!({
                    "name": t["name"],
                    "title": t["title"],
                    "description": t["description"],
                    "inputSchema": t["inputSchema"],
                })
            })
            .collect();
        let size = serde_json::to_string(&read).expect("JSON").len();
        assert!(
            size <= TOOL_TEXT_BUDGET,
            "{args:?}: the tools' names, titles, descriptions and input schemas take {size} bytes, over {TOOL_TEXT_BUDGET}"
        );
    }
}

/// Every keyword some function-calling dialect refuses, anywhere in a schema.
fn unportable(schema: &Value, path: &str, input: bool, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                let here = format!("{path}.{key}");
                match key.as_str() {
                    // An output schema may share a definition it uses more than once, in its own
                    // `$defs` (the portability rules are about inputs, which models read); every
                    // reference must then resolve within the document (see `resolves`).
                    "$defs" if !input && path == "outputSchema" => {
                        for (name, def) in value.as_object().into_iter().flatten() {
                            unportable(def, &format!("{here}.{name}"), input, out);
                        }
                    }
                    "$ref"
                        if !input && value.as_str().is_some_and(|r| r.starts_with("#/$defs/")) => {}
                    "$ref" | "$defs" | "definitions" => out.push(format!("{here}: a reference")),
                    "type" if value.is_array() => out.push(format!("{here}: a type array")),
                    "oneOf" => out.push(format!("{here}: oneOf (enums are `enum`)")),
                    "format" if map.get("type") == Some(&Value::from("integer")) => {
                        out.push(format!("{here}: an integer format"))
                    }
                    "anyOf" if input => out.push(format!("{here}: anyOf in an input")),
                    // Property names and values are data.
                    "properties" => {
                        for (name, prop) in value.as_object().into_iter().flatten() {
                            unportable(prop, &format!("{here}.{name}"), input, out);
                        }
                    }
                    "enum" | "const" | "default" | "required" => {}
                    _ => unportable(value, &here, input, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                unportable(item, &format!("{path}[{i}]"), input, out);
            }
        }
        _ => {}
    }
}

/// Every `$ref` in `schema` names a definition in `root`'s `$defs`.
fn resolves(schema: &Value, root: &Value, tool: &str) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "$ref" {
                    let name = value.as_str().and_then(|r| r.strip_prefix("#/$defs/"));
                    assert!(
                        name.is_some_and(|n| root["$defs"].get(n).is_some()),
                        "{tool}: {value} does not resolve within its outputSchema"
                    );
                } else {
                    resolves(value, root, tool);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| resolves(v, root, tool)),
        _ => {}
    }
}

#[tokio::test]
async fn every_schema_is_in_the_portable_subset() {
    for args in [&[][..], &["--backend", "stripe"][..]] {
        for (name, tool) in listed(args, &[]).await {
            let mut found = Vec::new();
            unportable(&tool["inputSchema"], "inputSchema", true, &mut found);
            unportable(&tool["outputSchema"], "outputSchema", false, &mut found);
            assert!(found.is_empty(), "{name}: {found:#?}");
            let output = &tool["outputSchema"];
            resolves(output, output, &name);
            assert_eq!(
                tool["inputSchema"]["additionalProperties"], false,
                "{name}: unknown inputs are refused"
            );
        }
    }
}
