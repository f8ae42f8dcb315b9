//! A content host's identity from a verified client certificate: the host UUID is the
//! subject's common name (CN), as RHSM issues it and as the old gateway read it.
//!
//! It reads the subject distinguished name as text, in the forms the two verifiers hand over:
//! RFC 2253 / 4514 (`CN=<uuid>,O=<org>`: Envoy's `connection.subject_peer_certificate`, and
//! Apache mod_ssl's `SSL_CLIENT_S_DN` by default) and the legacy slash form
//! (`/CN=<uuid>/O=<org>`: mod_ssl's `LegacyDNStringFormat`). It never verifies a certificate
//! (Envoy or the trusted front proxy did) and never decides access (that is `decision`).
//! Anything it cannot read with certainty is an error, never a guess: the gate then treats
//! the request as carrying no certificate.

use thiserror::Error;

use crate::identity::MAX_PRINCIPAL_LEN;

/// Why a subject DN names no host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CertificateError {
    #[error("certificate subject is not UTF-8 text")]
    NotText,
    #[error("certificate subject is not a distinguished name")]
    Malformed,
    #[error("certificate subject has no CN")]
    NoCommonName,
    #[error("certificate subject has more than one CN")]
    ManyCommonNames,
    #[error("certificate subject in the legacy slash form has a CN that another attribute's value may hold")]
    Ambiguous,
    #[error("certificate subject CN is not a host UUID")]
    BadHostName,
}

impl CertificateError {
    /// Stable snake_case name for stats and logs.
    pub fn reason(self) -> &'static str {
        match self {
            CertificateError::NotText => "not_text",
            CertificateError::Malformed => "malformed",
            CertificateError::NoCommonName => "no_cn",
            CertificateError::ManyCommonNames => "many_cn",
            CertificateError::Ambiguous => "ambiguous",
            CertificateError::BadHostName => "bad_host_name",
        }
    }
}

/// The host UUID named by a subject DN's single CN.
///
/// The CN must be 1 to [`MAX_PRINCIPAL_LEN`] ASCII letters, digits, `-`, `_` or `.` (a UUID
/// needs nothing more). That rules out every DN escape (`\`, `#`, quotes), so a value is
/// never unescaped and one DN has exactly one reading.
pub fn host_from_subject(subject: &[u8]) -> Result<&str, CertificateError> {
    let subject = core::str::from_utf8(subject).map_err(|_| CertificateError::NotText)?;
    let subject = subject.trim_matches(' ');
    if subject.is_empty() || subject.bytes().any(|b| b.is_ascii_control()) {
        return Err(CertificateError::Malformed);
    }
    // Any escape makes the attribute boundaries ambiguous to a reader that does not
    // unescape; a host UUID never needs one.
    if subject.contains('\\') || subject.contains('"') {
        return Err(CertificateError::Malformed);
    }
    let legacy = subject.strip_prefix('/');
    let attributes: Vec<&str> = match legacy {
        Some(legacy) => legacy.split('/').collect(),
        None => subject.split([',', '+']).collect(),
    };
    let mut host = None;
    for (position, attribute) in attributes.into_iter().enumerate() {
        let (kind, value) = attribute
            .split_once('=')
            .ok_or(CertificateError::Malformed)?;
        let kind = kind.trim_matches(' ');
        if kind.is_empty() {
            return Err(CertificateError::Malformed);
        }
        if !(kind.eq_ignore_ascii_case("CN") || kind == "2.5.4.3") {
            continue;
        }
        if host.is_some() {
            return Err(CertificateError::ManyCommonNames);
        }
        // The legacy form does not escape `/` inside a value, so a CN after another
        // attribute may be the tail of that attribute's value (`/O=ACME/OU=x/CN=<victim>` is
        // also the form of `OU="x/CN=<victim>"` with no CN at all). Only a CN that comes
        // first, where no value precedes it, has one reading.
        if legacy.is_some() && position != 0 {
            return Err(CertificateError::Ambiguous);
        }
        host = Some(value.trim_matches(' '));
    }
    let host = host.ok_or(CertificateError::NoCommonName)?;
    if host.is_empty()
        || host.len() > MAX_PRINCIPAL_LEN
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(CertificateError::BadHostName);
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const UUID: &str = "8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f";

    #[test]
    fn subjects_table() {
        let long = format!("CN={}", "a".repeat(MAX_PRINCIPAL_LEN + 1));
        let rows: [(&str, &[u8], Result<&str, CertificateError>); 23] = [
            (
                "RFC 2253, CN first",
                b"CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f,O=ACME",
                Ok(UUID),
            ),
            (
                "RFC 2253, CN last (Envoy)",
                b"O=ACME,CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f",
                Ok(UUID),
            ),
            (
                "CN alone",
                b"CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f",
                Ok(UUID),
            ),
            (
                "spaces after commas",
                b"O=ACME, CN = 8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f",
                Ok(UUID),
            ),
            (
                "lower-case type",
                b"cn=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f",
                Ok(UUID),
            ),
            (
                "OID type",
                b"2.5.4.3=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f",
                Ok(UUID),
            ),
            (
                "legacy slash form, CN first (as OpenSSL prints an RHSM certificate)",
                b"/CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f/O=ACME",
                Ok(UUID),
            ),
            (
                "legacy slash form, CN alone",
                b"/CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f",
                Ok(UUID),
            ),
            (
                "legacy slash form, CN after another attribute: its value may hold it",
                b"/O=ACME/CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f",
                Err(CertificateError::Ambiguous),
            ),
            (
                "legacy slash form, OU=x/CN=<victim> and no CN of its own",
                b"/O=ACME/OU=x/CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f",
                Err(CertificateError::Ambiguous),
            ),
            (
                "legacy slash form, a second CN inside a later value",
                b"/CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f/OU=x/CN=victim",
                Err(CertificateError::ManyCommonNames),
            ),
            ("not UTF-8", b"CN=\xff\xfe", Err(CertificateError::NotText)),
            ("empty", b"", Err(CertificateError::Malformed)),
            (
                "no equals sign",
                b"8f2b6c3e",
                Err(CertificateError::Malformed),
            ),
            (
                "escaped comma",
                b"CN=a\\,CN=b",
                Err(CertificateError::Malformed),
            ),
            (
                "quoted value",
                b"CN=\"a,b\"",
                Err(CertificateError::Malformed),
            ),
            (
                "control character",
                b"CN=a\nCN=b",
                Err(CertificateError::Malformed),
            ),
            (
                "no CN",
                b"O=ACME,OU=hosts",
                Err(CertificateError::NoCommonName),
            ),
            (
                "two CNs",
                b"CN=a,CN=b",
                Err(CertificateError::ManyCommonNames),
            ),
            (
                "multi-valued RDN with two CNs",
                b"CN=a+CN=b",
                Err(CertificateError::ManyCommonNames),
            ),
            (
                "empty CN",
                b"CN=,O=ACME",
                Err(CertificateError::BadHostName),
            ),
            (
                "CN with a space inside",
                b"CN=my host",
                Err(CertificateError::BadHostName),
            ),
            (
                "CN too long",
                long.as_bytes(),
                Err(CertificateError::BadHostName),
            ),
        ];
        for (case, subject, want) in rows {
            assert_eq!(host_from_subject(subject), want, "{case}");
        }
    }
}
