//! Start-up: turn the parsed configuration into a running server. No network call happens here
//! and no key format is checked: a wrong key shows up as a clear tool error, not a dead server.

use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use clap::Parser;

use crate::backend::sandbox::{SandboxBackend, SandboxLimits, coupon_summary};
use crate::backend::stream::StreamBackend;
use crate::backend::stripe::StripeBackend;
use crate::backend::unconfigured::Unconfigured;
use crate::backend::{Backend, BackendRules};
use crate::config::{Cli, Command, GlobalOpts, Secrets, choose_backend};
use crate::model::BackendKind;
use crate::observability::Observer;
use crate::secret::ApiKey;
use crate::server::{PaylinkServer, TenantSource};
use crate::tenant::Tenant;
use crate::tools::{ToolFilter, ToolLimits, ToolSet};
use crate::upstream::{UpstreamClient, UpstreamSettings};

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
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("paylink-mcp: {message}");
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

fn run(cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    let secrets = Secrets::from_env(env)?;
    let kind = choose_backend(cli.global.backend, &secrets)?;
    let tools = build_tools(kind, &cli.global)?;
    match cli.command.unwrap_or(Command::Stdio) {
        Command::Stdio => {
            let backend = stdio_backend(kind, &cli.global, &secrets)?;
            let live = backend.livemode();
            tracing::info!(
                backend = kind.as_str(),
                livemode = live,
                "serving MCP over stdio"
            );
            let tenant = Arc::new(Tenant {
                fingerprint: match kind {
                    BackendKind::Sandbox => "stdio".to_owned(),
                    _ => key_for(kind, &secrets).map_or_else(|| "none".into(), ApiKey::fingerprint),
                },
                // One process, one user: the scope only has to be constant.
                scope: "stdio".to_owned(),
                backend,
            });
            let server = PaylinkServer::new(
                tools,
                // Without a key nothing is known about liveness; say so rather than guess.
                instructions(
                    kind,
                    key_for(kind, &secrets).map(|_| live),
                    cli.global.allow_live,
                ),
                TenantSource::Fixed(tenant),
                cli.global.allow_live,
                Observer::from_options(&cli.global),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            runtime.block_on(crate::transport::stdio::serve(server))
        }
        Command::Http(opts) => {
            crate::transport::http::run(kind, &cli.global, &opts, &secrets, tools)
        }
        // `main` runs the probe before any of the above; reaching here is a bug, not a panic.
        Command::Healthcheck(_) => {
            Err("internal: the health probe must run before start-up".into())
        }
    }
}

fn key_for(kind: BackendKind, secrets: &Secrets) -> Option<&ApiKey> {
    match kind {
        BackendKind::Sandbox => None,
        BackendKind::Stream => secrets.stream.as_ref(),
        BackendKind::Stripe => secrets.stripe.as_ref(),
    }
}

/// The tool list for `kind`, filtered as the operator asked.
pub fn build_tools(kind: BackendKind, opts: &GlobalOpts) -> Result<ToolSet, String> {
    ToolSet::new(
        BackendRules::for_kind(kind),
        &ToolFilter {
            read_only: opts.read_only,
            allow: opts.tools.clone(),
        },
    )
    .map(|tools| tools.with_limits(ToolLimits::from_opts(opts)))
}

/// Upstream timeouts and retries from the options.
pub fn upstream_settings(opts: &GlobalOpts) -> UpstreamSettings {
    UpstreamSettings {
        connect_timeout: Duration::from_secs(opts.connect_timeout_secs.max(1)),
        attempt_timeout: Duration::from_secs(opts.upstream_timeout_secs.max(1)),
        deadline: Duration::from_secs(opts.request_deadline_secs.max(1)),
        max_retries: opts.max_retries,
        ..UpstreamSettings::default()
    }
}

/// Checks an http(s) base URL given by the operator.
pub fn check_base_url(raw: &str, option: &str) -> Result<String, String> {
    let url =
        url::Url::parse(raw.trim()).map_err(|e| format!("{option} `{raw}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{option} `{raw}` must be an http(s) URL with a host"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Checks `STREAM_BRANCH_ID`.
pub fn check_branch_id(raw: Option<&str>) -> Result<Option<String>, String> {
    raw.map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            uuid::Uuid::try_parse(b)
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| format!("STREAM_BRANCH_ID `{b}` is not a UUID"))
        })
        .transpose()
}

fn stdio_backend(
    kind: BackendKind,
    opts: &GlobalOpts,
    secrets: &Secrets,
) -> Result<Arc<dyn Backend>, String> {
    match kind {
        BackendKind::Sandbox => Ok(Arc::new(SandboxBackend::with_limits(
            SandboxLimits::from_opts(opts),
        ))),
        BackendKind::Stream => {
            let base = check_base_url(&opts.stream_base_url, "STREAM_BASE_URL")?;
            let branch = check_branch_id(opts.stream_branch_id.as_deref())?;
            let Some(key) = &secrets.stream else {
                return Ok(Arc::new(Unconfigured::new(
                    kind,
                    "no Stream key is configured: set STREAM_API_KEY (or STREAM_API_KEY_FILE) in the server's environment and restart it",
                )));
            };
            let client = Arc::new(UpstreamClient::new(&base, upstream_settings(opts)));
            Ok(match StreamBackend::new(client, key, branch.as_deref()) {
                Ok(b) => Arc::new(b),
                Err(e) => Arc::new(Unconfigured::new(kind, e.to_string())),
            })
        }
        BackendKind::Stripe => {
            let base = check_base_url(&opts.stripe_base_url, "STRIPE_BASE_URL")?;
            let version = crate::backend::stripe::check_version(&opts.stripe_version)?;
            let Some(key) = &secrets.stripe else {
                return Ok(Arc::new(Unconfigured::new(
                    kind,
                    "no Stripe key is configured: set STRIPE_API_KEY (or STRIPE_API_KEY_FILE) in the server's environment and restart it",
                )));
            };
            let client = Arc::new(UpstreamClient::new(&base, upstream_settings(opts)));
            Ok(match StripeBackend::new(client, key, &version) {
                Ok(b) => Arc::new(b),
                Err(e) => Arc::new(Unconfigured::new(kind, e.to_string())),
            })
        }
    }
}

/// What the model reads at `initialize`: what the tools do, which backend, whether it is live.
pub fn instructions(kind: BackendKind, live: Option<bool>, allow_live: bool) -> String {
    let money = match (kind, live) {
        (BackendKind::Sandbox, _) => "This is the embedded SANDBOX: nothing is charged, links are not real and live only in this server's memory.".to_owned(),
        (_, Some(true)) if allow_live => "This server talks to LIVE money: links you create can be paid for real. Confirm amounts with the user before creating.".to_owned(),
        (_, Some(true)) => "This server talks to LIVE money, and the operator has not allowed writes: create_payment_link will be refused (live_guard); reads work.".to_owned(),
        (_, Some(false)) => "This server uses a test/staging environment: no real money moves.".to_owned(),
        (_, None) => "Whether money is live depends on the key in use; every result says `livemode`.".to_owned(),
    };
    let backend = match kind {
        BackendKind::Sandbox => format!(
            "Backend: sandbox (behaves like Stream). Seeded coupons: {}.",
            coupon_summary()
        ),
        BackendKind::Stream => "Backend: Stream (streampay.sa). Product and coupon ids are UUIDs; currencies SAR (default), USD, EUR, GBP, AED, BHD, KWD, OMR, QAR.".to_owned(),
        BackendKind::Stripe => format!(
            "Backend: Stripe{}. Sell `price_...` ids (or `prod_...` ids for a product's default price).",
            match live {
                Some(true) => ", with a LIVE key (sk_live_/rk_live_)",
                Some(false) => ", with a test-mode key",
                None => "",
            }
        ),
    };
    format!(
        "paylink-mcp creates and inspects payment links (hosted checkout pages). {backend} {money} \
Typical flow: list_products to find product ids, create_payment_link with items and an idempotency_key, \
share the returned `url`; get_payment_link and list_line_items to check a link. Amounts are exact Money objects \
{{amount_minor, amount, currency}}. Errors are JSON {{\"error\": {{kind, message, field, retry_safe}}}}: fix `field` on \
validation errors and only retry when retry_safe is true."
    )
}
