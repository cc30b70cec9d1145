//! A redis-server of the test's own ([`Redis`]): on a free loopback port, with its own data
//! directory, no persistence unless asked, killed when dropped. Nothing uses a fixed port or a
//! Redis the machine happens to run. The binary is `redis-server` from `PATH` (installed by
//! `scripts/redis-setup`), or `$REDIS_SERVER`.
//!
//! Start-up is awaited on the server's own "Ready to accept connections" log line, never by
//! sleeping; a port taken between our probe and its bind is retried on another.

use std::process::{Child, Command, Stdio};

use super::{Log, START_DEADLINE};

/// A running redis-server.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    persist: bool,
    log: Log,
}

fn binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    /// A fresh server without persistence (`--save ""`, `--appendonly no`).
    pub fn start() -> Redis {
        Self::start_with(false)
    }

    /// A fresh server; with `persist`, every write is appended to a file and fsynced, so that a
    /// [`Redis::restart`] keeps the data.
    pub fn start_with(persist: bool) -> Redis {
        let dir = tempfile::tempdir().expect("a data directory");
        for _ in 0..3 {
            let port = free_port();
            let (child, log) = spawn(port, dir.path(), persist);
            if let Some(child) = ready(child, &log) {
                return Redis {
                    child: Some(child),
                    port,
                    dir,
                    persist,
                    log,
                };
            }
        }
        panic!("redis-server did not start on three free ports");
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL): clients see their connections drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        let (child, log) = spawn(self.port, self.dir.path(), self.persist);
        let child = ready(child, &log).unwrap_or_else(|| {
            panic!(
                "redis-server did not restart on {}: {}",
                self.port,
                log.text()
            )
        });
        self.child = Some(child);
        self.log = log;
    }

    /// A client connection of the test's own (admin commands, inspecting keys). No response
    /// timeout: a command sent during a `CLIENT PAUSE` is answered when the pause ends, which is
    /// how a test awaits that end.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("connect to the test's redis-server")
    }

    /// Runs one command on a connection of the test's own.
    pub async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query_async(&mut self.conn().await)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Every key, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.cmd(&["KEYS", "*"]).await;
        keys.sort();
        keys
    }

    /// How many times each command ran since the last `CONFIG RESETSTAT` (`INFO commandstats`):
    /// `(command, calls)`, e.g. `("evalsha", 12)`.
    pub async fn command_calls(&self) -> Vec<(String, u64)> {
        let info: String = self.cmd(&["INFO", "commandstats"]).await;
        info.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(port: u16, dir: &std::path::Path, persist: bool) -> (Child, Log) {
    let mut cmd = Command::new(binary());
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--dir", dir.to_str().expect("a UTF-8 temp path")])
        .args(["--daemonize", "no", "--loglevel", "notice", "--logfile", ""])
        .args(["--protected-mode", "yes"]);
    if persist {
        cmd.args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]);
    } else {
        cmd.args(["--save", "", "--appendonly", "no"]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run scripts/redis-setup (or set REDIS_SERVER)",
                binary()
            )
        });
    let log = Log::drain_blocking(child.stdout.take().expect("stdout piped"));
    (child, log)
}

/// Waits for the server's ready line; `None` (the child reaped) if it exited first, as when
/// another process took the port.
fn ready(mut child: Child, log: &Log) -> Option<Child> {
    let settled = log.wait_blocking(START_DEADLINE, |text, closed| {
        closed || text.contains("Ready to accept connections")
    });
    if settled && log.text().contains("Ready to accept connections") {
        return Some(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        settled,
        "redis-server did not start within {START_DEADLINE:?}"
    );
    None
}

/// Pauses every client of `redis` for `millis` (`CLIENT PAUSE ... ALL`): Redis is slow, not down.
pub async fn pause(redis: &Redis, millis: u64) {
    let _: () = redis
        .cmd(&["CLIENT", "PAUSE", &millis.to_string(), "ALL"])
        .await;
}
