//! Tool definitions, snapshotted: every tool's `tools/list` entry (name, title, description,
//! annotations, input and output schema) as the real binary lists it, one checked-in file per
//! tool under `tests/snapshots/tools/`. A schema change is then a reviewed change of a file,
//! never an accident. The Stripe server prunes what Stripe cannot honour: the tools whose Stripe
//! definition differs are snapshotted again under `tests/snapshots/tools/stripe/`.
//!
//! After an intended change, regenerate with `PAYLINK_UPDATE_SNAPSHOTS=1 cargo test --test
//! schemas` and review the diff.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::Server;
use serde_json::Value;

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
