//! Snapshot distribution inside one Envoy process: what the fetcher does with each answer
//! from the sidecar, and the [`Announcement`] it leaves in shared data for the workers.
//!
//! The fetcher holds at most one generation. A `200` must be signed by a configured
//! publisher key (checked here, once per Envoy process: the workers trust this check and the
//! checksum), validate as the workers will validate it ([`snapshot::check`]) and pass the
//! same [`snapshot::admit`] before it is published; a `304` confirms the held generation only if
//! its `ETag` names exactly that generation. Nothing else confirms: a sidecar whose history
//! was rewound cannot keep a fetcher's newer generation looking fresh. It never performs I/O:
//! the glue sends the request this module describes and hands back the answer.

use serde::{Deserialize, Serialize};

use registry_gate_index::PublisherKey;

use crate::generation::Generation;
use crate::snapshot::{self, Held, SnapshotError};

/// What the fetcher announces in shared data after publishing or re-confirming a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    pub epoch: String,
    pub generation: u64,
    /// Unix seconds of the sidecar's last answer confirming exactly this generation.
    pub confirmed_at: u64,
    /// The checksum of the index the fetcher validated in full and wrote to shared data: a
    /// worker finding these very bytes there checks their identity and shape only. (Absent
    /// from a fetcher before it: the worker then validates in full.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u64>,
}

impl Announcement {
    /// The generation announced.
    pub fn generation(&self) -> Generation {
        Generation::new(self.epoch.as_str(), self.generation)
    }

    /// Shared-data bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// From shared-data bytes; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Announcement> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The sidecar's answer to one fetch, as the glue received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// `200` with this body.
    Snapshot(&'a [u8]),
    /// `304` with this `ETag` value (if any).
    NotModified { etag: Option<&'a [u8]> },
    /// Anything else: another status, or none at all (transport failure, timeout).
    Failed { status: Option<u16> },
}

/// What the glue must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write the answer's body (the fetched snapshot) to shared data, then this
    /// announcement; poll again at once.
    Publish(Announcement),
    /// Write this announcement only (same generation, newer confirmation); poll again at once.
    Confirm(Announcement),
    /// The body was refused: count it and poll again after the retry pause. Nothing is
    /// confirmed, so the held generation ages towards `max_staleness`.
    Refused(SnapshotError),
    /// The fetch failed: poll again after the retry pause.
    Retry,
}

/// The fetcher's memory: the generation it published last, and whom it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    held: Option<Held>,
    publishers: Vec<PublisherKey>,
}

impl Fetch {
    /// Starts from whatever a previous fetcher instance already published (shared data
    /// survives VM reloads) if it still passes today's checks, so a restart never goes back
    /// a generation.
    pub fn resume(publishers: Vec<PublisherKey>, published: Option<&[u8]>) -> Fetch {
        let mut fetch = Fetch {
            held: None,
            publishers,
        };
        fetch.held = published.and_then(|bytes| fetch.accept(bytes).ok());
        fetch
    }

    /// What holding `body` would mean, if it is signed by a trusted publisher and valid.
    fn accept(&self, body: &[u8]) -> Result<Held, SnapshotError> {
        registry_gate_index::verify(body, &self.publishers)?;
        snapshot::check(body)
    }

    /// The generation held, if any.
    pub fn held(&self) -> Option<&Generation> {
        self.held.as_ref().map(|held| &held.generation)
    }

    /// The `If-None-Match` value to send, if a generation is held.
    pub fn if_none_match(&self) -> Option<String> {
        self.held().map(Generation::etag)
    }

    /// Handles one answer received at unix second `now`.
    pub fn answer(&mut self, answer: Answer<'_>, now: u64) -> Step {
        match answer {
            Answer::Snapshot(body) => self.offer(body, now),
            Answer::NotModified { etag } => {
                let named = etag
                    .and_then(|etag| core::str::from_utf8(etag).ok())
                    .and_then(Generation::parse);
                match &self.held {
                    Some(held) if named.as_ref() == Some(&held.generation) => {
                        Step::Confirm(announce(held, now))
                    }
                    _ => Step::Retry,
                }
            }
            Answer::Failed { .. } => Step::Retry,
        }
    }

    fn offer(&mut self, body: &[u8], now: u64) -> Step {
        let offered = match self.accept(body) {
            Ok(offered) => offered,
            Err(err) => return Step::Refused(err),
        };
        if let Some(held) = self
            .held
            .as_ref()
            .filter(|held| held.generation == offered.generation)
        {
            // The same generation again (e.g. after a fetcher restart): a confirmation of
            // the bytes already published.
            return Step::Confirm(announce(held, now));
        }
        if let Err(err) = snapshot::admit(self.held.as_ref(), &offered) {
            return Step::Refused(err);
        }
        let announcement = announce(&offered, now);
        self.held = Some(offered);
        Step::Publish(announcement)
    }
}

/// The announcement of `held`, confirmed at `now`: its generation, and the checksum that
/// names the bytes in shared data.
fn announce(held: &Held, now: u64) -> Announcement {
    Announcement {
        epoch: held.generation.epoch.clone(),
        generation: held.generation.number,
        confirmed_at: now,
        checksum: Some(held.checksum),
    }
}

#[cfg(test)]
mod tests;
