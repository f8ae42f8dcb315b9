//! Route parsing: turns an (Envoy-normalized) method and `:path` into a [`RegistryRequest`].
//!
//! Owns the OCI grammar for repository names, tags and digests. It must never guess: a path
//! that is malformed or that could be read in more than one way is an error, and the caller
//! denies it. It never looks anything up; authorization happens in `decision`.

use thiserror::Error;

/// What a request does to a repository, derived from the HTTP method only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// GET, HEAD.
    Pull,
    /// POST, PUT, PATCH.
    Push,
    /// DELETE.
    Delete,
}

impl Action {
    /// The action's name in a Docker scope / `access` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// Pagination parameters of `/v2/_catalog` (`n`, `last`), already range-checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Requested page size; `None` when absent.
    pub n: Option<usize>,
    /// Percent-decoded `last` repository name; `None` when absent.
    pub last: Option<String>,
}

/// A registry endpoint the filter understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Ping,
    /// `/v2/_catalog`
    Catalog(Page),
    /// `/v2/token` (passed through to the sidecar).
    Token,
    /// `/v2/<name>/manifests/<tag|digest>`
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/` and `/v2/<name>/blobs/uploads/<session>`
    BlobUpload { name: String },
    /// `/v2/<name>/tags/list`
    TagsList { name: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: String },
    /// `/v1/_ping`
    V1Ping,
    /// `/v1/search?q=&n=`
    V1Search { query: String, n: Option<usize> },
}

impl Route {
    /// The repository the route touches, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::BlobUpload { name }
            | Route::TagsList { name }
            | Route::Referrers { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A parsed request: what endpoint, and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRequest {
    pub route: Route,
    pub action: Action,
}

/// Why a path was not accepted. Each variant maps to one registry error in `reply`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("not a registry path")]
    NotRegistry,
    #[error("invalid repository name")]
    NameInvalid,
    #[error("invalid tag")]
    TagInvalid,
    #[error("invalid digest")]
    DigestInvalid,
    #[error("invalid upload session id")]
    UploadInvalid,
    #[error("invalid query parameter {0}")]
    QueryInvalid(&'static str),
    #[error("path is ambiguous")]
    Ambiguous,
    #[error("method {0} is not supported here")]
    MethodNotAllowed(String),
}
