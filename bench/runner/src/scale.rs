//! Large snapshots for the scale measurement (`make bench-scale`, issue 9) and the request-path
//! bench's "large snapshot installed" row: a deterministic generator of the native content
//! `PUT /v1/snapshot` accepts, sized by [`Scale`].
//!
//! Shape, for `Scale { repositories: N, users: U, grants: G, seed }`:
//! - N repositories named like Katello's container repositories,
//!   `org-<oo>/<environment>/product-<pppp>/repo-<iiiiii>` (about 40 bytes each); every 20th
//!   (5 %) is public (`auth_required: false`), the rest need a grant;
//! - U users `user-<jjjjj>`;
//! - G grants spread uniformly: each user holds ⌊G/U⌋ or ⌈G/U⌉ distinct repositories (at
//!   most N), drawn with a splitmix64 generator seeded by `seed` — so equal specs give equal
//!   documents, byte for byte once canonicalized;
//! - the probe pair ([`Scale::probe`]): user `user-00000` always holds repository 0, which is
//!   private, so a bench can check a decision that needs the grant.
//!
//! [`mark`] adds one repository granted to the probe user: a small change that makes a new
//! generation and flips a probe request from 404 to 200. It never reads the clock or the OS
//! random generator.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// How large a snapshot to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub repositories: usize,
    pub users: usize,
    pub grants: usize,
    pub seed: u64,
}

/// A user and a private repository granted to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub user: String,
    pub repository: String,
}

impl Scale {
    /// Issue 9's size: 100,000 repositories, 10,000 users, 1,000,000 grants.
    pub const ISSUE_9: Scale = Scale {
        repositories: 100_000,
        users: 10_000,
        grants: 1_000_000,
        seed: 9,
    };

    /// The known user/repository pair (user 0 always holds repository 0, a private one).
    /// `None` when the spec has no repository or no user.
    pub fn probe(&self) -> Option<Probe> {
        (self.repositories > 0 && self.users > 0).then(|| Probe {
            user: user_name(0),
            repository: repository_name(0),
        })
    }

    /// Grants user `user` holds (uniform spread of `grants`, capped at `repositories`).
    fn grants_of(&self, user: usize) -> usize {
        let Some(base) = self.grants.checked_div(self.users) else {
            return 0;
        };
        let extra = usize::from(user < self.grants % self.users);
        (base + extra).min(self.repositories)
    }
}

/// Name of repository `i`.
pub fn repository_name(i: usize) -> String {
    const ENVIRONMENTS: [&str; 4] = ["library", "dev", "qa", "production"];
    let environment = ENVIRONMENTS.get(i / 7 % 4).copied().unwrap_or("library");
    format!(
        "org-{:02}/{environment}/product-{:04}/repo-{i:06}",
        i % 50,
        i / 100 % 10_000
    )
}

/// Name of user `j`.
pub fn user_name(j: usize) -> String {
    format!("user-{j:05}")
}

/// Whether repository `i` is public (every 20th; repository 0, the probe's, is private).
fn is_public(i: usize) -> bool {
    i % 20 == 19
}

/// The content document for `spec` (the body of `PUT /v1/snapshot`).
pub fn content(spec: &Scale) -> Value {
    let repositories: Vec<Value> = (0..spec.repositories)
        .map(|i| json!({"name": repository_name(i), "auth_required": !is_public(i)}))
        .collect();
    let mut rng = SplitMix64(spec.seed);
    let mut users = Map::new();
    for j in 0..spec.users {
        let wanted = spec.grants_of(j);
        let mut held = BTreeSet::new();
        if j == 0 && wanted > 0 {
            held.insert(0);
        }
        while held.len() < wanted {
            // `wanted` ≤ repositories, so this ends; the modulo bias is irrelevant here.
            let n = u64::try_from(spec.repositories).unwrap_or(u64::MAX).max(1);
            held.insert(usize::try_from(rng.next() % n).unwrap_or(0));
        }
        let names: Vec<Value> = held
            .into_iter()
            .map(|i| Value::String(repository_name(i)))
            .collect();
        users.insert(user_name(j), Value::Array(names));
    }
    json!({"repositories": repositories, "users": users})
}

/// Adds repository `scale-marker/m-<n>` (private) to `content`, granted to the probe user: a
/// small change making a new generation, visible as a probe that flips from 404 to 200.
/// Returns the added repository's name; `None` (and no change) when the content has no
/// repository list or no probe user.
pub fn mark(content: &mut Value, spec: &Scale, n: u64) -> Option<String> {
    let probe = spec.probe()?;
    let name = marker_name(n);
    let has_grants = content
        .get("users")
        .and_then(|users| users.get(&probe.user))
        .is_some_and(Value::is_array);
    if !has_grants {
        return None;
    }
    content
        .get_mut("repositories")?
        .as_array_mut()?
        .push(json!({"name": name, "auth_required": true}));
    content
        .get_mut("users")?
        .get_mut(&probe.user)?
        .as_array_mut()?
        .push(Value::String(name.clone()));
    Some(name)
}

/// The repository [`mark`] adds for `n`.
pub fn marker_name(n: u64) -> String {
    format!("scale-marker/m-{n}")
}

/// splitmix64 (Steele, Lea, Flood 2014): small, fast, and the same everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_gate_core::index::Index;
    use registry_gate_core::snapshot::Content;

    const SMALL: Scale = Scale {
        repositories: 500,
        users: 40,
        grants: 2_003,
        seed: 7,
    };

    fn typed(value: &Value) -> Content {
        serde_json::from_value(value.clone()).unwrap()
    }

    /// The index the sidecar would build of `content`.
    fn indexed(content: &Content) -> Index {
        let stamp = registry_gate_core::snapshot::Stamp {
            epoch: "e".into(),
            generation: 1,
            published_at: 0,
            producer: "bench".into(),
            allow_empty: false,
        };
        Index::open(registry_gate_core::snapshot::build_index(content, &stamp).unwrap()).unwrap()
    }

    #[test]
    fn sizes_are_exact_and_the_content_validates() {
        let content = typed(&content(&SMALL));
        content.validate().unwrap();
        assert_eq!(content.repositories.len(), 500);
        assert_eq!(content.users.len(), 40);
        let grants: usize = content.users.values().map(Vec::len).sum();
        assert_eq!(grants, 2_003);
        let counts: BTreeSet<usize> = content.users.values().map(Vec::len).collect();
        assert_eq!(counts, BTreeSet::from([50, 51]), "uniform spread");
        let public = content
            .repositories
            .iter()
            .filter(|r| !r.auth_required)
            .count();
        assert_eq!(public, 25);
    }

    #[test]
    fn the_same_seed_gives_the_same_document_and_another_seed_another() {
        assert_eq!(content(&SMALL), content(&SMALL));
        let other = Scale { seed: 8, ..SMALL };
        assert_ne!(content(&SMALL), content(&other));
    }

    #[test]
    fn the_probe_user_holds_the_private_probe_repository() {
        let probe = SMALL.probe().unwrap();
        let content = typed(&content(&SMALL));
        let index = indexed(&content);
        let user = registry_gate_core::identity::Principal::User(probe.user.clone());
        let pull = registry_gate_core::route::Action::Pull;
        assert!(!index.is_public(&probe.repository));
        assert!(index.permits(&user, &probe.repository, pull));
        assert_eq!(Scale { users: 0, ..SMALL }.probe(), None);
    }

    #[test]
    fn grants_never_exceed_the_repositories() {
        let dense = Scale {
            repositories: 10,
            users: 3,
            grants: 100,
            seed: 1,
        };
        let content = typed(&content(&dense));
        content.validate().unwrap();
        assert!(content.users.values().all(|g| g.len() == 10));
    }

    #[test]
    fn a_mark_adds_one_granted_repository_and_changes_the_document() {
        let base = content(&SMALL);
        let mut marked = base.clone();
        let name = mark(&mut marked, &SMALL, 3).unwrap();
        assert_eq!(name, marker_name(3));
        assert_ne!(base, marked);
        let content = typed(&marked);
        content.validate().unwrap();
        assert_eq!(content.repositories.len(), 501);
        let user = registry_gate_core::identity::Principal::User(user_name(0));
        let index = indexed(&content);
        assert!(index.permits(&user, &name, registry_gate_core::route::Action::Pull));
        let mut empty = json!({});
        assert_eq!(mark(&mut empty, &SMALL, 1), None);
        assert_eq!(empty, json!({}));
    }
}
