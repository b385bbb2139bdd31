//! The crate's error type.

use std::sync::Arc;

use crate::TenantId;
use crate::id::IdRule;

/// Longest piece of untrusted input copied into an error message.
const MAX_ECHO: usize = 80;

/// Everything that can go wrong in `tenants-core`.
///
/// Variants map onto HTTP answers in the tower layer: [`InvalidId`](Error::InvalidId),
/// [`InvalidHost`](Error::InvalidHost), [`InvalidPath`](Error::InvalidPath),
/// [`ForeignHost`](Error::ForeignHost) and
/// [`Disagree`](Error::Disagree) are the client's fault (400), [`Token`](Error::Token)
/// is an authentication failure (401), [`CatalogUnavailable`](Error::CatalogUnavailable)
/// is a temporary server-side failure (503), and the rest are configuration errors found
/// at start-up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tenant id broke one of the id rules.
    #[error("invalid tenant id {input:?}: {rule}")]
    InvalidId {
        /// The offending input (truncated).
        input: String,
        /// The rule it broke.
        rule: IdRule,
    },
    /// The request's host is not a usable host name.
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost {
        /// The offending host (truncated).
        host: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The request's path cannot be served as the tenant's: a dot segment (`.` or
    /// `..`, also percent-encoded) after the tenant's prefix would climb out of it.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path (truncated).
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The host is under none of the configured base domains.
    #[error("host {host:?} is not under any configured base domain")]
    ForeignHost {
        /// The offending host (truncated).
        host: String,
    },
    /// A bearer token was present but could not be trusted.
    #[error("bearer token rejected: {0}")]
    Token(#[from] TokenError),
    /// The request carries a field that names the tenant more than once (two `Host`
    /// headers, a repeated tenant header).
    #[error("the request carries more than one {0}")]
    Ambiguous(&'static str),
    /// Two resolvers that must agree found different tenants.
    #[error("the request names two different tenants: {first} and {second}")]
    Disagree {
        /// The tenant found by the first resolver.
        first: String,
        /// The tenant found by the second resolver.
        second: String,
    },
    /// The catalog's backing store failed; retrying later may succeed.
    #[error("tenant catalog unavailable: {0}")]
    CatalogUnavailable(Arc<dyn std::error::Error + Send + Sync>),
    /// A catalog file or record could not be read.
    #[error("invalid tenant catalog {origin}: {message}")]
    InvalidCatalog {
        /// Where the catalog came from (a file path, or `<inline toml>`).
        origin: String,
        /// What is wrong, with the location when the format reports one.
        message: String,
    },
    /// A tenant's options section does not deserialize into the requested type.
    #[error("tenant {tenant}: options section [{section}] is invalid: {message}")]
    InvalidOptions {
        /// The tenant whose options are invalid.
        tenant: TenantId,
        /// The section that was read.
        section: &'static str,
        /// The deserializer's message.
        message: String,
    },
    /// A component was configured with values that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn invalid_id(input: &str, rule: IdRule) -> Self {
        Error::InvalidId {
            input: echo(input),
            rule,
        }
    }

    pub(crate) fn invalid_host(host: &str, reason: &'static str) -> Self {
        Error::InvalidHost {
            host: echo(host),
            reason,
        }
    }

    pub(crate) fn invalid_path(path: &str, reason: &'static str) -> Self {
        Error::InvalidPath {
            path: echo(path),
            reason,
        }
    }

    pub(crate) fn foreign_host(host: &str) -> Self {
        Error::ForeignHost { host: echo(host) }
    }

    /// Wraps a backing-store failure of a [`TenantCatalog`](crate::TenantCatalog).
    pub fn unavailable<E>(source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::CatalogUnavailable(Arc::new(source))
    }

    /// `true` for errors caused by the request (a malformed id, host or token, or
    /// resolvers that disagree), as opposed to configuration or server-side failures.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidId { .. }
                | Error::InvalidHost { .. }
                | Error::InvalidPath { .. }
                | Error::ForeignHost { .. }
                | Error::Token(_)
                | Error::Ambiguous(_)
                | Error::Disagree { .. }
        )
    }
}

/// Copies at most [`MAX_ECHO`] characters of untrusted input into an error.
fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

/// Why a bearer token was not trusted. Each failure has its own variant so that logs
/// and metrics can tell an expired session from an attack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is not a well-formed JWT (bad base64, bad JSON, wrong number of parts).
    #[error("the token is malformed")]
    Malformed,
    /// The token declares `alg: none` or carries no signature.
    #[error("the token is unsigned")]
    Unsigned,
    /// The token's algorithm is not on the allow-list for the key that would verify it.
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    /// No configured key matches the token (unknown `kid`, or no key of its algorithm).
    #[error("no configured key can verify this token")]
    UnknownKey,
    /// The signature does not verify against the configured key.
    #[error("the signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not include the configured audience.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// A required claim is missing or has the wrong type.
    #[error("claim {0:?} is missing or not of the expected type")]
    MissingClaim(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_hostile_input_is_truncated_in_messages() {
        let input = "x".repeat(10_000);
        let msg = Error::invalid_host(&input, "too long").to_string();
        assert!(msg.len() < 200, "{}", msg.len());
        assert!(msg.contains('…'));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let input = "é".repeat(200);
        let Error::ForeignHost { host } = Error::foreign_host(&input) else {
            unreachable!()
        };
        assert_eq!(host.chars().count(), MAX_ECHO + 1);
    }
}
