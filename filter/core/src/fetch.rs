//! Snapshot distribution inside one Envoy process: what the fetcher does with each answer
//! from the sidecar, and the [`Announcement`] it leaves in shared data for the workers.
//!
//! The fetcher holds at most one generation. A `200` is decoded with the same
//! [`snapshot::decode`] the sidecar and the workers use, admitted by the same
//! [`snapshot::admit`], and only then published; a `304` confirms the held generation only if
//! its `ETag` names exactly that generation. Nothing else confirms: a sidecar whose history
//! was rewound cannot keep a fetcher's newer generation looking fresh. It never performs I/O:
//! the glue sends the request this module describes and hands back the answer.

use serde::{Deserialize, Serialize};

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
pub enum Step<'a> {
    /// Write `body` (the fetched snapshot) to shared data, then `announcement`; poll again
    /// at once.
    Publish {
        body: &'a [u8],
        announcement: Announcement,
    },
    /// Write this announcement only (same generation, newer confirmation); poll again at once.
    Confirm(Announcement),
    /// The body was refused: count it and poll again after the retry pause. Nothing is
    /// confirmed, so the held generation ages towards `max_staleness`.
    Refused(SnapshotError),
    /// The fetch failed: poll again after the retry pause.
    Retry,
}

/// The fetcher's memory: the generation it published last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetch {
    held: Option<Held>,
}

impl Fetch {
    /// Starts from whatever a previous fetcher instance already published (shared data
    /// survives VM reloads), so a restart never goes back a generation.
    pub fn resume(published: Option<&[u8]>) -> Fetch {
        Fetch {
            held: published
                .and_then(|bytes| snapshot::decode(bytes).ok())
                .map(|snapshot| Held::of(&snapshot)),
        }
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
    pub fn answer<'a>(&mut self, answer: Answer<'a>, now: u64) -> Step<'a> {
        match answer {
            Answer::Snapshot(body) => self.offer(body, now),
            Answer::NotModified { etag } => {
                let named = etag
                    .and_then(|etag| core::str::from_utf8(etag).ok())
                    .and_then(Generation::parse);
                match self.held() {
                    Some(held) if named.as_ref() == Some(held) => {
                        Step::Confirm(announce(held, now))
                    }
                    _ => Step::Retry,
                }
            }
            Answer::Failed { .. } => Step::Retry,
        }
    }

    fn offer<'a>(&mut self, body: &'a [u8], now: u64) -> Step<'a> {
        let decoded = match snapshot::decode(body) {
            Ok(decoded) => decoded,
            Err(err) => return Step::Refused(err),
        };
        let offered = decoded.header.generation();
        if self.held() == Some(&offered) {
            // The same generation again (e.g. after a fetcher restart): a confirmation.
            return Step::Confirm(announce(&offered, now));
        }
        if let Err(err) = snapshot::admit(self.held.as_ref(), &decoded) {
            return Step::Refused(err);
        }
        self.held = Some(Held::of(&decoded));
        Step::Publish {
            body,
            announcement: announce(&offered, now),
        }
    }
}

fn announce(generation: &Generation, now: u64) -> Announcement {
    Announcement {
        epoch: generation.epoch.clone(),
        generation: generation.number,
        confirmed_at: now,
    }
}

#[cfg(test)]
mod tests;
