//! The table shapes an index is made of, read in place: string tables, hash tables of ids by
//! name, ascending id lists and per-principal grant lists.
//!
//! Each table is a handful of offsets into the index's bytes, found by the validator. Every
//! read is checked (`get`, `u32_at`), so a table read from bytes that were never validated
//! answers "nothing" rather than panic; after validation every read succeeds. Nothing here
//! allocates.

use crate::layout::{name_hash, u32_item, EMPTY_SLOT};

/// A string table: `count: u32`, then `count` end offsets (`u32`, relative to the data),
/// then the data. String `i` is `data[end(i-1)..end(i)]`, with `end(-1) = 0`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Strings {
    pub count: usize,
    /// Offset of the end-offset array.
    pub ends: usize,
    /// Offset of the data.
    pub data: usize,
}

impl Strings {
    /// Bytes of string `i`.
    pub fn get<'a>(&self, bytes: &'a [u8], i: usize) -> Option<&'a [u8]> {
        if i >= self.count {
            return None;
        }
        let start = match i.checked_sub(1) {
            Some(previous) => u32_item(bytes, self.ends, previous)? as usize,
            None => 0,
        };
        let end = u32_item(bytes, self.ends, i)? as usize;
        bytes.get(self.data.checked_add(start)?..self.data.checked_add(end)?)
    }

    /// Every string in order, walking the end offsets once.
    pub fn iter<'a>(&self, bytes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let ends = bytes
            .get(self.ends..self.data)
            .unwrap_or_default()
            .chunks_exact(4);
        let data = bytes.get(self.data..).unwrap_or_default();
        let mut start = 0_usize;
        ends.map(move |raw| {
            let end = raw.try_into().map_or(0, u32::from_le_bytes) as usize;
            let item = data.get(start..end).unwrap_or_default();
            start = end;
            item
        })
    }

    /// String `i` as text (validated tables hold UTF-8 only).
    pub fn text<'a>(&self, bytes: &'a [u8], i: usize) -> Option<&'a str> {
        self.get(bytes, i)
            .and_then(|raw| core::str::from_utf8(raw).ok())
    }

    /// The first position whose string is greater than `after` (the table is ascending).
    pub fn partition_after(&self, bytes: &[u8], after: &[u8]) -> usize {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = low + (high - low) / 2;
            match self.get(bytes, middle) {
                Some(name) if name <= after => low = middle + 1,
                _ => high = middle,
            }
        }
        low
    }
}

/// A sorted string table with an open-addressing hash table of its positions: `slots` `u32`
/// ids (or [`EMPTY_SLOT`]), a power of two, probed linearly from `name_hash(name) & (slots -
/// 1)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NameSet {
    pub names: Strings,
    /// Offset of the slot array.
    pub table: usize,
    pub slots: usize,
}

impl NameSet {
    /// The position of `name`, if present.
    pub fn find(&self, bytes: &[u8], name: &[u8]) -> Option<u32> {
        let mask = self.slots.checked_sub(1)?;
        // The low bits of the hash pick the home slot (truncating on 32-bit targets is the
        // same as masking).
        let mut slot = (name_hash(name) as usize) & mask;
        for _ in 0..self.slots {
            let id = u32_item(bytes, self.table, slot)?;
            if id == EMPTY_SLOT {
                return None;
            }
            if self.names.get(bytes, id as usize) == Some(name) {
                return Some(id);
            }
            slot = (slot + 1) & mask;
        }
        None
    }
}

/// An ascending list of repository ids in place: `len` little-endian `u32`s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ids<'a> {
    raw: &'a [u8],
}

impl<'a> Ids<'a> {
    /// The list whose bytes are `raw` (a multiple of four bytes).
    pub(crate) fn new(raw: &'a [u8]) -> Ids<'a> {
        Ids { raw }
    }

    /// No ids.
    pub const EMPTY: Ids<'static> = Ids { raw: &[] };

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.raw.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.raw.len() < 4
    }

    /// The `i`-th id.
    pub fn get(&self, i: usize) -> Option<u32> {
        u32_item(self.raw, 0, i)
    }

    /// Whether `id` is in the list (binary search).
    pub fn contains(&self, id: u32) -> bool {
        let position = self.partition_below(id);
        self.get(position) == Some(id)
    }

    /// The first position whose id is not below `id`.
    fn partition_below(&self, id: u32) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.get(middle) {
                Some(found) if found < id => low = middle + 1,
                _ => high = middle,
            }
        }
        low
    }

    /// The ids not below `id`.
    pub fn from(&self, id: u32) -> Ids<'a> {
        let start = self.partition_below(id).saturating_mul(4);
        Ids {
            raw: self.raw.get(start..).unwrap_or(&[]),
        }
    }

    /// The ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.raw
            .chunks_exact(4)
            .filter_map(|chunk| chunk.try_into().ok().map(u32::from_le_bytes))
    }
}

/// Per-principal grant lists: `principals + 1` start positions (`u32`, into the ids), then
/// every principal's ascending ids back to back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Grants {
    pub principals: usize,
    /// Offset of the start array.
    pub starts: usize,
    /// Offset of the id array.
    pub ids: usize,
}

impl Grants {
    /// The ids granted to principal `p`.
    pub fn of<'a>(&self, bytes: &'a [u8], p: usize) -> Ids<'a> {
        let range = || -> Option<&'a [u8]> {
            let start = u32_item(bytes, self.starts, p)? as usize;
            let end = u32_item(bytes, self.starts, p.checked_add(1)?)? as usize;
            let from = self.ids.checked_add(start.checked_mul(4)?)?;
            let to = self.ids.checked_add(end.checked_mul(4)?)?;
            bytes.get(from..to)
        };
        range().map_or(Ids::EMPTY, Ids::new)
    }
}

/// A grant table with its principals' names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub names: NameSet,
    pub grants: Grants,
}
