//! The configuration as documented: `docs/configuration.md`'s tables and `.env.example` must list
//! exactly what clap accepts, with the same flags and defaults. Checked here because a table
//! written by hand drifts (`PAYLINK_HEALTHCHECK_TIMEOUT_SECS` once went missing from it).

use std::collections::BTreeMap;

use clap::CommandFactory;

use super::Cli;

/// One option as clap declares it.
#[derive(Debug)]
struct Declared {
    env: Option<String>,
    flag: Option<String>,
    defaults: Vec<String>,
}

/// Every option of every subcommand.
fn arguments() -> Vec<Declared> {
    fn walk(cmd: &clap::Command, out: &mut Vec<Declared>) {
        out.extend(cmd.get_arguments().map(|arg| {
            Declared {
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                flag: arg.get_long().map(|l| format!("--{l}")),
                defaults: arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
            }
        }));
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &mut out);
    out
}

/// The options with an environment variable, by variable.
fn declared(arguments: &[Declared]) -> BTreeMap<&str, &Declared> {
    arguments
        .iter()
        .filter_map(|a| a.env.as_deref().map(|env| (env, a)))
        .collect()
}

/// One row of a configuration table: its variables, its flags (none for `–`), its default
/// cell.
#[derive(Debug)]
struct Row {
    vars: Vec<String>,
    flags: Vec<String>,
    default: String,
}

fn rows(doc: &str) -> Vec<Row> {
    let code = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert!(cells.len() >= 4, "a row with fewer than 4 cells: {line}");
            Row {
                vars: code(cells[0]),
                flags: code(cells[1]),
                default: cells[2].to_owned(),
            }
        })
        .collect()
}

/// Variables the program reads itself rather than through clap: secrets (environment only)
/// and the log filter.
fn read_directly(var: &str) -> bool {
    let sources = [
        include_str!("../config.rs"),
        include_str!("../secret.rs"),
        include_str!("../telemetry.rs"),
        include_str!("safety.rs"),
        include_str!("oauth.rs"),
        include_str!("store.rs"),
        include_str!("../store/url.rs"),
    ];
    sources.iter().any(|s| s.contains(&format!("\"{var}\"")))
}

#[test]
fn the_configuration_table_lists_every_option_with_its_flag_and_default() {
    let doc = include_str!("../../docs/configuration.md");
    let table = rows(doc);
    let arguments = arguments();
    let declared = declared(&arguments);
    let flags: Vec<&str> = arguments.iter().filter_map(|a| a.flag.as_deref()).collect();
    let mut problems = Vec::new();

    for (env, option) in &declared {
        let Some(row) = table.iter().find(|r| r.vars.iter().any(|v| v == env)) else {
            problems.push(format!("{env} is not in docs/configuration.md"));
            continue;
        };
        let documented = match &option.flag {
            Some(flag) => row.flags.contains(flag),
            None => row.flags.is_empty(),
        };
        if !documented {
            problems.push(format!(
                "{env}: the table says flags {:?}, clap says {:?}",
                row.flags, option.flag
            ));
        }
        for default in &option.defaults {
            if !row.default.contains(default.as_str()) {
                problems.push(format!(
                    "{env}: the table's default `{}` does not show clap's `{default}`",
                    row.default
                ));
            }
        }
    }
    for row in &table {
        for var in &row.vars {
            if !declared.contains_key(var.as_str()) && !read_directly(var) {
                problems.push(format!(
                    "{var} is in docs/configuration.md but nothing reads it"
                ));
            }
        }
        for flag in &row.flags {
            if !flags.contains(&flag.as_str()) {
                problems.push(format!(
                    "{flag} is in docs/configuration.md but clap has no such flag"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn env_example_lists_every_variable_of_the_table() {
    let doc = include_str!("../../docs/configuration.md");
    let example = include_str!("../../.env.example");
    let listed: Vec<&str> = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    let mut problems = Vec::new();
    let table: Vec<String> = rows(doc).into_iter().flat_map(|r| r.vars).collect();
    for var in &table {
        if !listed.contains(&var.as_str()) {
            problems.push(format!("{var} is in the table but not in .env.example"));
        }
    }
    for var in &listed {
        if !table.iter().any(|t| t == var) {
            problems.push(format!("{var} is in .env.example but not in the table"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
