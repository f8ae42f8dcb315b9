//! The rkyv alternative: one archived struct (names, flags, a user → grant-list hash map and a
//! name → id hash map), serialized with `rkyv::to_bytes` and opened with `rkyv::access`
//! under full bytecheck validation — after copying the bytes into an `AlignedVec`, since
//! ours arrive unaligned in a `Vec<u8>` from Envoy's shared data.

use std::collections::HashMap;

use rkyv::rancor::Error;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Serialize};

use crate::data::{Data, Sorted};
use crate::measure::{time_build, time_open, time_queries, Row, Settings};

/// The content as rkyv archives it.
#[derive(Debug, Archive, Serialize)]
pub struct Snapshot {
    /// Sorted; a repository's id is its position.
    pub names: Vec<String>,
    /// Parallel to `names`.
    pub auth: Vec<bool>,
    /// User → ascending repository ids.
    pub users: HashMap<String, Vec<u32>>,
    /// Name → id.
    pub repo_index: HashMap<String, u32>,
}

pub fn build(data: &Data) -> Result<Vec<u8>, String> {
    let sorted = Sorted::new(data)?;
    let mut repo_index = HashMap::with_capacity(sorted.names.len());
    for (id, name) in sorted.names.iter().enumerate() {
        repo_index.insert(
            (*name).to_owned(),
            u32::try_from(id).map_err(|e| e.to_string())?,
        );
    }
    let snapshot = Snapshot {
        names: sorted.names.iter().map(|n| (*n).to_owned()).collect(),
        auth: sorted.auth_required,
        users: sorted
            .users
            .into_iter()
            .map(|(user, ids)| (user.to_owned(), ids))
            .collect(),
        repo_index,
    };
    let bytes = rkyv::to_bytes::<Error>(&snapshot).map_err(|e| e.to_string())?;
    // What travels and lands in shared data is a plain byte vector.
    Ok(bytes.to_vec())
}

/// Copies `bytes` into aligned memory and validates them there.
pub fn open(bytes: &[u8]) -> Result<AlignedVec, String> {
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::access::<ArchivedSnapshot, Error>(&aligned).map_err(|e| e.to_string())?;
    Ok(aligned)
}

pub fn may_pull(snapshot: &ArchivedSnapshot, user: &str, repository: &str) -> bool {
    let found = snapshot.repo_index.get(repository).and_then(|id| {
        let id = id.to_native();
        Some((id, *snapshot.auth.get(usize::try_from(id).ok()?)?))
    });
    let grants = snapshot.users.get(user);
    match found {
        Some((id, auth_required)) => {
            !auth_required
                || grants.is_some_and(|ids| {
                    ids.binary_search_by(|held| held.to_native().cmp(&id))
                        .is_ok()
                })
        }
        None => false,
    }
}

/// What `rkyv::access` says of the same bytes one byte off alignment (as a `Vec<u8>` filled
/// from shared data may be).
pub fn unaligned_access(bytes: &[u8]) -> String {
    let mut padded = AlignedVec::<16>::with_capacity(bytes.len() + 1);
    padded.push(0);
    padded.extend_from_slice(bytes);
    match padded.get(1..) {
        Some(shifted) => match rkyv::access::<ArchivedSnapshot, Error>(shifted) {
            Ok(_) => "accepted".into(),
            Err(e) => format!("refused: {e}"),
        },
        None => "not tried".into(),
    }
}

pub fn run(
    data: &Data,
    queries: &[(&str, &str)],
    settings: &Settings,
) -> Result<(Row, String), String> {
    let (build_ms, bytes) = time_build(settings.build_rounds, || build(data))?;
    let open_ms = time_open(settings.open_rounds, || open(&bytes))?;
    let aligned = open(&bytes)?;
    let snapshot = rkyv::access::<ArchivedSnapshot, Error>(&aligned).map_err(|e| e.to_string())?;
    let (lookup_ns, allowed) = time_queries(queries, |u, r| may_pull(snapshot, u, r));
    let row = Row {
        format: "rkyv 0.8 (copy to AlignedVec + access, bytecheck)".into(),
        bytes: bytes.len(),
        build_ms,
        open_ms,
        lookup_ns,
        allowed,
        every_name: false,
        checks: "memory safety only: every pointer in bounds, UTF-8, bools, hash-table control \
                 bytes and counts; no name grammar or order, no check that a key sits where \
                 its hash leads, nor that grant ids are sorted or in range; needs 16-aligned \
                 bytes (a copy)"
            .into(),
    };
    Ok((row, unaligned_access(&bytes)))
}
