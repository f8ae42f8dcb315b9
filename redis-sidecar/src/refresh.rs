//! Login refreshes: at login a user's repositories are re-read from Katello's `/v2/_catalog`
//! (as the old gateway did), and the refreshes of a burst of logins are coalesced into one
//! publish, so a login storm never becomes a publish storm.
//!
//! One task owns the queue. It takes every refresh waiting, publishes them together as one
//! change on the current content (each user's grants replaced by the catalog's names that
//! the snapshot knows), answers every waiting login with the one result, and goes back for
//! more — refreshes that arrive while a publish runs make up the next one. A refresh that
//! changes nothing publishes nothing (the publisher skips equal content). This module must
//! never grant a repository the snapshot does not list, and never block a login beyond the
//! caller's own timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use registry_gate_core::snapshot::Content;
use tokio::sync::{mpsc, oneshot};

use crate::publisher::{PublishError, Published, Publisher, Request, Source};

/// Refreshes waiting to be published, at most.
const QUEUE: usize = 4096;

/// One user's repositories as Katello listed them at login.
#[derive(Debug)]
struct Refresh {
    user: String,
    repositories: BTreeSet<String>,
    done: oneshot::Sender<Result<Published, String>>,
}

/// Why a refresh was not published.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("too many login refreshes waiting")]
    Full,
    #[error("the refresh task stopped")]
    Stopped,
    #[error("publishing the refresh failed: {0}")]
    Publish(String),
}

/// The handle logins submit refreshes through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Refresher {
    queue: mpsc::Sender<Refresh>,
}

impl Refresher {
    /// Starts the task that publishes refreshes with `publisher`.
    pub fn start(publisher: Arc<Publisher>) -> Refresher {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(publisher, receiver));
        Refresher { queue }
    }

    /// Replaces `user`'s grants with `repositories` (those the snapshot lists) and waits for
    /// the publish that carries it, coalesced with every other refresh waiting.
    pub async fn refresh(
        &self,
        user: String,
        repositories: BTreeSet<String>,
    ) -> Result<Published, RefreshError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .try_send(Refresh {
                user,
                repositories,
                done,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => RefreshError::Full,
                mpsc::error::TrySendError::Closed(_) => RefreshError::Stopped,
            })?;
        answer
            .await
            .map_err(|_| RefreshError::Stopped)?
            .map_err(RefreshError::Publish)
    }
}

/// The task: one publish per batch of waiting refreshes.
async fn run(publisher: Arc<Publisher>, mut receiver: mpsc::Receiver<Refresh>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = receiver.try_recv() {
            batch.push(more);
        }
        // The last refresh of a user in the batch wins.
        let grants: BTreeMap<String, BTreeSet<String>> = batch
            .iter()
            .map(|r| (r.user.clone(), r.repositories.clone()))
            .collect();
        let users = grants.len();
        let result = publisher
            .publish(Request {
                source: Source::Change(Arc::new(move |current| with_grants(current, &grants))),
                if_match: None,
                allow_empty: false,
            })
            .await
            .map_err(|e: PublishError| e.to_string());
        match &result {
            Ok(published) => tracing::info!(
                logins = batch.len(),
                users,
                changed = published.changed,
                generation = published.generation.number,
                "login refreshes published"
            ),
            Err(error) => tracing::warn!(logins = batch.len(), %error, "login refreshes failed"),
        }
        for refresh in batch {
            let _ = refresh.done.send(result.clone());
        }
    }
}

/// `current` with each user's grants replaced by the repositories of `grants` that it lists.
pub fn with_grants(current: &Content, grants: &BTreeMap<String, BTreeSet<String>>) -> Content {
    let known: BTreeSet<&str> = current
        .repositories
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let mut next = current.clone();
    for (user, repositories) in grants {
        next.users.insert(
            user.clone(),
            repositories
                .iter()
                .filter(|name| known.contains(name.as_str()))
                .cloned()
                .collect(),
        );
    }
    next
}

#[cfg(test)]
mod tests {
    use registry_gate_core::snapshot::Repository;

    use super::*;

    fn repository(name: &str, auth_required: bool) -> Repository {
        Repository {
            name: name.into(),
            auth_required,
        }
    }

    #[test]
    fn grants_replace_the_users_and_keep_only_listed_repositories() {
        let mut current = Content {
            repositories: vec![repository("org/a", true), repository("org/b", false)],
            ..Content::default()
        };
        current.users.insert("keep".into(), vec!["org/a".into()]);
        current.users.insert("alice".into(), vec!["org/a".into()]);
        let grants = BTreeMap::from([
            (
                "alice".to_owned(),
                BTreeSet::from(["org/b".to_owned(), "org/gone".to_owned()]),
            ),
            ("new@example.com".to_owned(), BTreeSet::new()),
        ]);
        let next = with_grants(&current, &grants);
        assert_eq!(next.users["alice"], vec!["org/b".to_owned()]);
        assert_eq!(next.users["keep"], vec!["org/a".to_owned()]);
        assert!(next.users["new@example.com"].is_empty());
        assert_eq!(next.repositories, current.repositories);
        next.validate().expect("still valid");
    }
}
