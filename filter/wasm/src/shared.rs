//! The shared-data protocol between the snapshot fetcher and the workers, inside one Envoy
//! process (one store per `vm_id`).
//!
//! Two keys: the snapshot envelope bytes, written first, and a small announcement naming
//! its epoch and generation and when the sidecar last confirmed it, written second. Workers
//! read only the announcement on their timer and copy the snapshot only when the generation
//! changed. This module never validates a snapshot (the core does).

use serde::{Deserialize, Serialize};

use crate::host;

/// Snapshot envelope bytes exactly as served by the sidecar.
pub const SNAPSHOT_KEY: &str = "registry_gate.snapshot";
/// The [`Announcement`] as JSON.
pub const ANNOUNCEMENT_KEY: &str = "registry_gate.announcement";

/// What the fetcher announces after installing or re-confirming a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub epoch: String,
    pub generation: u64,
    /// Unix seconds of the last successful answer from the sidecar.
    pub confirmed_at: u64,
}

/// Reads the current announcement, if any.
pub fn announcement() -> Option<Announcement> {
    let bytes = host::shared_data(ANNOUNCEMENT_KEY)?;
    serde_json::from_slice(&bytes).ok()
}

/// Publishes a snapshot and its announcement, in that order.
pub fn publish(snapshot: &[u8], announcement: &Announcement) -> bool {
    host::set_shared_data(SNAPSHOT_KEY, snapshot) && announce(announcement)
}

/// Re-announces (e.g. a newer confirmation time for the same generation).
pub fn announce(announcement: &Announcement) -> bool {
    match serde_json::to_vec(announcement) {
        Ok(bytes) => host::set_shared_data(ANNOUNCEMENT_KEY, &bytes),
        Err(_) => false,
    }
}
