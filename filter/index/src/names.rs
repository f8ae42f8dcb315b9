//! The grammars of the names a snapshot carries: repository names (OCI), principal names and
//! epochs. The validator holds every name of an index to them, the JSON path in the core
//! holds its content to the same functions, and the route parser uses the repository grammar
//! for request paths: one definition of each.

/// Longest accepted repository name.
pub const MAX_NAME_LEN: usize = 255;
/// Longest principal name (user login, host UUID) accepted in a token or a snapshot.
pub const MAX_PRINCIPAL_LEN: usize = 255;
/// Longest epoch: epochs are short random hex strings.
pub const MAX_EPOCH_LEN: usize = 64;
/// Longest key id (`kid`) of a verification key.
pub const MAX_KEY_ID_LEN: usize = 256;

/// Whether `name` matches the OCI repository name grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*` and is at most
/// [`MAX_NAME_LEN`] bytes long.
pub fn is_valid_repository_name(name: &str) -> bool {
    is_valid_repository_name_bytes(name.as_bytes())
}

/// [`is_valid_repository_name`] over bytes, in one pass (the validator runs it over every
/// name of an index on every install). Whatever it accepts is ASCII.
pub fn is_valid_repository_name_bytes(name: &[u8]) -> bool {
    /// Where the scan is within a component.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum At {
        /// At the start of a component, or after `.` or `__`: a `[a-z0-9]` must follow.
        NeedAlnum,
        /// After `[a-z0-9]`: anything may follow.
        Alnum,
        /// After one `_`: another `_` or `[a-z0-9]`.
        Underscore,
        /// After `-`: more `-` or `[a-z0-9]`.
        Dashes,
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    let mut at = At::NeedAlnum;
    for &byte in name {
        at = match (at, byte) {
            (_, b'a'..=b'z' | b'0'..=b'9') => At::Alnum,
            (At::Alnum, b'/' | b'.') => At::NeedAlnum,
            (At::Alnum, b'_') => At::Underscore,
            (At::Underscore, b'_') => At::NeedAlnum,
            (At::Alnum | At::Dashes, b'-') => At::Dashes,
            _ => return false,
        };
    }
    at == At::Alnum
}

/// Whether `name` can name a principal: 1 to [`MAX_PRINCIPAL_LEN`] bytes, no control
/// characters (it travels in a header and in access logs).
pub fn is_valid_principal_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_PRINCIPAL_LEN && !name.chars().any(char::is_control)
}

/// Whether `epoch` is 1 to [`MAX_EPOCH_LEN`] visible ASCII characters without `"` (it
/// travels inside a quoted entity tag).
pub fn is_valid_epoch(epoch: &str) -> bool {
    !epoch.is_empty()
        && epoch.len() <= MAX_EPOCH_LEN
        && epoch.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
}

/// Whether `kid` can be a key id: 1 to [`MAX_KEY_ID_LEN`] bytes, no control characters.
pub fn is_valid_key_id(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KEY_ID_LEN && !kid.chars().any(char::is_control)
}

/// Whether `text` can be a producer or feature name: 1 to 256 bytes, no control characters
/// (it is logged).
pub fn is_valid_label(text: &str) -> bool {
    !text.is_empty() && text.len() <= 256 && !text.chars().any(char::is_control)
}
