//! Our layout, schema 2: built by `registry_gate_index::Builder` (which sorts, resolves the
//! grants through its own hash table and validates what it wrote) and opened with
//! `Index::open` over the unaligned bytes, in place.

use registry_gate_index::{Builder, Index, Part, Stamp};

use crate::data::Data;
use crate::measure::{time_build, time_open, time_queries, Row, Settings};

const STAMP: Stamp<'static> = Stamp {
    epoch: "bench",
    producer: "bench-formats",
    generation: 1,
    published_at: 0,
    allow_empty: false,
    min_token_iat: None,
};

pub fn build(data: &Data) -> Result<Vec<u8>, String> {
    let repositories = data
        .repositories
        .iter()
        .map(String::as_str)
        .zip(data.auth_required.iter().copied());
    let mut builder = Builder::new(repositories).map_err(|e| e.to_string())?;
    for (user, held) in data.users.iter().zip(&data.grants) {
        let names = held
            .iter()
            .filter_map(|i| data.repositories.get(*i).map(String::as_str));
        builder
            .grant(Part::Users, user, names)
            .map_err(|e| e.to_string())?;
    }
    builder.finish(&STAMP).map_err(|e| e.to_string())
}

pub fn may_pull(index: &Index<&[u8]>, user: &str, repository: &str) -> bool {
    let found = index.repository(repository);
    let grants = index.grants(Part::Users, user);
    match found {
        Some(found) => !found.auth_required || grants.is_some_and(|ids| ids.contains(found.id)),
        None => false,
    }
}

pub fn run(data: &Data, queries: &[(&str, &str)], settings: &Settings) -> Result<Row, String> {
    let (build_ms, bytes) = time_build(settings.build_rounds, || build(data))?;
    let open_ms = time_open(settings.open_rounds, || {
        Index::open(bytes.as_slice()).map_err(|e| e.to_string())
    })?;
    let index = Index::open(bytes.as_slice()).map_err(|e| e.to_string())?;
    let (lookup_ns, allowed) = time_queries(queries, |u, r| may_pull(&index, u, r));
    Ok(Row {
        format: "ours (schema 2)".into(),
        bytes: bytes.len(),
        build_ms,
        open_ms,
        lookup_ns,
        allowed,
        every_name: true,
        checks: "all: checksum, every offset/count, every name's grammar and order, hash tables \
                 (every id findable), grant ids sorted and in range; unaligned"
            .into(),
    })
}
