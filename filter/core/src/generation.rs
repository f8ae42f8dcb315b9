//! The identity of one published snapshot: its epoch and generation number, and the one text
//! form both travel in (the HTTP entity tag `"<epoch>.<number>"`).
//!
//! The sidecar stamps it, serves it as `ETag` and compares `If-Match` / `If-None-Match`
//! against it; the fetcher sends it back and confirms only on an exact match; workers compare
//! it to tell whether shared data holds something new. It owns no ordering policy beyond
//! [`Generation::supersedes`]: whether a snapshot may replace another is `snapshot::admit`.

use core::fmt;

pub use registry_gate_index::names::{is_valid_epoch, MAX_EPOCH_LEN};

/// One published snapshot's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Generation {
    /// Changes whenever the store's history may have been lost or rewound, so that numbers
    /// from before and after can never be compared.
    pub epoch: String,
    /// Strictly increasing within an epoch.
    pub number: u64,
}

impl Generation {
    pub fn new(epoch: impl Into<String>, number: u64) -> Generation {
        Generation {
            epoch: epoch.into(),
            number,
        }
    }

    /// The quoted entity-tag form `"<epoch>.<number>"`.
    pub fn etag(&self) -> String {
        format!("\"{}.{}\"", self.epoch, self.number)
    }

    /// Parses one entity tag (`"<epoch>.<number>"`, optionally weak `W/"..."`, surrounding
    /// whitespace ignored). The epoch is 1 to [`MAX_EPOCH_LEN`] visible ASCII bytes without
    /// `"` (it may contain dots: the number follows the last one); the number is decimal
    /// digits that fit a `u64`.
    pub fn parse(text: &str) -> Option<Generation> {
        let text = text.trim();
        let text = text.strip_prefix("W/").unwrap_or(text);
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        let (epoch, number) = inner.rsplit_once('.')?;
        if !is_valid_epoch(epoch) {
            return None;
        }
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Generation {
            epoch: epoch.to_owned(),
            number: number.parse().ok()?,
        })
    }

    /// Whether this generation may follow `held`: a newer number in the same epoch, or any
    /// number in another epoch (the store started a new history).
    pub fn supersedes(&self, held: &Generation) -> bool {
        self.epoch != held.epoch || self.number > held.number
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.number)
    }
}

/// A parsed `If-Match` / `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preconditions {
    /// `*`: any current representation.
    Any,
    /// The listed entity tags that name a generation; members that name none are dropped
    /// (they can never match).
    Tags(Vec<Generation>),
}

impl Preconditions {
    /// Parses `*` or a comma-separated list of entity tags.
    pub fn parse(header: &str) -> Preconditions {
        if header.trim() == "*" {
            return Preconditions::Any;
        }
        Preconditions::Tags(header.split(',').filter_map(Generation::parse).collect())
    }

    /// Whether the header names `current` exactly (or is `*`). Both `If-Match` and
    /// `If-None-Match` use this one test: a holder of any other generation, older *or newer*,
    /// does not hold what is current here.
    pub fn matches(&self, current: &Generation) -> bool {
        match self {
            Preconditions::Any => true,
            Preconditions::Tags(tags) => tags.iter().any(|t| t == current),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    struct Row {
        case: &'static str,
        text: &'static str,
        want: Option<(&'static str, u64)>,
    }

    #[test]
    fn etag_parsing() {
        let rows = [
            Row {
                case: "plain",
                text: "\"abc.7\"",
                want: Some(("abc", 7)),
            },
            Row {
                case: "weak",
                text: "W/\"abc.7\"",
                want: Some(("abc", 7)),
            },
            Row {
                case: "spaces",
                text: "  \"abc.7\" ",
                want: Some(("abc", 7)),
            },
            Row {
                case: "dotted epoch splits on the last dot",
                text: "\"a.b.3\"",
                want: Some(("a.b", 3)),
            },
            Row {
                case: "unquoted",
                text: "abc.7",
                want: None,
            },
            Row {
                case: "no number",
                text: "\"abc.\"",
                want: None,
            },
            Row {
                case: "no epoch",
                text: "\".7\"",
                want: None,
            },
            Row {
                case: "no dot",
                text: "\"abc7\"",
                want: None,
            },
            Row {
                case: "signed number",
                text: "\"abc.+7\"",
                want: None,
            },
            Row {
                case: "non-numeric number",
                text: "\"abc.x\"",
                want: None,
            },
            Row {
                case: "overflow",
                text: "\"abc.99999999999999999999999\"",
                want: None,
            },
            Row {
                case: "space in epoch",
                text: "\"a b.1\"",
                want: None,
            },
            Row {
                case: "epoch too long",
                text: "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.1\"",
                want: None,
            },
            Row {
                case: "empty",
                text: "",
                want: None,
            },
        ];
        for row in rows {
            let want = row
                .want
                .map(|(epoch, number)| Generation::new(epoch, number));
            assert_eq!(Generation::parse(row.text), want, "{}", row.case);
        }
    }

    #[test]
    fn etag_round_trips() {
        let generation = Generation::new("00ff", 12);
        assert_eq!(generation.etag(), "\"00ff.12\"");
        assert_eq!(generation.to_string(), "00ff.12");
        assert_eq!(Generation::parse(&generation.etag()), Some(generation));
    }

    #[test]
    fn preconditions_match_exactly() {
        let current = Generation::new("e", 5);
        let rows: [(&str, &str, bool); 8] = [
            ("same", "\"e.5\"", true),
            ("holder ahead (store rewound)", "\"e.9\"", false),
            ("holder behind", "\"e.4\"", false),
            ("other epoch", "\"f.5\"", false),
            ("star", "*", true),
            ("list with the current one", "\"f.1\", W/\"e.5\"", true),
            ("garbage", "nonsense", false),
            ("empty", "", false),
        ];
        for (case, header, want) in rows {
            assert_eq!(
                Preconditions::parse(header).matches(&current),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn supersedes() {
        let held = Generation::new("e", 5);
        assert!(Generation::new("e", 6).supersedes(&held));
        assert!(!Generation::new("e", 5).supersedes(&held));
        assert!(!Generation::new("e", 4).supersedes(&held));
        assert!(Generation::new("f", 1).supersedes(&held));
    }
}
