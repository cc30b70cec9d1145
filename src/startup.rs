//! Start-up: turn the parsed configuration into a running server. No network call happens here
//! and no key format is checked: a wrong key shows up as a clear tool error, not a dead server.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::backend::sandbox::{SandboxBackend, coupon_summary};
use crate::backend::{Backend, BackendRules};
use crate::config::{Cli, Command, GlobalOpts, Secrets, choose_backend};
use crate::model::BackendKind;
use crate::secret::ApiKey;
use crate::server::{PaylinkServer, TenantSource};
use crate::tenant::Tenant;
use crate::tools::{ToolFilter, ToolSet};

/// The process entry point: parse, log, serve. Exit code 2 for configuration errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
                backend,
            });
            let server = PaylinkServer::new(
                tools,
                instructions(kind, Some(live), cli.global.allow_live),
                TenantSource::Fixed(tenant),
                cli.global.allow_live,
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            runtime.block_on(crate::transport::stdio::serve(server))
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
}

fn stdio_backend(
    kind: BackendKind,
    opts: &GlobalOpts,
    _secrets: &Secrets,
) -> Result<Arc<dyn Backend>, String> {
    match kind {
        BackendKind::Sandbox => Ok(Arc::new(SandboxBackend::new(opts.sandbox_max_links))),
        other => Err(format!(
            "the {} backend is not available in this build",
            other.as_str()
        )),
    }
}

/// What the model reads at `initialize`: what the tools do, which backend, whether it is live.
pub fn instructions(kind: BackendKind, live: Option<bool>, allow_live: bool) -> String {
    let money = match (kind, live) {
        (BackendKind::Sandbox, _) => "This is the embedded SANDBOX: nothing is charged, links are not real and live only in this server's memory.".to_owned(),
        (_, Some(true)) if allow_live => "This server talks to LIVE money: links you create can be paid for real. Confirm amounts with the user before creating.".to_owned(),
        (_, Some(true)) => "This server talks to LIVE money, and the operator has not allowed writes: create_payment_link will be refused (live_guard); reads work.".to_owned(),
        (_, Some(false)) => "This server uses a test/staging environment: no real money moves.".to_owned(),
        (_, None) => "Whether money is live depends on the caller's key; every result says `livemode`.".to_owned(),
    };
    let backend = match kind {
        BackendKind::Sandbox => format!(
            "Backend: sandbox (behaves like Stream). Seeded coupons: {}.",
            coupon_summary()
        ),
        BackendKind::Stream => "Backend: Stream (streampay.sa). Product and coupon ids are UUIDs; currencies SAR (default), USD, EUR, GBP, AED, BHD, KWD, OMR, QAR.".to_owned(),
        BackendKind::Stripe => "Backend: Stripe. Sell `price_...` ids (or `prod_...` ids for a product's default price).".to_owned(),
    };
    format!(
        "paylink-mcp creates and inspects payment links (hosted checkout pages). {backend} {money} \
Typical flow: list_products to find product ids, create_payment_link with items and an idempotency_key, \
share the returned `url`; get_payment_link and list_line_items to check a link. Amounts are exact Money objects \
{{amount_minor, amount, currency}}. Errors are JSON {{\"error\": {{kind, message, field, retry_safe}}}}: fix `field` on \
validation errors and only retry when retry_safe is true."
    )
}
