//! `--from-file`: a JSON or YAML document read into a [`Desired`], in one of two shapes, each
//! read by the parser that already owns it:
//!
//! - **Katello**: the sync API's bodies in one object: `repositories` (required,
//!   `repository_list`'s shape), and optionally `users` (`user_repository_mapping`'s) and
//!   `hosts` (`host_repository_mapping`'s), decoded by `katello::decode_value` with its rules;
//! - **native**: the `PUT /v1/snapshot` body (`registry_gate_core::snapshot::Content`, unknown
//!   fields refused).
//!
//! The shape is told by the document: Katello's repository entries name `repository` and its
//! `users`/`hosts` are lists; native ones name `name` and are objects. A part the document
//! names replaces the published one; a part it leaves out is kept. YAML is read as the same
//! data model as JSON (`.yaml`/`.yml` files; anything else is JSON).
//!
//! It must never read a missing `repositories` as empty: that would empty the snapshot.

use std::path::Path;

use registry_gate_core::snapshot::Content;
use serde_json::Value;
use thiserror::Error;

use super::plan::Desired;
use crate::katello::{decode_value, Change, Endpoint, SyncError};

/// Why a document was refused.
#[derive(Debug, Error)]
pub enum DocumentError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("expected an object with a repositories list at the top")]
    NotAnObject,
    #[error(
        "repositories is missing (an empty list empties the snapshot; a missing one is an error)"
    )]
    Missing,
    #[error("Katello shape: {0}")]
    Katello(#[from] SyncError),
    #[error("native shape: {0}")]
    Native(serde_json::Error),
}

/// Which encoding a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Yaml,
}

impl Encoding {
    /// YAML for `.yaml` and `.yml` (any case), JSON otherwise.
    pub fn of(path: &Path) -> Encoding {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") => {
                Encoding::Yaml
            }
            _ => Encoding::Json,
        }
    }
}

/// Reads and parses the file at `path`.
pub fn read(path: &Path) -> Result<Desired, DocumentError> {
    let bytes = std::fs::read(path).map_err(|source| DocumentError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes, Encoding::of(path))
}

/// Parses a document (see the module documentation).
pub fn parse(bytes: &[u8], encoding: Encoding) -> Result<Desired, DocumentError> {
    let value: Value = match encoding {
        Encoding::Json => serde_json::from_slice(bytes)?,
        Encoding::Yaml => serde_norway::from_slice(bytes)?,
    };
    let Value::Object(object) = &value else {
        return Err(DocumentError::NotAnObject);
    };
    let Some(repositories) = object.get("repositories") else {
        return Err(DocumentError::Missing);
    };
    if is_katello(repositories, object.get("users"), object.get("hosts")) {
        katello(
            &value,
            object.contains_key("users"),
            object.contains_key("hosts"),
        )
    } else {
        native(value)
    }
}

/// Katello's shape: a repository entry names `repository`, or users/hosts are lists.
fn is_katello(repositories: &Value, users: Option<&Value>, hosts: Option<&Value>) -> bool {
    let entry_names_repository = repositories
        .as_array()
        .and_then(|list| list.first())
        .is_some_and(|entry| entry.get("repository").is_some());
    entry_names_repository
        || users.is_some_and(Value::is_array)
        || hosts.is_some_and(Value::is_array)
}

fn katello(value: &Value, users: bool, hosts: bool) -> Result<Desired, DocumentError> {
    let mut desired = Desired::default();
    if let Change::Repositories(list) = decode_value(Endpoint::RepositoryList, value)? {
        desired.repositories = list;
    }
    if users {
        if let Change::Users(grants) = decode_value(Endpoint::UserRepositoryMapping, value)? {
            desired.users = Some(grants);
        }
    }
    if hosts {
        if let Change::HostGrants(grants) = decode_value(Endpoint::HostRepositoryMapping, value)? {
            desired.hosts = Some(grants);
        }
    }
    Ok(desired)
}

fn native(value: Value) -> Result<Desired, DocumentError> {
    let named = |key: &str| value.get(key).is_some();
    let (users, hosts, writers, keys, min_token_iat) = (
        named("users"),
        named("hosts"),
        named("writers"),
        named("keys"),
        named("min_token_iat"),
    );
    let mut content: Content = serde_json::from_value(value).map_err(DocumentError::Native)?;
    content.canonicalize();
    Ok(Desired {
        repositories: content.repositories,
        users: users.then_some(content.users),
        hosts: hosts.then_some(content.hosts),
        writers: writers.then_some(content.writers),
        keys: keys.then_some(content.keys),
        min_token_iat: min_token_iat.then_some(content.min_token_iat),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_gate_core::snapshot::Repository;

    fn repo(name: &str, auth_required: bool) -> Repository {
        Repository {
            name: name.into(),
            auth_required,
        }
    }

    #[test]
    fn both_shapes_in_both_encodings_read_the_same() {
        let want = Desired {
            repositories: vec![repo("team/private", true), repo("team/public", false)],
            users: Some([("dave".to_owned(), vec!["team/private".to_owned()])].into()),
            ..Desired::default()
        };
        struct Row {
            case: &'static str,
            encoding: Encoding,
            text: &'static str,
        }
        let rows = [
            Row {
                case: "Katello JSON",
                encoding: Encoding::Json,
                text: r#"{"repositories": [
                    {"repository": "team/public", "auth_required": false},
                    {"repository": "team/private", "auth_required": "true"}],
                  "users": [{"dave": [{"repository": "team/private", "auth_required": true}]}]}"#,
            },
            Row {
                case: "Katello YAML",
                encoding: Encoding::Yaml,
                text: "repositories:\n  - {repository: team/public, auth_required: false}\n  \
                       - repository: team/private\n    auth_required: true\nusers:\n  - dave:\n      \
                       - {repository: team/private, auth_required: true}\n",
            },
            Row {
                case: "native JSON",
                encoding: Encoding::Json,
                text: r#"{"repositories": [{"name": "team/public", "auth_required": false},
                    {"name": "team/private", "auth_required": true}],
                  "users": {"dave": ["team/private"]}}"#,
            },
            Row {
                case: "native YAML",
                encoding: Encoding::Yaml,
                text: "repositories:\n  - name: team/public\n    auth_required: false\n  \
                       - name: team/private\n    auth_required: true\nusers:\n  dave: [team/private]\n",
            },
        ];
        for row in rows {
            let got = parse(row.text.as_bytes(), row.encoding)
                .unwrap_or_else(|e| panic!("{}: {e}", row.case));
            assert_eq!(got, want, "{}", row.case);
        }
    }

    #[test]
    fn parts_left_out_are_not_named_and_native_parts_are() {
        let native = parse(
            br#"{"repositories": [], "hosts": {}, "min_token_iat": 5}"#,
            Encoding::Json,
        )
        .unwrap();
        assert_eq!(native.users, None);
        assert_eq!(native.hosts, Some(Default::default()));
        assert_eq!(native.writers, None);
        assert_eq!(native.keys, None);
        assert_eq!(native.min_token_iat, Some(Some(5)));
        let katello = parse(br#"{"repositories": []}"#, Encoding::Json).unwrap();
        assert_eq!(katello, Desired::default());
    }

    #[test]
    fn malformed_documents_are_refused_with_the_reason() {
        struct Row {
            case: &'static str,
            encoding: Encoding,
            text: &'static str,
            needle: &'static str,
        }
        let rows = [
            Row {
                case: "not JSON",
                encoding: Encoding::Json,
                text: "{\"repositories\": [",
                needle: "not valid JSON",
            },
            Row {
                case: "not YAML",
                encoding: Encoding::Yaml,
                text: "repositories: [\n  - : :",
                needle: "not valid YAML",
            },
            Row {
                case: "a list at the top",
                encoding: Encoding::Json,
                text: "[]",
                needle: "expected an object",
            },
            Row {
                case: "no repositories",
                encoding: Encoding::Json,
                text: r#"{"users": {}}"#,
                needle: "repositories is missing",
            },
            Row {
                case: "Katello entry without auth_required",
                encoding: Encoding::Json,
                text: r#"{"repositories": [{"repository": "a/b"}]}"#,
                needle: "repositories[0].auth_required is missing",
            },
            Row {
                case: "Katello bad repository name",
                encoding: Encoding::Yaml,
                text: "repositories:\n  - {repository: Bad/Name, auth_required: true}\n",
                needle: "is not a valid repository name",
            },
            Row {
                case: "native unknown field",
                encoding: Encoding::Json,
                text: r#"{"repositories": [], "groups": {}}"#,
                needle: "native shape: unknown field `groups`",
            },
            Row {
                case: "native entry without auth_required",
                encoding: Encoding::Json,
                text: r#"{"repositories": [{"name": "a/b"}]}"#,
                needle: "native shape: missing field `auth_required`",
            },
        ];
        for row in rows {
            let error = parse(row.text.as_bytes(), row.encoding)
                .err()
                .unwrap_or_else(|| panic!("{} was accepted", row.case))
                .to_string();
            assert!(error.contains(row.needle), "{}: {error}", row.case);
        }
    }

    #[test]
    fn the_encoding_follows_the_extension() {
        assert_eq!(Encoding::of(Path::new("a/b.yaml")), Encoding::Yaml);
        assert_eq!(Encoding::of(Path::new("b.YML")), Encoding::Yaml);
        assert_eq!(Encoding::of(Path::new("b.json")), Encoding::Json);
        assert_eq!(Encoding::of(Path::new("snapshot")), Encoding::Json);
    }
}
