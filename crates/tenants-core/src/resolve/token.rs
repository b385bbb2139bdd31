//! The verified-token record shared by token resolvers and the layer.

use std::sync::Arc;

use crate::TenantId;

/// The claims of a bearer token whose signature, validity window, issuer and audience
/// were verified. Nothing builds one from an unverified token.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// All claims of the token.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The tenant named by the configured tenant claim, when present.
    pub tenant: Option<TenantId>,
    /// The tenants the subject belongs to, when a membership claim is configured and
    /// present. Entries that are not valid tenant ids are dropped (they can match no
    /// tenant).
    pub members: Option<Arc<[TenantId]>>,
}

impl VerifiedToken {
    /// Builds a record from verified claims. Only call this with claims you verified.
    pub fn new(claims: serde_json::Map<String, serde_json::Value>) -> Self {
        VerifiedToken {
            claims,
            tenant: None,
            members: None,
        }
    }

    /// The `sub` claim, when it is a string.
    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub").and_then(|v| v.as_str())
    }

    /// Reads a claim by dotted path (`app_metadata.tenant_id`).
    pub fn claim(&self, path: &str) -> Option<&serde_json::Value> {
        claim_at(&self.claims, path)
    }

    /// `true` when no membership claim is configured, or when it lists `tenant`.
    pub fn is_member(&self, tenant: TenantId) -> bool {
        self.members
            .as_deref()
            .is_none_or(|members| members.contains(&tenant))
    }
}

/// Follows a dotted path through nested JSON objects.
pub(crate) fn claim_at<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Option<&'a serde_json::Value> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_claims_and_membership() {
        let serde_json::Value::Object(claims) =
            json!({"sub": "u1", "app_metadata": {"tenant_id": "acme"}})
        else {
            unreachable!()
        };
        let mut token = VerifiedToken::new(claims);
        assert_eq!(token.subject(), Some("u1"));
        assert_eq!(token.claim("app_metadata.tenant_id"), Some(&json!("acme")));
        assert_eq!(token.claim("app_metadata.nope"), None);
        assert_eq!(token.claim("sub.x"), None);
        let acme: TenantId = "acme".parse().unwrap();
        assert!(token.is_member(acme), "no membership claim configured");
        token.members = Some(Arc::from(vec![acme]));
        assert!(token.is_member(acme));
        assert!(!token.is_member("globex".parse().unwrap()));
    }
}
