//! Where idempotency keys are kept, behind one trait: [`IdempotencyKeys`], with this process's
//! store ([`LocalKeys`], over [`IdempotencyStore`]) and the shared store of replicas
//! (`shared::SharedKeys`, in Redis).
//!
//! A create with a key [`claim`](IdempotencyKeys::claim)s it and gets either the right to run
//! ([`Claimed::Run`], a [`Hold`] to report the outcome through) or an outcome to answer with
//! ([`Claimed::Done`]: a replay, or a concurrent twin's outcome, waited for). It must never call
//! an upstream itself.

use std::sync::Arc;

use async_trait::async_trait;

use super::entries::Outcome;
use super::local::LocalData;
use super::store::{Claim, IdempotencyStore, Ticket, wait};
use crate::error::{Error, Result};

/// What a claim gives the create.
pub(crate) enum Claimed {
    /// Run the create, and report how it ended through the hold.
    Run(Box<dyn Hold>),
    /// Answer with this outcome without any upstream call: a replay, or the outcome of a
    /// concurrent call with the same key.
    Done(Outcome),
}

/// The right and duty to report the outcome of one create. Dropped without
/// [`complete`](Hold::complete) (the call was cancelled), the outcome is recorded as unknown: a
/// repeat looks the link up before creating.
#[async_trait]
pub(crate) trait Hold: Send {
    /// The reference the create sends (and a lookup searches for).
    fn reference(&self) -> &str;

    /// An earlier attempt with this key ended with an unknown outcome (or its holder went away):
    /// look the link up by [`reference`](Hold::reference) before creating anything.
    fn previous_unknown(&self) -> bool;

    /// Whether the create may be sent now: the claim is still this call's and will stay so
    /// for as long as one upstream attempt may take. A refusal means nothing may be sent.
    async fn before_send(&mut self) -> Result<()>;

    /// Records how the create ended, and tells whoever waits for it.
    async fn complete(self: Box<Self>, outcome: Outcome);

    /// What an earlier attempt with an unknown outcome was sent as (the digest of the preview it
    /// sent), once confirmed and counted; `None` when nothing was kept.
    fn previous_sent(&self) -> Option<[u8; 32]>;

    /// The digest of what is about to be sent, kept with an unknown outcome.
    fn sending(&mut self, sent: Option<[u8; 32]>);

    /// The outcome is unknown: a repeat looks for the link by the reference first, and may send
    /// again what [`sending`](Hold::sending) kept.
    async fn complete_unknown(self: Box<Self>);

    /// Gives the key back: nothing was sent and nothing decided (the user is being asked
    /// first, or the call ended before its write). A twin waiting for it claims it anew.
    fn release(self: Box<Self>);
}

/// Where idempotency keys are kept.
#[async_trait]
pub(crate) trait IdempotencyKeys: Send + Sync {
    /// Claims `key` of `scope` for a create whose validated arguments hash to `args`; a new
    /// entry carries `reference`. The same key with other arguments is `idempotency_conflict`.
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        args: [u8; 32],
        reference: String,
    ) -> Result<Claimed>;

    /// The scope of `tenant`'s entries made against data kept in this process (the in-memory
    /// sandbox): such entries must go with that data.
    fn local_scope(&self, data: &LocalData, tenant: &str) -> String;

    /// Whether writes can be accounted for now: a write that keeps nothing here (a create
    /// without a key, a status change) asks this before it sends anything, so that replicas
    /// whose shared store is down refuse every write alike (`unavailable`).
    async fn ready(&self) -> Result<()>;
}

/// This process's store.
pub(crate) struct LocalKeys(pub Arc<IdempotencyStore>);

#[async_trait]
impl IdempotencyKeys for LocalKeys {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        args: [u8; 32],
        reference: String,
    ) -> Result<Claimed> {
        match self.0.claim(scope, key, args, || reference)? {
            Claim::Run(ticket) => Ok(Claimed::Run(Box::new(ticket))),
            Claim::Replay(outcome) => Ok(Claimed::Done(outcome)),
            Claim::Wait(rx) => match wait(rx).await {
                Some(outcome) => Ok(Claimed::Done(outcome)),
                None => Err(Error::internal_retryable(
                    "a call with this idempotency_key was cancelled before it finished; call again with the same key",
                )),
            },
        }
    }

    fn local_scope(&self, data: &LocalData, tenant: &str) -> String {
        data.scope(&self.0, tenant)
    }

    async fn ready(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Hold for Ticket {
    fn reference(&self) -> &str {
        &self.reference
    }

    fn previous_unknown(&self) -> bool {
        self.previous_unknown
    }

    async fn before_send(&mut self) -> Result<()> {
        // One process: nobody else can take the key while this call runs.
        Ok(())
    }

    async fn complete(self: Box<Self>, outcome: Outcome) {
        Ticket::complete(*self, outcome);
    }

    fn release(self: Box<Self>) {
        Ticket::release(*self);
    }

    fn previous_sent(&self) -> Option<[u8; 32]> {
        self.previous_sent
    }

    fn sending(&mut self, sent: Option<[u8; 32]>) {
        Ticket::sending(self, sent);
    }

    async fn complete_unknown(self: Box<Self>) {
        Ticket::complete_unknown(*self);
    }
}
