//! `registry-gate-sidecar sync`: reads a source once (a document with `document`, or Pulp's
//! API with `pulp`), then publishes one complete snapshot through a sidecar's
//! `PUT /v1/snapshot` and exits — for a Kubernetes CronJob or a systemd timer.
//!
//! One attempt: `GET /v1/snapshot` (with the sync secret, which the sidecar accepts for
//! reads) → [`plan::compose`] the new content on what is published → nothing to publish when
//! it equals the current content → the shrink guard ([`plan::shrink`], unless `--force`) →
//! `PUT /v1/snapshot` with `If-Match` on the generation read (`If-None-Match: *` when nothing
//! is published yet). A 412 means another writer published in between: the attempt is redone
//! on the new generation, at most [`MAX_ATTEMPTS`] times. `--dry-run` stops before the PUT
//! and prints the [`plan::Diff`].
//!
//! Every outcome has its exit code ([`JobError::exit_code`]) and, when the job got as far as
//! comparing, one summary line on stdout ([`Summary`]); problems go to stderr. It must never
//! publish a content that did not come whole from the source, and never publish after a
//! failed read of the source.

pub mod document;
pub mod plan;
pub mod pulp;

use std::fmt;

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, IF_MATCH, IF_NONE_MATCH};
use registry_gate_core::generation::Generation;
use registry_gate_core::snapshot::{self, Content, Schema};
use serde::Deserialize;
use thiserror::Error;

use crate::client_tls::http_client;
use crate::config::{SyncConfig, SyncSource};
pub use plan::{Desired, Diff, Shrink};
pub use pulp::{PulpClient, PulpSettings};

/// Attempts before giving up when other writers keep publishing between our read and write.
pub const MAX_ATTEMPTS: u32 = 5;
/// The largest snapshot read from the sidecar.
const MAX_SNAPSHOT_BODY: usize = 1024 * 1024 * 1024;

/// Exit code: published, unchanged, or a dry run that would publish.
pub const EXIT_OK: u8 = 0;
/// Exit code: bad settings, or the source could not be read or is invalid.
pub const EXIT_SOURCE: u8 = 2;
/// Exit code: the shrink guard (or the sidecar's empty-snapshot guard) refused.
pub const EXIT_REFUSED: u8 = 3;
/// Exit code: the sidecar is unreachable or refused the publish, or every attempt lost the
/// race to another writer.
pub const EXIT_SIDECAR: u8 = 4;

/// Why the job did not publish (nothing was published in any of these cases).
#[derive(Debug, Error)]
pub enum JobError {
    #[error("source: {0}")]
    Source(String),
    #[error("the source's content is invalid: {0}")]
    Invalid(String),
    #[error("refused: {0}; check the source, or publish anyway with --force")]
    Shrink(Shrink),
    #[error("refused by the sidecar: {0}")]
    WouldEmpty(String),
    #[error("sidecar: {0}")]
    Sidecar(String),
    #[error("gave up after {MAX_ATTEMPTS} attempts: the published generation changed between each read and publish")]
    Contended,
}

impl JobError {
    /// The process exit code of this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            JobError::Source(_) | JobError::Invalid(_) => EXIT_SOURCE,
            JobError::Shrink(_) | JobError::WouldEmpty(_) => EXIT_REFUSED,
            JobError::Sidecar(_) | JobError::Contended => EXIT_SIDECAR,
        }
    }
}

/// What the job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Published,
    Unchanged,
    DryRun,
    Refused,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Published => "published",
            Action::Unchanged => "unchanged",
            Action::DryRun => "dry-run",
            Action::Refused => "refused",
        }
    }
}

/// The one line printed on stdout, e.g. `outcome=published source=pulp repositories=3
/// users=2 grants=4 generation=4f1c.7 changed=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub action: Action,
    pub source: &'static str,
    /// Of the content published or that would be.
    pub repositories: usize,
    pub users: usize,
    /// User grants.
    pub grants: usize,
    /// The generation current after the job (the one published, or the one read).
    pub generation: Option<Generation>,
    pub changed: bool,
    /// Names the source had that were left out (see `pulp`).
    pub skipped: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "outcome={} source={} repositories={} users={} grants={} generation={} changed={}",
            self.action.name(),
            self.source,
            self.repositories,
            self.users,
            self.grants,
            self.generation
                .as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string),
            self.changed
        )?;
        if self.skipped > 0 {
            write!(f, " skipped={}", self.skipped)?;
        }
        Ok(())
    }
}

/// The job's result: the summary (also for a refusal), and the error when it did not succeed.
#[derive(Debug)]
pub struct Report {
    pub summary: Option<Summary>,
    /// The changes, for a dry run.
    pub diff: Option<Diff>,
    pub result: Result<(), JobError>,
}

/// Runs the job: reads the source, then publishes (see the module documentation). Warnings
/// (names left out of the source, grants dropped with their repositories) go to stderr.
pub async fn run(config: &SyncConfig) -> Report {
    let failed = |error| Report {
        summary: None,
        diff: None,
        result: Err(error),
    };
    let (desired, source, skipped) = match read_source(&config.source).await {
        Ok(read) => read,
        Err(error) => return failed(error),
    };
    let sidecar = match Sidecar::new(config) {
        Ok(sidecar) => sidecar,
        Err(error) => return failed(error),
    };
    for _ in 0..MAX_ATTEMPTS {
        let current = match sidecar.current().await {
            Ok(current) => current,
            Err(error) => return failed(error),
        };
        let (generation, old) = match &current {
            Some((generation, content)) => (Some(generation.clone()), content),
            None => (None, &EMPTY),
        };
        let composed = match plan::compose(old, &desired) {
            Ok(composed) => composed,
            Err(problems) => return failed(JobError::Invalid(problems)),
        };
        if composed.dropped > 0 {
            eprintln!(
                "sync: {} grants of hosts or writers dropped with their repositories",
                composed.dropped
            );
        }
        let new = composed.content;
        let diff = plan::diff(old, &new);
        let summary = |action, generation, changed| Summary {
            action,
            source,
            repositories: new.repositories.len(),
            users: new.users.len(),
            grants: plan::user_grants(&new),
            generation,
            changed,
            skipped,
        };
        let refusal = (!config.force)
            .then(|| plan::shrink(old, &new, config.max_shrink_percent))
            .flatten();
        if config.dry_run {
            return Report {
                summary: Some(summary(Action::DryRun, generation, !diff.is_empty())),
                diff: Some(diff),
                result: refusal.map_or(Ok(()), |shrink| Err(JobError::Shrink(shrink))),
            };
        }
        if diff.is_empty() && generation.is_some() {
            return Report {
                summary: Some(summary(Action::Unchanged, generation, false)),
                diff: None,
                result: Ok(()),
            };
        }
        if let Some(shrink) = refusal {
            return Report {
                summary: Some(summary(Action::Refused, generation, false)),
                diff: None,
                result: Err(JobError::Shrink(shrink)),
            };
        }
        match sidecar
            .publish(&new, generation.as_ref(), config.force)
            .await
        {
            Ok(Some(published)) => {
                let action = if published.changed {
                    Action::Published
                } else {
                    Action::Unchanged
                };
                let generation = Generation::new(published.epoch, published.generation);
                return Report {
                    summary: Some(summary(action, Some(generation), published.changed)),
                    diff: None,
                    result: Ok(()),
                };
            }
            Ok(None) => continue,
            Err(error) => {
                let refused = matches!(error, JobError::WouldEmpty(_));
                return Report {
                    summary: refused.then(|| summary(Action::Refused, generation, false)),
                    diff: None,
                    result: Err(error),
                };
            }
        }
    }
    failed(JobError::Contended)
}

static EMPTY: Content = Content {
    repositories: Vec::new(),
    users: std::collections::BTreeMap::new(),
    hosts: std::collections::BTreeMap::new(),
    writers: std::collections::BTreeMap::new(),
    keys: Vec::new(),
    min_token_iat: None,
};

/// The source's desired content, its name for the summary, and how many names it left out.
async fn read_source(source: &SyncSource) -> Result<(Desired, &'static str, usize), JobError> {
    match source {
        SyncSource::File(path) => document::read(path)
            .map(|desired| (desired, "file", 0))
            .map_err(|e| JobError::Source(e.to_string())),
        SyncSource::Pulp(settings) => {
            let client =
                PulpClient::new(settings.clone()).map_err(|e| JobError::Source(e.to_string()))?;
            let inventory = client
                .inventory()
                .await
                .map_err(|e| JobError::Source(e.to_string()))?;
            let mapped = pulp::map(&inventory);
            for line in &mapped.skipped {
                eprintln!("sync: left out: {line}");
            }
            Ok((mapped.desired, "pulp", mapped.skipped.len()))
        }
    }
}

/// The answer to a publish.
#[derive(Debug, Deserialize)]
struct Published {
    epoch: String,
    generation: u64,
    changed: bool,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
}

/// The sidecar's snapshot API, with the sync secret.
struct Sidecar {
    http: reqwest::Client,
    url: String,
    authorization: String,
}

impl Sidecar {
    fn new(config: &SyncConfig) -> Result<Sidecar, JobError> {
        let http = http_client(&config.sidecar_tls, config.timeout)
            .build()
            .map_err(|e| JobError::Sidecar(format!("cannot build the HTTP client: {e}")))?;
        Ok(Sidecar {
            http,
            url: format!("{}/v1/snapshot", config.sidecar_url),
            authorization: format!("Bearer {}", String::from_utf8_lossy(&config.sync_secret.0)),
        })
    }

    /// The published generation and content; `None` when the sidecar has none to serve
    /// (nothing published yet — or its store is down, which the conditional publish finds).
    async fn current(&self) -> Result<Option<(Generation, Content)>, JobError> {
        let response = self
            .http
            .get(format!("{}?schema={}", self.url, Schema::CURRENT))
            .header(AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = read_limited(response).await?;
        match status {
            200 => {
                let unreadable = |e: String| {
                    JobError::Sidecar(format!("the published snapshot cannot be read: {e}"))
                };
                let index = registry_gate_index::Index::open(&body[..])
                    .map_err(|e| unreadable(e.to_string()))?;
                let generation = Generation::new(index.epoch(), index.generation());
                let content =
                    snapshot::content_of(&index).map_err(|e| unreadable(e.to_string()))?;
                Ok(Some((generation, content)))
            }
            503 => Ok(None),
            _ => Err(refusal("GET /v1/snapshot", status, &body)),
        }
    }

    /// Publishes `content` on `generation` (`None`: on nothing published yet). `Ok(None)`
    /// when another writer published first (412).
    async fn publish(
        &self,
        content: &Content,
        generation: Option<&Generation>,
        allow_empty: bool,
    ) -> Result<Option<Published>, JobError> {
        let body = serde_json::to_vec(content)
            .map_err(|e| JobError::Invalid(format!("cannot encode the content: {e}")))?;
        let url = if allow_empty {
            format!("{}?allow_empty=true", self.url)
        } else {
            self.url.clone()
        };
        let mut request = self
            .http
            .put(url)
            .header(AUTHORIZATION, &self.authorization)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        request = match generation {
            Some(generation) => request.header(IF_MATCH, generation.etag()),
            None => request.header(IF_NONE_MATCH, "*"),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = read_limited(response).await?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| JobError::Sidecar(format!("unreadable answer to the publish: {e}"))),
            412 => Ok(None),
            409 => Err(JobError::WouldEmpty(error_text(&body))),
            _ => Err(refusal("PUT /v1/snapshot", status, &body)),
        }
    }
}

fn unreachable(error: reqwest::Error) -> JobError {
    JobError::Sidecar(format!("unreachable: {}", error.without_url()))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, JobError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_SNAPSHOT_BODY {
            return Err(JobError::Sidecar(format!(
                "an answer larger than {MAX_SNAPSHOT_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The sidecar's `{"error": ...}` text, or the body's first bytes.
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body).map_or_else(
        |_| String::from_utf8_lossy(body.get(..200).unwrap_or(body)).into_owned(),
        |parsed| parsed.error,
    )
}

fn refusal(request: &str, status: u16, body: &[u8]) -> JobError {
    JobError::Sidecar(format!("{request} answered {status}: {}", error_text(body)))
}
