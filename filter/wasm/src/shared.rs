//! The shared-data keys between the snapshot fetcher and the workers, inside one Envoy process
//! (one store per `vm_id`), and the lease by which workers elect the fetcher when there is no
//! singleton.
//!
//! The fetcher writes the snapshot envelope first and the small [`Announcement`] second;
//! workers read the announcement on their timer and copy the snapshot only when the gate asks
//! for it. The announcement's format lives in the core (`fetch::Announcement`); this module
//! only names where things are.
//!
//! [`Announcement`]: registry_gate_core::fetch::Announcement

/// Snapshot envelope bytes exactly as served by the sidecar.
pub const SNAPSHOT_KEY: &str = "registry_gate.snapshot";
/// The announcement, as `fetch::Announcement::encode` writes it.
pub const ANNOUNCEMENT_KEY: &str = "registry_gate.announcement";
/// The fetcher lease among worker root contexts, as `lease::Lease::encode` writes it (only
/// when the filter's configuration carries a `fetcher` object). Empty until first contended.
pub const LEASE_KEY: &str = "registry_gate.fetcher_lease";
