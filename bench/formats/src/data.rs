//! The data every format is measured on, generated deterministically (splitmix64): the scale
//! benchmark's shape — 100,000 repositories, 10,000 users, 100 grants each — and the
//! "may user U pull repository R" queries. Also the sorted, id-resolved view the alternative
//! formats build from (ours sorts and resolves inside its own `Builder`).

use std::collections::BTreeSet;
#[cfg(any(feature = "fst", feature = "rkyv"))]
use std::collections::HashMap;

/// Repositories generated.
pub const REPOSITORIES: usize = 100_000;
/// Users generated.
pub const USERS: usize = 10_000;
/// Distinct repositories granted to each user.
pub const GRANTS_PER_USER: usize = 100;
/// Seed of the generator (the scale benchmark's).
pub const SEED: u64 = 9;

/// One content, as names (what a publisher hands over).
#[derive(Debug)]
pub struct Data {
    /// Generation order: repository `i` is `org-{i%97}/product-{i%1013}/repo-{i}`.
    pub repositories: Vec<String>,
    /// Parallel to `repositories`: every 20th repository is public.
    pub auth_required: Vec<bool>,
    /// `user-{j}`.
    pub users: Vec<String>,
    /// Parallel to `users`: positions in `repositories`, distinct.
    pub grants: Vec<Vec<usize>>,
}

impl Data {
    pub fn generate() -> Data {
        let repositories: Vec<String> = (0..REPOSITORIES)
            .map(|i| format!("org-{}/product-{}/repo-{i}", i % 97, i % 1013))
            .collect();
        let auth_required = (0..REPOSITORIES).map(|i| i % 20 != 19).collect();
        let users = (0..USERS).map(|j| format!("user-{j}")).collect();
        let mut rng = SplitMix64(SEED);
        let grants = (0..USERS)
            .map(|_| {
                let mut held = BTreeSet::new();
                while held.len() < GRANTS_PER_USER.min(REPOSITORIES) {
                    held.insert(rng.below(REPOSITORIES));
                }
                held.into_iter().collect()
            })
            .collect();
        Data {
            repositories,
            auth_required,
            users,
            grants,
        }
    }

    /// Total grants.
    pub fn grant_count(&self) -> usize {
        self.grants.iter().map(Vec::len).sum()
    }

    /// `count` queries (user, repository) by name: every other one names a repository the
    /// user holds, the rest a uniformly random repository (5 % public, almost never held).
    pub fn queries(&self, count: usize) -> Vec<(&str, &str)> {
        let mut rng = SplitMix64(SEED ^ 0x5155_4552_5945_5321);
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let user = rng.below(self.users.len());
            let repository = if out.len() % 2 == 0 {
                let held = self.grants.get(user).map_or(&[][..], Vec::as_slice);
                held.get(rng.below(held.len().max(1))).copied().unwrap_or(0)
            } else {
                rng.below(self.repositories.len())
            };
            if let (Some(u), Some(r)) = (self.users.get(user), self.repositories.get(repository)) {
                out.push((u.as_str(), r.as_str()));
            }
        }
        out
    }
}

/// The content as the alternative formats store it: repositories and users sorted by name
/// (an id is a position), grants resolved to ascending ids through a name → id map (as our
/// builder resolves them through its hash table).
#[cfg(any(feature = "fst", feature = "rkyv"))]
#[derive(Debug)]
pub struct Sorted<'a> {
    pub names: Vec<&'a str>,
    pub auth_required: Vec<bool>,
    /// Sorted by name, with ascending repository ids.
    pub users: Vec<(&'a str, Vec<u32>)>,
}

#[cfg(any(feature = "fst", feature = "rkyv"))]
impl<'a> Sorted<'a> {
    pub fn new(data: &'a Data) -> Result<Sorted<'a>, String> {
        let mut repositories: Vec<(&str, bool)> = data
            .repositories
            .iter()
            .map(String::as_str)
            .zip(data.auth_required.iter().copied())
            .collect();
        repositories.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let (names, auth_required): (Vec<&str>, Vec<bool>) = repositories.into_iter().unzip();
        let mut ids: HashMap<&str, u32> = HashMap::with_capacity(names.len());
        for (id, name) in names.iter().enumerate() {
            let id = u32::try_from(id).map_err(|e| e.to_string())?;
            if ids.insert(name, id).is_some() {
                return Err(format!("repository {name:?} is listed twice"));
            }
        }
        let mut users = Vec::with_capacity(data.users.len());
        for (user, held) in data.users.iter().zip(&data.grants) {
            let mut granted = Vec::with_capacity(held.len());
            for position in held {
                let name = data
                    .repositories
                    .get(*position)
                    .ok_or("grant out of range")?;
                granted.push(*ids.get(name.as_str()).ok_or("unknown repository")?);
            }
            granted.sort_unstable();
            granted.dedup();
            users.push((user.as_str(), granted));
        }
        users.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Ok(Sorted {
            names,
            auth_required,
            users,
        })
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): small, fast, the same on every target.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next() % n64).unwrap_or(0)
    }
}
