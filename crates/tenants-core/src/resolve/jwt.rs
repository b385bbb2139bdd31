//! Resolve the tenant from a claim of a verified JWT.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{DecodingKey, Validation};

use super::token::claim_at;
use super::{Resolved, Resolver, VerifiedToken};
use crate::{Error, IdPolicy, TokenError};

/// Longest token read; anything longer is refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// One verification key, bound to exactly one algorithm.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys a [`JwtResolver`] trusts, each bound to one algorithm.
///
/// Binding every key to its algorithm is the algorithm allow-list: a token is only
/// checked against keys of the algorithm its header names, so an RSA public key can
/// never be used as an HMAC secret (HS/RS confusion), and `alg: none` matches nothing.
///
/// # Examples
///
/// ```
/// use tenants_core::resolve::{Algorithm, JwtKeys};
///
/// let keys = JwtKeys::new()
///     .hmac(b"a long random secret, 32 bytes at least", Algorithm::HS256)?
///     .jwks(r#"{"keys": []}"#)?;
/// assert_eq!(keys.len(), 1);
/// # Ok::<(), tenants_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct JwtKeys {
    keys: Vec<Key>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (k.kid.as_deref(), k.algorithm)))
            .finish()
    }
}

fn key_error(what: &str, e: impl fmt::Display) -> Error {
    Error::Config(format!("JWT key ({what}): {e}"))
}

impl JwtKeys {
    /// An empty key set.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, kid: Option<String>, algorithm: Algorithm, key: DecodingKey) -> Self {
        self.keys.push(Key {
            kid,
            algorithm,
            key,
        });
        self
    }

    /// Adds a shared HMAC secret for `HS256`, `HS384` or `HS512`.
    pub fn hmac(self, secret: &[u8], algorithm: Algorithm) -> Result<Self, Error> {
        if !matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(key_error(
                "hmac",
                format!("{algorithm:?} is not an HMAC algorithm"),
            ));
        }
        if secret.len() < 32 {
            return Err(key_error("hmac", "the secret must be at least 32 bytes"));
        }
        Ok(self.push(None, algorithm, DecodingKey::from_secret(secret)))
    }

    /// Adds an RSA public key (PEM) for `RS*` or `PS*`.
    pub fn rsa_pem(self, pem: &[u8], algorithm: Algorithm) -> Result<Self, Error> {
        if !matches!(
            algorithm,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) {
            return Err(key_error(
                "rsa",
                format!("{algorithm:?} is not an RSA algorithm"),
            ));
        }
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| key_error("rsa", e))?;
        Ok(self.push(None, algorithm, key))
    }

    /// Adds an EC public key (PEM) for `ES256` or `ES384`.
    pub fn ec_pem(self, pem: &[u8], algorithm: Algorithm) -> Result<Self, Error> {
        if !matches!(algorithm, Algorithm::ES256 | Algorithm::ES384) {
            return Err(key_error(
                "ec",
                format!("{algorithm:?} is not an EC algorithm"),
            ));
        }
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| key_error("ec", e))?;
        Ok(self.push(None, algorithm, key))
    }

    /// Adds an Ed25519 public key (PEM) for `EdDSA`.
    pub fn ed_pem(self, pem: &[u8]) -> Result<Self, Error> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|e| key_error("ed25519", e))?;
        Ok(self.push(None, Algorithm::EdDSA, key))
    }

    /// Adds every key of a JWKS document (as served at an identity provider's
    /// `jwks_uri`). Each key keeps its `kid`, and its `alg` (or, when absent, the
    /// algorithm its key type implies: RSA → RS256, P-256 → ES256, P-384 → ES384,
    /// Ed25519 → EdDSA).
    pub fn jwks(mut self, json: &str) -> Result<Self, Error> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| key_error("jwks", e))?;
        for jwk in &set.keys {
            let algorithm = match &jwk.common.key_algorithm {
                Some(alg) => Algorithm::from_str(&alg.to_string())
                    .map_err(|_| key_error("jwks", format!("unsupported alg {alg}")))?,
                None => match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                        Algorithm::ES384
                    }
                    AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    _ => return Err(key_error("jwks", "a key without alg of unsupported type")),
                },
            };
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                return Err(key_error("jwks", "symmetric keys do not belong in a JWKS"));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| key_error("jwks", e))?;
            self = self.push(jwk.common.key_id.clone(), algorithm, key);
        }
        Ok(self)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// `true` when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Resolves the tenant from a claim of a bearer token, after verifying it.
///
/// The token comes from `Authorization: Bearer …` or, when configured, a cookie. It is
/// trusted only when its signature verifies against one of the [`JwtKeys`] bound to
/// the algorithm it names, `exp` is in the future and `nbf` in the past (within the
/// leeway), and the issuer and audience match when configured. Every failure has its
/// own [`TokenError`]. A request without a token names no tenant.
///
/// The tenant claim may be nested (`app_metadata.tenant_id`). A membership claim
/// ([`members_claim`](Self::members_claim)) lists the tenants the subject belongs to;
/// the layer refuses a request whose tenant (from any resolver) is not in it. When
/// that claim is configured but absent, the subject belongs to no tenant.
///
/// # Examples
///
/// ```
/// use tenants_core::resolve::{Algorithm, JwtKeys, JwtResolver, Resolver};
///
/// let secret = b"a long random secret, 32 bytes at least";
/// let resolver = JwtResolver::new(JwtKeys::new().hmac(secret, Algorithm::HS256)?)
///     .tenant_claim("app_metadata.tenant_id")
///     .issuer("https://id.example.com")
///     .audience("api");
///
/// let claims = serde_json::json!({
///     "sub": "user-1", "exp": 4_000_000_000u64, "iss": "https://id.example.com",
///     "aud": "api", "app_metadata": {"tenant_id": "acme"}
/// });
/// let token = jsonwebtoken::encode(
///     &jsonwebtoken::Header::new(Algorithm::HS256),
///     &claims,
///     &jsonwebtoken::EncodingKey::from_secret(secret),
/// ).unwrap();
///
/// let (parts, ()) = http::Request::get("/")
///     .header("authorization", format!("Bearer {token}"))
///     .body(())?.into_parts();
/// assert_eq!(resolver.resolve(&parts)?.unwrap().id().unwrap(), "acme");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct JwtResolver {
    keys: Arc<JwtKeys>,
    tenant_claim: String,
    members_claim: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    cookie: Option<String>,
    policy: IdPolicy,
}

impl JwtResolver {
    /// A resolver trusting `keys`, reading the tenant from the `tenant_id` claim, with a
    /// 30 s leeway and no issuer or audience check (set both in production).
    pub fn new(keys: JwtKeys) -> Self {
        JwtResolver {
            keys: Arc::new(keys),
            tenant_claim: "tenant_id".into(),
            members_claim: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            cookie: None,
            policy: IdPolicy::default(),
        }
    }

    /// The claim naming the tenant; dots descend into objects (default `tenant_id`).
    pub fn tenant_claim(mut self, path: impl Into<String>) -> Self {
        self.tenant_claim = path.into();
        self
    }

    /// The claim listing the tenants the subject belongs to (an array of ids).
    pub fn members_claim(mut self, path: impl Into<String>) -> Self {
        self.members_claim = Some(path.into());
        self
    }

    /// Requires `iss` to equal `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to contain `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Also reads the token from this cookie when there is no `Authorization` header.
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// Sets the id policy (reserved ids) for the tenant claim.
    pub fn id_policy(mut self, policy: IdPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Finds and verifies the request's token. `Ok(None)` when the request carries none.
    pub fn verify(&self, parts: &Parts) -> Result<Option<Arc<VerifiedToken>>, Error> {
        match self.token(parts)? {
            Some(token) => self.verify_token(token).map(|t| Some(Arc::new(t))),
            None => Ok(None),
        }
    }

    /// The raw token of the request, if any.
    fn token<'a>(&self, parts: &'a Parts) -> Result<Option<&'a str>, Error> {
        let mut auth = parts.headers.get_all(AUTHORIZATION).iter();
        if let Some(value) = auth.next() {
            if auth.next().is_some() {
                return Err(Error::Ambiguous("Authorization header"));
            }
            let value = value.to_str().map_err(|_| TokenError::Malformed)?;
            return match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Ok(Some(token.trim()))
                }
                // Another scheme (Basic, …) carries no bearer token.
                _ => Ok(None),
            };
        }
        let Some(name) = &self.cookie else {
            return Ok(None);
        };
        for header in parts.headers.get_all(COOKIE) {
            let Ok(header) = header.to_str() else {
                continue;
            };
            for pair in header.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k == name
                {
                    return Ok(Some(v.trim_matches('"')));
                }
            }
        }
        Ok(None)
    }

    /// Verifies one compact JWT and reads the configured claims.
    pub fn verify_token(&self, token: &str) -> Result<VerifiedToken, Error> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed.into());
        }
        let mut segments = token.split('.');
        let (Some(header), Some(_payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed.into());
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .ok_or(TokenError::Malformed)?;
        let alg = header
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or(TokenError::Malformed)?;
        if alg.eq_ignore_ascii_case("none") || signature.is_empty() {
            return Err(TokenError::Unsigned.into());
        }
        let algorithm = Algorithm::from_str(alg)
            .map_err(|_| TokenError::AlgorithmNotAllowed(alg.chars().take(16).collect()))?;
        if !self.keys.keys.iter().any(|k| k.algorithm == algorithm) {
            return Err(TokenError::AlgorithmNotAllowed(alg.to_owned()).into());
        }
        let kid = header.get("kid").and_then(|k| k.as_str());
        let candidates = self
            .keys
            .keys
            .iter()
            .filter(|k| k.algorithm == algorithm)
            .filter(|k| match (kid, &k.kid) {
                (Some(wanted), Some(have)) => wanted == have,
                _ => true,
            });
        let validation = self.validation(algorithm);
        let mut outcome = Err(TokenError::UnknownKey);
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &key.key,
                &validation,
            ) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(e) => {
                    outcome = Err(token_error(e.kind()));
                    // Another key of the same algorithm may still verify it.
                    if outcome != Err(TokenError::BadSignature) {
                        break;
                    }
                }
            }
        }
        self.read_claims(outcome?)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required: HashSet<String> = HashSet::from(["exp".to_owned()]);
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required;
        validation
    }

    fn read_claims(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Result<VerifiedToken, Error> {
        let tenant = match claim_at(&claims, &self.tenant_claim) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(id)) => Some(self.policy.parse(id)?),
            Some(_) => return Err(TokenError::MissingClaim(self.tenant_claim.clone()).into()),
        };
        let members = self.members_claim.as_ref().map(|path| {
            let ids: Vec<_> = claim_at(&claims, path)
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .filter_map(|s| self.policy.parse(s).ok())
                .collect();
            Arc::from(ids)
        });
        let mut token = VerifiedToken::new(claims);
        token.tenant = tenant;
        token.members = members;
        Ok(token)
    }
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            TokenError::MissingClaim(claim.clone())
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::AlgorithmNotAllowed("mismatch".into())
        }
        _ => TokenError::Malformed,
    }
}

impl Resolver for JwtResolver {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        let Some(token) = self.verify(parts)? else {
            return Ok(None);
        };
        let Some(id) = token.tenant else {
            return Ok(None);
        };
        Ok(Some(Resolved::from_id(id).with_token(token)))
    }
}
