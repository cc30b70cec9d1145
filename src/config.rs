//! Command line and environment: what the operator chose, parsed once at start-up.
//!
//! Every option has a `PAYLINK_<OPTION>` environment variable (shown in `--help`); options that
//! apply to every mode are global, accepted before or after the subcommand. Secrets are never
//! options: they come from `STREAM_API_KEY`/`STRIPE_API_KEY` or a `*_FILE` variable naming a file,
//! because a command line is visible to every user of the machine.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::factory::BackendSettings;
use crate::backend::sandbox::{SandboxLimits, SandboxPool};
use crate::backend::stripe;
use crate::domain::PageBytes;
use crate::error::StartupError;
use crate::idempotency::StoreLimits;
use crate::model::BackendKind;
use crate::secret::ApiKey;
use crate::tools::confirm::ConfirmSettings;
use crate::tools::limits::ToolLimits;
use crate::tools::safety::SpendRules;
use crate::upstream::UpstreamSettings;

#[cfg(test)]
mod documented;
pub(crate) mod http;
pub(crate) mod oauth;
pub(crate) mod safety;
pub(crate) use http::HttpOpts;
pub(crate) use safety::SafetyOpts;
pub(crate) mod store;

/// paylink-mcp: an MCP server that lets AI assistants create and inspect payment links on
/// Stream, Stripe, or an embedded sandbox.
#[derive(Debug, Parser)]
#[command(name = "paylink-mcp", version, about, long_about = None, after_help = ENV_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub global: GlobalOpts,
}

const ENV_HELP: &str = "Secrets (environment only, never flags):
  STREAM_API_KEY       Stream token, or `api-key:api-secret` (Base64-encoded by the server)
  STREAM_API_KEY_FILE  file holding the above
  STRIPE_API_KEY       Stripe secret or restricted key (sk_... / rk_...)
  STRIPE_API_KEY_FILE  file holding the above
  PAYLINK_REQUEST_STATE_KEY       key (32+ bytes) sealing 2026-07-28 confirmations; replicas share it
  PAYLINK_REQUEST_STATE_KEY_FILE  file holding the above
  PAYLINK_OAUTH_CLIENT_ID, PAYLINK_OAUTH_CLIENT_SECRET (or *_FILE)
                       OAuth mode's introspection client (with --oauth-introspection-url)
  PAYLINK_STORE        (http) the shared store's URL, when it holds a password (see --store)
  PAYLINK_STORE_FILE   file holding the above
  PAYLINK_OAUTH_FINGERPRINT_KEY (or *_FILE)
                       key (32+ bytes) of OAuth callers' log fingerprints; replicas share it
Logs go to stderr; filter them with PAYLINK_LOG (e.g. PAYLINK_LOG=debug).";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve MCP over stdin/stdout (the default).
    Stdio,
    /// Probe a running HTTP server's `/healthz`: exit 0 on 200, 1 otherwise; prints nothing on
    /// stdout. Meant for container health checks (the image has no curl or shell).
    Healthcheck(HealthcheckOpts),
    /// Serve MCP over streamable HTTP at `/mcp`; each caller brings its own key as a Bearer token.
    Http(Box<HttpOpts>),
}

/// Where the health check in a container image looks by default: the HTTP server on its
/// default port, over loopback (the probe runs inside the same container).
pub(crate) const DEFAULT_HEALTHCHECK_URL: &str = "http://127.0.0.1:8080/healthz";

/// Options of `paylink-mcp healthcheck`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HealthcheckOpts {
    /// The URL to GET; set it when the server listens on another port.
    #[arg(long, env = "PAYLINK_HEALTHCHECK_URL", default_value = DEFAULT_HEALTHCHECK_URL)]
    pub url: String,

    /// Give up after this many seconds (connect and answer together): a server that hangs is
    /// unhealthy, and the probe must end well before the container runtime's own timeout.
    #[arg(
        long,
        env = "PAYLINK_HEALTHCHECK_TIMEOUT_SECS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub timeout_secs: u64,
}

/// Which payments API to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The embedded sandbox: in memory, no network, no key.
    Sandbox,
    /// Stream (streampay.sa).
    Stream,
    /// Stripe.
    Stripe,
}

impl From<BackendChoice> for BackendKind {
    fn from(c: BackendChoice) -> Self {
        match c {
            BackendChoice::Sandbox => BackendKind::Sandbox,
            BackendChoice::Stream => BackendKind::Stream,
            BackendChoice::Stripe => BackendKind::Stripe,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Options of every mode.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalOpts {
    /// Payments API to use. Default: stream if only STREAM_API_KEY is set, stripe if only
    /// STRIPE_API_KEY is set, otherwise sandbox.
    #[arg(long, global = true, env = "PAYLINK_BACKEND", value_enum)]
    pub backend: Option<BackendChoice>,

    /// Only offer tools that do not write (get and list tools).
    #[arg(long, global = true, env = "PAYLINK_READ_ONLY", value_parser = BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub read_only: bool,

    /// Only offer these tools (comma-separated names).
    #[arg(long, global = true, env = "PAYLINK_TOOLS", value_delimiter = ',')]
    pub tools: Option<Vec<String>>,

    /// Allow writes that move real money (any Stream host but staging and loopback, any Stripe key but a test-mode one).
    #[arg(long, global = true, env = "PAYLINK_ALLOW_LIVE", value_parser = BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub allow_live: bool,

    /// Retries of a failed upstream read (and of writes that are provably safe to retry).
    #[arg(long, global = true, env = "PAYLINK_MAX_RETRIES", default_value_t = UpstreamSettings::DEFAULT.max_retries)]
    pub max_retries: u32,

    /// Overall deadline of one tool call, retries included, in seconds.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_REQUEST_DEADLINE_SECS",
        default_value_t = UpstreamSettings::DEFAULT.deadline.as_secs()
    )]
    pub request_deadline_secs: u64,

    /// Timeout for opening a connection to the upstream, in seconds.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_CONNECT_TIMEOUT_SECS",
        default_value_t = UpstreamSettings::DEFAULT.connect_timeout.as_secs()
    )]
    pub connect_timeout_secs: u64,

    /// Timeout of one upstream request attempt, in seconds.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_UPSTREAM_TIMEOUT_SECS",
        default_value_t = UpstreamSettings::DEFAULT.attempt_timeout.as_secs()
    )]
    pub upstream_timeout_secs: u64,

    /// Most bytes all upstream answers being read at once may hold: a quarter for their bodies,
    /// the rest for an upper bound of what decoding them allocates (0: no bound). A read that finds no room waits up to
    /// two seconds, then is refused (`rate_limited`, retry-safe); the answer to a write waits
    /// as long as the call's deadline allows. An answer larger than the whole budget is read
    /// alone.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_MAX_PARSE_BYTES",
        default_value_t = UpstreamSettings::DEFAULT.max_parse_bytes
    )]
    pub max_parse_bytes: usize,

    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Append one JSON line per write tool call (create_payment_link,
    /// update_payment_link_status) to this file, synced before the tool answers. A write whose
    /// line cannot be written fails (`internal`) rather than going unrecorded.
    #[arg(long, global = true, env = "PAYLINK_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// Most links one sandbox tenant may hold.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_SANDBOX_MAX_LINKS",
        default_value_t = crate::backend::sandbox::DEFAULT_MAX_LINKS
    )]
    pub sandbox_max_links: usize,

    /// Most bytes one sandbox tenant's links may hold (their strings' lengths plus a fixed
    /// overhead per link and per value). A create past it is refused (`rate_limited`).
    #[arg(
        long,
        global = true,
        env = "PAYLINK_SANDBOX_MAX_TENANT_BYTES",
        default_value_t = crate::backend::sandbox::DEFAULT_MAX_TENANT_BYTES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub sandbox_max_tenant_bytes: usize,

    /// Most bytes all sandbox tenants' links together may hold in this process. When reached,
    /// new links are refused for every tenant; no tenant's links are removed to make room.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_SANDBOX_MAX_BYTES",
        default_value_t = crate::backend::sandbox::DEFAULT_MAX_BYTES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub sandbox_max_bytes: usize,

    /// Most bytes the sandbox tenants brought by one client address may hold together (HTTP; a
    /// tenant counts against the address that brought its token first; 0: no share of its
    /// own). A create past it is refused (`rate_limited`), and only that address's.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_SANDBOX_MAX_CLIENT_BYTES",
        default_value_t = crate::backend::sandbox::DEFAULT_MAX_CLIENT_BYTES
    )]
    pub sandbox_max_client_bytes: usize,

    /// Most bytes of JSON in one page of a list answer; a page that would pass it ends early,
    /// with `has_more` and a cursor that continues after its last entry. Its first entry is
    /// always returned.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_MAX_PAGE_BYTES",
        default_value_t = crate::domain::PageBytes::DEFAULT,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(crate::domain::PageBytes::MIN as u64..)
    )]
    pub max_page_bytes: usize,

    /// Most entries (idempotency keys remembered) in the idempotency store.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_IDEMPOTENCY_MAX_ENTRIES",
        default_value_t = StoreLimits::DEFAULT.max_entries,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub idempotency_max_entries: usize,

    /// Most bytes of the idempotency store (stored results and bookkeeping).
    #[arg(
        long,
        global = true,
        env = "PAYLINK_IDEMPOTENCY_MAX_BYTES",
        default_value_t = StoreLimits::DEFAULT.max_bytes,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub idempotency_max_bytes: usize,

    /// Most idempotency entries of one tenant; its oldest finished one makes room.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_IDEMPOTENCY_MAX_PER_TENANT",
        default_value_t = StoreLimits::DEFAULT.max_per_tenant,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub idempotency_max_per_tenant: usize,

    /// Most bytes of one tenant's idempotency entries.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_IDEMPOTENCY_MAX_TENANT_BYTES",
        default_value_t = StoreLimits::DEFAULT.max_bytes_per_tenant,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub idempotency_max_tenant_bytes: usize,

    /// Most unknown outcomes (creates cancelled or unanswered) one tenant keeps for a repeat to
    /// look up; beyond it the oldest is dropped (logged, counted).
    #[arg(
        long,
        global = true,
        env = "PAYLINK_IDEMPOTENCY_MAX_UNKNOWN_PER_TENANT",
        default_value_t = StoreLimits::DEFAULT.max_unknown_per_tenant,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub idempotency_max_unknown_per_tenant: usize,

    /// Stream API base URL (production is live money; staging is https://staging.streampay.sa).
    #[arg(
        long,
        global = true,
        env = "STREAM_BASE_URL",
        default_value = crate::backend::stream::PRODUCTION_BASE_URL
    )]
    pub stream_base_url: String,

    /// Stream branch (UUID), sent as x-branch-id.
    #[arg(long, global = true, env = "STREAM_BRANCH_ID")]
    pub stream_branch_id: Option<String>,

    /// Stripe API base URL (a test double or proxy; live or test money is decided by the key).
    #[arg(
        long,
        global = true,
        env = "STRIPE_BASE_URL",
        default_value = crate::backend::stripe::DEFAULT_BASE_URL
    )]
    pub stripe_base_url: String,

    /// Stripe API version sent as Stripe-Version; pinned so the account's default cannot change
    /// the answers this server reads.
    #[arg(
        long,
        global = true,
        env = "STRIPE_VERSION",
        default_value = crate::backend::stripe::DEFAULT_API_VERSION
    )]
    pub stripe_version: String,

    /// Confirmation of writes, spend caps, allowed products.
    #[command(flatten)]
    pub safety: SafetyOpts,
}

/// Reads a secret from `NAME` or from the file named by `NAME_FILE`.
pub(crate) fn read_secret(
    name: &'static str,
    file_var: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ApiKey>, StartupError> {
    let direct = env(name).filter(|v| !v.is_empty());
    let file = env(file_var).filter(|v| !v.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(StartupError::SecretTwice { name, file_var }),
        (Some(v), None) => Ok(Some(ApiKey::new(v))),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path).map_err(|source| {
                StartupError::SecretUnreadable {
                    file_var,
                    path: path.display().to_string(),
                    source,
                }
            })?;
            let key = text.trim();
            if key.is_empty() {
                return Err(StartupError::SecretEmpty {
                    file_var,
                    path: path.display().to_string(),
                });
            }
            Ok(Some(ApiKey::new(key)))
        }
        (None, None) => Ok(None),
    }
}

/// The keys found in the environment.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    pub stream: Option<ApiKey>,
    pub stripe: Option<ApiKey>,
    /// OAuth mode's introspection client (`PAYLINK_OAUTH_CLIENT_ID`/`_SECRET`, or `_FILE`).
    pub oauth_client_id: Option<ApiKey>,
    pub oauth_client_secret: Option<ApiKey>,
    /// OAuth mode's key for callers' log fingerprints (`PAYLINK_OAUTH_FINGERPRINT_KEY`, or
    /// `_FILE`).
    pub oauth_fingerprint_key: Option<ApiKey>,
}

impl Secrets {
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, StartupError> {
        Ok(Secrets {
            stream: read_secret("STREAM_API_KEY", "STREAM_API_KEY_FILE", env)?,
            stripe: read_secret("STRIPE_API_KEY", "STRIPE_API_KEY_FILE", env)?,
            oauth_client_id: read_secret(
                "PAYLINK_OAUTH_CLIENT_ID",
                "PAYLINK_OAUTH_CLIENT_ID_FILE",
                env,
            )?,
            oauth_client_secret: read_secret(
                "PAYLINK_OAUTH_CLIENT_SECRET",
                "PAYLINK_OAUTH_CLIENT_SECRET_FILE",
                env,
            )?,
            oauth_fingerprint_key: read_secret(
                "PAYLINK_OAUTH_FINGERPRINT_KEY",
                "PAYLINK_OAUTH_FINGERPRINT_KEY_FILE",
                env,
            )?,
        })
    }

    /// The operator's key for `kind`'s upstream, if one is set.
    pub(crate) fn key_for(&self, kind: BackendKind) -> Option<&ApiKey> {
        match kind {
            BackendKind::Sandbox => None,
            BackendKind::Stream => self.stream.as_ref(),
            BackendKind::Stripe => self.stripe.as_ref(),
        }
    }
}

/// The backend to run: the explicit choice, or inferred from which key is present.
pub(crate) fn choose_backend(
    explicit: Option<BackendChoice>,
    secrets: &Secrets,
) -> Result<BackendKind, StartupError> {
    if let Some(choice) = explicit {
        return Ok(choice.into());
    }
    match (secrets.stream.is_some(), secrets.stripe.is_some()) {
        (true, true) => Err(StartupError::TwoBackends),
        (true, false) => Ok(BackendKind::Stream),
        (false, true) => Ok(BackendKind::Stripe),
        (false, false) => Ok(BackendKind::Sandbox),
    }
}

impl GlobalOpts {
    /// Upstream timeouts and retries.
    pub(crate) fn upstream_settings(&self) -> UpstreamSettings {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.max(1)),
            attempt_timeout: Duration::from_secs(self.upstream_timeout_secs.max(1)),
            deadline: Duration::from_secs(self.request_deadline_secs.max(1)),
            max_retries: self.max_retries,
            max_parse_bytes: self.max_parse_bytes,
            ..UpstreamSettings::default()
        }
    }

    /// What building `kind`'s backends needs, checked; `store` is the shared store, if any.
    pub(crate) fn backend_settings(
        &self,
        kind: BackendKind,
        store: Option<crate::store::Store>,
    ) -> Result<BackendSettings, StartupError> {
        Ok(BackendSettings {
            kind,
            upstream: self.upstream_settings(),
            sandbox: self.sandbox_limits(),
            // Only a Stripe server sends it: another backend does not refuse to start over it.
            stripe_version: if kind == BackendKind::Stripe {
                stripe::check_version(&self.stripe_version)?
            } else {
                self.stripe_version.clone()
            },
            store,
        })
    }

    /// The sandbox's bounds, with a new byte pool: called once per process; every sandbox tenant
    /// shares the pool of the clone it is built from.
    pub(crate) fn sandbox_limits(&self) -> SandboxLimits {
        SandboxLimits {
            max_links: self.sandbox_max_links,
            max_tenant_bytes: self.sandbox_max_tenant_bytes,
            pool: SandboxPool::with_client_share(
                self.sandbox_max_bytes,
                self.sandbox_max_client_bytes,
            ),
            client: None,
        }
    }

    /// The tool layer's bounds: the idempotency store's limits and a list page's byte cap.
    pub(crate) fn tool_limits(&self) -> ToolLimits {
        ToolLimits {
            idempotency: StoreLimits {
                max_entries: self.idempotency_max_entries,
                max_bytes: self.idempotency_max_bytes,
                max_per_tenant: self.idempotency_max_per_tenant,
                max_bytes_per_tenant: self.idempotency_max_tenant_bytes,
                max_unknown_per_tenant: self.idempotency_max_unknown_per_tenant,
                ..StoreLimits::default()
            },
            page_bytes: PageBytes::new(self.max_page_bytes),
        }
    }

    /// The write safety: confirmation settings (with the request-state key from the
    /// environment) and the spend rules, checked; daily budgets in `store` when replicas share
    /// one.
    pub(crate) fn write_safety(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        store: Option<&crate::store::Store>,
    ) -> Result<(ConfirmSettings, SpendRules), StartupError> {
        let key = read_secret(
            "PAYLINK_REQUEST_STATE_KEY",
            "PAYLINK_REQUEST_STATE_KEY_FILE",
            env,
        )?;
        Ok((
            self.safety.confirm_settings(key)?,
            self.safety.spend_rules(store)?,
        ))
    }

    /// The operator's base URL for `kind`'s upstream (the sandbox has none; it gets Stream's,
    /// which nothing calls), checked and normalized.
    pub(crate) fn base_url(&self, kind: BackendKind) -> Result<String, StartupError> {
        match kind {
            BackendKind::Stripe => check_base_url(&self.stripe_base_url, "STRIPE_BASE_URL"),
            _ => check_base_url(&self.stream_base_url, "STREAM_BASE_URL"),
        }
    }

    /// `STREAM_BRANCH_ID`, checked.
    pub(crate) fn branch_id(&self) -> Result<Option<String>, StartupError> {
        check_branch_id(self.stream_branch_id.as_deref())
    }
}

/// Checks an http(s) base URL given by the operator (or a caller's `X-Stream-Base-URL`), and
/// normalizes it: no trailing slash.
pub(crate) fn check_base_url(raw: &str, option: &'static str) -> Result<String, StartupError> {
    let refuse = |reason: String| StartupError::BaseUrl {
        option,
        value: raw.to_owned(),
        reason,
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| refuse(format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refuse("must be an http(s) URL with a host".into()));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Checks `STREAM_BRANCH_ID`: a UUID, normalized to its hyphenated lower-case form.
pub(crate) fn check_branch_id(raw: Option<&str>) -> Result<Option<String>, StartupError> {
    raw.map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            uuid::Uuid::try_parse(b)
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| StartupError::BranchId(b.to_owned()))
        })
        .transpose()
}

#[cfg(test)]
mod tests;
