//! `--from-pulp`: what Pulp's REST API says about container distributions and who may pull
//! them, read into a [`Desired`].
//!
//! Read (every list paginated by following `next`, always on the configured origin, so the
//! credentials never go anywhere else):
//!
//! | request | gives |
//! |---|---|
//! | `GET /pulp/api/v3/roles/?contains_permission=…` | the roles that hold either pull permission below, and their permissions |
//! | `GET /pulp/api/v3/distributions/container/container/` | `base_path` → a repository, `private` → `auth_required`, and its namespace |
//! | `GET /pulp/api/v3/users/` | the users, whether active, and their groups |
//! | `GET <user>/roles/?role__in=…`, `GET <group>/roles/?role__in=…` | each active user's and each of their groups' assignments of those roles |
//!
//! That is O(users + groups) requests whatever the number of distributions, and it sees
//! model-wide assignments too, which a distribution's `list_roles` cannot show.
//!
//! Mapping ([`map`]), the way pulp-container's access policy decides `pull` on a private
//! distribution (`has_namespace_or_obj_perms:container.pull_containerdistribution`): a role
//! whose permissions include `container.pull_containerdistribution` grants pull on the
//! distribution it is assigned on (the locked roles `containerdistribution_consumer`,
//! `_collaborator`, `_owner`); one that includes `container.namespace_pull_containerdistribution`
//! grants pull on every distribution of the namespace it is assigned on
//! (`containernamespace_consumer`, `_collaborator`, `_owner`); either one assigned without an
//! object (model-wide or domain-wide) grants every distribution. A user gets its own
//! assignments and its groups'. Inactive users get nothing and are left out; superusers are
//! not visible through the API and get only what their roles grant.
//!
//! Names Pulp accepts that registry-gate does not (a `base_path` outside the OCI name grammar,
//! a username with control characters) are left out and reported, never guessed at: leaving a
//! repository out refuses it, so nothing opens up.
//!
//! It must never follow a redirect, never send the credentials to another origin, and never
//! log the password.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::ACCEPT;
use registry_gate_core::identity::is_valid_principal_name;
use registry_gate_core::route::is_valid_repository_name;
use registry_gate_core::snapshot::Repository;
use rustls::ClientConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use thiserror::Error;

use super::plan::{Desired, Grants};
use crate::client_tls::http_client;
use crate::config::Secret;

/// The permission that lets a role's holder pull from the distribution it is assigned on.
pub const PULL: &str = "container.pull_containerdistribution";
/// The permission that lets a role's holder pull from every distribution of the namespace it
/// is assigned on.
pub const NAMESPACE_PULL: &str = "container.namespace_pull_containerdistribution";
/// Items asked for per page (Pulp may answer fewer; `next` says where the rest are).
const PAGE_SIZE: usize = 1000;
/// The largest page read.
const MAX_PAGE_BODY: usize = 64 * 1024 * 1024;

/// Why Pulp could not be read.
#[derive(Debug, Error)]
pub enum PulpError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("Pulp is unreachable ({path}): {reason}")]
    Unreachable { path: String, reason: String },
    #[error("Pulp answered {status} to GET {path}")]
    Status { path: String, status: u16 },
    #[error("Pulp's answer to GET {path} is malformed: {reason}")]
    Malformed { path: String, reason: String },
}

/// How the job authenticates to Pulp: Basic credentials, a client certificate (in the TLS
/// configuration), or both.
#[derive(Debug, Clone)]
pub struct PulpSettings {
    /// The origin, e.g. `https://pulp.example.com`, without a trailing slash.
    pub url: String,
    pub tls: Arc<ClientConfig>,
    /// Username and password for Basic authentication.
    pub basic: Option<(String, Secret)>,
    /// Bound on connecting and on each request.
    pub timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    next: Option<String>,
    results: Vec<T>,
}

/// A container distribution, as far as the job reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Distribution {
    pub pulp_href: String,
    pub base_path: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A role and its permissions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A user and its groups.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub pulp_href: String,
    pub username: String,
    #[serde(default = "active")]
    pub is_active: bool,
    #[serde(default)]
    pub groups: Vec<GroupRef>,
}

fn active() -> bool {
    true
}

/// A group a user belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupRef {
    pub pulp_href: String,
}

/// One role assignment of a user or group: the role, and the object it is assigned on
/// (`None`: model-wide or domain-wide).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Assignment {
    pub role: String,
    #[serde(default)]
    pub content_object: Option<String>,
}

/// Everything read from Pulp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub distributions: Vec<Distribution>,
    pub roles: Vec<Role>,
    pub users: Vec<User>,
    /// By user `pulp_href`.
    pub user_roles: BTreeMap<String, Vec<Assignment>>,
    /// By group `pulp_href`.
    pub group_roles: BTreeMap<String, Vec<Assignment>>,
}

/// The desired content, and what was left out (one line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub desired: Desired,
    pub skipped: Vec<String>,
}

/// The repositories and user grants an inventory confers (see the module documentation).
pub fn map(inventory: &Inventory) -> Mapped {
    let mut skipped = Vec::new();
    let mut repositories: BTreeMap<&str, bool> = BTreeMap::new();
    let mut by_href: BTreeMap<&str, &str> = BTreeMap::new();
    let mut by_namespace: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for distribution in &inventory.distributions {
        let name = distribution.base_path.as_str();
        if !is_valid_repository_name(name) {
            skipped.push(format!(
                "distribution {name:?}: base_path is not a valid repository name"
            ));
            continue;
        }
        if repositories.insert(name, distribution.private).is_some() {
            skipped.push(format!(
                "distribution {:?}: base_path {name:?} is listed twice",
                distribution.pulp_href
            ));
            continue;
        }
        by_href.insert(&distribution.pulp_href, name);
        if let Some(namespace) = &distribution.namespace {
            by_namespace.entry(namespace).or_default().push(name);
        }
    }
    // role name → (pull on the distribution, pull on the namespace's distributions)
    let pulls: BTreeMap<&str, (bool, bool)> = inventory
        .roles
        .iter()
        .map(|role| {
            let has = |p: &str| role.permissions.iter().any(|held| held == p);
            (role.name.as_str(), (has(PULL), has(NAMESPACE_PULL)))
        })
        .filter(|(_, (pull, namespace_pull))| *pull || *namespace_pull)
        .collect();
    let granted = |assignments: Option<&Vec<Assignment>>, into: &mut BTreeSet<String>| {
        for assignment in assignments.into_iter().flatten() {
            let Some(&(pull, namespace_pull)) = pulls.get(assignment.role.as_str()) else {
                continue;
            };
            match assignment.content_object.as_deref() {
                None => into.extend(repositories.keys().map(|name| (*name).to_owned())),
                Some(object) => {
                    if let (true, Some(name)) = (pull, by_href.get(object)) {
                        into.insert((*name).to_owned());
                    }
                    if let (true, Some(names)) = (namespace_pull, by_namespace.get(object)) {
                        into.extend(names.iter().map(|name| (*name).to_owned()));
                    }
                }
            }
        }
    };
    let mut users = Grants::new();
    for user in inventory.users.iter().filter(|user| user.is_active) {
        if !is_valid_principal_name(&user.username) {
            skipped.push(format!(
                "user {:?}: the username is not a valid login",
                user.pulp_href
            ));
            continue;
        }
        let mut names = BTreeSet::new();
        granted(inventory.user_roles.get(&user.pulp_href), &mut names);
        for group in &user.groups {
            granted(inventory.group_roles.get(&group.pulp_href), &mut names);
        }
        users.insert(user.username.clone(), names.into_iter().collect());
    }
    Mapped {
        desired: Desired {
            repositories: repositories
                .into_iter()
                .map(|(name, auth_required)| Repository {
                    name: name.to_owned(),
                    auth_required,
                })
                .collect(),
            users: Some(users),
            ..Desired::default()
        },
        skipped,
    }
}

/// Reads Pulp's API.
#[derive(Debug)]
pub struct PulpClient {
    http: reqwest::Client,
    settings: PulpSettings,
}

impl PulpClient {
    pub fn new(settings: PulpSettings) -> Result<PulpClient, PulpError> {
        let http = http_client(&settings.tls, settings.timeout)
            .build()
            .map_err(|e| PulpError::Client(e.to_string()))?;
        Ok(PulpClient { http, settings })
    }

    /// Everything [`map`] needs: only the roles that confer pull, and only their assignments.
    pub async fn inventory(&self) -> Result<Inventory, PulpError> {
        let roles: Vec<Role> = self
            .list(
                "/pulp/api/v3/roles/",
                &format!(
                    "fields=name,permissions&contains_permission={PULL}&contains_permission={NAMESPACE_PULL}"
                ),
            )
            .await?;
        let distributions = self
            .list(
                "/pulp/api/v3/distributions/container/container/",
                "fields=pulp_href,base_path,private,namespace",
            )
            .await?;
        let users: Vec<User> = self
            .list(
                "/pulp/api/v3/users/",
                "fields=pulp_href,username,is_active,groups",
            )
            .await?;
        let mut user_roles = BTreeMap::new();
        let mut group_roles = BTreeMap::new();
        if !roles.is_empty() {
            let names: Vec<String> = roles
                .iter()
                .map(|role| form_urlencoded::byte_serialize(role.name.as_bytes()).collect())
                .collect();
            let query = format!("fields=role,content_object&role__in={}", names.join(","));
            for user in users.iter().filter(|user| user.is_active) {
                let assignments = self.assignments(&user.pulp_href, &query).await?;
                user_roles.insert(user.pulp_href.clone(), assignments);
                for group in &user.groups {
                    if !group_roles.contains_key(&group.pulp_href) {
                        let assignments = self.assignments(&group.pulp_href, &query).await?;
                        group_roles.insert(group.pulp_href.clone(), assignments);
                    }
                }
            }
        }
        Ok(Inventory {
            distributions,
            roles,
            users,
            user_roles,
            group_roles,
        })
    }

    /// The role assignments of a user or group (`href` as Pulp gave it).
    async fn assignments(&self, href: &str, query: &str) -> Result<Vec<Assignment>, PulpError> {
        let path = format!("{}/roles/", href.trim_end_matches('/'));
        self.list(&path, query).await
    }

    /// Every item of a paginated list at `path` (an absolute path on the origin) with
    /// `query` (filters and fields).
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &str,
    ) -> Result<Vec<T>, PulpError> {
        let mut items = Vec::new();
        let mut next = Some(format!("{path}?limit={PAGE_SIZE}&{query}"));
        while let Some(path_and_query) = next.take() {
            let page: Page<T> = self.get(&path_and_query).await?;
            items.extend(page.results);
            next = page
                .next
                .map(|url| on_origin(&url))
                .transpose()
                .map_err(|reason| PulpError::Malformed {
                    path: path.to_owned(),
                    reason,
                })?;
        }
        Ok(items)
    }

    async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, PulpError> {
        let path = path_and_query
            .split('?')
            .next()
            .unwrap_or(path_and_query)
            .to_owned();
        if !path.starts_with('/') {
            return Err(PulpError::Malformed {
                path,
                reason: "not an absolute path".into(),
            });
        }
        let url = format!("{}{path_and_query}", self.settings.url);
        let mut request = self.http.get(url).header(ACCEPT, "application/json");
        if let Some((username, password)) = &self.settings.basic {
            request = request.basic_auth(username, Some(String::from_utf8_lossy(&password.0)));
        }
        let unreachable = |e: reqwest::Error| PulpError::Unreachable {
            path: path.clone(),
            reason: e.without_url().to_string(),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(PulpError::Status { path, status });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_PAGE_BODY {
                return Err(PulpError::Malformed {
                    path,
                    reason: format!("a page larger than {MAX_PAGE_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| PulpError::Malformed {
            path,
            reason: e.to_string(),
        })
    }
}

/// The path and query of a `next` link (absolute URL or path), to be asked of the configured
/// origin whatever host Pulp put in it (Pulp builds links from the request's `Host`, which a
/// proxy may have changed).
fn on_origin(url: &str) -> Result<String, String> {
    if url.starts_with('/') {
        return Ok(url.to_owned());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("next link {url:?}: {e}"))?;
    Ok(match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    })
}

#[cfg(test)]
mod tests;
