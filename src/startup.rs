//! Start-up: turn the parsed configuration into a running server. Only `main` calls this module.
//!
//! No network call happens here and no upstream key is tried: a wrong key shows up as a clear
//! tool error, not a dead server. What is checked here (options, files, tool names) stops the
//! process with exit code 2 and a [`StartupError`] naming what to fix.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::backend::BackendRules;
use crate::backend::factory::{BackendFactory, BuildError};
use crate::backend::unconfigured::Unconfigured;
use crate::config::{Cli, Command, Secrets, choose_backend};
use crate::error::StartupError;
use crate::idempotency::{IdempotencyKeys, IdempotencyStore, LocalKeys, SharedKeys};
use crate::model::BackendKind;
use crate::oauth::{OAuthSecrets, OAuthSettings};
use crate::observability::audit::AuditLog;
use crate::secret::ApiKey;
use crate::server::{PaylinkServer, TenantSource, instructions};
use crate::tenant::Tenant;
use crate::tools::confirm::ConfirmSettings;
use crate::tools::routes::{ToolFilter, Tools};
use crate::tools::safety::SpendRules;
use crate::tools::toolbox::Toolbox;

/// The process entry point: parse, log, serve. Exit code 2 for configuration errors.
pub fn main() -> ExitCode {
    forget_empty_settings();
    let cli = Cli::parse();
    // The health probe reads no key and builds no backend: it must answer for the running server
    // even if this process's environment would not start one, and must never exit 2 (reserved by
    // Docker's HEALTHCHECK), so it leaves before any of that.
    if let Some(Command::Healthcheck(opts)) = &cli.command {
        return crate::healthcheck::main(opts);
    }
    crate::telemetry::init(cli.global.log_format);
    let env = |k: &str| std::env::var(k).ok();
    match run(cli, &env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("paylink-mcp: {error}");
            ExitCode::from(2)
        }
    }
}

/// An empty `PAYLINK_*`, `STREAM_*` or `STRIPE_*` variable means "not set" (as `.env.example`
/// and container runtimes write them), not "set to nothing", which clap would refuse.
fn forget_empty_settings() {
    let empty: Vec<String> = std::env::vars_os()
        .filter(|(_, v)| v.is_empty())
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            ["PAYLINK_", "STREAM_", "STRIPE_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    for name in empty {
        // SAFETY: called first thing in `main`, before any other thread exists, so no one can
        // be reading the environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
}

fn run(cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<(), StartupError> {
    let global = &cli.global;
    let secrets = Secrets::from_env(env)?;
    let kind = choose_backend(global.backend, &secrets)?;
    let rules = BackendRules::for_kind(kind);
    let tools = Tools::new(
        &rules,
        &ToolFilter {
            read_only: global.read_only,
            allow: global.tools.clone(),
        },
    )?;
    let audit = global.audit_log.clone().map(AuditLog::at_start_up);
    // Only the HTTP server has replicas to share state with; stdio serves one user from memory.
    let store = match &cli.command {
        Some(Command::Http(opts)) => opts.store.store(env)?,
        _ => None,
    };
    let (confirm, spend) = global.write_safety(env, store.as_ref())?;
    log_safety(&confirm, &spend);
    let mut limits = global.tool_limits();
    if let Some(Command::Http(opts)) = &cli.command {
        // A tenant's creates in flight are refused by the store past its cap: over HTTP the
        // gate's per-tenant in-flight limit must refuse first (see `idempotency`).
        let gate = opts.max_concurrent_per_tenant as usize;
        let cap = &mut limits.idempotency.max_in_flight_per_tenant;
        *cap = (*cap).max(gate);
    }
    let keys: Arc<dyn IdempotencyKeys> = match &store {
        Some(store) => Arc::new(SharedKeys::new(
            store.clone(),
            limits.idempotency,
            global.upstream_settings().attempt_timeout,
        )),
        None => Arc::new(LocalKeys(IdempotencyStore::new(limits.idempotency))),
    };
    let toolbox = Toolbox::new(rules, global.allow_live, audit, limits.page_bytes, keys)
        .with_safety(confirm, spend);
    let factory = BackendFactory::new(global.backend_settings(kind, store.clone())?);
    match cli.command.unwrap_or(Command::Stdio) {
        Command::Stdio => {
            let key = secrets.key_for(kind);
            let tenant = Arc::new(Tenant {
                fingerprint: match kind {
                    BackendKind::Sandbox => "stdio".to_owned(),
                    _ => key.map_or_else(|| "none".into(), ApiKey::fingerprint),
                },
                // One process, one user: the scope only has to be constant.
                scope: "stdio".to_owned(),
                backend: stdio_backend(&factory, global, key)?,
            });
            let live = tenant.backend.livemode();
            tracing::info!(
                backend = kind.as_str(),
                livemode = live,
                "serving MCP over stdio"
            );
            let server = PaylinkServer::new(
                tools,
                toolbox,
                // Without a key nothing is known about liveness; say so rather than guess.
                instructions(kind, key.map(|_| live), global.allow_live),
                TenantSource::Fixed(tenant),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(StartupError::Runtime)?;
            runtime
                .block_on(crate::transport::stdio::serve(server))
                .map_err(StartupError::Transport)
        }
        Command::Http(opts) => {
            // Over HTTP liveness depends on each caller's key; only the sandbox is known.
            let live = (kind == BackendKind::Sandbox).then_some(false);
            let server = PaylinkServer::new(
                tools,
                toolbox,
                instructions(kind, live, global.allow_live),
                TenantSource::PerRequest,
            );
            let oauth = OAuthSettings::check(
                &opts.oauth,
                OAuthSecrets {
                    client_id: secrets.oauth_client_id.as_ref(),
                    client_secret: secrets.oauth_client_secret.as_ref(),
                    fingerprint_key: secrets.oauth_fingerprint_key.as_ref(),
                },
                opts.access_tokens_file.is_some(),
            )?;
            let shared = crate::transport::http::Shared { oauth, store };
            crate::transport::http::run(kind, global, &opts, &secrets, server, factory, shared)
                .map_err(StartupError::Http)
        }
        // `main` runs the probe before any of the above; reaching here is a bug, not a panic.
        Command::Healthcheck(_) => Err(StartupError::Internal(
            "the health probe must run before start-up",
        )),
    }
}

/// What the write safety is, in the log once: an operator reading it knows what users will see.
fn log_safety(confirm: &ConfirmSettings, spend: &SpendRules) {
    tracing::info!(
        confirm_writes = ?confirm.policy,
        confirm_timeout_secs = confirm.timeout.as_secs(),
        caps = !spend.caps.is_empty(),
        allowed_products = spend.allowed.as_ref().map(|a| a.len()),
        "write safety"
    );
}

/// The stdio user's backend. Without a usable key the server still starts, and every call
/// explains what the operator must set: Claude Desktop then shows the model a clear error
/// instead of a server that silently did not start.
fn stdio_backend(
    factory: &BackendFactory,
    global: &crate::config::GlobalOpts,
    key: Option<&ApiKey>,
) -> Result<Arc<dyn crate::backend::Backend>, StartupError> {
    let kind = factory.kind();
    if kind == BackendKind::Sandbox {
        return factory
            .backend("stdio", None, "", None)
            .map_err(|_| StartupError::Internal("the sandbox backend could not be built"));
    }
    let base = global.base_url(kind)?;
    let branch = match kind {
        BackendKind::Stream => global.branch_id()?,
        _ => None,
    };
    let Some(key) = key else {
        let (name, var) = match kind {
            BackendKind::Stripe => ("Stripe", "STRIPE_API_KEY"),
            _ => ("Stream", "STREAM_API_KEY"),
        };
        return Ok(Arc::new(Unconfigured::new(
            kind,
            format!(
                "no {name} key is configured: set {var} (or {var}_FILE) in the server's environment and restart it"
            ),
        )));
    };
    Ok(
        match factory.backend("stdio", Some(key), &base, branch.as_deref()) {
            Ok(backend) => backend,
            Err(BuildError::Key(message) | BuildError::Unavailable(message)) => {
                Arc::new(Unconfigured::new(kind, message))
            }
        },
    )
}
