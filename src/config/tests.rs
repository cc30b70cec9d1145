//! Unit tests of the configuration: parsing, defaults, secrets, start-up refusals.
use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn backend_is_inferred_from_the_keys() {
    let s = Secrets::from_env(&env_of(&[])).unwrap();
    assert_eq!(choose_backend(None, &s).unwrap(), BackendKind::Sandbox);
    let s = Secrets::from_env(&env_of(&[("STREAM_API_KEY", "t")])).unwrap();
    assert_eq!(choose_backend(None, &s).unwrap(), BackendKind::Stream);
    let s = Secrets::from_env(&env_of(&[("STRIPE_API_KEY", "sk_test_x")])).unwrap();
    assert_eq!(choose_backend(None, &s).unwrap(), BackendKind::Stripe);
    let s =
        Secrets::from_env(&env_of(&[("STRIPE_API_KEY", "x"), ("STREAM_API_KEY", "y")])).unwrap();
    let e = choose_backend(None, &s).unwrap_err().to_string();
    assert!(e.contains("STREAM_API_KEY") && e.contains("STRIPE_API_KEY"));
    assert!(!e.contains('x') || !e.contains("=x"));
    assert_eq!(
        choose_backend(Some(BackendChoice::Sandbox), &s).unwrap(),
        BackendKind::Sandbox
    );
}

#[test]
fn secrets_come_from_a_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "sk_test_fromfile\n").unwrap();
    let p = path.to_str().unwrap();
    let s = Secrets::from_env(&env_of(&[("STRIPE_API_KEY_FILE", p)])).unwrap();
    assert_eq!(s.stripe.unwrap().expose(), "sk_test_fromfile");
    let e = Secrets::from_env(&env_of(&[
        ("STRIPE_API_KEY_FILE", p),
        ("STRIPE_API_KEY", "k"),
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("only one"));
    let e = Secrets::from_env(&env_of(&[("STREAM_API_KEY_FILE", "/nonexistent/k")])).unwrap_err();
    assert!(e.to_string().contains("cannot be read"));
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let a = Cli::try_parse_from(["paylink-mcp", "--read-only", "stdio"]).unwrap();
    let b = Cli::try_parse_from(["paylink-mcp", "stdio", "--read-only"]).unwrap();
    assert!(a.global.read_only && b.global.read_only);
    let c = Cli::try_parse_from([
        "paylink-mcp",
        "stdio",
        "--tools",
        "get_payment_link,list_products",
    ])
    .unwrap();
    assert_eq!(c.global.tools.unwrap().len(), 2);
}

#[test]
fn healthcheck_takes_a_url_and_a_timeout() {
    let cli = Cli::try_parse_from(["paylink-mcp", "healthcheck"]).unwrap();
    let Some(Command::Healthcheck(opts)) = cli.command else {
        panic!("healthcheck parses as the healthcheck command");
    };
    // The environment of the test process may set PAYLINK_HEALTHCHECK_*; only check the
    // explicit flags below for exact values.
    assert!(!opts.url.is_empty());
    let cli = Cli::try_parse_from([
        "paylink-mcp",
        "healthcheck",
        "--url",
        "http://127.0.0.1:9/healthz",
        "--timeout-secs",
        "1",
    ])
    .unwrap();
    let Some(Command::Healthcheck(opts)) = cli.command else {
        panic!("healthcheck parses as the healthcheck command");
    };
    assert_eq!(opts.url, "http://127.0.0.1:9/healthz");
    assert_eq!(opts.timeout_secs, 1);
    assert!(Cli::try_parse_from(["paylink-mcp", "healthcheck", "--timeout-secs", "0"]).is_err());
}

#[test]
fn the_defaults_of_the_options_are_the_defaults_of_the_limits() {
    let cli = Cli::parse_from(["paylink-mcp"]);
    assert_eq!(cli.global.tool_limits(), ToolLimits::default());
    let cli = Cli::parse_from([
        "paylink-mcp",
        "--max-page-bytes",
        "4096",
        "--idempotency-max-unknown-per-tenant",
        "7",
    ]);
    let limits = cli.global.tool_limits();
    assert_eq!(limits.page_bytes.get(), 4096);
    assert_eq!(limits.idempotency.max_unknown_per_tenant, 7);
}

#[test]
fn there_is_no_flag_for_a_key() {
    assert!(Cli::try_parse_from(["paylink-mcp", "--stream-api-key", "x"]).is_err());
    assert!(Cli::try_parse_from(["paylink-mcp", "--api-key", "x"]).is_err());
}
