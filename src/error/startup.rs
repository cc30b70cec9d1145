//! The errors that stop the server before it serves: configuration the operator must fix.

/// Why the server cannot start: a configuration the operator must fix. `main` prints it and
/// exits with code 2; nothing has listened or called an upstream yet. Messages never hold a
/// secret: they name variables, files and options, never their values when those are keys.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartupError {
    /// A secret was given twice, as a variable and as a file.
    #[error("both {name} and {file_var} are set; set only one")]
    SecretTwice {
        name: &'static str,
        file_var: &'static str,
    },
    /// A `*_FILE` secret cannot be read.
    #[error("{file_var} names {path}, which cannot be read: {source}")]
    SecretUnreadable {
        file_var: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// A `*_FILE` secret is empty.
    #[error("{file_var} names {path}, which is empty")]
    SecretEmpty {
        file_var: &'static str,
        path: String,
    },
    /// Both upstream keys are set and no `--backend` says which to use.
    #[error(
        "both STREAM_API_KEY and STRIPE_API_KEY are set; choose one with --backend stream|stripe"
    )]
    TwoBackends,
    /// `--tools` names a tool this server does not have.
    #[error("unknown tool `{name}` in --tools; known tools: {known}")]
    UnknownTool { name: String, known: String },
    /// `--read-only` and `--tools` together leave nothing to serve.
    #[error("no tool is left enabled: --read-only hides every tool named in --tools")]
    NoToolLeft,
    /// A tool's schema could not be generated (a bug, caught at start-up rather than per call).
    #[error("tool schema: {0}")]
    Schema(String),
    /// An upstream base URL option is not an http(s) URL with a host.
    #[error("{option} `{value}` {reason}")]
    BaseUrl {
        option: &'static str,
        value: String,
        reason: String,
    },
    /// `STREAM_BRANCH_ID` is not a UUID.
    #[error("STREAM_BRANCH_ID `{0}` is not a UUID")]
    BranchId(String),
    /// `STRIPE_VERSION` is not a Stripe API version.
    #[error("STRIPE_VERSION `{value}` is not a Stripe API version such as {example}")]
    StripeVersion {
        value: String,
        example: &'static str,
    },
    /// A safety option (`--max-link-amount`, `--allowed-products`, the request-state key, ...)
    /// cannot be used as given; `option` names the flag or variable.
    #[error("{option}: {message}")]
    Safety {
        option: &'static str,
        message: String,
    },
    /// An OAuth-mode option is not usable (a URL that is not https off loopback, a scope name
    /// with spaces, ...).
    #[error("{option} `{value}` {reason}")]
    OAuthOption {
        option: &'static str,
        value: String,
        reason: String,
    },
    /// OAuth mode lacks an option it needs, or is combined with one it excludes.
    #[error("{0}")]
    OAuthMode(&'static str),
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The HTTP transport's configuration or listener (TLS files, host lists, access tokens,
    /// the bind address).
    #[error("{0}")]
    Http(String),
    /// A transport stopped with an error (the stdio pipes).
    #[error("{0}")]
    Transport(String),
    /// The shared store's configuration (`--store`, `PAYLINK_STORE`, `PAYLINK_STORE_FILE`); the
    /// message never holds the URL's password.
    #[error("{0}")]
    Store(String),
    /// A state start-up should never reach: a bug, reported rather than a panic.
    #[error("internal: {0}")]
    Internal(&'static str),
}
