//! The builder: the sidecar turns one content into index bytes once per publish.
//!
//! Repositories are sorted by name and numbered; every grant is resolved to ids through the
//! same hash table the readers use, sorted and deduplicated; principals are sorted by name.
//! Equal contents give equal bytes. [`Builder::finish`] runs the validator over what it
//! wrote, so an index that a reader would refuse is never handed out; the trailer is left
//! zero (unsigned) for [`crate::Signer::sign`].

use thiserror::Error;

use crate::error::IndexError;
use crate::layout::{
    name_hash, seal, slots_for, Part, Section, DIRECTORY_ENTRY_LEN, EMPTY_SLOT, FLAG_ALLOW_EMPTY,
    FLAG_MIN_TOKEN_IAT, HEADER_LEN, MAGIC, MAJOR, MINOR, TRAILER_LEN,
};

/// Why a content cannot be built into an index.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error("repository {0:?} is listed twice")]
    DuplicateRepository(String),
    #[error("{part}: {principal:?} is granted unknown repository {repository:?}")]
    UnknownRepository {
        part: &'static str,
        principal: String,
        repository: String,
    },
    #[error("{part}: principal {principal:?} is listed twice")]
    DuplicatePrincipal {
        part: &'static str,
        principal: String,
    },
    #[error("key id {0:?} is listed twice")]
    DuplicateKey(String),
    #[error("the index would exceed 4 GiB")]
    TooLarge,
    #[error(transparent)]
    Invalid(#[from] IndexError),
}

/// What the publisher stamps on an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub epoch: &'a str,
    pub producer: &'a str,
    pub generation: u64,
    /// Unix seconds.
    pub published_at: u64,
    pub allow_empty: bool,
    pub min_token_iat: Option<u64>,
}

/// One content on its way to index bytes.
#[derive(Debug)]
pub struct Builder<'a> {
    /// Sorted, unique; a repository's id is its position.
    names: Vec<&'a str>,
    auth_required: Vec<bool>,
    slots: Vec<u32>,
    /// By [`Part::position`]: principal → ids.
    parts: [Vec<(&'a str, Vec<u32>)>; 3],
    keys: Vec<(&'a str, &'a str)>,
    features: Vec<&'a str>,
}

impl<'a> Builder<'a> {
    /// Starts from the repositories (any order; a name listed twice is refused).
    pub fn new(
        repositories: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> Result<Builder<'a>, BuildError> {
        let mut repositories: Vec<(&str, bool)> = repositories.into_iter().collect();
        repositories.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if let Some(pair) = repositories.windows(2).find(|pair| match pair {
            [a, b] => a.0 == b.0,
            _ => false,
        }) {
            let name = pair.first().map_or("", |r| r.0);
            return Err(BuildError::DuplicateRepository(name.to_owned()));
        }
        let (names, auth_required): (Vec<&str>, Vec<bool>) = repositories.into_iter().unzip();
        let slots = hash_table(&names)?;
        Ok(Builder {
            names,
            auth_required,
            slots,
            parts: Default::default(),
            keys: Vec::new(),
            features: Vec::new(),
        })
    }

    /// The id of repository `name`.
    fn id(&self, name: &str) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut slot = (name_hash(name.as_bytes()) as usize) & mask;
        for _ in 0..self.slots.len() {
            let id = *self.slots.get(slot)?;
            if id == EMPTY_SLOT {
                return None;
            }
            if self.names.get(id as usize) == Some(&name) {
                return Some(id);
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// Grants `principal` in `part` the named repositories (each must be known; repeats are
    /// merged).
    pub fn grant(
        &mut self,
        part: Part,
        principal: &'a str,
        repositories: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), BuildError> {
        let mut ids = Vec::new();
        for repository in repositories {
            let id = self
                .id(repository)
                .ok_or_else(|| BuildError::UnknownRepository {
                    part: part.name(),
                    principal: principal.to_owned(),
                    repository: repository.to_owned(),
                })?;
            ids.push(id);
        }
        ids.sort_unstable();
        ids.dedup();
        if let Some(list) = self.parts.get_mut(part.position()) {
            list.push((principal, ids));
        }
        Ok(())
    }

    /// Adds a verification key: its id and its JSON spec.
    pub fn key(&mut self, kid: &'a str, spec: &'a str) {
        self.keys.push((kid, spec));
    }

    /// Names a feature every reader must know to read the index.
    pub fn require(&mut self, feature: &'a str) {
        self.features.push(feature);
    }

    /// Writes the index (unsigned) and validates it.
    pub fn finish(mut self, stamp: &Stamp<'_>) -> Result<Vec<u8>, BuildError> {
        for part in Part::ALL {
            let Some(list) = self.parts.get_mut(part.position()) else {
                continue;
            };
            list.sort_unstable_by(|a, b| a.0.cmp(b.0));
            if let Some([a, _]) = list.windows(2).find(|pair| match pair {
                [a, b] => a.0 == b.0,
                _ => false,
            }) {
                return Err(BuildError::DuplicatePrincipal {
                    part: part.name(),
                    principal: a.0.to_owned(),
                });
            }
        }
        self.keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if let Some([a, _]) = self.keys.windows(2).find(|pair| match pair {
            [a, b] => a.0 == b.0,
            _ => false,
        }) {
            return Err(BuildError::DuplicateKey(a.0.to_owned()));
        }

        let mut sections: Vec<(Section, Vec<u8>)> = Vec::with_capacity(Section::ALL.len());
        let meta: Vec<&str> = [stamp.epoch, stamp.producer]
            .into_iter()
            .chain(self.features.iter().copied())
            .collect();
        sections.push((Section::Meta, strings(meta.iter().map(|s| s.as_bytes()))?));
        sections.push((
            Section::RepositoryNames,
            strings(self.names.iter().map(|s| s.as_bytes()))?,
        ));
        sections.push((
            Section::RepositoryFlags,
            self.auth_required.iter().map(|r| u8::from(*r)).collect(),
        ));
        sections.push((Section::RepositoryHash, u32s(self.slots.iter().copied())));
        let public = (0..self.names.len())
            .filter(|i| self.auth_required.get(*i) == Some(&false))
            .filter_map(|i| u32::try_from(i).ok());
        sections.push((Section::Public, u32s(public)));
        for part in Part::ALL {
            let list = self
                .parts
                .get(part.position())
                .map_or(&[][..], Vec::as_slice);
            let principals: Vec<&str> = list.iter().map(|(name, _)| *name).collect();
            let [names, hash, grants] = part.sections();
            sections.push((names, strings(principals.iter().map(|s| s.as_bytes()))?));
            sections.push((hash, u32s(hash_table(&principals)?)));
            sections.push((grants, grant_lists(list)?));
        }
        sections.push((
            Section::KeyIds,
            strings(self.keys.iter().map(|(kid, _)| kid.as_bytes()))?,
        ));
        sections.push((
            Section::KeySpecs,
            strings(self.keys.iter().map(|(_, spec)| spec.as_bytes()))?,
        ));

        let directory_end = HEADER_LEN + sections.len() * DIRECTORY_ENTRY_LEN;
        let body_len: usize = sections.iter().map(|(_, bytes)| bytes.len()).sum();
        let body_end = directory_end
            .checked_add(body_len)
            .filter(|end| u32::try_from(*end).is_ok())
            .ok_or(BuildError::TooLarge)?;
        let mut out = Vec::with_capacity(body_end + TRAILER_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[0; 8]); // checksum, below
        out.extend_from_slice(&MAJOR.to_le_bytes());
        out.extend_from_slice(&MINOR.to_le_bytes());
        out.extend_from_slice(&len32(sections.len())?.to_le_bytes());
        out.extend_from_slice(&(body_end as u64).to_le_bytes());
        out.extend_from_slice(&stamp.generation.to_le_bytes());
        out.extend_from_slice(&stamp.published_at.to_le_bytes());
        out.extend_from_slice(&stamp.min_token_iat.unwrap_or(0).to_le_bytes());
        let mut flags = 0;
        if stamp.allow_empty {
            flags |= FLAG_ALLOW_EMPTY;
        }
        if stamp.min_token_iat.is_some() {
            flags |= FLAG_MIN_TOKEN_IAT;
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0_u32.to_le_bytes());
        let mut offset = directory_end;
        for (section, bytes) in &sections {
            out.extend_from_slice(&section.kind().to_le_bytes());
            out.extend_from_slice(&len32(offset)?.to_le_bytes());
            out.extend_from_slice(&len32(bytes.len())?.to_le_bytes());
            offset += bytes.len();
        }
        for (_, bytes) in sections {
            out.extend_from_slice(&bytes);
        }
        out.resize(body_end + TRAILER_LEN, 0);
        seal(&mut out);
        crate::validate::validate(&out)?;
        Ok(out)
    }
}

fn len32(len: usize) -> Result<u32, BuildError> {
    u32::try_from(len).map_err(|_| BuildError::TooLarge)
}

fn u32s(values: impl IntoIterator<Item = u32>) -> Vec<u8> {
    values.into_iter().flat_map(u32::to_le_bytes).collect()
}

/// A string table of `items`.
fn strings<'s>(items: impl Iterator<Item = &'s [u8]> + Clone) -> Result<Vec<u8>, BuildError> {
    let count = items.clone().count();
    let data_len: usize = items.clone().map(<[u8]>::len).sum();
    let mut out = Vec::with_capacity(4 + count * 4 + data_len);
    out.extend_from_slice(&len32(count)?.to_le_bytes());
    let mut end = 0_usize;
    for item in items.clone() {
        end += item.len();
        out.extend_from_slice(&len32(end)?.to_le_bytes());
    }
    for item in items {
        out.extend_from_slice(item);
    }
    Ok(out)
}

/// The hash table of `names`' positions (see `tables::NameSet`).
fn hash_table(names: &[&str]) -> Result<Vec<u32>, BuildError> {
    let slots = slots_for(names.len()).ok_or(BuildError::TooLarge)?;
    let mask = slots - 1;
    let mut table = vec![EMPTY_SLOT; slots];
    for (id, name) in names.iter().enumerate() {
        let id = len32(id)?;
        let mut slot = (name_hash(name.as_bytes()) as usize) & mask;
        while let Some(held) = table.get_mut(slot) {
            if *held == EMPTY_SLOT {
                *held = id;
                break;
            }
            slot = (slot + 1) & mask;
        }
    }
    Ok(table)
}

/// The grant lists of `list` (sorted by principal).
fn grant_lists(list: &[(&str, Vec<u32>)]) -> Result<Vec<u8>, BuildError> {
    let total: usize = list.iter().map(|(_, ids)| ids.len()).sum();
    let mut out = Vec::with_capacity((list.len() + 1 + total) * 4);
    let mut start = 0_usize;
    out.extend_from_slice(&0_u32.to_le_bytes());
    for (_, ids) in list {
        start += ids.len();
        out.extend_from_slice(&len32(start)?.to_le_bytes());
    }
    for (_, ids) in list {
        out.extend(ids.iter().flat_map(|id| id.to_le_bytes()));
    }
    Ok(out)
}
