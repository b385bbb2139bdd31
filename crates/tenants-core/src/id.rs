//! [`TenantId`]: the validated tenant identifier, and the [`IdPolicy`] that parses it.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Longest tenant id, in bytes: the length limit of a DNS label.
pub const MAX_LEN: usize = 63;

/// A validated tenant identifier.
///
/// A tenant id is a DNS label: 1 to 63 characters from lowercase `a-z`, `0-9` and `-`,
/// neither starting nor ending with `-`. That makes it usable as a subdomain, a path
/// segment and a header value without escaping. Uppercase ASCII input is folded to
/// lowercase; anything else is rejected with an error naming the broken [`IdRule`].
///
/// The id is stored inline (no heap allocation), so parsing it from a request and
/// copying it around costs no allocation; it is [`Copy`].
///
/// # Examples
///
/// ```
/// use tenants_core::TenantId;
///
/// let id: TenantId = "Acme-Corp".parse()?;
/// assert_eq!(id.as_str(), "acme-corp");
///
/// let err = "-acme".parse::<TenantId>().unwrap_err();
/// assert!(err.to_string().contains("must not start with '-'"));
/// # Ok::<(), tenants_core::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct TenantId {
    len: u8,
    bytes: [u8; MAX_LEN],
}

/// The rule a rejected tenant id broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdRule {
    /// The id is empty.
    Empty,
    /// The id is longer than 63 bytes.
    TooLong,
    /// The id holds a character outside `a-z`, `0-9` and `-`.
    InvalidChar {
        /// Byte offset of the first offending character.
        at: usize,
    },
    /// The id starts with `-`.
    LeadingHyphen,
    /// The id ends with `-`.
    TrailingHyphen,
    /// The id is on the configured list of reserved ids.
    Reserved,
}

impl fmt::Display for IdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRule::Empty => f.write_str("a tenant id must not be empty"),
            IdRule::TooLong => write!(f, "a tenant id must be at most {MAX_LEN} characters"),
            IdRule::InvalidChar { at } => write!(
                f,
                "a tenant id may only contain a-z, 0-9 and '-' (invalid character at byte {at})"
            ),
            IdRule::LeadingHyphen => f.write_str("a tenant id must not start with '-'"),
            IdRule::TrailingHyphen => f.write_str("a tenant id must not end with '-'"),
            IdRule::Reserved => f.write_str("this tenant id is reserved"),
        }
    }
}

impl TenantId {
    /// Parses and validates `input` as a tenant id, folding ASCII uppercase to lowercase.
    ///
    /// No id is reserved here; use [`IdPolicy::parse`] to also refuse reserved ids.
    pub fn parse(input: &str) -> Result<Self, Error> {
        Self::parse_bytes(input.as_bytes()).map_err(|rule| Error::invalid_id(input, rule))
    }

    /// Parses without building an error message; the fast path for resolvers.
    pub(crate) fn parse_bytes(input: &[u8]) -> Result<Self, IdRule> {
        if input.is_empty() {
            return Err(IdRule::Empty);
        }
        if input.len() > MAX_LEN {
            return Err(IdRule::TooLong);
        }
        let mut bytes = [0u8; MAX_LEN];
        for (at, (&b, slot)) in input.iter().zip(bytes.iter_mut()).enumerate() {
            *slot = match b {
                b'a'..=b'z' | b'0'..=b'9' | b'-' => b,
                b'A'..=b'Z' => b.to_ascii_lowercase(),
                _ => return Err(IdRule::InvalidChar { at }),
            };
        }
        if input[0] == b'-' {
            return Err(IdRule::LeadingHyphen);
        }
        if input[input.len() - 1] == b'-' {
            return Err(IdRule::TrailingHyphen);
        }
        Ok(TenantId {
            // Cannot truncate: the length was checked against MAX_LEN above.
            len: input.len() as u8,
            bytes,
        })
    }

    /// The id as a string slice (always lowercase ASCII).
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this never fails.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The id as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl FromStr for TenantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::parse(s)
    }
}

impl TryFrom<&str> for TenantId {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        TenantId::parse(s)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for TenantId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for TenantId {}

impl PartialEq<str> for TenantId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TenantId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for TenantId {
    // Hash exactly as `str` does (its bytes, then 0xff: `Hasher::write_str`), so that
    // `Borrow<str>` lookups in hash maps work, without re-validating UTF-8 on every
    // cache lookup as `as_str` would.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl PartialOrd for TenantId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TenantId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", self.as_str())
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TenantId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tenant id (a DNS label: a-z, 0-9, '-', 1 to 63 characters)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TenantId, E> {
                TenantId::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// How tenant ids are accepted at the edge: the syntax rules of [`TenantId`] plus a
/// configurable list of reserved ids (such as `www`, `api` or `admin`) that must never
/// name a tenant.
///
/// Resolvers hold an `IdPolicy`; cloning one is cheap.
///
/// # Examples
///
/// ```
/// use tenants_core::IdPolicy;
///
/// let policy = IdPolicy::new().reserve(["www", "api", "admin"]);
/// assert!(policy.parse("acme").is_ok());
/// assert!(policy.parse("WWW").is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct IdPolicy {
    reserved: Arc<[TenantId]>,
}

impl IdPolicy {
    /// A policy with no reserved ids.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds ids that are refused as tenant ids. Entries that are not valid tenant ids
    /// could never match and are ignored.
    pub fn reserve<I, S>(self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut reserved = self.reserved.to_vec();
        reserved.extend(
            ids.into_iter()
                .filter_map(|s| TenantId::parse_bytes(s.as_ref().as_bytes()).ok()),
        );
        reserved.sort_unstable();
        reserved.dedup();
        IdPolicy {
            reserved: reserved.into(),
        }
    }

    /// The reserved ids.
    pub fn reserved(&self) -> &[TenantId] {
        &self.reserved
    }

    /// Parses `input` as a tenant id and refuses reserved ids.
    pub fn parse(&self, input: &str) -> Result<TenantId, Error> {
        self.parse_bytes(input.as_bytes())
            .map_err(|rule| Error::invalid_id(input, rule))
    }

    pub(crate) fn parse_bytes(&self, input: &[u8]) -> Result<TenantId, IdRule> {
        let id = TenantId::parse_bytes(input)?;
        if self.reserved.binary_search(&id).is_ok() {
            return Err(IdRule::Reserved);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_dns_labels_and_folds_case() {
        for (input, expected) in [
            ("a", "a"),
            ("acme", "acme"),
            ("ACME-Corp-2", "acme-corp-2"),
            ("0", "0"),
            ("a-b", "a-b"),
            ("a--b", "a--b"),
        ] {
            assert_eq!(TenantId::parse(input).unwrap().as_str(), expected);
        }
        let longest = "a".repeat(MAX_LEN);
        assert_eq!(TenantId::parse(&longest).unwrap().as_str(), longest);
    }

    #[test]
    fn rejects_with_the_rule_broken() {
        let cases = [
            ("", IdRule::Empty),
            ("-a", IdRule::LeadingHyphen),
            ("a-", IdRule::TrailingHyphen),
            ("-", IdRule::LeadingHyphen),
            ("a_b", IdRule::InvalidChar { at: 1 }),
            ("a.b", IdRule::InvalidChar { at: 1 }),
            ("a b", IdRule::InvalidChar { at: 1 }),
            ("é", IdRule::InvalidChar { at: 0 }),
            ("a\0", IdRule::InvalidChar { at: 1 }),
            ("a/b", IdRule::InvalidChar { at: 1 }),
            ("a'; drop table x;--", IdRule::InvalidChar { at: 1 }),
        ];
        for (input, rule) in cases {
            match TenantId::parse(input) {
                Err(Error::InvalidId { rule: got, .. }) => assert_eq!(got, rule, "{input:?}"),
                other => panic!("{input:?}: expected {rule:?}, got {other:?}"),
            }
        }
        let too_long = "a".repeat(MAX_LEN + 1);
        assert!(matches!(
            TenantId::parse(&too_long),
            Err(Error::InvalidId {
                rule: IdRule::TooLong,
                ..
            })
        ));
    }

    #[test]
    fn error_message_names_the_rule_and_the_input() {
        let msg = TenantId::parse("Bad_Id").unwrap_err().to_string();
        assert!(msg.contains("\"Bad_Id\""), "{msg}");
        assert!(msg.contains("a-z, 0-9 and '-'"), "{msg}");
    }

    #[test]
    fn reserved_ids_are_refused_whatever_the_case() {
        let policy = IdPolicy::new().reserve(["www", "API", "not valid!"]);
        assert_eq!(policy.reserved().len(), 2);
        for input in ["www", "WWW", "api"] {
            assert!(matches!(
                policy.parse(input),
                Err(Error::InvalidId {
                    rule: IdRule::Reserved,
                    ..
                })
            ));
        }
        assert_eq!(policy.parse("wwww").unwrap(), "wwww");
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: TenantId = serde_json::from_str("\"Acme\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"acme\"");
        let err = serde_json::from_str::<TenantId>("\"a b\"").unwrap_err();
        assert!(err.to_string().contains("a-z, 0-9"), "{err}");
    }

    #[test]
    fn usable_as_a_str_keyed_map_key() {
        let mut map = std::collections::HashMap::new();
        map.insert(TenantId::parse("acme").unwrap(), 1);
        assert_eq!(map.get("acme"), Some(&1));
    }

    #[test]
    fn hashes_exactly_like_its_str() {
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        for s in ["a", "acme", "tenant-42", &"z".repeat(MAX_LEN)] {
            let id = TenantId::parse(s).unwrap();
            assert_eq!(state.hash_one(id), state.hash_one(s), "{s}");
        }
    }

    proptest! {
        #[test]
        fn every_valid_label_parses_to_its_lowercase(s in "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?") {
            let id = TenantId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.to_ascii_lowercase());
            prop_assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        }

        #[test]
        fn anything_accepted_is_a_dns_label(s in any::<String>()) {
            if let Ok(id) = TenantId::parse(&s) {
                let v = id.as_str();
                prop_assert!(!v.is_empty() && v.len() <= MAX_LEN);
                prop_assert!(v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(!v.starts_with('-') && !v.ends_with('-'));
                prop_assert_eq!(v, s.to_ascii_lowercase());
            }
        }
    }
}
