//! The gate's questions to a snapshot index: is a repository known, is it public, may this
//! principal pull or write it, and which repositories may it list.
//!
//! A thin view over `registry_gate_index::Index` (schema 2, queried in place): this module
//! only maps the core's vocabulary ([`Principal`], [`Action`]) onto the index's parts
//! (users, hosts, writers), so the decision never builds a map and never sees a byte. It
//! never reads the network or the clock.

use registry_gate_index::{Ids, IndexError, Part};

use crate::identity::Principal;
use crate::route::Action;

/// A decision-ready snapshot index: validated bytes, queried in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    stored: registry_gate_index::Index,
}

impl Index {
    /// Validates `bytes` (not their signature) and keeps them.
    pub fn open(bytes: Vec<u8>) -> Result<Index, IndexError> {
        registry_gate_index::Index::open(bytes).map(|stored| Index { stored })
    }

    /// Keeps bytes a full validation accepted before, named by `checksum` (see
    /// `registry_gate_index::Index::open_known`).
    pub fn open_known(bytes: Vec<u8>, checksum: u64) -> Result<Index, IndexError> {
        registry_gate_index::Index::open_known(bytes, checksum).map(|stored| Index { stored })
    }

    /// The index itself, for its header fields and tables.
    pub fn stored(&self) -> &registry_gate_index::Index {
        &self.stored
    }

    /// Number of repositories.
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// Whether the index has no repositories.
    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }

    /// Whether `repository` exists and anyone may pull it.
    pub fn is_public(&self, repository: &str) -> bool {
        self.stored
            .repository(repository)
            .is_some_and(|found| !found.auth_required)
    }

    /// Whether `who` may perform `action` on `repository` according to the snapshot alone.
    /// Unknown repositories permit nothing.
    pub fn permits(&self, who: &Principal, repository: &str, action: Action) -> bool {
        let Some(found) = self.stored.repository(repository) else {
            return false;
        };
        match action {
            Action::Pull => !found.auth_required || self.pull_grants(who).contains(found.id),
            Action::Push | Action::Delete => match who {
                Principal::User(user) => self
                    .stored
                    .grants(Part::Writers, user)
                    .is_some_and(|ids| ids.contains(found.id)),
                Principal::Anonymous | Principal::Host(_) => false,
            },
        }
    }

    fn pull_grants(&self, who: &Principal) -> Ids<'_> {
        let granted = match who {
            Principal::Anonymous => None,
            Principal::User(user) => self.stored.grants(Part::Users, user),
            Principal::Host(host) => self.stored.grants(Part::Hosts, host),
        };
        granted.unwrap_or(Ids::EMPTY)
    }

    /// Names `who` may pull (its grants ∪ public repositories), ascending, starting strictly
    /// after `after` when given.
    pub fn pullable<'a>(
        &'a self,
        who: &Principal,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let from = after.map_or(0, |last| self.stored.first_after(last));
        self.stored.pullable(self.pull_grants(who), from)
    }
}

#[cfg(test)]
impl Index {
    /// The index of `content` (generation 1 of epoch `test`, unsigned), for tests.
    pub(crate) fn of(content: &crate::snapshot::Content) -> Index {
        let stamp = crate::snapshot::Stamp {
            epoch: "test".into(),
            generation: 1,
            published_at: 0,
            producer: "test".into(),
            allow_empty: false,
        };
        let bytes = crate::snapshot::build_index(content, &stamp).unwrap();
        Index::open(bytes).unwrap()
    }
}
