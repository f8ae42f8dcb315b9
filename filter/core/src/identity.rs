//! Who the caller is: the [`Principal`] established from verified credentials only, the
//! [`Identity`] the decision reads, and the reading of an `Authorization` header value into a
//! [`Credential`].
//!
//! It never verifies anything itself (that is `token`) and never decides access (that is
//! `decision`); it sits below both so neither imports the other for these types.

/// Who the caller is, as established by verified credentials only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Anonymous,
    /// A user named by a verified token's `sub`.
    User(String),
    /// A content host named by its verified client certificate.
    Host(String),
}

impl Principal {
    /// `anonymous`, `user:<name>` or `host:<uuid>`: the value of the identity header sent
    /// upstream.
    pub fn label(&self) -> String {
        match self {
            Principal::Anonymous => ANONYMOUS_LABEL.into(),
            Principal::User(user) => format!("user:{user}"),
            Principal::Host(host) => format!("host:{host}"),
        }
    }
}

pub use registry_gate_index::names::{is_valid_principal_name, MAX_PRINCIPAL_LEN};

/// [`Principal::label`] of [`Principal::Anonymous`].
pub const ANONYMOUS_LABEL: &str = "anonymous";

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    /// The token's `access` claim; `None` when the credential carries no such limit.
    pub access: Option<Vec<crate::scope::AccessEntry>>,
    /// Whether any credential was verified (a token, even an anonymous one, or a certificate).
    pub credentialed: bool,
}

impl Identity {
    /// No credentials at all.
    pub fn anonymous() -> Identity {
        Identity {
            principal: Principal::Anonymous,
            access: None,
            credentialed: false,
        }
    }
}

/// What an `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    None,
    Bearer(&'a str),
    /// `Basic ...`: a login, meaningful only to the token endpoint.
    Basic,
    /// Present but neither one bearer token nor Basic credentials (empty, two spaces, bytes
    /// that are not text, ...).
    Invalid,
}

/// Reads an `Authorization` header value, as the bytes the client sent: scheme compared
/// case-insensitively (RFC 7235), then exactly one space and one non-empty token of visible
/// ASCII. Bytes that are not ASCII text are [`Credential::Invalid`], never a panic.
pub fn credential(header: Option<&[u8]>) -> Credential<'_> {
    let Some(value) = header else {
        return Credential::None;
    };
    let Ok(value) = core::str::from_utf8(value) else {
        return Credential::Invalid;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Credential::Invalid;
    };
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Credential::Invalid;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Credential::Bearer(token)
    } else if scheme.eq_ignore_ascii_case("basic") {
        Credential::Basic
    } else {
        Credential::Invalid
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    struct Row {
        case: &'static str,
        header: Option<&'static [u8]>,
        want: Credential<'static>,
    }

    #[test]
    fn credentials_table() {
        let rows = [
            Row {
                case: "absent",
                header: None,
                want: Credential::None,
            },
            Row {
                case: "bearer",
                header: Some(b"Bearer abc.def.ghi"),
                want: Credential::Bearer("abc.def.ghi"),
            },
            Row {
                case: "scheme is case-insensitive",
                header: Some(b"bEaReR abc"),
                want: Credential::Bearer("abc"),
            },
            Row {
                case: "basic",
                header: Some(b"Basic YWxpY2U6cHc="),
                want: Credential::Basic,
            },
            Row {
                case: "empty",
                header: Some(b""),
                want: Credential::Invalid,
            },
            Row {
                case: "scheme only",
                header: Some(b"Bearer"),
                want: Credential::Invalid,
            },
            Row {
                case: "empty token",
                header: Some(b"Bearer "),
                want: Credential::Invalid,
            },
            Row {
                case: "two spaces",
                header: Some(b"Bearer  abc"),
                want: Credential::Invalid,
            },
            Row {
                case: "two tokens",
                header: Some(b"Bearer abc def"),
                want: Credential::Invalid,
            },
            Row {
                case: "tab inside",
                header: Some(b"Bearer abc\tdef"),
                want: Credential::Invalid,
            },
            Row {
                case: "other scheme",
                header: Some(b"Negotiate abc"),
                want: Credential::Invalid,
            },
            Row {
                case: "bytes that are not UTF-8",
                header: Some(b"Bearer \xff\xfe"),
                want: Credential::Invalid,
            },
            Row {
                case: "non-ASCII text",
                header: Some("Bearer \u{e9}t\u{e9}".as_bytes()),
                want: Credential::Invalid,
            },
            Row {
                case: "NUL byte",
                header: Some(b"Bearer a\0b"),
                want: Credential::Invalid,
            },
        ];
        for row in rows {
            assert_eq!(credential(row.header), row.want, "{}", row.case);
        }
    }

    #[test]
    fn principal_labels() {
        assert_eq!(Principal::Anonymous.label(), "anonymous");
        assert_eq!(Principal::User("alice".into()).label(), "user:alice");
        assert_eq!(Principal::Host("h-1".into()).label(), "host:h-1");
    }
}
