//! Rack-compatible parsing of nested form bodies: what Sinatra made of Katello's
//! `application/x-www-form-urlencoded` pushes, as a [`serde_json::Value`] so that form and
//! JSON bodies share one typed decoding (`katello::sync`).
//!
//! Owns the splitting, the strict `%`-decoding and Rack 2.2's nesting rules
//! (`Rack::QueryParser#parse_nested_query` / `normalize_params`), bounded by [`FormLimits`].
//! It must never interpret what the structure means (that is `sync`), never decode lossily
//! (bad `%`-escapes and non-UTF-8 text are errors, not replacement characters) and never
//! panic on any input.
//!
//! The rules, as Rack 2.2 applies them to each `name=value` piece:
//! - pieces are separated by `&` or `;`, and spaces right after a separator are skipped;
//!   empty pieces are ignored;
//! - name and value are split at the first `=` and then decoded (`+` is a space, `%XX` a
//!   byte), so `%5B`/`%5D` in a name are brackets exactly like literal ones; a piece without
//!   `=` has a null value;
//! - `k` sets `k` (the last duplicate wins); `k[]` appends to the array `k`; `k[a]` sets `a`
//!   in the hash `k`; `k[][a]` sets `a` in the last hash of the array `k` unless that hash
//!   already has `a`, in which case it starts a new hash; a child that itself contains `[]`
//!   (`k[][a][][b]`) always goes into the last hash;
//! - a structural conflict (`k=1&k[]=2`) is an error naming Rack's types
//!   (`expected Array (got String) for param `k``); a null slot is treated as absent.
//!
//! Values are only ever strings, arrays, hashes or null: booleans arrive as `"true"`.

use serde_json::{Map, Value};
use thiserror::Error;

/// Rack's `RACK_QUERY_PARSER_PARAMS_LIMIT` default.
pub const DEFAULT_MAX_PARAMS: usize = 4096;
/// How many levels of brackets one name may open. Rack 2.2 allows 100; Katello's deepest
/// name (`users[][login][][repository]`) needs 3, so 32 leaves ample room while keeping the
/// recursion shallow.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// Bounds on one body. There is no byte limit here: the HTTP layer limits body sizes, and the
/// parser's work is linear in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormLimits {
    /// Most `&`/`;`-separated pieces a body may have (empty pieces count).
    pub max_params: usize,
    /// Most nesting levels one name may open (`a[b][c]` opens 3, `a` 1).
    pub max_depth: usize,
}

impl Default for FormLimits {
    fn default() -> FormLimits {
        FormLimits {
            max_params: DEFAULT_MAX_PARAMS,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why a form body was refused. Names and values in messages are shortened to
/// [`SNIPPET_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormError {
    #[error("invalid %-encoding in {0:?}")]
    InvalidEscape(String),
    #[error("{0:?} does not decode to UTF-8 text")]
    NotUtf8(String),
    #[error("expected {expected} (got {got}) for param `{param}`")]
    TypeConflict {
        expected: &'static str,
        got: &'static str,
        param: String,
    },
    #[error("the body has more than {limit} parameters")]
    TooManyParams { limit: usize },
    #[error("param {param:?} is nested deeper than {limit} levels")]
    TooDeep { param: String, limit: usize },
}

/// How many characters of a name or value an error message quotes.
pub const SNIPPET_CHARS: usize = 64;

/// Parses a form body the way Rack 2.2's `parse_nested_query` does (see the module docs) into
/// a JSON object. An empty body is an empty object.
pub fn parse_nested_query(body: &[u8], limits: &FormLimits) -> Result<Value, FormError> {
    let mut params = Map::new();
    for (count, piece) in pieces(body).enumerate() {
        if count >= limits.max_params {
            return Err(FormError::TooManyParams {
                limit: limits.max_params,
            });
        }
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(at) => {
                let (name, rest) = piece.split_at(at);
                (name, rest.get(1..))
            }
            None => (piece, None),
        };
        let name = unescape(name)?;
        let value = value.map(unescape).transpose()?;
        normalize(
            &mut params,
            &name,
            value,
            limits.max_depth,
            limits.max_depth,
        )
        .map_err(|refused| refused.into_error(&name))?;
    }
    Ok(Value::Object(params))
}

/// The pieces of a body: split at `&` and `;`, with the spaces after a separator skipped
/// (Rack 2.2's `/[&;] */`).
fn pieces(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'&' || b == b';')
        .enumerate()
        .map(|(index, piece)| {
            if index == 0 {
                piece
            } else {
                let start = piece.iter().take_while(|&&b| b == b' ').count();
                piece.get(start..).unwrap_or_default()
            }
        })
}

/// Decodes one name or value like `URI.decode_www_form_component`: `+` is a space, `%XX` a
/// byte, a `%` not followed by two hex digits is an error, and the result must be UTF-8.
/// (`form_urlencoded::parse` decodes the same valid input, but passes malformed escapes
/// through and replaces invalid UTF-8, which would silently alter a name.)
fn unescape(raw: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = bytes.next().and_then(|&b| hex(b));
                let low = bytes.next().and_then(|&b| hex(b));
                match (high, low) {
                    (Some(high), Some(low)) => out.push(high << 4 | low),
                    _ => return Err(FormError::InvalidEscape(snippet(raw))),
                }
            }
            byte => out.push(byte),
        }
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8(snippet(raw)))
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// The first [`SNIPPET_CHARS`] characters of `raw` for a message, lossily (it is only shown).
fn snippet(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut chars = text.chars();
    let mut shown: String = chars.by_ref().take(SNIPPET_CHARS).collect();
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

/// What `normalize_params` returned to its caller, which Rack sometimes stores.
enum Normalized {
    /// The params hash it was given (now updated in place).
    Params,
    /// `nil`: the name had no key.
    Nil,
    /// `Array(v)`: the name was exactly `[]`, with a value.
    Wrapped(String),
}

impl Normalized {
    /// The value Rack stores for this result when `params` was a fresh hash.
    fn into_value(self, params: Map<String, Value>) -> Value {
        match self {
            Normalized::Params => Value::Object(params),
            Normalized::Nil => Value::Null,
            Normalized::Wrapped(value) => Value::Array(vec![Value::String(value)]),
        }
    }
}

/// A failure inside [`normalize`], before the top-level name is known.
enum Refused {
    Conflict {
        expected: &'static str,
        got: &'static str,
        param: String,
    },
    TooDeep {
        limit: usize,
    },
}

impl Refused {
    fn into_error(self, name: &str) -> FormError {
        match self {
            Refused::Conflict {
                expected,
                got,
                param,
            } => FormError::TypeConflict {
                expected,
                got,
                param: snippet(param.as_bytes()),
            },
            Refused::TooDeep { limit } => FormError::TooDeep {
                param: snippet(name.as_bytes()),
                limit,
            },
        }
    }
}

/// Rack 2.2's `normalize_params(params, name, v, depth)`, rule for rule; `depth` counts down
/// from `limit`.
fn normalize(
    params: &mut Map<String, Value>,
    name: &str,
    value: Option<String>,
    depth: usize,
    limit: usize,
) -> Result<Normalized, Refused> {
    if depth == 0 {
        return Err(Refused::TooDeep { limit });
    }
    let Some((key, after)) = split_name(name) else {
        return Ok(match value {
            Some(value) if name == "[]" => Normalized::Wrapped(value),
            _ => Normalized::Nil,
        });
    };
    if after.is_empty() {
        params.insert(key.to_owned(), leaf(value));
    } else if after == "[" {
        params.insert(name.to_owned(), leaf(value));
    } else if after == "[]" {
        array_at(params, key)?.push(leaf(value));
    } else if let Some(child) = array_child(after) {
        let list = array_at(params, key)?;
        let merge = matches!(list.last(), Some(Value::Object(last)) if !has_key(last, child));
        match list.last_mut() {
            Some(Value::Object(last)) if merge => {
                normalize(last, child, value, depth - 1, limit)?;
            }
            _ => {
                let mut fresh = Map::new();
                let result = normalize(&mut fresh, child, value, depth - 1, limit)?;
                list.push(result.into_value(fresh));
            }
        }
    } else {
        let result = normalize(hash_at(params, key)?, after, value, depth - 1, limit)?;
        match result {
            Normalized::Params => {}
            Normalized::Nil => {
                params.insert(key.to_owned(), Value::Null);
            }
            Normalized::Wrapped(value) => {
                params.insert(key.to_owned(), Value::Array(vec![Value::String(value)]));
            }
        }
    }
    Ok(Normalized::Params)
}

fn leaf(value: Option<String>) -> Value {
    value.map_or(Value::Null, Value::String)
}

/// Rack's `name =~ /\A[\[\]]*([^\[\]]+)\]*/`: the key (the first run of non-bracket
/// characters after any leading brackets) and what follows it and its closing `]`s. `None`
/// when the name has no key (Rack's `k.empty?`).
fn split_name(name: &str) -> Option<(&str, &str)> {
    let start = name.find(|c| c != '[' && c != ']')?;
    let rest = name.get(start..)?;
    let end = rest.find(['[', ']']).unwrap_or(rest.len());
    let (key, after) = rest.split_at_checked(end)?;
    Some((key, after.trim_start_matches(']')))
}

/// The child name of an `after` shaped `[][child]` (child without brackets) or `[]child`.
fn array_child(after: &str) -> Option<&str> {
    let rest = after.strip_prefix("[]")?;
    let bracketed = rest
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .filter(|inner| !inner.is_empty() && !inner.contains(['[', ']']));
    bracketed.or((!rest.is_empty()).then_some(rest))
}

/// Rack's `params_hash_has_key?`: whether the (possibly bracketed) `key` path already exists
/// in `hash`; never for a key containing `[]`.
fn has_key(hash: &Map<String, Value>, key: &str) -> bool {
    if key.contains("[]") {
        return false;
    }
    let mut node = hash;
    let mut parts = key
        .split(['[', ']'])
        .filter(|part| !part.is_empty())
        .peekable();
    while let Some(part) = parts.next() {
        match node.get(part) {
            None => return false,
            Some(_) if parts.peek().is_none() => return true,
            Some(Value::Object(inner)) => node = inner,
            Some(_) => return false,
        }
    }
    true
}

/// `params[k] ||= []`, then the array or a conflict.
fn array_at<'a>(
    params: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Vec<Value>, Refused> {
    let slot = params.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(list) => Ok(list),
        other => Err(conflict("Array", other, key)),
    }
}

/// `params[k] ||= {}`, then the hash or a conflict.
fn hash_at<'a>(
    params: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, Refused> {
    let slot = params.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(hash) => Ok(hash),
        other => Err(conflict("Hash", other, key)),
    }
}

fn conflict(expected: &'static str, found: &Value, key: &str) -> Refused {
    // Ruby's class names, as Rack's message has them.
    let got = match found {
        Value::Null => "NilClass",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Hash",
    };
    Refused::Conflict {
        expected,
        got,
        param: key.to_owned(),
    }
}

#[cfg(test)]
mod tests;
