//! The fst alternative: one buffer holding an `fst::Map` from repository name to id, an
//! `fst::Map` from user to principal position, one flag byte per repository and the grant
//! lists laid out as ours (start offsets, then ascending little-endian `u32` ids).
//!
//! ```text
//! repo fst len | user fst len | repositories | users (u32 each) | repo fst | user fst |
//! flags | starts (users + 1 u32) | ids
//! ```
//!
//! "Open" is what fst offers cheaply: `fst::Map::new` (header and footer only) plus a walk of
//! our own offsets and grant lists. The "full" variant adds what it takes to check every name
//! as ours does: `Fst::verify` (its CRC32C) and a stream over every key, holding it to the
//! name grammars and its value to its position.

use fst::{Map, MapBuilder, Streamer};
use registry_gate_index::names::{is_valid_principal_name, is_valid_repository_name_bytes};

use crate::data::{Data, Sorted};
use crate::measure::{time_build, time_open, time_queries, Row, Settings};

const HEADER_LEN: usize = 16;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Whether grant list `ids` (little-endian `u32`s, ascending, any alignment) holds `id`.
fn le_ids_contain(ids: &[u8], id: u32) -> bool {
    let at = |i: usize| -> Option<u32> {
        let raw: [u8; 4] = ids.get(i * 4..i * 4 + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(raw))
    };
    let (mut low, mut high) = (0, ids.len() / 4);
    while low < high {
        let middle = low + (high - low) / 2;
        match at(middle) {
            Some(found) if found < id => low = middle + 1,
            _ => high = middle,
        }
    }
    at(low) == Some(id)
}

fn len32(n: usize) -> Result<u32, String> {
    u32::try_from(n).map_err(|e| e.to_string())
}

pub fn build(data: &Data) -> Result<Vec<u8>, String> {
    let sorted = Sorted::new(data)?;
    let mut repos = MapBuilder::memory();
    for (id, name) in sorted.names.iter().enumerate() {
        repos.insert(name, id as u64).map_err(|e| e.to_string())?;
    }
    let repos = repos.into_inner().map_err(|e| e.to_string())?;
    let mut users = MapBuilder::memory();
    for (p, (name, _)) in sorted.users.iter().enumerate() {
        users.insert(name, p as u64).map_err(|e| e.to_string())?;
    }
    let users = users.into_inner().map_err(|e| e.to_string())?;
    let total: usize = sorted.users.iter().map(|(_, ids)| ids.len()).sum();
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + repos.len()
            + users.len()
            + sorted.names.len()
            + (sorted.users.len() + 1 + total) * 4,
    );
    for n in [
        repos.len(),
        users.len(),
        sorted.names.len(),
        sorted.users.len(),
    ] {
        out.extend_from_slice(&len32(n)?.to_le_bytes());
    }
    out.extend_from_slice(&repos);
    out.extend_from_slice(&users);
    out.extend(sorted.auth_required.iter().map(|a| u8::from(*a)));
    let mut start = 0_usize;
    out.extend_from_slice(&0_u32.to_le_bytes());
    for (_, ids) in &sorted.users {
        start += ids.len();
        out.extend_from_slice(&len32(start)?.to_le_bytes());
    }
    for (_, ids) in &sorted.users {
        out.extend(ids.iter().flat_map(|id| id.to_le_bytes()));
    }
    Ok(out)
}

/// The buffer, opened.
#[derive(Debug)]
pub struct FstIndex<'a> {
    repositories: Map<&'a [u8]>,
    users: Map<&'a [u8]>,
    flags: &'a [u8],
    starts: &'a [u8],
    ids: &'a [u8],
}

/// Opens `bytes`: `Map::new` on both maps, then every offset, flag and grant list.
pub fn open(bytes: &[u8]) -> Result<FstIndex<'_>, String> {
    let field = |i: usize| -> Result<usize, String> {
        u32_at(bytes, i * 4)
            .map(|n| n as usize)
            .ok_or_else(|| "shorter than the header".to_owned())
    };
    let (repo_len, user_len, repositories, users) = (field(0)?, field(1)?, field(2)?, field(3)?);
    let mut cursor = HEADER_LEN;
    let mut take = |len: usize| -> Result<&[u8], String> {
        let end = cursor.checked_add(len).ok_or("length overflows")?;
        let part = bytes.get(cursor..end).ok_or("a part runs past the end")?;
        cursor = end;
        Ok(part)
    };
    let repo_fst = take(repo_len)?;
    let user_fst = take(user_len)?;
    let flags = take(repositories)?;
    let starts = take(users.checked_add(1).ok_or("overflow")?.saturating_mul(4))?;
    let ids = bytes.get(cursor..).ok_or("no ids")?;
    let repository_map = Map::new(repo_fst).map_err(|e| e.to_string())?;
    let user_map = Map::new(user_fst).map_err(|e| e.to_string())?;
    if repository_map.len() != repositories || user_map.len() != users {
        return Err("map sizes disagree with the header".into());
    }
    if flags.iter().any(|f| *f > 1) {
        return Err("a repository flag is neither 0 nor 1".into());
    }
    if ids.len() % 4 != 0 || u32_at(starts, 0) != Some(0) {
        return Err("grant lists are malformed".into());
    }
    let total = ids.len() / 4;
    let mut previous_start = 0_usize;
    for p in 0..users {
        let end = u32_at(starts, (p + 1) * 4).ok_or("starts cut short")? as usize;
        if end < previous_start || end > total {
            return Err(format!("principal {p}: list ends at {end}, out of order"));
        }
        let list = ids
            .get(previous_start * 4..end * 4)
            .ok_or("list out of range")?;
        let mut previous: Option<u32> = None;
        for raw in list.chunks_exact(4) {
            let id = u32_at(raw, 0).ok_or("short id")?;
            if previous.is_some_and(|previous| previous >= id) || id as usize >= repositories {
                return Err(format!("principal {p}: id {id} is out of order or range"));
            }
            previous = Some(id);
        }
        previous_start = end;
    }
    if previous_start != total {
        return Err("grant lists do not fill the ids".into());
    }
    Ok(FstIndex {
        repositories: repository_map,
        users: user_map,
        flags,
        starts,
        ids,
    })
}

/// [`open`], then both maps' checksums and every key: grammar, order (by construction of a
/// stream) and value equal to its position.
pub fn open_full(bytes: &[u8]) -> Result<FstIndex<'_>, String> {
    let index = open(bytes)?;
    index
        .repositories
        .as_fst()
        .verify()
        .map_err(|e| e.to_string())?;
    index.users.as_fst().verify().map_err(|e| e.to_string())?;
    let mut stream = index.repositories.stream();
    let mut position = 0_u64;
    while let Some((name, id)) = stream.next() {
        if id != position || !is_valid_repository_name_bytes(name) {
            return Err(format!("repository {position} is invalid"));
        }
        position += 1;
    }
    let mut stream = index.users.stream();
    let mut position = 0_u64;
    while let Some((name, p)) = stream.next() {
        let valid = core::str::from_utf8(name).is_ok_and(is_valid_principal_name);
        if p != position || !valid {
            return Err(format!("user {position} is invalid"));
        }
        position += 1;
    }
    Ok(index)
}

pub fn may_pull(index: &FstIndex<'_>, user: &str, repository: &str) -> bool {
    let found = index.repositories.get(repository).and_then(|id| {
        let id = usize::try_from(id).ok()?;
        Some((id, *index.flags.get(id)? != 0))
    });
    let grants = index.users.get(user).and_then(|p| {
        let p = usize::try_from(p).ok()?;
        let start = u32_at(index.starts, p.checked_mul(4)?)? as usize;
        let end = u32_at(index.starts, p.checked_add(1)?.checked_mul(4)?)? as usize;
        index.ids.get(start.checked_mul(4)?..end.checked_mul(4)?)
    });
    match found {
        Some((id, auth_required)) => {
            !auth_required
                || grants
                    .is_some_and(|ids| u32::try_from(id).is_ok_and(|id| le_ids_contain(ids, id)))
        }
        None => false,
    }
}

pub fn run(data: &Data, queries: &[(&str, &str)], settings: &Settings) -> Result<[Row; 2], String> {
    let (build_ms, bytes) = time_build(settings.build_rounds, || build(data))?;
    let open_ms = time_open(settings.open_rounds, || open(&bytes))?;
    let full_ms = time_open(settings.open_rounds, || open_full(&bytes))?;
    let index = open_full(&bytes)?;
    let (lookup_ns, allowed) = time_queries(queries, |u, r| may_pull(&index, u, r));
    let row = |format: &str, open_ms: f64, every_name: bool, checks: &str| Row {
        format: format.into(),
        bytes: bytes.len(),
        build_ms,
        open_ms,
        lookup_ns,
        allowed,
        every_name,
        checks: checks.into(),
    };
    Ok([
        row(
            "fst 0.4 (Map::new + our offsets)",
            open_ms,
            false,
            "header/footer of each FST and our offsets and grant lists; no name is checked \
             (fst bytes that pass `Map::new` can still be garbage: fst's own docs say a lookup \
             may then panic or answer wrong); unaligned",
        ),
        row(
            "fst 0.4, full (+ verify() CRC32C + stream every key)",
            full_ms,
            true,
            "as above, plus both CRC32Cs and every key streamed: grammar, value = position; \
             the automaton's transitions are still not bounds-checked before a lookup",
        ),
    ])
}
