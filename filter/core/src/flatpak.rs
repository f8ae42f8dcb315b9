//! The Flatpak registry index (`/index/static`): the upstream's answer, cut down to what the
//! caller may pull.
//!
//! The upstream (Pulp with `FLATPAK_INDEX` on) answers with one JSON object: `Registry` (its
//! URL), and `Results`, one entry per repository (`Name`, and its `Images` / `Lists`). This
//! module owns reading that answer: which upstream responses are filtered and which pass
//! through ([`plan`]), and the filter itself ([`filter_index`]), which keeps every field but
//! `Results` as sent (the bytes, never a re-encoding) and keeps a `Results` entry only if its
//! `Name` passes. It never decides
//! who may pull what (the caller passes that in, from `decision::may_list`) and never lets an
//! unfiltered body through: anything it cannot read is an error, and errors are answered 502.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::reply::{self, Code, Reply};

/// What to do with the upstream's response to a Flatpak index request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// An upstream error (status >= 400): pass it through untouched, body included. It
    /// carries no index.
    PassThrough,
    /// A `200` with an identity-encoded body: buffer it and filter it.
    Filter,
}

/// Why an upstream answer to a Flatpak index request cannot be given to the client.
#[derive(Debug, Error)]
pub enum FlatpakError {
    /// Only `200` carries an index to filter; `>= 400` passes through. Anything else (a
    /// redirect, `204`, `206`, `304`) could lead the client to an unfiltered index.
    #[error("upstream answered the flatpak index with status {0}")]
    UnexpectedStatus(u16),
    /// The upstream's `:status` is missing or not a number.
    #[error("upstream answered the flatpak index without a valid status")]
    NoStatus,
    /// The body is content-encoded although the request asked for none.
    #[error("upstream sent the flatpak index content-encoded")]
    Encoded,
    #[error("flatpak index is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("flatpak index is not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The old gateway answered these 400; the client did nothing wrong, so this one answers
    /// 502 like every other unusable upstream answer.
    #[error("flatpak index has no Results array")]
    NoResults,
    /// Buffering this index would take the responses held at once past
    /// `flatpak_buffer_budget_bytes`: the client may come back shortly.
    #[error("flatpak index answers held at once would pass {budget} bytes")]
    OverBudget { budget: usize },
}

impl FlatpakError {
    /// Stable snake_case name, for stats (`flatpak_index.<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            FlatpakError::UnexpectedStatus(_) => "unexpected_status",
            FlatpakError::NoStatus => "no_status",
            FlatpakError::Encoded => "encoded",
            FlatpakError::TooLarge { .. } => "too_large",
            FlatpakError::NotJson(_) => "not_json",
            FlatpakError::NoResults => "no_results",
            FlatpakError::OverBudget { .. } => "over_budget",
        }
    }

    /// The reply the client gets instead of the upstream's answer, in the registry error
    /// format: 503 with `Retry-After` when over the budget (nothing is wrong with the index,
    /// only too many are held now), else 502. The only place these errors become HTTP.
    pub fn reply(&self, retry_after_secs: u64) -> Reply {
        match self {
            FlatpakError::OverBudget { .. } => reply::error(
                503,
                Code::Unavailable,
                "too many flatpak index answers are being filtered; retry shortly",
                None,
            )
            .with_header("retry-after", retry_after_secs.to_string()),
            _ => reply::error(
                502,
                Code::Unknown,
                "the upstream's flatpak index could not be filtered",
                Some(&self.to_string()),
            ),
        }
    }
}

/// The body length a `Content-Length` value declares, if it is a number.
pub fn declared_length(content_length: Option<&[u8]>) -> Option<usize> {
    content_length
        .and_then(|v| core::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
}

/// Reads the upstream's response head: `status` is the `:status` value, `content_encoding`
/// the `Content-Encoding` header if any.
pub fn plan(status: Option<&[u8]>, content_encoding: Option<&[u8]>) -> Result<Plan, FlatpakError> {
    let status = status
        .and_then(|s| core::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(FlatpakError::NoStatus)?;
    match status {
        400.. => Ok(Plan::PassThrough),
        200 => match content_encoding.map(<[u8]>::trim_ascii) {
            None | Some(b"") => Ok(Plan::Filter),
            Some(encoding) if encoding.eq_ignore_ascii_case(b"identity") => Ok(Plan::Filter),
            Some(_) => Err(FlatpakError::Encoded),
        },
        status => Err(FlatpakError::UnexpectedStatus(status)),
    }
}

/// The index in `body` with its `Results` cut down to the entries whose `Name` satisfies
/// `may_pull`. Every other field, and every kept entry, is kept byte for byte as sent (never
/// re-encoded: numbers keep their digits); fields may come out in another order. An entry
/// that is not an object with exactly one string `Name` is dropped. A body over `limit` bytes,
/// that is not a JSON object, or whose `Results` is missing or not an array is an error.
pub fn filter_index(
    body: &[u8],
    limit: usize,
    may_pull: impl Fn(&str) -> bool,
) -> Result<Vec<u8>, FlatpakError> {
    filter_to_text(body, limit, may_pull).map(String::into_bytes)
}

/// Upstream response headers a filtered index keeps; every other one is dropped (length,
/// encoding and validators describe the unfiltered body; hop-by-hop headers are Envoy's).
pub const KEPT_HEADERS: [&str; 4] = ["content-type", "cache-control", "expires", "vary"];

/// The filtered index as the complete reply the client gets: `200`, the upstream's
/// [`KEPT_HEADERS`] (given as (lower-case name, value) pairs; values that are not text are
/// dropped), `content-type: application/json` if the upstream sent none.
pub fn filtered_reply<'a>(
    body: &[u8],
    limit: usize,
    may_pull: impl Fn(&str) -> bool,
    upstream_headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Reply, FlatpakError> {
    let body = filter_to_text(body, limit, may_pull)?;
    let mut headers: Vec<(String, String)> = upstream_headers
        .into_iter()
        .filter(|(name, _)| KEPT_HEADERS.contains(name))
        .filter_map(|(name, value)| {
            let value = core::str::from_utf8(value).ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    if !headers.iter().any(|(name, _)| name == "content-type") {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    Ok(Reply {
        status: 200,
        headers,
        body,
    })
}

fn filter_to_text(
    body: &[u8],
    limit: usize,
    may_pull: impl Fn(&str) -> bool,
) -> Result<String, FlatpakError> {
    if body.len() > limit {
        return Err(FlatpakError::TooLarge { limit });
    }
    let mut index: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(FlatpakError::NotJson)?;
    let results = index.get("Results").ok_or(FlatpakError::NoResults)?;
    let entries: Vec<&RawValue> =
        serde_json::from_str(results.get()).map_err(|_| FlatpakError::NoResults)?;
    let kept: Vec<&RawValue> = entries
        .into_iter()
        .filter(|entry| {
            serde_json::from_str::<Entry>(entry.get()).is_ok_and(|entry| may_pull(&entry.name))
        })
        .collect();
    let kept = serde_json::to_string(&kept)
        .and_then(RawValue::from_string)
        .map_err(FlatpakError::NotJson)?;
    index.insert("Results".to_owned(), kept);
    serde_json::to_string(&index).map_err(FlatpakError::NotJson)
}

/// What the filter reads of a `Results` entry: its `Name` (unescaped). Only a JSON object
/// with exactly one `Name`, a string, is an entry: serde's derived structs would also take an
/// array (`["team/secret"]`) or the last of two `Name`s, so this reads the map itself.
struct Entry {
    name: String,
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Entry, D::Error> {
        deserializer.deserialize_map(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("an object with one string Name")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut name: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "Name" {
                if name.is_some() {
                    return Err(de::Error::duplicate_field("Name"));
                }
                name = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        name.map(|name| Entry { name })
            .ok_or_else(|| de::Error::missing_field("Name"))
    }
}

#[cfg(test)]
mod tests;
