//! The shared-data keys between the snapshot fetcher and the workers, inside one Envoy process
//! (one store per `vm_id`).
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
