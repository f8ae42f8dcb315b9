//! The in-memory index a worker builds once per snapshot generation and decides from.
//!
//! Repository names are stored once, sorted; a repository's id is its position, so sorted
//! id lists are also sorted by name (which makes catalogs a merge, not a sort). Lookups by
//! name go through a `hashbrown::HashTable` of ids, so a decision costs one hash probe for the
//! repository, one for the principal and a binary search in that principal's (short) grant
//! list. The index is immutable: a new generation builds a new one and swaps it whole. It
//! never reads the network or the clock.

use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::identity::Principal;
use crate::route::Action;
use crate::snapshot::Content;

/// Repository id: a position in the sorted name list.
type RepoId = u32;

/// A decision-ready view of one snapshot's content.
#[derive(Debug, Clone, Default)]
pub struct Index {
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

impl Index {
    /// Builds the index. The content is assumed validated (`Content::validate`); grants to
    /// unknown repositories are ignored rather than trusted.
    pub fn build(content: &Content) -> Index {
        let mut repositories: Vec<(&str, bool)> = content
            .repositories
            .iter()
            .map(|r| (r.name.as_str(), r.auth_required))
            .collect();
        repositories.sort_unstable_by(|a, b| a.0.cmp(b.0));
        repositories.dedup_by(|a, b| a.0 == b.0);

        let hasher = DefaultHashBuilder::default();
        let mut index = Index {
            names: Vec::with_capacity(repositories.len()),
            auth_required: Vec::with_capacity(repositories.len()),
            by_name: HashTable::with_capacity(repositories.len()),
            hasher,
            ..Index::default()
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

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::snapshot::Repository;

    fn content() -> Content {
        let repo = |name: &str, auth_required| Repository {
            name: name.into(),
            auth_required,
        };
        Content {
            min_token_iat: None,
            repositories: vec![
                repo("team/b", true),
                repo("library/public", false),
                repo("team/a", true),
                repo("zz/public", false),
            ],
            users: [(
                "alice".to_string(),
                vec!["team/a".to_string(), "team/b".to_string()],
            )]
            .into_iter()
            .collect(),
            hosts: [("host-1".to_string(), vec!["team/b".to_string()])]
                .into_iter()
                .collect(),
            writers: [("alice".to_string(), vec!["team/a".to_string()])]
                .into_iter()
                .collect(),
            keys: vec![],
        }
    }

    #[test]
    fn permits_table() {
        let index = Index::build(&content());
        let alice = Principal::User("alice".into());
        let bob = Principal::User("bob".into());
        let host = Principal::Host("host-1".into());
        let anon = Principal::Anonymous;
        let rows: &[(&str, &Principal, &str, Action, bool)] = &[
            (
                "public pull by anonymous",
                &anon,
                "library/public",
                Action::Pull,
                true,
            ),
            (
                "public pull by stranger",
                &bob,
                "library/public",
                Action::Pull,
                true,
            ),
            (
                "private pull by anonymous",
                &anon,
                "team/a",
                Action::Pull,
                false,
            ),
            (
                "private pull by grantee",
                &alice,
                "team/a",
                Action::Pull,
                true,
            ),
            (
                "private pull by stranger",
                &bob,
                "team/a",
                Action::Pull,
                false,
            ),
            (
                "private pull by host grantee",
                &host,
                "team/b",
                Action::Pull,
                true,
            ),
            (
                "private pull by host without grant",
                &host,
                "team/a",
                Action::Pull,
                false,
            ),
            ("unknown repository", &alice, "team/c", Action::Pull, false),
            ("push by writer", &alice, "team/a", Action::Push, true),
            ("push by reader only", &alice, "team/b", Action::Push, false),
            (
                "push to public by anonymous",
                &anon,
                "library/public",
                Action::Push,
                false,
            ),
            ("delete by writer", &alice, "team/a", Action::Delete, true),
            ("push by host", &host, "team/b", Action::Push, false),
            (
                "user named like a host",
                &Principal::User("host-1".into()),
                "team/b",
                Action::Pull,
                false,
            ),
        ];
        for (case, who, repo, action, expected) in rows {
            assert_eq!(index.permits(who, repo, *action), *expected, "{case}");
        }
    }

    #[test]
    fn pullable_merges_sorted_and_pages() {
        let index = Index::build(&content());
        let alice = Principal::User("alice".into());
        let all: Vec<&str> = index.pullable(&alice, None).collect();
        assert_eq!(all, ["library/public", "team/a", "team/b", "zz/public"]);
        let anon: Vec<&str> = index.pullable(&Principal::Anonymous, None).collect();
        assert_eq!(anon, ["library/public", "zz/public"]);
        let after: Vec<&str> = index.pullable(&alice, Some("team/a")).collect();
        assert_eq!(after, ["team/b", "zz/public"]);
        let after_missing: Vec<&str> = index.pullable(&alice, Some("team/aa")).collect();
        assert_eq!(after_missing, ["team/b", "zz/public"]);
        let after_end: Vec<&str> = index.pullable(&alice, Some("zzz")).collect();
        assert!(after_end.is_empty());
    }

    #[test]
    fn public_flags() {
        let index = Index::build(&content());
        assert!(index.is_public("library/public"));
        assert!(!index.is_public("team/a"));
        assert!(!index.is_public("nope"));
        assert_eq!(index.len(), 4);
    }
}
