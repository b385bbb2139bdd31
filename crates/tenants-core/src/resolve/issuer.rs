//! Resolve the tenant from the issuer of a verified token: one identity-provider
//! realm (or directory) per tenant, each with its own keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;

use super::jwt::{JwtResolver, KeySource};
use super::token::claim_at;
use super::{Resolved, Resolver};
use crate::{Error, IdPolicy, TenantId, TokenError};

/// One accepted issuer: its keys, its tenant, and the claim that must repeat what
/// its `iss` says.
#[derive(Debug, Clone)]
struct Issuer {
    keys: KeySource,
    tenant: TenantId,
    /// `(claim path, value)`: the claim must equal the value the template put in
    /// `iss` (Entra ID's `tid`).
    claim: Option<(String, String)>,
}

/// Resolves the tenant from the issuer (`iss`) of a bearer token: the deployments
/// where each tenant has its own realm or directory at the identity provider, such
/// as a Keycloak realm per tenant (`https://id.example/realms/{tenant}`) or Entra ID
/// directories (`https://login.microsoftonline.com/{tid}/v2.0`, with the `tid`
/// claim).
///
/// Only listed issuers are accepted (the allow-list): a token from any other `iss`
/// is refused with [`TokenError::WrongIssuer`] before any key is looked at, and no
/// key is ever fetched because a token names an issuer. Each issuer verifies with
/// its own keys ([`JwtKeys`](super::JwtKeys) or [`RemoteJwks`](super::RemoteJwks)),
/// and its `iss` is checked again as a verified claim. The audience, leeway, cookie,
/// membership claim and id policy are those of [`JwtResolver`], set here once for
/// every issuer.
///
/// When the request also names the tenant by host or path, combine the resolvers
/// with [`ResolverExt::agree`](super::ResolverExt::agree): a token of one tenant's
/// realm is then refused on another tenant's host.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), tenants_core::Error> {
/// use tenants_core::resolve::{IssuerResolver, RemoteJwks};
///
/// // A Keycloak realm per tenant, each with its own keys.
/// let mut resolver = IssuerResolver::new().audience("api");
/// for tenant in ["acme", "globex"] {
///     let issuer = format!("https://id.example.com/realms/{tenant}");
///     let keys = RemoteJwks::discover(&issuer).await?;
///     resolver = resolver.issuer(&issuer, keys, tenant.parse()?);
/// }
///
/// // Entra ID: one key set for every directory; `iss` carries the directory's
/// // `tid`, which the `tid` claim must repeat.
/// let keys = RemoteJwks::fetch("https://login.microsoftonline.com/common/discovery/v2.0/keys").await?;
/// let resolver = IssuerResolver::new().audience("api").template(
///     "https://login.microsoftonline.com/{tid}/v2.0",
///     keys,
///     [("72f988bf-86f1-41af-91ab-2d7cd011db47", "contoso".parse()?)],
/// )?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct IssuerResolver {
    verifier: JwtResolver,
    issuers: Arc<HashMap<String, Issuer>>,
}

impl Default for IssuerResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl IssuerResolver {
    /// A resolver accepting no issuer yet, with [`JwtResolver`]'s defaults (30 s
    /// leeway, no audience check: set one in production).
    pub fn new() -> Self {
        IssuerResolver {
            verifier: JwtResolver::new(super::JwtKeys::new()).without_tenant_claim(),
            issuers: Arc::new(HashMap::new()),
        }
    }

    fn with(mut self, iss: String, issuer: Issuer) -> Self {
        Arc::make_mut(&mut self.issuers).insert(iss, issuer);
        self
    }

    /// Accepts tokens whose `iss` is exactly `iss`, verified with `keys`; they
    /// belong to `tenant`.
    pub fn issuer(self, iss: &str, keys: impl Into<KeySource>, tenant: TenantId) -> Self {
        let issuer = Issuer {
            keys: keys.into(),
            tenant,
            claim: None,
        };
        self.with(iss.to_owned(), issuer)
    }

    /// Accepts, for each `(value, tenant)` of `allowed`, tokens whose `iss` is
    /// `template` with its one placeholder replaced by `value`, verified with
    /// `keys` (one key set for all of them). A placeholder other than `{tenant}`
    /// names a claim that must equal `value` too (`{tid}`: the `tid` claim).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the template has no `{name}` placeholder or more than
    /// one.
    pub fn template(
        mut self,
        template: &str,
        keys: impl Into<KeySource>,
        allowed: impl IntoIterator<Item = (impl Into<String>, TenantId)>,
    ) -> Result<Self, Error> {
        let (before, rest) = template
            .split_once('{')
            .ok_or_else(|| template_error(template))?;
        let (name, after) = rest
            .split_once('}')
            .ok_or_else(|| template_error(template))?;
        if name.is_empty() || after.contains('{') || before.contains('}') {
            return Err(template_error(template));
        }
        let keys = keys.into();
        for (value, tenant) in allowed {
            let value = value.into();
            let claim = (name != "tenant").then(|| (name.to_owned(), value.clone()));
            let issuer = Issuer {
                keys: keys.clone(),
                tenant,
                claim,
            };
            self = self.with(format!("{before}{value}{after}"), issuer);
        }
        Ok(self)
    }

    /// Requires `aud` to contain `audience`, for every issuer.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.verifier = self.verifier.audience(audience);
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.verifier = self.verifier.leeway(leeway);
        self
    }

    /// The claim listing the tenants the subject belongs to (an array of ids).
    pub fn members_claim(mut self, path: impl Into<String>) -> Self {
        self.verifier = self.verifier.members_claim(path);
        self
    }

    /// Also reads the token from this cookie when there is no `Authorization` header.
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.verifier = self.verifier.cookie(name);
        self
    }

    /// Sets the id policy (reserved ids) for membership claims.
    pub fn id_policy(mut self, policy: IdPolicy) -> Self {
        self.verifier = self.verifier.id_policy(policy);
        self
    }

    /// The accepted issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }
}

impl Resolver for IssuerResolver {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        let Some(token) = self.verifier.token(parts)? else {
            return Ok(None);
        };
        let iss = unverified_issuer(token)?;
        let issuer = self.issuers.get(&iss).ok_or(TokenError::WrongIssuer)?;
        let mut verified = self.verifier.verify_with(token, &issuer.keys, Some(&iss))?;
        if let Some((path, value)) = &issuer.claim
            && claim_at(&verified.claims, path).and_then(|v| v.as_str()) != Some(value.as_str())
        {
            // The claim does not repeat what `iss` says: not the issuer it claims.
            return Err(TokenError::WrongIssuer.into());
        }
        verified.tenant = Some(issuer.tenant);
        let tenant = issuer.tenant;
        Ok(Some(
            Resolved::from_id(tenant).with_token(Arc::new(verified)),
        ))
    }
}

/// The `iss` of a token's payload, read before verification only to choose the
/// keys; the signature check that follows covers it.
fn unverified_issuer(token: &str) -> Result<String, Error> {
    if token.len() > super::jwt::MAX_TOKEN_LEN {
        return Err(TokenError::Malformed.into());
    }
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    #[derive(serde::Deserialize)]
    struct Payload {
        iss: Option<String>,
    }
    let payload: Payload = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    payload
        .iss
        .ok_or_else(|| TokenError::MissingClaim("iss".into()).into())
}

fn template_error(template: &str) -> Error {
    Error::Config(format!(
        "issuer template {template:?} needs exactly one placeholder, such as {{tenant}} or {{tid}}"
    ))
}
