//! The MCP tools: their names, schemas, annotations and the thin code between the protocol and a
//! backend — decode the arguments, validate them into domain types, call one backend method,
//! shape the answer. Business rules live below, in `domain` and `backend`.
//!
//! Every tool is one route on rmcp's [`ToolRouter`], built once per process ([`Tools::new`]):
//! its definition ([`catalog`]: schemas generated, pruned for the backend, filtered by the
//! operator's `--read-only`/`--tools`) and its handler together. A tool left out there does not
//! exist for callers. A handler answers `Result<its typed output, Error>`; the observation layer
//! sees that typed result, and the MCP result is built once, at the edge ([`route`]).

//!
//! The files depend on each other one way: `routes` (the router) → `catalog` (definitions) and
//! the handlers (`write` for creates, `read`, `lifecycle`) → `create` (a create's arguments),
//! `message` (the text a user confirms) and `toolbox` (what a call shares) → `confirm` (asking
//! the user, over each protocol), `safety` (allowed products, spend caps) and `args` (lenient
//! decoding) → `id`.

pub(crate) mod args;
pub(crate) mod catalog;
pub(crate) mod confirm;
pub(crate) mod create;
pub(crate) mod id;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub(crate) mod message;
pub(crate) mod read;
pub(crate) mod routes;
pub(crate) mod safety;
pub(crate) mod schema;
pub(crate) mod toolbox;
pub(crate) mod write;
