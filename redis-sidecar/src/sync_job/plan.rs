//! What the sync job would publish, as pure functions over plain data: [`compose`] builds the
//! complete new content from the current snapshot and what a source says ([`Desired`]),
//! [`diff`] lists what would change, and [`shrink`] is the guard that refuses a source that
//! suddenly lost most of the published repositories.
//!
//! It must never do I/O, and never produce a content that fails `Content::validate`: a source
//! that names unknown repositories in its grants is an error, not a silent drop.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use registry_gate_core::snapshot::{Content, Repository};
use registry_gate_core::token::KeySpec;

use crate::katello::{apply, Change};

/// Grants by principal (user login, host UUID): repository names.
pub type Grants = BTreeMap<String, Vec<String>>;

/// What a source says the snapshot should hold. `repositories` always replaces the current
/// list; every other part replaces the current one only when the source names it (`Some`),
/// and is otherwise kept, less its grants on repositories that disappear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub repositories: Vec<Repository>,
    pub users: Option<Grants>,
    pub hosts: Option<Grants>,
    pub writers: Option<Grants>,
    pub keys: Option<Vec<KeySpec>>,
    /// `Some(None)` clears it; `None` keeps the current one.
    pub min_token_iat: Option<Option<u64>>,
}

/// The new content and what was left out of the parts the source did not name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub content: Content,
    /// Grants of kept parts (hosts, writers, or users when the source names none) dropped
    /// because their repository disappeared.
    pub dropped: usize,
}

/// The complete new content: `current` with `desired` applied (see [`Desired`]), canonical
/// and validated. `Err` lists every problem (e.g. a grant on a repository the source does not
/// list).
pub fn compose(current: &Content, desired: &Desired) -> Result<Composed, String> {
    // The Katello sync API's rule for a new repository list: the list replaced, grants on
    // repositories that remain kept, the others dropped.
    let mut content = apply(&Change::Repositories(desired.repositories.clone()), current).content;
    let mut dropped = 0;
    for (part, was, named) in [
        (&mut content.users, &current.users, &desired.users),
        (&mut content.hosts, &current.hosts, &desired.hosts),
        (&mut content.writers, &current.writers, &desired.writers),
    ] {
        match named {
            Some(named) => part.clone_from(named),
            None => dropped += count(was).saturating_sub(count(part)),
        }
    }
    if let Some(keys) = &desired.keys {
        content.keys.clone_from(keys);
    }
    if let Some(min_token_iat) = desired.min_token_iat {
        content.min_token_iat = min_token_iat;
    }
    content.canonicalize();
    content.validate().map_err(|e| e.to_string())?;
    Ok(Composed { content, dropped })
}

fn count(grants: &Grants) -> usize {
    grants.values().map(Vec::len).sum()
}

/// The number of user grants of a content (for the summary line).
pub fn user_grants(content: &Content) -> usize {
    count(&content.users)
}

/// What publishing `new` over `old` changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub repositories_added: Vec<Repository>,
    pub repositories_removed: Vec<String>,
    /// Repositories whose `auth_required` changed, with the new value.
    pub auth_changed: Vec<Repository>,
    /// `(kind, principal)`, kind `user`, `host` or `writer`.
    pub principals_added: Vec<(&'static str, String)>,
    pub principals_removed: Vec<(&'static str, String)>,
    /// `(kind, principal, repository)`.
    pub grants_added: Vec<(&'static str, String, String)>,
    pub grants_removed: Vec<(&'static str, String, String)>,
    pub keys_changed: bool,
    pub min_token_iat_changed: bool,
}

impl Diff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == Diff::default()
    }
}

/// What changes from `old` to `new` (both canonical, as [`compose`] and the snapshot
/// decoder give them).
pub fn diff(old: &Content, new: &Content) -> Diff {
    let mut diff = Diff::default();
    let before: BTreeMap<&str, bool> = old
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), r.auth_required))
        .collect();
    let after: BTreeMap<&str, bool> = new
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), r.auth_required))
        .collect();
    for (name, auth_required) in &after {
        let repository = Repository {
            name: (*name).to_owned(),
            auth_required: *auth_required,
        };
        match before.get(name) {
            None => diff.repositories_added.push(repository),
            Some(old) if old != auth_required => diff.auth_changed.push(repository),
            Some(_) => {}
        }
    }
    diff.repositories_removed = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .map(|name| (*name).to_owned())
        .collect();
    for (kind, old, new) in [
        ("user", &old.users, &new.users),
        ("host", &old.hosts, &new.hosts),
        ("writer", &old.writers, &new.writers),
    ] {
        for principal in new.keys().filter(|p| !old.contains_key(*p)) {
            diff.principals_added.push((kind, principal.clone()));
        }
        for principal in old.keys().filter(|p| !new.contains_key(*p)) {
            diff.principals_removed.push((kind, principal.clone()));
        }
        let pairs = |grants: &Grants| -> BTreeSet<(String, String)> {
            grants
                .iter()
                .flat_map(|(p, names)| names.iter().map(move |n| (p.clone(), n.clone())))
                .collect()
        };
        let (old, new) = (pairs(old), pairs(new));
        for (principal, name) in new.difference(&old) {
            diff.grants_added
                .push((kind, principal.clone(), name.clone()));
        }
        for (principal, name) in old.difference(&new) {
            diff.grants_removed
                .push((kind, principal.clone(), name.clone()));
        }
    }
    diff.keys_changed = old.keys != new.keys;
    diff.min_token_iat_changed = old.min_token_iat != new.min_token_iat;
    diff
}

/// One line per change: `+` added, `-` removed, `~` changed.
impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = |required: bool| {
            if required {
                "auth_required"
            } else {
                "public"
            }
        };
        for r in &self.repositories_added {
            writeln!(f, "+ repository {} ({})", r.name, auth(r.auth_required))?;
        }
        for name in &self.repositories_removed {
            writeln!(f, "- repository {name}")?;
        }
        for r in &self.auth_changed {
            writeln!(f, "~ repository {} now {}", r.name, auth(r.auth_required))?;
        }
        for (kind, principal) in &self.principals_added {
            writeln!(f, "+ {kind} {principal}")?;
        }
        for (kind, principal) in &self.principals_removed {
            writeln!(f, "- {kind} {principal}")?;
        }
        for (kind, principal, name) in &self.grants_added {
            writeln!(f, "+ grant {kind} {principal} {name}")?;
        }
        for (kind, principal, name) in &self.grants_removed {
            writeln!(f, "- grant {kind} {principal} {name}")?;
        }
        if self.keys_changed {
            writeln!(f, "~ keys")?;
        }
        if self.min_token_iat_changed {
            writeln!(f, "~ min_token_iat")?;
        }
        Ok(())
    }
}

/// A publish the shrink guard refuses: more than the allowed share of the published
/// repositories would disappear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shrink {
    /// Repositories published now.
    pub current: usize,
    /// Of those, how many the new content lacks.
    pub disappearing: usize,
    /// The most that may disappear, in percent of `current`.
    pub max_percent: u8,
}

impl fmt::Display for Shrink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of the {} published repositories would disappear (more than {}%)",
            self.disappearing, self.current, self.max_percent
        )
    }
}

/// `Some` when publishing `new` over `old` would remove more than `max_percent` percent of
/// `old`'s repositories (never when `old` has none).
pub fn shrink(old: &Content, new: &Content, max_percent: u8) -> Option<Shrink> {
    let kept: BTreeSet<&str> = new.repositories.iter().map(|r| r.name.as_str()).collect();
    let current = old.repositories.len();
    let disappearing = old
        .repositories
        .iter()
        .filter(|r| !kept.contains(r.name.as_str()))
        .count();
    (disappearing * 100 > usize::from(max_percent) * current).then_some(Shrink {
        current,
        disappearing,
        max_percent,
    })
}

#[cfg(test)]
mod tests;
