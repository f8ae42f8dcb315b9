//! Katello's five sync pushes as typed changes: [`decode`] reads a body (form or JSON) into a
//! validated [`Change`], and [`apply`] computes the complete new snapshot content from the
//! current one. [`users`] answers `GET /users`.
//!
//! Owns the payload shapes, their validation and the replace semantics. It must never do
//! I/O or publish (the caller does, and logs [`Applied::dropped`]), and never accept a body
//! without its top-level list: the old gateway read a missing list as "wipe everything".
//!
//! Decoding rules, the same for both encodings:
//! - the top-level key (`repositories`, `users` or `hosts`) must be present; null (a form's
//!   bare key) or an empty list means an empty list;
//! - inner lists (a user's or host's repositories) may be null or absent: empty;
//! - `auth_required` is a boolean or the text `true`/`false` in any case (Katello compares
//!   `.to_s.downcase`); anything else, or its absence, is an error;
//! - repository names follow the core's OCI name rule, logins and host UUIDs the core's
//!   principal rule;
//! - unknown keys in the body or in an entry are ignored (Katello may add fields);
//! - every problem is reported at once (up to [`SHOWN_PROBLEMS`]) with where it is, e.g.
//!   `repositories[3].repository: "Foo" is not a valid repository name`.
//!
//! Forms group every login (or host) of a push into one hash (`[{"admin": …, "jdoe": …}]`)
//! while JSON sends one hash each; both are read by taking every key of every element, and a
//! principal named twice gets the union of its lists.

use std::collections::{BTreeMap, BTreeSet};

use registry_gate_core::identity::is_valid_principal_name;
use registry_gate_core::route::is_valid_repository_name;
use registry_gate_core::snapshot::{Content, Repository};
use serde_json::{Map, Value};
use thiserror::Error;

use super::form::{parse_nested_query, FormError, FormLimits};

/// One of Katello's sync pushes, named by its URL segment under `/container_gateway/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `PUT repository_list`: every repository and whether it needs a grant.
    RepositoryList,
    /// `PUT user_repository_mapping`: the repositories of the users `GET users` listed.
    UserRepositoryMapping,
    /// `PUT update_hosts`: the set of known content hosts.
    UpdateHosts,
    /// `PUT host_repository_mapping`: every host's repositories.
    HostRepositoryMapping,
    /// `PUT update_host_repositories`: some hosts' repositories.
    UpdateHostRepositories,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::RepositoryList,
        Endpoint::UserRepositoryMapping,
        Endpoint::UpdateHosts,
        Endpoint::HostRepositoryMapping,
        Endpoint::UpdateHostRepositories,
    ];

    /// The endpoint a URL segment names (exactly, without slashes; Katello's PUTs end in `/`,
    /// which the router strips).
    pub fn from_path_segment(segment: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.name() == segment)
    }

    /// The URL segment, e.g. `repository_list`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::RepositoryList => "repository_list",
            Endpoint::UserRepositoryMapping => "user_repository_mapping",
            Endpoint::UpdateHosts => "update_hosts",
            Endpoint::HostRepositoryMapping => "host_repository_mapping",
            Endpoint::UpdateHostRepositories => "update_host_repositories",
        }
    }

    /// The top-level key its body must carry.
    pub fn key(self) -> &'static str {
        match self {
            Endpoint::RepositoryList => "repositories",
            Endpoint::UserRepositoryMapping => "users",
            Endpoint::UpdateHosts
            | Endpoint::HostRepositoryMapping
            | Endpoint::UpdateHostRepositories => "hosts",
        }
    }
}

/// A decoded, validated push: one variant per [`Endpoint`]. Names in it passed the core's
/// rules; [`apply`] relies on that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `repository_list`: the new repository list, sorted by name, each name once.
    Repositories(Vec<Repository>),
    /// `user_repository_mapping`: login → repository names (sorted, deduplicated). The
    /// entries' `auth_required` is validated but not kept: a grant says who may read a
    /// repository whatever its flag.
    Users(BTreeMap<String, Vec<String>>),
    /// `update_hosts`: the host UUIDs (null and empty ones skipped, as Katello #38862).
    Hosts(BTreeSet<String>),
    /// `host_repository_mapping`: host UUID → repository names, for every host.
    HostGrants(BTreeMap<String, Vec<String>>),
    /// `update_host_repositories`: host UUID → repository names, for the listed hosts only.
    SomeHostGrants(BTreeMap<String, Vec<String>>),
}

impl Change {
    /// Whether this is an explicitly empty repository list: Katello's way of saying the
    /// proxy serves no container repository any more, published even over a non-empty
    /// snapshot (a missing list is an error, never this).
    pub fn empties_repositories(&self) -> bool {
        matches!(self, Change::Repositories(list) if list.is_empty())
    }
}

/// How many problems a [`SyncError::Invalid`] lists.
pub const SHOWN_PROBLEMS: usize = 20;

/// Why a push was refused. `reason()` names it for stats.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error(
        "content type {0:?} is not accepted: send application/x-www-form-urlencoded or application/json"
    )]
    ContentType(String),
    #[error("form body: {0}")]
    Form(#[from] FormError),
    #[error("JSON body: {0}")]
    Json(#[from] serde_json::Error),
    /// The top-level list is absent: never read as "empty", which would wipe a part.
    #[error("{key} is missing (send an empty list to clear it)")]
    Missing { key: &'static str },
    /// The first [`SHOWN_PROBLEMS`] problems, and how many there were.
    #[error("{}{}", .problems.join("; "), more(.problems.len(), *.total))]
    Invalid { problems: Vec<String>, total: usize },
}

impl SyncError {
    /// Stable snake_case name for stats.
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::ContentType(_) => "content_type",
            SyncError::Form(_) => "form",
            SyncError::Json(_) => "json",
            SyncError::Missing { .. } => "missing",
            SyncError::Invalid { .. } => "invalid",
        }
    }
}

fn more(shown: usize, total: usize) -> String {
    match total.saturating_sub(shown) {
        0 => String::new(),
        hidden => format!("; and {hidden} more problems"),
    }
}

/// Reads a push body for `endpoint`. `content_type` `application/json` (parameters such as
/// `charset` ignored) is JSON; `application/x-www-form-urlencoded` or none (Katello always
/// sends one) is a Rack-style form bounded by `limits`; anything else is refused.
pub fn decode(
    endpoint: Endpoint,
    body: &[u8],
    content_type: Option<&str>,
    limits: &FormLimits,
) -> Result<Change, SyncError> {
    let value = match media_type(content_type)? {
        Media::Form => parse_nested_query(body, limits)?,
        Media::Json => serde_json::from_slice(body)?,
    };
    decode_value(endpoint, &value)
}

enum Media {
    Form,
    Json,
}

fn media_type(content_type: Option<&str>) -> Result<Media, SyncError> {
    let Some(content_type) = content_type else {
        return Ok(Media::Form);
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(Media::Json)
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Media::Form)
    } else {
        Err(SyncError::ContentType(content_type.to_owned()))
    }
}

/// The typed reading of a parsed body, shared by both encodings (and by the sync job's
/// documents, which may also be YAML).
pub fn decode_value(endpoint: Endpoint, body: &Value) -> Result<Change, SyncError> {
    let key = endpoint.key();
    let mut problems = Problems::default();
    let list = match body {
        Value::Object(body) => match body.get(key) {
            None => return Err(SyncError::Missing { key }),
            Some(Value::Null) => &[][..],
            Some(Value::Array(list)) => list.as_slice(),
            Some(other) => {
                problems.add(format!("{key}: expected a list, got {}", kind(other)));
                &[][..]
            }
        },
        other => {
            problems.add(format!("body: expected an object, got {}", kind(other)));
            &[][..]
        }
    };
    let change = match endpoint {
        Endpoint::RepositoryList => Change::Repositories(repositories(list, &mut problems)),
        Endpoint::UserRepositoryMapping => Change::Users(grants(key, "login", list, &mut problems)),
        Endpoint::UpdateHosts => Change::Hosts(hosts(list, &mut problems)),
        Endpoint::HostRepositoryMapping => {
            Change::HostGrants(grants(key, "host UUID", list, &mut problems))
        }
        Endpoint::UpdateHostRepositories => {
            Change::SomeHostGrants(grants(key, "host UUID", list, &mut problems))
        }
    };
    problems.into_result(change)
}

/// `repositories`: each entry `{repository, auth_required}`; an exact repeat is dropped, a
/// repeat with the other `auth_required` is an error.
fn repositories(list: &[Value], problems: &mut Problems) -> Vec<Repository> {
    let mut seen: BTreeMap<String, (bool, usize)> = BTreeMap::new();
    for (index, entry) in list.iter().enumerate() {
        let at = format!("repositories[{index}]");
        let Some((name, auth_required)) = repository_entry(entry, &at, problems) else {
            continue;
        };
        match seen.get(&name) {
            None => {
                seen.insert(name, (auth_required, index));
            }
            Some(&(first, _)) if first == auth_required => {}
            Some(&(first, first_index)) => problems.add(format!(
                "{at}.auth_required: {name:?} is already listed at repositories[{first_index}] \
                 with auth_required {first}"
            )),
        }
    }
    seen.into_iter()
        .map(|(name, (auth_required, _))| Repository {
            name,
            auth_required,
        })
        .collect()
}

/// `users` or `hosts` grants: a list of hashes principal → list of repository entries.
fn grants(
    key: &str,
    what: &str,
    list: &[Value],
    problems: &mut Problems,
) -> BTreeMap<String, Vec<String>> {
    let mut grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (index, element) in list.iter().enumerate() {
        let at = format!("{key}[{index}]");
        let Value::Object(element) = element else {
            problems.add(format!("{at}: expected an object, got {}", kind(element)));
            continue;
        };
        for (principal, entries) in element {
            if !is_valid_principal_name(principal) {
                problems.add(format!("{at}: {principal:?} is not a valid {what}"));
            }
            let at = format!("{at}[{principal:?}]");
            let entries = match entries {
                Value::Null => &[][..],
                Value::Array(entries) => entries.as_slice(),
                other => {
                    problems.add(format!("{at}: expected a list, got {}", kind(other)));
                    &[][..]
                }
            };
            let names = grants.entry(principal.clone()).or_default();
            for (position, entry) in entries.iter().enumerate() {
                let at = format!("{at}[{position}]");
                if let Some((name, _)) = repository_entry(entry, &at, problems) {
                    names.insert(name);
                }
            }
        }
    }
    grants
        .into_iter()
        .map(|(principal, names)| (principal, names.into_iter().collect()))
        .collect()
}

/// `update_hosts`: each entry `{uuid}`; a null, absent or empty UUID is skipped.
fn hosts(list: &[Value], problems: &mut Problems) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    for (index, entry) in list.iter().enumerate() {
        let at = format!("hosts[{index}]");
        let Value::Object(entry) = entry else {
            problems.add(format!("{at}: expected an object, got {}", kind(entry)));
            continue;
        };
        match entry.get("uuid") {
            None | Some(Value::Null) => {}
            Some(Value::String(uuid)) if uuid.is_empty() => {}
            Some(Value::String(uuid)) if is_valid_principal_name(uuid) => {
                hosts.insert(uuid.clone());
            }
            Some(Value::String(uuid)) => {
                problems.add(format!("{at}.uuid: {uuid:?} is not a valid host UUID"));
            }
            Some(other) => {
                problems.add(format!("{at}.uuid: expected a string, got {}", kind(other)));
            }
        }
    }
    hosts
}

/// One `{repository, auth_required}` entry at `at`: its name and flag, or `None` after
/// recording every problem it has.
fn repository_entry(entry: &Value, at: &str, problems: &mut Problems) -> Option<(String, bool)> {
    let Value::Object(entry) = entry else {
        problems.add(format!("{at}: expected an object, got {}", kind(entry)));
        return None;
    };
    let name = repository_name(entry, at, problems);
    let auth_required = auth_required(entry, at, problems);
    Some((name?, auth_required?))
}

fn repository_name(
    entry: &Map<String, Value>,
    at: &str,
    problems: &mut Problems,
) -> Option<String> {
    match entry.get("repository") {
        None => problems.add(format!("{at}.repository is missing")),
        Some(Value::String(name)) if is_valid_repository_name(name) => return Some(name.clone()),
        Some(Value::String(name)) => problems.add(format!(
            "{at}.repository: {name:?} is not a valid repository name"
        )),
        Some(other) => problems.add(format!(
            "{at}.repository: expected a string, got {}",
            kind(other)
        )),
    }
    None
}

fn auth_required(entry: &Map<String, Value>, at: &str, problems: &mut Problems) -> Option<bool> {
    match entry.get("auth_required") {
        None => problems.add(format!("{at}.auth_required is missing")),
        Some(Value::Bool(flag)) => return Some(*flag),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => return Some(true),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => return Some(false),
        Some(Value::String(text)) => {
            problems.add(format!("{at}.auth_required: {text:?} is not true or false"))
        }
        Some(other) => problems.add(format!(
            "{at}.auth_required: expected true or false, got {}",
            kind(other)
        )),
    }
    None
}

/// A JSON type as a message names it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Collects problems; keeps the first [`SHOWN_PROBLEMS`] and counts the rest.
#[derive(Default)]
struct Problems {
    shown: Vec<String>,
    total: usize,
}

impl Problems {
    fn add(&mut self, problem: String) {
        self.total += 1;
        if self.shown.len() < SHOWN_PROBLEMS {
            self.shown.push(problem);
        }
    }

    fn into_result<T>(self, value: T) -> Result<T, SyncError> {
        if self.total == 0 {
            Ok(value)
        } else {
            Err(SyncError::Invalid {
                problems: self.shown,
                total: self.total,
            })
        }
    }
}

/// The content after a change, and what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub content: Content,
    /// Grants left out because they named a repository the new content does not list (the
    /// old gateway dropped them silently; the caller logs the count).
    pub dropped: usize,
}

/// The complete new content after `change`; keys are kept as they are, and writers too except
/// for grants on repositories that disappear. Per change:
/// - `Repositories`: replaces the list; every grant (users, hosts, writers) on a repository
///   that remains is kept, grants on repositories that disappeared are dropped (the principals
///   stay, possibly with no grants);
/// - `Users`: each named user gets exactly its listed (known) repositories; users it does not
///   name keep theirs (they logged in after Katello read `GET users`, and their login's
///   refresh granted them);
/// - `Hosts`: replaces the set of hosts: listed hosts keep their grants (new ones start with
///   none), unlisted hosts are removed;
/// - `HostGrants`: every listed host gets exactly its listed (known) repositories, known hosts
///   not listed keep existing with none, listed unknown hosts are added;
/// - `SomeHostGrants`: the listed hosts get exactly their listed (known) repositories (unknown
///   ones are added); other hosts are untouched.
///
/// The result passes `Content::validate` whenever `current` does (the change's names having
/// passed [`decode`]), and applying the same change again changes nothing.
pub fn apply(change: &Change, current: &Content) -> Applied {
    let mut content = current.clone();
    let dropped = apply_in_place(change, &mut content);
    Applied { content, dropped }
}

/// [`apply`] to `content` itself (the publisher applies a burst of changes to one copy);
/// returns how many grants of unknown repositories were dropped.
pub fn apply_in_place(change: &Change, content: &mut Content) -> usize {
    let mut dropped = 0;
    match change {
        Change::Repositories(repositories) => {
            content.repositories = repositories.clone();
            let known = names(&content.repositories);
            for grants in [&mut content.users, &mut content.hosts, &mut content.writers] {
                for granted in grants.values_mut() {
                    let before = granted.len();
                    granted.retain(|name| known.contains(name.as_str()));
                    dropped += before - granted.len();
                }
            }
        }
        Change::Users(users) => {
            // Logins it does not name keep their grants: Katello names the logins `GET users`
            // returned, and a login that arrived after that read was granted by its own
            // refresh; wiping it would lose that login until its next refresh.
            let known = names(&content.repositories);
            content
                .users
                .extend(known_grants(users, &known, &mut dropped));
        }
        Change::Hosts(hosts) => {
            let mut old = std::mem::take(&mut content.hosts);
            content.hosts = hosts
                .iter()
                .map(|host| (host.clone(), old.remove(host).unwrap_or_default()))
                .collect();
        }
        Change::HostGrants(grants) => {
            let known = names(&content.repositories);
            for granted in content.hosts.values_mut() {
                granted.clear();
            }
            content
                .hosts
                .extend(known_grants(grants, &known, &mut dropped));
        }
        Change::SomeHostGrants(grants) => {
            let known = names(&content.repositories);
            content
                .hosts
                .extend(known_grants(grants, &known, &mut dropped));
        }
    }
    dropped
}

/// `GET /users`: the logins of the users map, sorted.
pub fn users(content: &Content) -> Vec<String> {
    content.users.keys().cloned().collect()
}

fn names(repositories: &[Repository]) -> BTreeSet<&str> {
    repositories
        .iter()
        .map(|repository| repository.name.as_str())
        .collect()
}

/// `grants` restricted to `known` repositories, counting what was left out into `dropped`.
fn known_grants<'a>(
    grants: &'a BTreeMap<String, Vec<String>>,
    known: &'a BTreeSet<&str>,
    dropped: &'a mut usize,
) -> impl Iterator<Item = (String, Vec<String>)> + 'a {
    grants.iter().map(move |(principal, granted)| {
        let kept: Vec<String> = granted
            .iter()
            .filter(|name| known.contains(name.as_str()))
            .cloned()
            .collect();
        *dropped += granted.len() - kept.len();
        (principal.clone(), kept)
    })
}

#[cfg(test)]
mod tests;
