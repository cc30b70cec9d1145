//! Tenants: who is calling, and the backend instance that holds their key or their sandbox data.
//!
//! Over stdio there is one tenant for the process. Over HTTP every caller key is a tenant, built
//! by the backend factory on first use and kept in the bounded [`cache`].

use std::sync::Arc;

use crate::backend::Backend;

pub(crate) mod cache;

/// One caller: the stdio user, or one HTTP bearer key.
pub(crate) struct Tenant {
    /// Short hash of the tenant's key, for logs. Never the key.
    pub fingerprint: String,
    /// Full hash naming the tenant, scoping its idempotency keys. Never the key.
    pub scope: String,
    /// This tenant's backend instance.
    pub backend: Arc<dyn Backend>,
}
