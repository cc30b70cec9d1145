//! Spend caps: the operator's hard limits on what links may total, which no prompt can talk past.
//!
//! Two kinds of cap, each per currency ([`Caps`]): the most one link may total
//! (`--max-link-amount CUR:AMOUNT`) and a rolling 24-hour budget per tenant
//! (`--max-daily-amount CUR:AMOUNT`). A currency without a cap is uncapped. Amounts are parsed
//! exactly, in the currency's exponent ([`parse_cap`]).
//!
//! The daily budget is kept by a [`SpendLedger`]: a create *reserves* its amount before anything
//! is written upstream (atomically, so that two calls can never both pass the last of a budget),
//! then *commits* it when the link exists or its outcome is unknown, or *releases* it when
//! nothing was created. The trait is small, async and free of in-memory assumptions (a
//! reservation is named by an opaque string), so that a shared store can implement it for
//! replicas; [`MemoryLedger`] keeps it in this process, and its budgets are lost on restart;
//! [`SharedLedger`] keeps it in the store replicas share (`--store redis://...`).
//!
//! It must not know about tools, protocols or backends: it counts money.
//!
//! The files: `caps` (the operator's caps, parsed), `ledger` (the budget trait and its
//! reservations), `memory` (the in-process ledger) and `shared` (the ledger in Redis). This file
//! only re-exports.

mod caps;
mod ledger;
mod memory;
mod shared;

pub(crate) use caps::{Caps, parse_cap};
pub(crate) use ledger::{Refusal, Reservation, SpendLedger};
pub(crate) use memory::{LedgerBounds, MemoryLedger};
pub(crate) use shared::SharedLedger;
