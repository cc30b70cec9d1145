//! MCP over stdin/stdout: newline-delimited JSON-RPC on stdout and nothing else.
//!
//! The transport is our own ([`StdioTransport`]) rather than rmcp's, for one reason: JSON-RPC 2.0
//! requires an answer to a line that is not JSON (`-32700 Parse error`, `"id": null`), and rmcp's
//! transport drops such lines silently (a client that sent a request with a broken line would
//! wait forever). Everything else is as rmcp does it: lines are bounded at 16 MiB, a valid line is
//! decoded by rmcp's own codec (so non-MCP notifications are still ignored), and a well-formed
//! line that is not a JSON-RPC message gets `-32600 Invalid Request`, also with `"id": null` as
//! JSON-RPC requires (rmcp omits the id). A line longer than 16 MiB gets `-32700` too.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rmcp::RoleServer;
use rmcp::ServiceExt;
use rmcp::service::{RxJsonRpcMessage, ServerInitializeError, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::{JsonRpcMessageCodec, JsonRpcMessageCodecError};
use serde_json::error::Category;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::Mutex;
use tokio_util::codec::Decoder;

use crate::server::PaylinkServer;

/// The longest line accepted: rmcp's own limit, so that stdio accepts what HTTP accepts.
pub(crate) const MAX_LINE_BYTES: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

/// stdin and stdout as non-blocking pipes driven by the event loop, when they are pipes (as an MCP
/// client spawns us). tokio's own `stdin()`/`stdout()` hand every read and write to a blocking
/// thread, which adds two thread hand-offs to every call's latency. A terminal or a file keeps
/// the portable path.
fn pipes() -> Option<(pipe::Receiver, pipe::Sender)> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    // Both refuse anything that is not a FIFO, leaving the descriptors untouched.
    let receiver = pipe::Receiver::from_owned_fd(stdin).ok()?;
    let sender = pipe::Sender::from_owned_fd(stdout).ok()?;
    Some((receiver, sender))
}

/// Serves one client until stdin closes (or the client disconnects), then returns.
pub(crate) async fn serve(server: PaylinkServer) -> Result<(), String> {
    let handshake = match pipes() {
        Some((read, write)) => server.serve(StdioTransport::new(read, write)).await,
        None => {
            let (read, write) = rmcp::transport::stdio();
            server.serve(StdioTransport::new(read, write)).await
        }
    };
    let running = match handshake {
        Ok(running) => running,
        // The client closed stdin before initializing: that is how a stdio session ends, even an
        // empty one, so exit cleanly instead of reporting a configuration error (exit code 2).
        Err(ServerInitializeError::ConnectionClosed(_)) => {
            tracing::info!("stdin closed before the MCP handshake; exiting");
            return Ok(());
        }
        Err(e) => return Err(format!("stdio handshake failed: {e}")),
    };
    running
        .waiting()
        .await
        .map_err(|e| format!("stdio session ended abnormally: {e}"))?;
    Ok(())
}

/// Bytes on their way to stdout. A message is appended whole, then written out; bytes leave the
/// buffer only once written, so a write cancelled half-way resumes where it stopped and messages
/// never interleave.
struct Outbox<W> {
    write: W,
    pending: BytesMut,
}

impl<W: AsyncWrite + Unpin> Outbox<W> {
    async fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let n = self.write.write(&self.pending).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.pending.advance(n);
        }
        self.write.flush().await
    }
}

/// One line read from stdin.
enum Line {
    /// A whole line (its newline included) is in the buffer.
    Whole,
    /// The line was longer than [`MAX_LINE_BYTES`]; it has been dropped.
    TooLong,
    Eof,
    Failed(io::Error),
}

/// Newline-delimited JSON-RPC over a reader and a writer, answering lines that are not messages.
pub(crate) struct StdioTransport<R, W> {
    read: BufReader<R>,
    /// The line being read. Kept here, not in `receive`'s future: rmcp polls `receive` in a
    /// `select!` and drops it whenever another branch wins, and a partial line must survive that.
    line: BytesMut,
    /// Dropping the rest of a line that was too long, up to its newline.
    discarding: bool,
    codec: JsonRpcMessageCodec<RxJsonRpcMessage<RoleServer>>,
    /// An error answer decided but not yet handed to the outbox (survives a dropped `receive`).
    reply: Option<Vec<u8>>,
    /// An error answer is in the outbox but its write was interrupted (a dropped `receive`).
    unflushed: bool,
    out: Arc<Mutex<Option<Outbox<W>>>>,
}

impl<R, W> StdioTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(read: R, write: W) -> Self {
        StdioTransport {
            read: BufReader::new(read),
            line: BytesMut::new(),
            discarding: false,
            codec: JsonRpcMessageCodec::default(),
            reply: None,
            unflushed: false,
            out: Arc::new(Mutex::new(Some(Outbox {
                write,
                pending: BytesMut::new(),
            }))),
        }
    }

    /// Reads up to the next newline into `self.line`, never holding more than [`MAX_LINE_BYTES`].
    /// Cancel-safe: bytes are consumed from the reader only once copied into `self.line`.
    async fn read_line(&mut self) -> Line {
        loop {
            let (used, newline) = {
                let available = match self.read.fill_buf().await {
                    Ok(a) => a,
                    Err(e) => return Line::Failed(e),
                };
                if available.is_empty() {
                    return Line::Eof;
                }
                let newline = memchr::memchr(b'\n', available);
                let take = newline.map_or(available.len(), |at| at + 1);
                if !self.discarding {
                    if self.line.len() + take > MAX_LINE_BYTES {
                        self.line.clear();
                        self.discarding = true;
                    } else {
                        self.line.extend_from_slice(&available[..take]);
                    }
                }
                (take, newline.is_some())
            };
            self.read.consume(used);
            if newline {
                if self.discarding {
                    self.discarding = false;
                    return Line::TooLong;
                }
                return Line::Whole;
            }
        }
    }

    /// Hands the pending error answer, if any, to the outbox and writes out what the outbox holds.
    async fn send_reply(&mut self) -> io::Result<()> {
        let mut out = self.out.lock().await;
        let Some(outbox) = out.as_mut() else {
            self.reply = None;
            return Err(io::ErrorKind::NotConnected.into());
        };
        if let Some(reply) = self.reply.take() {
            outbox.pending.extend_from_slice(&reply);
            self.unflushed = true;
        }
        outbox.flush().await?;
        self.unflushed = false;
        Ok(())
    }
}

/// A JSON-RPC error answer line, with `"id": null`.
fn error_line(code: i64, message: &str) -> Vec<u8> {
    error_line_for(serde_json::Value::Null, code, message)
}

/// A JSON-RPC error answer to the request `id` (null when it could not be read).
fn error_line_for(id: serde_json::Value, code: i64, message: &str) -> Vec<u8> {
    let mut line = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

/// The `id` of a JSON-RPC line, when it is one an answer can carry (a string or an integer, per
/// JSON-RPC 2.0); null otherwise.
fn readable_id(line: &[u8]) -> serde_json::Value {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<IdOnly>(line)
        .ok()
        .and_then(|m| m.id)
    {
        Some(id @ serde_json::Value::String(_)) => id,
        Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => {
            serde_json::Value::Number(n)
        }
        _ => serde_json::Value::Null,
    }
}

impl<R, W> Transport<RoleServer> for StdioTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.out.clone();
        async move {
            let mut line = serde_json::to_vec(&item)?;
            line.push(b'\n');
            let mut out = out.lock().await;
            let outbox = out.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            outbox.pending.extend_from_slice(&line);
            outbox.flush().await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if (self.reply.is_some() || self.unflushed)
                && let Err(e) = self.send_reply().await
            {
                tracing::error!("cannot write to stdout: {e}");
                return None;
            }
            match self.read_line().await {
                Line::Whole => {}
                Line::TooLong => {
                    tracing::warn!(max = MAX_LINE_BYTES, "a stdin line was too long; refused");
                    self.reply = Some(error_line(
                        -32700,
                        &format!(
                            "Parse error: the line is longer than {} MiB",
                            MAX_LINE_BYTES >> 20
                        ),
                    ));
                    continue;
                }
                // A last line without its newline is an incomplete message: nothing to answer.
                Line::Eof => return None,
                Line::Failed(e) => {
                    tracing::error!("cannot read stdin: {e}");
                    return None;
                }
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                self.line.clear();
                continue;
            }
            // rmcp's codec takes the line (and its newline) out of the buffer; a refusal below
            // still needs the line to find its id.
            let raw = bytes::Bytes::copy_from_slice(&self.line);
            let decoded = self.codec.decode(&mut self.line);
            self.line.clear();
            match decoded {
                Ok(Some(message)) => return Some(message),
                // A notification outside MCP: ignored, as rmcp does.
                Ok(None) => continue,
                // JSON-RPC 2.0: when the id cannot be read (a parse error, an invalid request),
                // the answer's id is null. serde_json's message may quote part of the line (an
                // unexpected string): cut, so that a huge line is not echoed back whole.
                Err(JsonRpcMessageCodecError::Serde(e)) => {
                    let reason: String = e.to_string().chars().take(200).collect();
                    tracing::debug!("refused a stdin line: {reason}");
                    self.reply = Some(match e.classify() {
                        Category::Syntax | Category::Eof | Category::Io => {
                            error_line(-32700, &format!("Parse error: {reason}"))
                        }
                        // Valid JSON but not a valid message: answer with its id when it has
                        // a readable one, so that the client is not left waiting.
                        Category::Data => error_line_for(
                            readable_id(&raw),
                            -32600,
                            &format!("Invalid Request: {reason}"),
                        ),
                    });
                }
                Err(e) => {
                    tracing::error!("cannot read stdin: {e}");
                    return None;
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let mut out = self.out.lock().await;
        match out.take() {
            Some(mut outbox) => outbox.flush().await,
            None => Ok(()),
        }
    }
}
