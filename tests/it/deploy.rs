//! The deployment files of `deploy/` against the binary they run: every option and variable they
//! set is one the binary has, the probes are its `healthcheck`, and the manifests ask for what
//! replicas need (two of them, non-root, a read-only root filesystem, secrets by reference).
//! Their schemas are checked offline by `scripts/deploy-check` (kubernetes-validate), which the
//! test command runs.

use std::collections::BTreeSet;
use std::path::Path;

use crate::harness::BIN;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(DEPLOY).join(rel))
        .unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

/// Everything `--help` says, for the top level and each subcommand used in deploy/.
fn help() -> String {
    let mut all = String::new();
    for args in [
        &["--help"][..],
        &["http", "--help"],
        &["healthcheck", "--help"],
    ] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env_clear()
            .output()
            .expect("run --help");
        assert!(out.status.success());
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// The words of `text` that start with `prefix` and go on with `[A-Za-z0-9_-]`.
fn words(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at..];
        let end = tail[prefix.len()..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(tail.len(), |e| e + prefix.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_option_and_variable_in_deploy_is_one_the_binary_has() {
    let help = help();
    let files = [
        read("compose.yaml"),
        read("Caddyfile"),
        read("k8s/deployment.yaml"),
    ];
    let mut checked = 0;
    for text in &files {
        for var in words(text, "PAYLINK_") {
            assert!(
                help.contains(&var),
                "{var} is not a variable of paylink-mcp"
            );
            checked += 1;
        }
        // The flags of paylink-mcp's own command lines (not Redis's or Caddy's).
        for line in text
            .lines()
            .filter(|l| l.contains("\"http\"") || l.contains("\"healthcheck\""))
        {
            for flag in words(line, "--") {
                assert!(
                    help.contains(&flag),
                    "{flag} is not an option of paylink-mcp"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} names found: is the scan broken?"
    );
}

#[test]
fn the_manifests_ask_for_what_replicas_need() {
    let deployment = read("k8s/deployment.yaml");
    for needed in [
        "kind: Deployment",
        "replicas: 2",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "--stateless",
        "readinessProbe:",
        "livenessProbe:",
        "requests:",
        "limits:",
    ] {
        assert!(
            deployment.contains(needed),
            "the Deployment lacks `{needed}`"
        );
    }
    // Both probes are the binary's own health check.
    assert_eq!(
        deployment
            .matches("[\"/usr/local/bin/paylink-mcp\", \"healthcheck\"")
            .count(),
        2
    );
    // The Redis URL and the operator key come from Secrets, by reference.
    for (var, secret) in [
        ("PAYLINK_STORE", "paylink-redis"),
        ("STREAM_API_KEY", "paylink-operator"),
    ] {
        let at = deployment
            .find(&format!("name: {var}\n"))
            .unwrap_or_else(|| panic!("{var} is not set"));
        let next = &deployment[at..at + 200];
        assert!(
            next.contains("secretKeyRef") && next.contains(secret),
            "{var} is not read from the {secret} Secret: {next}"
        );
    }
    let kinds: BTreeSet<String> = std::fs::read_dir(Path::new(DEPLOY).join("k8s"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .flat_map(|t| words(&t, "kind: ").into_iter().collect::<Vec<_>>())
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    ] {
        assert!(
            kinds.iter().any(|k| k.ends_with(kind)),
            "no {kind} in deploy/k8s: {kinds:?}"
        );
    }
}

#[test]
fn no_secret_is_written_in_deploy() {
    for rel in ["compose.yaml", "Caddyfile", "k8s/deployment.yaml"] {
        let text = read(rel);
        // Comments may show a command with a placeholder; what is configured may not hold one.
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for scheme in ["redis://", "rediss://"] {
                if let Some(at) = line.find(scheme) {
                    let authority = line[at + scheme.len()..]
                        .split(['/', ' ', '"', '\''])
                        .next()
                        .unwrap_or("");
                    assert!(
                        !authority.contains('@'),
                        "{rel}: credentials in a store URL: {line}"
                    );
                }
            }
            assert!(
                !line.contains("requirepass"),
                "{rel}: a Redis password: {line}"
            );
        }
    }
}
