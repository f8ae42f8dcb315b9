//! Docker scopes and the `access` claim: parsing `repository:<name>:<actions>` strings and
//! checking whether a token's `access` list covers a request.
//!
//! Parsing is bounded (entry count, length) and follows the distribution scope grammar,
//! where a resource name may itself contain one `:` (a registry port). It never grants
//! anything by itself: the decision combines this with the snapshot.
//!
//! Bounds: a scope string is at most [`MAX_SCOPE_LEN`] bytes (else `Malformed`) and holds at
//! most [`MAX_SCOPES`] resource scopes of at most [`MAX_ACTIONS`] actions each (else
//! `TooMany`); an `access` claim holds at most [`MAX_ACCESS_ENTRIES`] entries of at most
//! [`MAX_ACTIONS`] actions ([`check_access_bounds`]). Matching never normalizes: names,
//! types and actions compare byte for byte, and an empty action list grants nothing.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::route::{is_valid_repository_name, Action};

/// One entry of a registry token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Why a scope string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScopeError {
    #[error("scope is malformed: {0}")]
    Malformed(&'static str),
    #[error("too many scopes")]
    TooMany,
}

/// Most resource scopes accepted in one scope string.
pub const MAX_SCOPES: usize = 32;
/// Most actions accepted in one resource scope or `access` entry.
pub const MAX_ACTIONS: usize = 16;
/// Longest accepted scope string, in bytes.
pub const MAX_SCOPE_LEN: usize = 4096;
/// Most entries accepted in a token's `access` claim.
pub const MAX_ACCESS_ENTRIES: usize = 64;
/// Longest accepted resource name in a scope, `host[:port]/` prefix included.
const MAX_RESOURCE_NAME_LEN: usize = 255;

/// One parsed resource scope, e.g. `repository:team/app:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    /// `repository`, `registry`, ...; a `(class)` suffix has been stripped.
    pub resource_type: String,
    /// The resource name, validated against the scope grammar (may carry `host[:port]/`).
    pub name: String,
    /// Distinct actions in request order; empty grants nothing.
    pub actions: Vec<String>,
}

impl ResourceScope {
    /// The scope in its wire form, `type:name:action,action` (the class is not restored).
    pub fn to_scope_string(&self) -> String {
        format!(
            "{}:{}:{}",
            self.resource_type,
            self.name,
            self.actions.join(",")
        )
    }
}

/// Parses a scope string: one or more resource scopes separated by single spaces.
///
/// Grammar (distribution `scope.md`): `resourcetype ":" resourcename ":" action ("," action)*`
/// with `resourcetype = [a-z0-9]+ ["(" [a-z0-9]+ ")"]` (the class is ignored),
/// `resourcename = [hostname[:port] "/"] component ("/" component)*`, `action = [a-z]* | "*"`.
/// Because a resource name may carry one `:` (a port), the type ends at the first `:` and the
/// actions start after the last one. Empty actions (`repository:foo:`, `pull,`) grant nothing
/// and are dropped; repeated actions are kept once.
pub fn parse_scopes(s: &str) -> Result<Vec<ResourceScope>, ScopeError> {
    if s.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::Malformed("scope string too long"));
    }
    if s.is_empty() {
        return Err(ScopeError::Malformed("empty scope"));
    }
    let mut scopes = Vec::new();
    for (count, part) in s.split(' ').enumerate() {
        if count >= MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        scopes.push(parse_resource_scope(part)?);
    }
    Ok(scopes)
}

fn parse_resource_scope(part: &str) -> Result<ResourceScope, ScopeError> {
    if part.is_empty() {
        return Err(ScopeError::Malformed("empty resource scope"));
    }
    let (resource_type, rest) = part
        .split_once(':')
        .ok_or(ScopeError::Malformed("missing resource name"))?;
    let (name, actions) = rest
        .rsplit_once(':')
        .ok_or(ScopeError::Malformed("missing actions"))?;
    let resource_type = parse_resource_type(resource_type)?;
    if !is_valid_resource_name(name) {
        return Err(ScopeError::Malformed("invalid resource name"));
    }
    Ok(ResourceScope {
        resource_type: resource_type.to_owned(),
        name: name.to_owned(),
        actions: parse_actions(actions)?,
    })
}

/// `[a-z0-9]+` optionally followed by `([a-z0-9]+)`; returns the type without the class.
fn parse_resource_type(raw: &str) -> Result<&str, ScopeError> {
    let invalid = ScopeError::Malformed("invalid resource type");
    let value = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let resource_type = match raw.split_once('(') {
        None => raw,
        Some((resource_type, class)) => {
            let class = class.strip_suffix(')').ok_or(invalid.clone())?;
            if !value(class) {
                return Err(invalid);
            }
            resource_type
        }
    };
    if value(resource_type) {
        Ok(resource_type)
    } else {
        Err(invalid)
    }
}

/// `action ("," action)*`, `action = [a-z]* | "*"`; drops empty actions and duplicates.
fn parse_actions(raw: &str) -> Result<Vec<String>, ScopeError> {
    let mut actions: Vec<String> = Vec::new();
    for (count, action) in raw.split(',').enumerate() {
        if count >= MAX_ACTIONS {
            return Err(ScopeError::TooMany);
        }
        if action != "*" && !action.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(ScopeError::Malformed("invalid action"));
        }
        if !action.is_empty() && !actions.iter().any(|seen| seen == action) {
            actions.push(action.to_owned());
        }
    }
    Ok(actions)
}

/// `[hostname[:port] "/"] component ("/" component)*`, at most 255 bytes. The path part must
/// be a valid OCI repository name; the optional first part a hostname
/// `[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*(:[0-9]+)?`.
fn is_valid_resource_name(name: &str) -> bool {
    if name.len() > MAX_RESOURCE_NAME_LEN {
        return false;
    }
    if is_valid_repository_name(name) {
        return true;
    }
    match name.split_once('/') {
        Some((host, path)) => is_valid_hostname(host) && is_valid_repository_name(path),
        None => false,
    }
}

fn is_valid_hostname(host: &str) -> bool {
    let (host, port) = match host.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|port| {
        !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
    });
    port_ok
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether a token's `access` claim covers `action` on repository `name`: some entry of type
/// `repository` names it exactly (byte comparison, no normalization) and lists the action or
/// `*`.
pub fn access_covers(access: &[AccessEntry], name: &str, action: Action) -> bool {
    let wanted = action.as_str();
    access.iter().any(|entry| {
        entry.resource_type == "repository"
            && entry.name == name
            && entry.actions.iter().any(|a| a == wanted || a == "*")
    })
}

/// The scope distribution requires for `/v2/_catalog`.
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// Whether a token's `access` claim covers listing the catalog: an entry of type `registry`
/// named `catalog` with the action `*` (distribution's `registry:catalog:*`).
pub fn access_covers_catalog(access: &[AccessEntry]) -> bool {
    access.iter().any(|entry| {
        entry.resource_type == "registry"
            && entry.name == "catalog"
            && entry.actions.iter().any(|a| a == "*")
    })
}

/// Rejects an `access` claim with more than [`MAX_ACCESS_ENTRIES`] entries or an entry with
/// more than [`MAX_ACTIONS`] actions, so a hostile token cannot make `access_covers` slow.
pub fn check_access_bounds(access: &[AccessEntry]) -> Result<(), ScopeError> {
    if access.len() > MAX_ACCESS_ENTRIES
        || access.iter().any(|entry| entry.actions.len() > MAX_ACTIONS)
    {
        return Err(ScopeError::TooMany);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
