//! The one validator: run in full once per generation (by the fetcher), it checks every
//! offset, length, count, id range and ordering, and every name against its grammar, and
//! returns the [`Layout`] the queries read through. After it accepted bytes, no query can read
//! out of bounds or answer from a table that disagrees with another. Each worker then runs it
//! to [`Depth::Shape`] on the same bytes, named by their checksum.
//!
//! Work is linear in the size of the index (hash tables are checked in one pass over their
//! slots, not by probing), and it allocates two `u32` per slot and name. It never checks the
//! signature (that is `signature::verify`, done once by the fetcher) and never trusts a count
//! it has not bounded by the bytes that hold it.

use crate::error::IndexError;
use crate::layout::{
    checksum, header, name_hash, slots_for, sorts_before, u16_at, u32_at, u32_item, u64_at, Part,
    Section, DIRECTORY_ENTRY_LEN, EMPTY_SLOT, FLAG_ALLOW_EMPTY, FLAG_MIN_TOKEN_IAT, HEADER_LEN,
    KNOWN_FLAGS, MAGIC, MAJOR, MAX_SECTIONS, TRAILER_LEN,
};
use crate::names::{
    is_valid_epoch, is_valid_key_id, is_valid_label, is_valid_principal_name,
    is_valid_repository_name_bytes,
};
use crate::tables::{Grants, Ids, NameSet, Strings, Table};

/// Most repositories an index may hold.
pub const MAX_REPOSITORIES: usize = 1_000_000;
/// Most principals (users, hosts and writers together) an index may hold.
pub const MAX_PRINCIPALS: usize = 1_000_000;
/// Most verification keys an index may hold.
pub const MAX_KEYS: usize = 64;
/// Longest key spec (JSON) accepted.
pub const MAX_KEY_SPEC_LEN: usize = 16 * 1024;
/// Features this reader implements; an index requiring any other is refused.
pub const KNOWN_FEATURES: &[&str] = &[];

/// How much of an index the validator checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Everything: the first time these bytes are seen.
    Full,
    /// The frame, the checksum, the directory, the header fields, meta, the keys and the
    /// shape of every table (counts and lengths, the first and last offsets), not each item:
    /// for bytes a [`Depth::Full`] validation accepted before, identified by their checksum.
    /// Every query stays bounds-checked, so a lookup cannot fail even on bytes that only
    /// pass this; it is their identity with the checked bytes that makes its answers right.
    Shape,
}

/// Where everything is, as the validator found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub minor: u16,
    pub checksum: u64,
    pub body_end: usize,
    pub generation: u64,
    pub published_at: u64,
    pub min_token_iat: Option<u64>,
    pub allow_empty: bool,
    pub meta: Strings,
    pub repositories: NameSet,
    /// Offset of the per-repository flag bytes.
    pub flags: usize,
    /// Offset and count of the public ids.
    pub public: (usize, usize),
    /// By [`Part::position`].
    pub parts: [Table; 3],
    pub key_ids: Strings,
    pub key_specs: Strings,
}

/// A section's place in the bytes.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
    section: Section,
}

impl Span {
    fn end(&self) -> usize {
        self.start.saturating_add(self.len)
    }

    fn invalid(&self, problem: impl core::fmt::Display) -> IndexError {
        IndexError::Invalid(format!("{}: {problem}", self.section.name()))
    }
}

/// Reads and checks the header's frame: magic, major and total length. Returns where the
/// trailer starts.
pub(crate) fn frame(bytes: &[u8]) -> Result<usize, IndexError> {
    if bytes.len() < HEADER_LEN {
        return Err(IndexError::NotIndex("shorter than the 64-byte header"));
    }
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(IndexError::NotIndex("no RGINDEX magic"));
    }
    let major = u16_at(bytes, header::MAJOR).unwrap_or(0);
    if major != MAJOR {
        return Err(IndexError::UnsupportedSchema(major));
    }
    let body_end = u64_at(bytes, header::BODY_END).unwrap_or(0);
    let expected = body_end.saturating_add(TRAILER_LEN as u64);
    if expected != bytes.len() as u64 {
        return Err(IndexError::Truncated {
            expected,
            actual: bytes.len(),
        });
    }
    usize::try_from(body_end)
        .ok()
        .filter(|end| *end >= HEADER_LEN)
        .ok_or(IndexError::NotIndex("body ends inside the header"))
}

/// Validates `bytes` as a schema-2 index (not its signature).
pub(crate) fn validate(bytes: &[u8]) -> Result<Layout, IndexError> {
    validate_to(bytes, Depth::Full)
}

/// Validates `bytes` as a schema-2 index to `depth`.
pub(crate) fn validate_to(bytes: &[u8], depth: Depth) -> Result<Layout, IndexError> {
    let full = depth == Depth::Full;
    let body_end = frame(bytes)?;
    let covered = bytes
        .get(header::MAJOR..body_end)
        .ok_or(IndexError::NotIndex("body ends inside the header"))?;
    if u64_at(bytes, header::CHECKSUM) != Some(checksum(covered)) {
        return Err(IndexError::ChecksumMismatch);
    }
    let field = |at| u64_at(bytes, at).unwrap_or(0);
    let flags = u32_at(bytes, header::FLAGS).unwrap_or(0);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(IndexError::Invalid(format!("unknown flags {flags:#x}")));
    }
    if u32_at(bytes, header::RESERVED) != Some(0) {
        return Err(IndexError::Invalid(
            "reserved header bytes are not zero".into(),
        ));
    }
    let spans = directory(bytes, body_end)?;
    let span = |section: Section| -> Result<Span, IndexError> {
        spans
            .iter()
            .find(|span| span.section == section)
            .copied()
            .ok_or_else(|| IndexError::Invalid(format!("no {} section", section.name())))
    };
    let meta = meta(bytes, span(Section::Meta)?)?;
    let names = span(Section::RepositoryNames)?;
    let repository_names = strings(bytes, names, MAX_REPOSITORIES, depth)?;
    if full {
        ascending(
            bytes,
            &repository_names,
            names,
            is_valid_repository_name_bytes,
        )?;
    }
    let repositories = name_set(
        bytes,
        repository_names,
        span(Section::RepositoryHash)?,
        depth,
    )?;
    let flags_span = span(Section::RepositoryFlags)?;
    let public_span = span(Section::Public)?;
    let public_count = repository_flags(
        bytes,
        flags_span,
        repository_names.count,
        public_span,
        depth,
    )?;
    let public = public_ids(bytes, public_span, flags_span.start, public_count, depth)?;
    let mut parts = [Table::default(); 3];
    let mut principals = 0_usize;
    for part in Part::ALL {
        let [names, hash, grants] = part.sections().map(&span);
        let (names, hash, grants) = (names?, hash?, grants?);
        let table = strings(bytes, names, MAX_PRINCIPALS, depth)?;
        if full {
            ascending(bytes, &table, names, |name| {
                core::str::from_utf8(name).is_ok_and(is_valid_principal_name)
            })?;
        }
        principals = principals.saturating_add(table.count);
        let set = name_set(bytes, table, hash, depth)?;
        let grants = grant_lists(bytes, grants, table.count, repository_names.count, depth)?;
        if let Some(slot) = parts.get_mut(part.position()) {
            *slot = Table { names: set, grants };
        }
    }
    if principals > MAX_PRINCIPALS {
        return Err(IndexError::Invalid(format!(
            "{principals} principals exceed the limit of {MAX_PRINCIPALS}"
        )));
    }
    let ids = span(Section::KeyIds)?;
    let key_ids = strings(bytes, ids, MAX_KEYS, Depth::Full)?;
    ascending(bytes, &key_ids, ids, |kid| {
        core::str::from_utf8(kid).is_ok_and(is_valid_key_id)
    })?;
    let specs = span(Section::KeySpecs)?;
    let key_specs = strings(bytes, specs, MAX_KEYS, Depth::Full)?;
    if key_specs.count != key_ids.count {
        return Err(specs.invalid(format!(
            "{} specs for {} key ids",
            key_specs.count, key_ids.count
        )));
    }
    for i in 0..key_specs.count {
        let spec = key_specs.get(bytes, i).unwrap_or_default();
        if spec.len() > MAX_KEY_SPEC_LEN || core::str::from_utf8(spec).is_err() {
            return Err(specs.invalid(format!(
                "spec {i} is not UTF-8 of at most {MAX_KEY_SPEC_LEN} bytes"
            )));
        }
    }
    Ok(Layout {
        minor: u16_at(bytes, header::MINOR).unwrap_or(0),
        checksum: field(header::CHECKSUM),
        body_end,
        generation: field(header::GENERATION),
        published_at: field(header::PUBLISHED_AT),
        min_token_iat: (flags & FLAG_MIN_TOKEN_IAT != 0).then(|| field(header::MIN_TOKEN_IAT)),
        allow_empty: flags & FLAG_ALLOW_EMPTY != 0,
        meta,
        repositories,
        flags: flags_span.start,
        public,
        parts,
        key_ids,
        key_specs,
    })
}

/// The directory: sections laid out back to back in the listed order from the end of the
/// directory to the trailer, kinds strictly ascending, every kind of this minor present
/// (later kinds are skipped).
fn directory(bytes: &[u8], body_end: usize) -> Result<Vec<Span>, IndexError> {
    let count = u32_at(bytes, header::SECTION_COUNT).unwrap_or(0) as usize;
    if count > MAX_SECTIONS {
        return Err(IndexError::Invalid(format!(
            "{count} sections exceed the limit of {MAX_SECTIONS}"
        )));
    }
    let mut cursor = HEADER_LEN.saturating_add(count.saturating_mul(DIRECTORY_ENTRY_LEN));
    if cursor > body_end {
        return Err(IndexError::Invalid(
            "the directory runs past the body".into(),
        ));
    }
    let mut spans = Vec::with_capacity(Section::ALL.len());
    let mut previous = 0_u32;
    for entry in 0..count {
        let at = HEADER_LEN.saturating_add(entry.saturating_mul(DIRECTORY_ENTRY_LEN));
        let (Some(kind), Some(offset), Some(len)) = (
            u32_at(bytes, at),
            u32_at(bytes, at.saturating_add(4)),
            u32_at(bytes, at.saturating_add(8)),
        ) else {
            return Err(IndexError::Invalid("the directory is cut short".into()));
        };
        if kind <= previous {
            return Err(IndexError::Invalid(format!(
                "directory entry {entry}: kind {kind} does not follow kind {previous}"
            )));
        }
        previous = kind;
        if offset as usize != cursor {
            return Err(IndexError::Invalid(format!(
                "directory entry {entry} (kind {kind}): starts at {offset}, expected {cursor}"
            )));
        }
        cursor = cursor.saturating_add(len as usize);
        if cursor > body_end {
            return Err(IndexError::Invalid(format!(
                "directory entry {entry} (kind {kind}): runs past the body"
            )));
        }
        if let Some(section) = Section::ALL.into_iter().find(|s| s.kind() == kind) {
            spans.push(Span {
                start: offset as usize,
                len: len as usize,
                section,
            });
        }
    }
    if cursor != body_end {
        return Err(IndexError::Invalid(format!(
            "sections end at {cursor} but the body at {body_end}"
        )));
    }
    Ok(spans)
}

/// A string table filling `span`, of at most `max` strings ([`Depth::Shape`]: only the last
/// end offset is checked).
fn strings(bytes: &[u8], span: Span, max: usize, depth: Depth) -> Result<Strings, IndexError> {
    let count = u32_at(bytes, span.start)
        .filter(|_| span.len >= 4)
        .ok_or_else(|| span.invalid("no count"))? as usize;
    if count > max {
        return Err(span.invalid(format!("{count} entries exceed the limit of {max}")));
    }
    let ends = span.start.saturating_add(4);
    let data = ends.saturating_add(count.saturating_mul(4));
    if data > span.end() {
        return Err(span.invalid(format!("{count} offsets run past the section")));
    }
    let data_len = span.end().saturating_sub(data);
    let mut previous = 0_usize;
    let first = match depth {
        Depth::Full => 0,
        Depth::Shape => count.saturating_sub(1),
    };
    for i in first..count {
        let end = u32_item(bytes, ends, i).unwrap_or(0) as usize;
        if end < previous || end > data_len {
            return Err(span.invalid(format!("entry {i} ends at {end}, out of order or range")));
        }
        previous = end;
    }
    if previous != data_len {
        return Err(span.invalid(format!(
            "entries end at {previous} but the data is {data_len} bytes"
        )));
    }
    Ok(Strings { count, ends, data })
}

/// Every string is accepted by `valid`, and each is greater than the one before.
fn ascending(
    bytes: &[u8],
    table: &Strings,
    span: Span,
    valid: impl Fn(&[u8]) -> bool,
) -> Result<(), IndexError> {
    let mut previous: Option<&[u8]> = None;
    for (i, name) in table.iter(bytes).enumerate() {
        if !valid(name) {
            return Err(span.invalid(format!(
                "entry {i} {:?} is not a valid name",
                String::from_utf8_lossy(name)
            )));
        }
        if previous.is_some_and(|previous| !sorts_before(previous, name)) {
            return Err(span.invalid(format!(
                "entry {i} {:?} is not greater than the one before",
                String::from_utf8_lossy(name)
            )));
        }
        previous = Some(name);
    }
    Ok(())
}

/// The hash table over `names` filling `span`: exactly [`slots_for`] slots, each empty or an
/// id below the count, every id exactly once, and every id reachable from its home slot
/// without crossing an empty slot (so lookups find it). Checked in one pass: the distance of
/// an id from its home must be shorter than the run of occupied slots ending at it.
fn name_set(bytes: &[u8], names: Strings, span: Span, depth: Depth) -> Result<NameSet, IndexError> {
    let slots = span.len / 4;
    if span.len % 4 != 0 || Some(slots) != slots_for(names.count) {
        return Err(span.invalid(format!(
            "{} bytes for {} names (expected {:?} slots)",
            span.len,
            names.count,
            slots_for(names.count)
        )));
    }
    let set = NameSet {
        names,
        table: span.start,
        slots,
    };
    if depth == Depth::Shape {
        return Ok(set);
    }
    let mask = slots.saturating_sub(1);
    let table = bytes.get(span.start..span.end()).unwrap_or_default();
    let slot = |s: usize| u32_item(table, 0, s).unwrap_or(EMPTY_SLOT);
    // Start right after an empty slot, so every run of occupied slots is seen whole. There
    // is one: at most half the slots can hold an id.
    let Some(empty) = (0..slots).find(|s| slot(*s) == EMPTY_SLOT) else {
        return Err(span.invalid("no empty slot"));
    };
    // First pass, over the slots in order: every id in range and in one slot only; where it
    // is; how long the run of occupied slots ending at each slot is.
    let mut position = vec![u32::MAX; names.count];
    let mut run = vec![0_u32; slots];
    let mut length = 0_u32;
    for step in 1..=slots {
        let s = (empty + step) & mask;
        let id = slot(s);
        if id == EMPTY_SLOT {
            length = 0;
            continue;
        }
        length = length.saturating_add(1);
        if let Some(held) = run.get_mut(s) {
            *held = length;
        }
        match position.get_mut(id as usize) {
            Some(at) if *at == u32::MAX => *at = u32::try_from(s).unwrap_or(u32::MAX),
            Some(_) => return Err(span.invalid(format!("id {id} is in more than one slot"))),
            None => return Err(span.invalid(format!("slot {s} holds id {id}, out of range"))),
        }
    }
    // Second pass, over the names in order: each in some slot, no farther from its home
    // slot than the run it sits at the end of (else a lookup stops at an empty slot first).
    for (id, (name, at)) in names.iter(bytes).zip(&position).enumerate() {
        if *at == u32::MAX {
            return Err(span.invalid(format!("name {id} is in no slot")));
        }
        let s = *at as usize;
        let home = (name_hash(name) as usize) & mask;
        let distance = s.wrapping_sub(home) & mask;
        if distance >= run.get(s).copied().unwrap_or(0) as usize {
            return Err(span.invalid(format!(
                "id {id} in slot {s} cannot be found from its home slot {home}"
            )));
        }
    }
    Ok(set)
}

/// One byte per repository, each 0 (public) or 1 (grant needed). Returns how many are public
/// ([`Depth::Shape`]: the length only, and how many ids the public section holds).
fn repository_flags(
    bytes: &[u8],
    span: Span,
    count: usize,
    public: Span,
    depth: Depth,
) -> Result<usize, IndexError> {
    if span.len != count {
        return Err(span.invalid(format!("{} bytes for {count} repositories", span.len)));
    }
    if depth == Depth::Shape {
        if public.len % 4 != 0 {
            return Err(public.invalid(format!("{} bytes are not a list of ids", public.len)));
        }
        return Ok(public.len / 4);
    }
    let flags = bytes.get(span.start..span.end()).unwrap_or_default();
    let mut public = 0;
    for (id, flag) in flags.iter().enumerate() {
        match flag {
            0 => public += 1,
            1 => {}
            other => return Err(span.invalid(format!("repository {id} has flag {other}"))),
        }
    }
    Ok(public)
}

/// The public ids: ascending, exactly the repositories flagged 0 ([`Depth::Shape`]: the
/// length only).
fn public_ids(
    bytes: &[u8],
    span: Span,
    flags: usize,
    public: usize,
    depth: Depth,
) -> Result<(usize, usize), IndexError> {
    if span.len != public.saturating_mul(4) {
        return Err(span.invalid(format!("{} bytes for {public} public ids", span.len)));
    }
    if depth == Depth::Shape {
        return Ok((span.start, public));
    }
    let ids = Ids::new(bytes.get(span.start..span.end()).unwrap_or_default());
    let mut previous: Option<u32> = None;
    for id in ids.iter() {
        let flag = bytes.get(flags.saturating_add(id as usize)).copied();
        if previous.is_some_and(|p| p >= id) || flag != Some(0) {
            return Err(span.invalid(format!(
                "id {id} is out of order or not a public repository"
            )));
        }
        previous = Some(id);
    }
    Ok((span.start, public))
}

/// The grant lists of `principals` principals filling `span`: starts from 0, never
/// decreasing, ending at the number of ids; each list strictly ascending below
/// `repositories`.
fn grant_lists(
    bytes: &[u8],
    span: Span,
    principals: usize,
    repositories: usize,
    depth: Depth,
) -> Result<Grants, IndexError> {
    let starts_len = principals.saturating_add(1).saturating_mul(4);
    if span.len < starts_len || (span.len - starts_len) % 4 != 0 {
        return Err(span.invalid(format!(
            "{} bytes cannot hold the lists of {principals} principals",
            span.len
        )));
    }
    let total = (span.len - starts_len) / 4;
    let grants = Grants {
        principals,
        starts: span.start,
        ids: span.start.saturating_add(starts_len),
    };
    let start = |p: usize| u32_item(bytes, span.start, p).unwrap_or(u32::MAX) as usize;
    if start(0) != 0 || start(principals) != total {
        return Err(span.invalid(format!(
            "lists span {}..{} of {total} ids",
            start(0),
            start(principals)
        )));
    }
    if depth == Depth::Shape {
        return Ok(grants);
    }
    let mut previous_start = 0;
    for p in 0..principals {
        let next = start(p.saturating_add(1));
        if next < previous_start || next > total {
            return Err(span.invalid(format!("principal {p}: list ends at {next}, out of order")));
        }
        previous_start = next;
        let mut previous: Option<u32> = None;
        for id in grants.of(bytes, p).iter() {
            if previous.is_some_and(|previous| previous >= id) || id as usize >= repositories {
                return Err(
                    span.invalid(format!("principal {p}: id {id} is out of order or range"))
                );
            }
            previous = Some(id);
        }
    }
    Ok(grants)
}

/// The meta strings: epoch, producer, then required features (all known to this reader).
fn meta(bytes: &[u8], span: Span) -> Result<Strings, IndexError> {
    let table = strings(bytes, span, 2 + 64, Depth::Full)?;
    let text = |i| table.text(bytes, i).unwrap_or_default();
    if table.count < 2 {
        return Err(span.invalid("epoch and producer missing"));
    }
    if !is_valid_epoch(text(0)) {
        return Err(span.invalid(format!(
            "epoch {:?} is not 1 to 64 visible ASCII characters without '\"'",
            text(0)
        )));
    }
    if !is_valid_label(text(1)) {
        return Err(span.invalid(format!("producer {:?} is not a label", text(1))));
    }
    let mut unknown = Vec::new();
    for i in 2..table.count {
        let feature = text(i);
        if !is_valid_label(feature) {
            return Err(span.invalid(format!("feature {feature:?} is not a label")));
        }
        if !KNOWN_FEATURES.contains(&feature) {
            unknown.push(feature);
        }
    }
    if !unknown.is_empty() {
        return Err(IndexError::UnknownFeatures(unknown.join(", ")));
    }
    Ok(table)
}
