//! The byte layout of schema 2, in one place: the header's fields and offsets, the section
//! kinds, the hash and checksum functions, and unaligned little-endian reads.
//!
//! ```text
//! header (64 bytes) | directory (12 bytes per section) | sections ... | trailer (96 bytes)
//! ```
//!
//! Every integer is little-endian and read from any offset: nothing assumes alignment (the
//! bytes arrive in a `Vec<u8>` copied out of Envoy's shared data). docs/snapshot-format.md
//! documents the same layout byte by byte; change both together. Nothing
//! here validates or allocates: `validate` walks the layout, `build` writes it.

use xxhash_rust::xxh3::xxh3_64;

/// The first eight bytes of every index: `RGINDEX` and a line feed (a text-mode transfer that
/// rewrites line ends breaks the magic, not a table).
pub const MAGIC: [u8; 8] = *b"RGINDEX\n";
/// The schema major this crate reads and writes.
pub const MAJOR: u16 = 2;
/// The schema minor this crate writes. A reader of major 2 reads any minor: a newer minor
/// adds sections (skipped by older readers) or names features in
/// [`Section::Meta`] that a reader must know (refused when it does not).
pub const MINOR: u16 = 0;

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one directory entry: kind, offset, length (three `u32`).
pub const DIRECTORY_ENTRY_LEN: usize = 12;
/// Bytes of the trailer: the publisher's Ed25519 public key, then its signature over every
/// byte before the trailer.
pub const TRAILER_LEN: usize = PUBLIC_KEY_LEN + SIGNATURE_LEN;
/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Most sections a directory may list.
pub const MAX_SECTIONS: usize = 64;

/// Header field offsets.
pub mod header {
    /// `[u8; 8]`: [`super::MAGIC`].
    pub const MAGIC: usize = 0;
    /// `u64`: xxh3-64 of the bytes from [`MAJOR`] to the trailer.
    pub const CHECKSUM: usize = 8;
    /// `u16`: schema major. The checksum covers everything from here on.
    pub const MAJOR: usize = 16;
    /// `u16`: schema minor.
    pub const MINOR: usize = 18;
    /// `u32`: entries in the directory.
    pub const SECTION_COUNT: usize = 20;
    /// `u64`: where the trailer starts (the length of what is signed).
    pub const BODY_END: usize = 24;
    /// `u64`: the generation number within the epoch.
    pub const GENERATION: usize = 32;
    /// `u64`: unix seconds of the publish.
    pub const PUBLISHED_AT: usize = 40;
    /// `u64`: tokens issued before this unix second are refused (when [`super::FLAG_MIN_TOKEN_IAT`]).
    pub const MIN_TOKEN_IAT: usize = 48;
    /// `u32`: [`super::FLAG_ALLOW_EMPTY`], [`super::FLAG_MIN_TOKEN_IAT`]; other bits zero.
    pub const FLAGS: usize = 56;
    /// `u32`: zero.
    pub const RESERVED: usize = 60;
}

/// The publisher asked for this index to replace one with repositories even though it has
/// none.
pub const FLAG_ALLOW_EMPTY: u32 = 1;
/// [`header::MIN_TOKEN_IAT`] is in force.
pub const FLAG_MIN_TOKEN_IAT: u32 = 2;
/// Every flag this reader knows; an index with another bit set is refused.
pub const KNOWN_FLAGS: u32 = FLAG_ALLOW_EMPTY | FLAG_MIN_TOKEN_IAT;

/// A hash-table slot that holds no id.
pub const EMPTY_SLOT: u32 = u32::MAX;

/// The kinds of section, in the order a directory lists them. A directory lists every kind
/// below exactly once, ascending; kinds above [`Section::KeySpecs`] belong to later minors
/// and are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Section {
    /// Strings: epoch, producer, then the features a reader must know.
    Meta = 1,
    /// Strings: repository names, strictly ascending; a repository's id is its position.
    RepositoryNames = 2,
    /// One byte per repository: 1 if pulling it needs a grant, 0 if anyone may pull it.
    RepositoryFlags = 3,
    /// Hash table of repository ids by name.
    RepositoryHash = 4,
    /// Ids of the repositories anyone may pull, ascending.
    Public = 5,
    UserNames = 6,
    UserHash = 7,
    UserGrants = 8,
    HostNames = 9,
    HostHash = 10,
    HostGrants = 11,
    WriterNames = 12,
    WriterHash = 13,
    WriterGrants = 14,
    /// Strings: key ids, strictly ascending.
    KeyIds = 15,
    /// Strings: each key's JSON (JWK members with `kid` and `alg`), in key-id order.
    KeySpecs = 16,
}

impl Section {
    /// Every kind of schema 2.0, ascending.
    pub const ALL: [Section; 16] = [
        Section::Meta,
        Section::RepositoryNames,
        Section::RepositoryFlags,
        Section::RepositoryHash,
        Section::Public,
        Section::UserNames,
        Section::UserHash,
        Section::UserGrants,
        Section::HostNames,
        Section::HostHash,
        Section::HostGrants,
        Section::WriterNames,
        Section::WriterHash,
        Section::WriterGrants,
        Section::KeyIds,
        Section::KeySpecs,
    ];

    /// The kind's number in the directory.
    pub const fn kind(self) -> u32 {
        self as u32
    }

    /// The kind's name in error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Section::Meta => "meta",
            Section::RepositoryNames => "repository names",
            Section::RepositoryFlags => "repository flags",
            Section::RepositoryHash => "repository hash",
            Section::Public => "public repositories",
            Section::UserNames => "user names",
            Section::UserHash => "user hash",
            Section::UserGrants => "user grants",
            Section::HostNames => "host names",
            Section::HostHash => "host hash",
            Section::HostGrants => "host grants",
            Section::WriterNames => "writer names",
            Section::WriterHash => "writer hash",
            Section::WriterGrants => "writer grants",
            Section::KeyIds => "key ids",
            Section::KeySpecs => "key specs",
        }
    }
}

/// Whom a grant table is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// User login → repositories it may pull.
    Users,
    /// Content-host UUID → repositories it may pull.
    Hosts,
    /// User login → repositories it may push to and delete from.
    Writers,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Users, Part::Hosts, Part::Writers];

    /// The part's sections: names, hash, grants.
    pub const fn sections(self) -> [Section; 3] {
        match self {
            Part::Users => [Section::UserNames, Section::UserHash, Section::UserGrants],
            Part::Hosts => [Section::HostNames, Section::HostHash, Section::HostGrants],
            Part::Writers => [
                Section::WriterNames,
                Section::WriterHash,
                Section::WriterGrants,
            ],
        }
    }

    /// The part's name as the JSON content spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Part::Users => "users",
            Part::Hosts => "hosts",
            Part::Writers => "writers",
        }
    }

    /// Position in [`Part::ALL`].
    pub const fn position(self) -> usize {
        match self {
            Part::Users => 0,
            Part::Hosts => 1,
            Part::Writers => 2,
        }
    }
}

/// The hash of a name in the hash tables: the name's bytes taken as little-endian 64-bit
/// words (the last one zero-padded), each folded in as `h = (rotl(h, 5) ^ word) * K` from
/// `h = len`, then MurmurHash3's 64-bit finalizer. Only 64-bit multiplies: xxh3's 128-bit
/// products are emulated in wasm and cost more than the rest of validation together.
pub fn name_hash(name: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = name.len() as u64;
    let mut chunks = name.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0_u8; 8];
        word.copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0_u8; 8];
        for (to, from) in word.iter_mut().zip(rest) {
            *to = *from;
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether `a` sorts before `b` bytewise, eight bytes at a time (wasm's `memcmp` goes byte
/// by byte).
pub fn sorts_before(a: &[u8], b: &[u8]) -> bool {
    let mut left = a.chunks_exact(8);
    let mut right = b.chunks_exact(8);
    for (x, y) in (&mut left).zip(&mut right) {
        if x != y {
            let word = |bytes: &[u8]| {
                let mut raw = [0_u8; 8];
                raw.copy_from_slice(bytes);
                u64::from_be_bytes(raw)
            };
            return word(x) < word(y);
        }
    }
    let skipped = a.len().min(b.len()) / 8 * 8;
    a.get(skipped..).unwrap_or_default() < b.get(skipped..).unwrap_or_default()
}

/// The checksum of an index: xxh3-64 with seed 0 of `bytes` (from [`header::MAJOR`] to the
/// trailer).
pub fn checksum(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// Writes into the header of `bytes` (a whole index, trailer included, signed or not) the
/// checksum of everything from [`header::MAJOR`] to the trailer. Bytes too short to hold a
/// header and a trailer are left as they are.
pub fn seal(bytes: &mut [u8]) {
    let Some(end) = bytes
        .len()
        .checked_sub(TRAILER_LEN)
        .filter(|end| *end >= header::MAJOR)
    else {
        return;
    };
    let sum = bytes.get(header::MAJOR..end).map_or(0, checksum);
    if let Some(field) = bytes.get_mut(header::CHECKSUM..header::CHECKSUM + 8) {
        field.copy_from_slice(&sum.to_le_bytes());
    }
}

/// The checksum `bytes` carry in their header, unchecked (`None` if too short to hold one).
pub fn carried_checksum(bytes: &[u8]) -> Option<u64> {
    u64_at(bytes, header::CHECKSUM)
}

/// Slots of the hash table for `count` names: the smallest power of two at least twice the
/// count (at least 1), so at most half the slots are used and every probe meets an empty
/// one. `None` if that overflows.
pub fn slots_for(count: usize) -> Option<usize> {
    count.max(1).checked_mul(2)?.checked_next_power_of_two()
}

/// `u16` at `at`, or `None` past the end.
pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let end = at.checked_add(2)?;
    let raw: [u8; 2] = bytes.get(at..end)?.try_into().ok()?;
    Some(u16::from_le_bytes(raw))
}

/// `u32` at `at`, or `None` past the end.
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let raw: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// `u64` at `at`, or `None` past the end.
pub fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    let raw: [u8; 8] = bytes.get(at..end)?.try_into().ok()?;
    Some(u64::from_le_bytes(raw))
}

/// The `index`-th `u32` of the array starting at `at`, or `None` past the end.
pub fn u32_item(bytes: &[u8], at: usize, index: usize) -> Option<u32> {
    u32_at(bytes, at.checked_add(index.checked_mul(4)?)?)
}
