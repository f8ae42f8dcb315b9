//! A validated index and every query the gate, the token endpoint and the tools ask of it,
//! answered from the bytes in place.
//!
//! [`Index::open`] takes ownership of the bytes and validates them once; after that no query
//! allocates (but the iterators' own state), builds a map or can fail: a repository is one
//! hash probe, a principal another, a grant a binary search in that principal's list, and a
//! catalog page a merge of two ascending id lists from a binary-searched start. The index is
//! immutable: a new generation is a new `Index`.

use crate::error::IndexError;
use crate::layout::Part;
use crate::tables::{Ids, Strings};
use crate::validate::{validate, validate_to, Depth, Layout};

/// A repository as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repository {
    /// Its position in name order.
    pub id: u32,
    /// `false`: anyone may pull it.
    pub auth_required: bool,
}

/// The header fields of a validated index, without holding its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub epoch: String,
    pub generation: u64,
    pub published_at: u64,
    pub minor: u16,
    pub checksum: u64,
    pub allow_empty: bool,
    pub repositories: usize,
}

/// Validates `bytes` (not their signature) and returns their header fields: for a fetcher
/// that passes the bytes on rather than keep them.
pub fn check(bytes: &[u8]) -> Result<Summary, IndexError> {
    let layout = validate(bytes)?;
    Ok(summary(bytes, &layout))
}

fn summary(bytes: &[u8], layout: &Layout) -> Summary {
    Summary {
        epoch: layout.meta.text(bytes, 0).unwrap_or_default().to_owned(),
        generation: layout.generation,
        published_at: layout.published_at,
        minor: layout.minor,
        checksum: layout.checksum,
        allow_empty: layout.allow_empty,
        repositories: layout.repositories.names.count,
    }
}

/// A validated index over bytes it owns (`Vec<u8>`, the default) or borrows (`&[u8]`).
#[derive(Clone, PartialEq, Eq)]
pub struct Index<B = Vec<u8>> {
    bytes: B,
    /// Found by the validator over exactly `bytes`.
    layout: Layout,
}

impl<B: AsRef<[u8]>> core::fmt::Debug for Index<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Index")
            .field("epoch", &self.epoch())
            .field("generation", &self.generation())
            .field("repositories", &self.len())
            .field("bytes", &self.bytes().len())
            .finish()
    }
}

impl<B: AsRef<[u8]>> Index<B> {
    /// Validates `bytes` (not their signature: see [`crate::verify`]) and keeps them.
    pub fn open(bytes: B) -> Result<Index<B>, IndexError> {
        let layout = validate(bytes.as_ref())?;
        Ok(Index { bytes, layout })
    }

    /// Opens bytes that [`Index::open`] accepted before (in another VM, say), named by their
    /// `checksum`: the checksum is recomputed over the body and must be that one, and the
    /// frame, header, directory, meta, keys and the shape of every table are checked — not
    /// each name, order, hash slot and grant id, which is where validation spends its time.
    /// Every query stays bounds-checked, so no bytes can make one fail; that these are the
    /// bytes the full validation accepted makes its answers right. Other bytes are refused
    /// (`checksum_mismatch` when the checksum is not the one named).
    pub fn open_known(bytes: B, checksum: u64) -> Result<Index<B>, IndexError> {
        let layout = validate_to(bytes.as_ref(), Depth::Shape)?;
        if layout.checksum != checksum {
            return Err(IndexError::ChecksumMismatch);
        }
        Ok(Index { bytes, layout })
    }

    /// The bytes, exactly as opened (signature trailer included).
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// The bytes, given back.
    pub fn into_bytes(self) -> B {
        self.bytes
    }

    /// The header fields.
    pub fn summary(&self) -> Summary {
        summary(self.bytes(), &self.layout)
    }

    pub fn epoch(&self) -> &str {
        self.layout.meta.text(self.bytes(), 0).unwrap_or_default()
    }

    pub fn producer(&self) -> &str {
        self.layout.meta.text(self.bytes(), 1).unwrap_or_default()
    }

    /// The features a reader must know to read this index.
    pub fn required_features(&self) -> impl Iterator<Item = &str> + '_ {
        (2..self.layout.meta.count).filter_map(|i| self.layout.meta.text(self.bytes(), i))
    }

    pub fn generation(&self) -> u64 {
        self.layout.generation
    }

    pub fn published_at(&self) -> u64 {
        self.layout.published_at
    }

    /// Schema minor it was written with.
    pub fn minor(&self) -> u16 {
        self.layout.minor
    }

    /// Tokens issued before this unix second (or without `iat`) are refused.
    pub fn min_token_iat(&self) -> Option<u64> {
        self.layout.min_token_iat
    }

    /// The publisher meant to replace a non-empty index with one without repositories.
    pub fn allow_empty(&self) -> bool {
        self.layout.allow_empty
    }

    /// The xxh3 checksum in the header.
    pub fn checksum(&self) -> u64 {
        self.layout.checksum
    }

    /// Number of repositories.
    pub fn len(&self) -> usize {
        self.layout.repositories.names.count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The repository named `name`, if known.
    pub fn repository(&self, name: &str) -> Option<Repository> {
        let id = self
            .layout
            .repositories
            .find(self.bytes(), name.as_bytes())?;
        let flag = self
            .bytes()
            .get(self.layout.flags.checked_add(id as usize)?)?;
        Some(Repository {
            id,
            auth_required: *flag != 0,
        })
    }

    /// The name of repository `id`.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.layout
            .repositories
            .names
            .text(self.bytes(), id as usize)
    }

    /// The smallest id whose name sorts after `after` (the number of repositories if none).
    pub fn first_after(&self, after: &str) -> u32 {
        let position = self
            .layout
            .repositories
            .names
            .partition_after(self.bytes(), after.as_bytes());
        u32::try_from(position).unwrap_or(u32::MAX)
    }

    /// The ids of the repositories anyone may pull, ascending.
    pub fn public(&self) -> Ids<'_> {
        let (at, count) = self.layout.public;
        let raw = at
            .checked_add(count.saturating_mul(4))
            .and_then(|end| self.bytes().get(at..end));
        raw.map_or(Ids::EMPTY, Ids::new)
    }

    /// The ids granted to `principal` in `part`, ascending; `None` if the part does not name
    /// it.
    pub fn grants(&self, part: Part, principal: &str) -> Option<Ids<'_>> {
        let table = self.layout.parts.get(part.position())?;
        let p = table.names.find(self.bytes(), principal.as_bytes())?;
        Some(table.grants.of(self.bytes(), p as usize))
    }

    /// Every repository, by name, with `auth_required`.
    pub fn repositories(&self) -> impl Iterator<Item = (&str, bool)> + '_ {
        let names = self.layout.repositories.names;
        (0..names.count).filter_map(move |i| {
            let name = names.text(self.bytes(), i)?;
            let flag = self.bytes().get(self.layout.flags.checked_add(i)?)?;
            Some((name, *flag != 0))
        })
    }

    /// Every principal of `part`, by name, with its grants.
    pub fn principals(&self, part: Part) -> impl Iterator<Item = (&str, Ids<'_>)> + '_ {
        let table = self.layout.parts.get(part.position()).copied();
        let count = table.map_or(0, |t| t.names.names.count);
        (0..count).filter_map(move |i| {
            let table = table?;
            let name = table.names.names.text(self.bytes(), i)?;
            Some((name, table.grants.of(self.bytes(), i)))
        })
    }

    /// Number of principals in `part`.
    pub fn principal_count(&self, part: Part) -> usize {
        self.layout
            .parts
            .get(part.position())
            .map_or(0, |t| t.names.names.count)
    }

    /// The verification keys: (key id, key spec JSON), by key id.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let (ids, specs): (Strings, Strings) = (self.layout.key_ids, self.layout.key_specs);
        (0..ids.count)
            .filter_map(move |i| Some((ids.text(self.bytes(), i)?, specs.text(self.bytes(), i)?)))
    }

    /// The repositories in `grants` or public, ascending by name, from id `from` on.
    pub fn pullable<'a>(
        &'a self,
        grants: Ids<'a>,
        from: u32,
    ) -> impl Iterator<Item = &'a str> + 'a {
        Union {
            a: grants.from(from).iter().peekable(),
            b: self.public().from(from).iter().peekable(),
        }
        .filter_map(move |id| self.name(id))
    }
}

/// Union of two ascending id sequences, ascending, without duplicates.
struct Union<A: Iterator<Item = u32>, B: Iterator<Item = u32>> {
    a: core::iter::Peekable<A>,
    b: core::iter::Peekable<B>,
}

impl<A: Iterator<Item = u32>, B: Iterator<Item = u32>> Iterator for Union<A, B> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
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
