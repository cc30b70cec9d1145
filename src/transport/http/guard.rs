//! DNS-rebinding protection: the `Host` allow-list and `Origin` validation, checked before
//! anything else on `/mcp`.
//!
//! A web page on another site cannot read answers from a server on 127.0.0.1 unless it rebinds
//! its own name to 127.0.0.1; its requests then still carry its own name in `Host` (refused
//! here) and, from a browser, its own `Origin` (refused too). Clients that are not browsers send
//! no `Origin` and pass.

use http::HeaderMap;

/// One allowed `Host`: a name, with a port or any port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    host: String,
    port: Option<u16>,
}

/// One allowed `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginRule {
    /// The literal `null` origin (sandboxed frames, files).
    Null,
    Tuple {
        scheme: String,
        host: String,
        /// `None`: any port (`:*`).
        port: Option<u16>,
    },
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Host,
    Origin,
}

/// The two allow-lists, parsed once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct HostGuard {
    hosts: Vec<HostRule>,
    origins: Vec<OriginRule>,
}

/// Lower-case, without IPv6 brackets: how hosts are compared.
fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

fn parse_authority(raw: &str) -> Option<(String, Option<u16>)> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if let Ok(authority) = raw.parse::<http::uri::Authority>() {
        if authority.as_str().contains('@') {
            return None;
        }
        return Some((normalize_host(authority.host()), authority.port_u16()));
    }
    // A bare IPv6 address (`::1`) is not an authority; accept it as a host name.
    raw.parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| (ip.to_string(), None))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Parses an origin (`scheme://host[:port]`), giving the scheme's default port when absent.
fn parse_origin(raw: &str) -> Option<(String, String, Option<u16>)> {
    let uri = raw.trim().parse::<http::Uri>().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return None;
    }
    let port = authority.port_u16().or_else(|| default_port(&scheme));
    Some((scheme, normalize_host(authority.host()), port))
}

impl HostGuard {
    /// Parses the operator's lists; a malformed entry is a start-up error naming it.
    pub(crate) fn new(hosts: &[String], origins: &[String]) -> Result<Self, String> {
        let hosts = hosts
            .iter()
            .map(|h| {
                parse_authority(h)
                    .map(|(host, port)| HostRule { host, port })
                    .ok_or_else(|| format!("--allowed-host `{h}` is not a host name or host:port"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            return Err("--allowed-host: at least one host name is required".into());
        }
        let origins = origins
            .iter()
            .map(|o| {
                let trimmed = o.trim();
                if trimmed.eq_ignore_ascii_case("null") {
                    return Ok(OriginRule::Null);
                }
                let (base, any_port) = match trimmed.strip_suffix(":*") {
                    Some(base) => (base, true),
                    None => (trimmed, false),
                };
                let bad = || format!("--allowed-origin `{o}` is not scheme://host[:port|:*]");
                let (scheme, host, port) = parse_origin(base).ok_or_else(bad)?;
                if any_port
                    && base
                        .parse::<http::Uri>()
                        .ok()
                        .and_then(|u| u.port_u16())
                        .is_some()
                {
                    return Err(bad());
                }
                Ok(OriginRule::Tuple {
                    scheme,
                    host,
                    port: if any_port { None } else { port },
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostGuard { hosts, origins })
    }

    /// Checks `Host` (or the request target's authority when there is no `Host`) and `Origin`.
    pub(crate) fn check(&self, uri: &http::Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = match headers.get(http::header::HOST) {
            Some(v) => v.to_str().ok().and_then(parse_authority),
            None => uri
                .authority()
                .map(|a| (normalize_host(a.host()), a.port_u16())),
        }
        .ok_or(Refusal::Host)?;
        let host_ok = self
            .hosts
            .iter()
            .any(|rule| rule.host == host.0 && rule.port.is_none_or(|p| host.1 == Some(p)));
        if !host_ok {
            return Err(Refusal::Host);
        }
        let mut origins = headers.get_all(http::header::ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return Ok(());
        };
        if origins.next().is_some() {
            return Err(Refusal::Origin);
        }
        let origin = origin.to_str().map_err(|_| Refusal::Origin)?.trim();
        let allowed = if origin.eq_ignore_ascii_case("null") {
            self.origins.contains(&OriginRule::Null)
        } else {
            let (scheme, host, port) = parse_origin(origin).ok_or(Refusal::Origin)?;
            self.origins.iter().any(|rule| match rule {
                OriginRule::Null => false,
                OriginRule::Tuple {
                    scheme: s,
                    host: h,
                    port: p,
                } => *s == scheme && *h == host && p.is_none_or(|p| Some(p) == port),
            })
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Origin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::http::{DEFAULT_ALLOWED_HOSTS, DEFAULT_ALLOWED_ORIGINS};

    fn defaults() -> HostGuard {
        let s = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        HostGuard::new(&s(DEFAULT_ALLOWED_HOSTS), &s(DEFAULT_ALLOWED_ORIGINS)).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn check(g: &HostGuard, pairs: &[(&'static str, &str)]) -> Result<(), Refusal> {
        g.check(&"/mcp".parse().unwrap(), &headers(pairs))
    }

    #[test]
    fn loopback_hosts_pass_with_any_port_and_others_do_not() {
        let g = defaults();
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:9",
            "LOCALHOST",
        ] {
            assert_eq!(check(&g, &[("host", ok)]), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.2",
            "localhost.evil",
            "a@localhost",
            "",
        ] {
            assert_eq!(check(&g, &[("host", bad)]), Err(Refusal::Host), "{bad}");
        }
        assert_eq!(check(&g, &[]), Err(Refusal::Host));
    }

    #[test]
    fn origins_must_match_scheme_host_and_port() {
        let g = defaults();
        let h = ("host", "127.0.0.1:8080");
        assert_eq!(check(&g, &[h]), Ok(()));
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "http://[::1]:5",
        ] {
            assert_eq!(check(&g, &[h, ("origin", ok)]), Ok(()), "{ok}");
        }
        for bad in [
            "https://localhost:3000",
            "http://evil.example",
            "null",
            "garbage",
            "http://localhost:3000/path",
        ] {
            assert_eq!(
                check(&g, &[h, ("origin", bad)]),
                Err(Refusal::Origin),
                "{bad}"
            );
        }
        let g = HostGuard::new(
            &["mcp.example.com:443".into()],
            &["https://app.example.com".into(), "null".into()],
        )
        .unwrap();
        let h = ("host", "mcp.example.com:443");
        assert_eq!(
            check(&g, &[("host", "mcp.example.com")]),
            Err(Refusal::Host)
        );
        assert_eq!(
            check(&g, &[h, ("origin", "https://app.example.com")]),
            Ok(())
        );
        assert_eq!(
            check(&g, &[h, ("origin", "https://app.example.com:443")]),
            Ok(())
        );
        assert_eq!(
            check(&g, &[h, ("origin", "https://app.example.com:8443")]),
            Err(Refusal::Origin)
        );
        assert_eq!(check(&g, &[h, ("origin", "null")]), Ok(()));
    }

    #[test]
    fn bad_entries_stop_start_up() {
        assert!(HostGuard::new(&["".into()], &[]).is_err());
        assert!(HostGuard::new(&[], &[]).is_err());
        assert!(HostGuard::new(&["localhost".into()], &["localhost".into()]).is_err());
        assert!(HostGuard::new(&["localhost".into()], &["http://a:1:*".into()]).is_err());
        assert!(HostGuard::new(&["::1".into()], &["http://[::1]:*".into()]).is_ok());
    }
}
