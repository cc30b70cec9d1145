//! The store's bounds ([`StoreLimits`]) and what an entry and a tenant are charged against them.
//!
//! Numbers only: it must not hold entries or decide what to evict.

use std::time::Duration;

/// How long a key is remembered.
pub(crate) const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What every entry is charged for its bookkeeping, on top of its payload: its map slot and key,
/// its nodes in the age indexes and, in flight, its channel (measured at about 200 bytes on
/// 64-bit targets; rounded up).
pub(crate) const ENTRY_OVERHEAD: usize = 256;

/// What an unknown outcome's reference is charged (ours are 36-character UUIDs). An entry in
/// flight is charged as much, so that finishing as unknown never needs room.
pub(super) const REFERENCE_BYTES: usize = 64;

/// An entry in flight or unknown: the smallest an entry ever is.
pub(super) const SMALL_ENTRY: usize = ENTRY_OVERHEAD + REFERENCE_BYTES;

/// What a tenant with entries is charged for its own book (counters and two index maps).
pub(super) const TENANT_OVERHEAD: usize = 256;

/// The store's bounds; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreLimits {
    /// Entries in the whole store.
    pub max_entries: usize,
    /// Bytes charged in the whole store.
    pub max_bytes: usize,
    /// Entries of one tenant.
    pub max_per_tenant: usize,
    /// Bytes charged to one tenant.
    pub max_bytes_per_tenant: usize,
    /// Unknown outcomes one tenant keeps; beyond it the oldest is dropped.
    pub max_unknown_per_tenant: usize,
    /// Creates of one tenant in flight at once; beyond it a new key is refused until one ends.
    pub max_in_flight_per_tenant: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl StoreLimits {
    /// The defaults, which the command line's defaults are read from.
    pub(crate) const DEFAULT: StoreLimits = StoreLimits {
        max_entries: 100_000,
        max_bytes: 32 * 1024 * 1024,
        max_per_tenant: 1_000,
        max_bytes_per_tenant: 4 * 1024 * 1024,
        max_unknown_per_tenant: 100,
        max_in_flight_per_tenant: 64,
    };

    /// The limits made consistent: every one at least 1, no more creates in flight than
    /// entries, and bytes enough for a tenant's (and the store's first tenant's) creates in
    /// flight. Then making room for a tenant under its in-flight cap always succeeds within its
    /// own entries.
    pub(super) fn normalized(self) -> Self {
        let max_per_tenant = self.max_per_tenant.max(1);
        let max_in_flight_per_tenant = self.max_in_flight_per_tenant.clamp(1, max_per_tenant);
        let floor = (max_in_flight_per_tenant + 1) * SMALL_ENTRY + TENANT_OVERHEAD;
        let max_bytes_per_tenant = self.max_bytes_per_tenant.max(floor);
        StoreLimits {
            max_entries: self.max_entries.max(1),
            max_bytes: self.max_bytes.max(max_bytes_per_tenant),
            max_per_tenant,
            max_bytes_per_tenant,
            max_unknown_per_tenant: self.max_unknown_per_tenant.max(1),
            max_in_flight_per_tenant,
        }
    }
}
