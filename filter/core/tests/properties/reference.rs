//! The reference model of the differential properties: the index the filter built from a
//! JSON snapshot's `Content` before schema 2 (hash maps of owned names), kept as the oracle
//! every query of the binary index must agree with. Test code only.

use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use registry_gate_core::identity::Principal;
use registry_gate_core::route::Action;
use registry_gate_core::snapshot::Content;

/// Repository id: a position in the sorted name list.
type RepoId = u32;

/// A decision-ready view of one snapshot's content.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    /// Sorted, unique repository names; the id of a repository is its position here.
    names: Vec<Box<str>>,
    /// `auth_required` per id.
    auth_required: Vec<bool>,
    /// Ids of `names`, hashed by name.
    by_name: HashTable<RepoId>,
    hasher: DefaultHashBuilder,
    /// Ids of repositories anyone may pull, ascending.
    public: Vec<RepoId>,
    /// Principal → ids it may pull, ascending.
    users: HashMap<Box<str>, Vec<RepoId>>,
    hosts: HashMap<Box<str>, Vec<RepoId>>,
    /// User → ids it may push to and delete from, ascending.
    writers: HashMap<Box<str>, Vec<RepoId>>,
}

impl Reference {
    /// Builds the index. The content is assumed validated (`Content::validate`); grants to
    /// unknown repositories are ignored rather than trusted.
    pub fn build(content: &Content) -> Reference {
        let mut repositories: Vec<(&str, bool)> = content
            .repositories
            .iter()
            .map(|r| (r.name.as_str(), r.auth_required))
            .collect();
        repositories.sort_unstable_by(|a, b| a.0.cmp(b.0));
        repositories.dedup_by(|a, b| a.0 == b.0);

        let hasher = DefaultHashBuilder::default();
        let mut index = Reference {
            names: Vec::with_capacity(repositories.len()),
            auth_required: Vec::with_capacity(repositories.len()),
            by_name: HashTable::with_capacity(repositories.len()),
            hasher,
            ..Reference::default()
        };
        for (name, auth_required) in repositories {
            let Ok(id) = RepoId::try_from(index.names.len()) else {
                break;
            };
            let hash = index.hasher.hash_one(name);
            let names = &index.names;
            let hasher = &index.hasher;
            index.by_name.insert_unique(hash, id, |other| {
                names
                    .get(*other as usize)
                    .map_or(0, |n| hasher.hash_one(&**n))
            });
            index.names.push(name.into());
            index.auth_required.push(auth_required);
            if !auth_required {
                index.public.push(id);
            }
        }
        index.users = index.grants(&content.users);
        index.hosts = index.grants(&content.hosts);
        index.writers = index.grants(&content.writers);
        index
    }

    fn grants(
        &self,
        part: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> HashMap<Box<str>, Vec<RepoId>> {
        part.iter()
            .map(|(principal, names)| {
                let mut ids: Vec<RepoId> = names.iter().filter_map(|n| self.id(n)).collect();
                ids.sort_unstable();
                ids.dedup();
                (principal.as_str().into(), ids)
            })
            .collect()
    }

    fn id(&self, name: &str) -> Option<RepoId> {
        let hash = self.hasher.hash_one(name);
        self.by_name
            .find(hash, |id| {
                self.names.get(*id as usize).is_some_and(|n| &**n == name)
            })
            .copied()
    }

    /// Number of repositories.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the index has no repositories.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether `repository` exists and anyone may pull it.
    pub fn is_public(&self, repository: &str) -> bool {
        self.id(repository)
            .and_then(|id| self.auth_required.get(id as usize))
            .is_some_and(|required| !required)
    }

    /// Whether `who` may perform `action` on `repository` according to the snapshot alone.
    /// Unknown repositories permit nothing.
    pub fn permits(&self, who: &Principal, repository: &str, action: Action) -> bool {
        let Some(id) = self.id(repository) else {
            return false;
        };
        match action {
            Action::Pull => {
                self.auth_required.get(id as usize) == Some(&false)
                    || self.pull_grants(who).binary_search(&id).is_ok()
            }
            Action::Push | Action::Delete => match who {
                Principal::User(user) => self
                    .writers
                    .get(user.as_str())
                    .is_some_and(|ids| ids.binary_search(&id).is_ok()),
                Principal::Anonymous | Principal::Host(_) => false,
            },
        }
    }

    fn pull_grants(&self, who: &Principal) -> &[RepoId] {
        let granted = match who {
            Principal::Anonymous => None,
            Principal::User(user) => self.users.get(user.as_str()),
            Principal::Host(host) => self.hosts.get(host.as_str()),
        };
        granted.map_or(&[], Vec::as_slice)
    }

    /// Names `who` may pull (its grants ∪ public repositories), ascending, starting strictly
    /// after `after` when given.
    pub fn pullable<'a>(
        &'a self,
        who: &Principal,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let start = match after {
            Some(last) => self.names.partition_point(|n| &**n <= last),
            None => 0,
        };
        let from = RepoId::try_from(start).unwrap_or(RepoId::MAX);
        let granted = self.pull_grants(who);
        let granted = granted
            .get(granted.partition_point(|id| *id < from)..)
            .unwrap_or(&[]);
        let public = self
            .public
            .get(self.public.partition_point(|id| *id < from)..)
            .unwrap_or(&[]);
        Merge {
            a: granted.iter().copied().peekable(),
            b: public.iter().copied().peekable(),
        }
        .filter_map(move |id| self.names.get(id as usize).map(|n| &**n))
    }
}

/// Union of two ascending id lists, ascending, without duplicates.
struct Merge<A: Iterator<Item = RepoId>, B: Iterator<Item = RepoId>> {
    a: core::iter::Peekable<A>,
    b: core::iter::Peekable<B>,
}

impl<A: Iterator<Item = RepoId>, B: Iterator<Item = RepoId>> Iterator for Merge<A, B> {
    type Item = RepoId;

    fn next(&mut self) -> Option<RepoId> {
        match (self.a.peek().copied(), self.b.peek().copied()) {
            (Some(x), Some(y)) if x == y => {
                self.a.next();
                self.b.next()
            }
            (Some(x), Some(y)) if x < y => self.a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => self.b.next(),
            (Some(_), None) => self.a.next(),
            (None, None) => None,
        }
    }
}
