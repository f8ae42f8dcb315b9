//! Login refreshes: at login a user's repositories are re-read from Katello's `/v2/_catalog`
//! (as the old gateway did), and the refreshes of a burst of logins are coalesced into one
//! publish, so a login storm never becomes a publish storm.
//!
//! Per user, one catalog call at a time: concurrent logins of one user share it, and a user
//! refreshed less than the login cache's lifetime ago is not asked about again (the cache
//! answers those logins without Katello too). A catalog that matches the user's current
//! grants publishes nothing.
//!
//! One task owns the publish queue. It takes every refresh waiting (the first one lingers a
//! moment for others to join), publishes them together
//! as one change on the current content (each user's grants replaced by the catalog's names
//! that the snapshot knows), answers every waiting login with the one result, and goes back
//! for more — refreshes that arrive while a publish runs make up the next one. This module
//! must never grant a repository the snapshot does not list, and a failed refresh never fails
//! the login: the user keeps the grants the snapshot already has.
//!
//! A login never grows the snapshot for nothing: a user whose catalog grants nothing gets no
//! entry, and logins may add at most a configured number of users the snapshot does not list
//! between two syncs (a sync lists the users it knows); past that, a new user's grants wait
//! for the sync.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use registry_gate_core::snapshot::Content;
use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::cache::Cache;
use crate::login::CatalogRefresh;
use crate::publisher::{Authority, PublishError, Published, Publisher, Request, Source};

/// Refreshes waiting to be published, at most.
const QUEUE: usize = 4096;
/// How long the first refresh of a batch waits for others to join it: a burst of logins
/// arrives over tens of milliseconds, and each publish re-encodes the whole snapshot.
const LINGER: Duration = Duration::from_millis(50);
/// Users remembered as recently refreshed, at most (older entries are pruned first).
const RECENT: usize = 10_000;

/// One user's catalog refresh in progress, shared by the logins that wait for it.
type Flight = Arc<OnceCell<Outcome>>;

/// What a login learns of its refresh (logged, never returned to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Refreshed within the login cache's lifetime already: no call.
    Recent,
    /// Katello's catalog matches the user's grants: nothing published.
    Unchanged,
    /// The user's grants changed and this generation carries them.
    Published(u64),
    /// The catalog call or the publish failed; the user keeps the grants it had.
    Failed(String),
}

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
    #[error("logins added {0} users since the last sync; this one waits for the next sync")]
    TooManyNewUsers(usize),
    #[error("the refresh task stopped")]
    Stopped,
    #[error("publishing the refresh failed: {0}")]
    Publish(String),
}

/// The handle logins refresh through.
#[derive(Debug)]
pub struct Refresher {
    queue: mpsc::Sender<Refresh>,
    cache: Arc<Cache>,
    /// How long a refreshed user is not asked about again (the login cache's lifetime).
    fresh_for: Duration,
    /// Users not in the snapshot that logins may add between two syncs.
    max_new_users: usize,
    users: Mutex<Users>,
}

#[derive(Debug, Default)]
struct Users {
    flights: HashMap<String, Flight>,
    recent: HashMap<String, Instant>,
    /// Users logins added since the last sync (those the snapshot did not list).
    added: HashSet<String>,
}

impl Refresher {
    /// Starts the task that publishes refreshes with `publisher`; grants are compared with
    /// the snapshot in `cache`.
    pub fn start(
        publisher: Arc<Publisher>,
        cache: Arc<Cache>,
        fresh_for: Duration,
        max_new_users: usize,
    ) -> Refresher {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(publisher, receiver));
        Refresher {
            queue,
            cache,
            fresh_for,
            max_new_users,
            users: Mutex::default(),
        }
    }

    /// A sync published: the users logins added are now the sync's to keep or drop.
    pub fn synced(&self) {
        self.users().added.clear();
    }

    fn users(&self) -> std::sync::MutexGuard<'_, Users> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After `user` logged in through Katello: reads its catalog and publishes its grants if
    /// they changed, once per user at a time and at most once per `fresh_for`.
    pub async fn after_login(&self, user: &str, catalog: &CatalogRefresh) -> Outcome {
        let flight = {
            let mut users = self.users();
            if let Some(at) = users.recent.get(user) {
                if at.elapsed() < self.fresh_for {
                    return Outcome::Recent;
                }
            }
            Arc::clone(users.flights.entry(user.to_owned()).or_default())
        };
        flight
            .get_or_init(|| async {
                let outcome = self.refresh_catalog(user, catalog).await;
                let mut users = self.users();
                if users
                    .flights
                    .get(user)
                    .is_some_and(|current| Arc::ptr_eq(current, &flight))
                {
                    users.flights.remove(user);
                }
                if !matches!(outcome, Outcome::Failed(_)) && !self.fresh_for.is_zero() {
                    if users.recent.len() >= RECENT {
                        let fresh_for = self.fresh_for;
                        users.recent.retain(|_, at| at.elapsed() < fresh_for);
                    }
                    if users.recent.len() < RECENT {
                        users.recent.insert(user.to_owned(), Instant::now());
                    }
                }
                outcome
            })
            .await
            .clone()
    }

    /// One catalog call and, when the grants differ, the coalesced publish.
    async fn refresh_catalog(&self, user: &str, catalog: &CatalogRefresh) -> Outcome {
        let names: BTreeSet<String> = match catalog.run().await {
            Ok(names) => names.into_iter().collect(),
            Err(error) => return Outcome::Failed(format!("catalog: {error}")),
        };
        let (unchanged, listed) = self
            .cache
            .view()
            .current()
            .map_or((false, false), |current| {
                let wanted = granted(&private(&current.content), &names);
                match current.content.users.get(user) {
                    Some(grants) => (*grants == wanted, true),
                    // A user with nothing granted needs no entry.
                    None => (wanted.is_empty(), false),
                }
            });
        if unchanged {
            return Outcome::Unchanged;
        }
        if !listed {
            let mut users = self.users();
            if !users.added.contains(user) {
                if users.added.len() >= self.max_new_users {
                    let added = users.added.len();
                    return Outcome::Failed(RefreshError::TooManyNewUsers(added).to_string());
                }
                users.added.insert(user.to_owned());
            }
        }
        match self.refresh(user.to_owned(), names).await {
            Ok(published) => Outcome::Published(published.generation.number),
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }

    /// Replaces `user`'s grants with `repositories` (those the snapshot lists) and waits for
    /// the publish that carries it, coalesced with every other refresh waiting.
    async fn refresh(
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
        tokio::time::sleep(LINGER).await;
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
                source: Source::Change(Arc::new(move |content| with_grants(content, &grants))),
                precondition: None,
                allow_empty: false,
                authority: Authority::Sync,
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

/// `current` with each user's grants replaced by the repositories of `grants` that it lists
/// as needing a grant (Katello's catalog also names public repositories; as the old gateway
/// did, those are not recorded as grants).
pub fn with_grants(content: &mut Content, grants: &BTreeMap<String, BTreeSet<String>>) {
    let known = private(content);
    let users: Vec<(String, Vec<String>)> = grants
        .iter()
        .map(|(user, repositories)| (user.clone(), granted(&known, repositories)))
        // A user the snapshot does not list and nothing granted: no entry.
        .filter(|(user, grants)| !grants.is_empty() || content.users.contains_key(user))
        .collect();
    content.users.extend(users);
}

/// The repositories of `content` that need a grant.
fn private(content: &Content) -> BTreeSet<String> {
    content
        .repositories
        .iter()
        .filter(|r| r.auth_required)
        .map(|r| r.name.clone())
        .collect()
}

/// What a catalog listing `repositories` grants: the ones among `known`, sorted.
fn granted(known: &BTreeSet<String>, repositories: &BTreeSet<String>) -> Vec<String> {
    repositories
        .iter()
        .filter(|name| known.contains(*name))
        .cloned()
        .collect()
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
            ("bob".to_owned(), BTreeSet::from(["org/a".to_owned()])),
            ("new@example.com".to_owned(), BTreeSet::new()),
        ]);
        let mut next = current.clone();
        with_grants(&mut next, &grants);
        // org/b is public: no grant needed, none recorded.
        assert!(next.users["alice"].is_empty());
        assert_eq!(next.users["keep"], vec!["org/a".to_owned()]);
        assert_eq!(next.users["bob"], vec!["org/a".to_owned()]);
        assert!(
            !next.users.contains_key("new@example.com"),
            "nothing granted, no entry"
        );
        assert_eq!(next.repositories, current.repositories);
        next.validate().expect("still valid");
    }
}
