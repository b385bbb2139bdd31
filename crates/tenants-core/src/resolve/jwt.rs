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
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Makes aws-lc-rs jsonwebtoken's crypto provider for the process, once, unless
/// another was installed first.
///
/// jsonwebtoken picks a provider from its features only when exactly one backend is
/// compiled in; with both (feature unification with a dependency that enables
/// `rust_crypto`), its first signature or JWK operation panics for want of one.
/// Every resolver and key set of this crate calls it before using jsonwebtoken;
/// call it at start when your own code uses jsonwebtoken before building one.
pub fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Err: a provider is installed already, which stays.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

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
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a document that is not a JWKS, a key of an unsupported
    /// type or algorithm, or a symmetric key (which never belongs in a JWKS). Keys
    /// fetched from an issuer ([`RemoteJwks`](super::RemoteJwks)) skip such keys
    /// instead.
    pub fn jwks(mut self, json: &str) -> Result<Self, Error> {
        let parsed = parse_jwks(json, true)?;
        self.keys.extend(parsed.keys);
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

/// The keys of a JWKS document. `strict`: every key must be usable; otherwise keys
/// for encryption (`"use": "enc"`), of unsupported types or algorithms, and
/// symmetric keys are skipped.
pub(crate) fn parse_jwks(json: &str, strict: bool) -> Result<JwtKeys, Error> {
    install_crypto_provider();
    let set: JwkSet = serde_json::from_str(json).map_err(|e| key_error("jwks", e))?;
    let mut keys = JwtKeys::new();
    for jwk in &set.keys {
        match jwk_key(jwk) {
            Ok(key) => keys.keys.push(key),
            Err(e) if strict => return Err(e),
            Err(_) => {}
        }
    }
    Ok(keys)
}

/// One JWK as a key bound to its algorithm: the key's `alg`, else the one its type
/// implies; never the algorithm a token names.
fn jwk_key(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Key, Error> {
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err(key_error("jwks", "symmetric keys do not belong in a JWKS"));
    }
    if matches!(
        jwk.common.public_key_use,
        Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
    ) {
        return Err(key_error("jwks", "a key for encryption, not signatures"));
    }
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
    let key = DecodingKey::from_jwk(jwk).map_err(|e| key_error("jwks", e))?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

/// Where a [`JwtResolver`]'s keys come from: fixed ([`JwtKeys`]), or fetched from
/// an issuer and kept current ([`RemoteJwks`](super::RemoteJwks), feature
/// `remote-jwks`). Both convert into it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeySource {
    /// Keys given at start.
    Static(Arc<JwtKeys>),
    /// Keys fetched from an issuer.
    #[cfg(feature = "remote-jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote-jwks")))]
    Remote(super::RemoteJwks),
}

impl From<JwtKeys> for KeySource {
    fn from(keys: JwtKeys) -> Self {
        KeySource::Static(Arc::new(keys))
    }
}

#[cfg(feature = "remote-jwks")]
impl From<super::RemoteJwks> for KeySource {
    fn from(keys: super::RemoteJwks) -> Self {
        KeySource::Remote(keys)
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
    keys: KeySource,
    tenant_claim: String,
    members_claim: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    cookie: Option<String>,
    policy: IdPolicy,
    /// What jsonwebtoken checks beyond the signature, one per key family, built
    /// once per configuration (the issuer is compared after it, so one resolver
    /// serves many issuers).
    validations: Arc<[Validation; 4]>,
    /// Whether the tenant claim is read (not when the issuer names the tenant).
    reads_tenant_claim: bool,
}

/// The algorithms of each key family (jsonwebtoken accepts a list of one family
/// per key): the key chosen decides the algorithm, so jsonwebtoken's own
/// allow-list only has to accept it.
const FAMILIES: [&[Algorithm]; 4] = [
    &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
    &[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ],
    &[Algorithm::ES256, Algorithm::ES384],
    &[Algorithm::EdDSA],
];

/// The index in [`FAMILIES`] of `algorithm`'s family.
fn family(algorithm: Algorithm) -> usize {
    FAMILIES
        .iter()
        .position(|family| family.contains(&algorithm))
        .unwrap_or(0)
}

impl JwtResolver {
    /// A resolver trusting `keys` ([`JwtKeys`], or [`RemoteJwks`](super::RemoteJwks)
    /// with feature `remote-jwks`), reading the tenant from the `tenant_id` claim, with
    /// a 30 s leeway and no issuer or audience check (set both in production).
    pub fn new(keys: impl Into<KeySource>) -> Self {
        install_crypto_provider();
        JwtResolver {
            keys: keys.into(),
            tenant_claim: "tenant_id".into(),
            members_claim: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            cookie: None,
            policy: IdPolicy::default(),
            validations: validations(Duration::from_secs(30), None),
            reads_tenant_claim: true,
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
        self.validations = validations(self.leeway, self.audience.as_deref());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self.validations = validations(self.leeway, self.audience.as_deref());
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
    pub(crate) fn token<'a>(&self, parts: &'a Parts) -> Result<Option<&'a str>, Error> {
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

    /// No tenant claim is read: the tenant comes from elsewhere (the issuer).
    pub(crate) fn without_tenant_claim(mut self) -> Self {
        self.reads_tenant_claim = false;
        self
    }

    /// Verifies one compact JWT and reads the configured claims.
    pub fn verify_token(&self, token: &str) -> Result<VerifiedToken, Error> {
        self.verify_with(token, &self.keys, self.issuer.as_deref())
    }

    /// Verifies one compact JWT with `keys`, requiring `issuer` when given, and
    /// reads the configured claims.
    pub(crate) fn verify_with(
        &self,
        token: &str,
        keys: &KeySource,
        issuer: Option<&str>,
    ) -> Result<VerifiedToken, Error> {
        #[cfg(feature = "remote-jwks")]
        let fetched: Arc<JwtKeys>;
        // Without remote JWKS the match has one arm; with it, two.
        #[cfg_attr(
            not(feature = "remote-jwks"),
            allow(clippy::infallible_destructuring_match)
        )]
        let set: &JwtKeys = match keys {
            KeySource::Static(keys) => keys,
            #[cfg(feature = "remote-jwks")]
            KeySource::Remote(remote) => {
                fetched = remote.keys();
                &fetched
            }
        };
        let outcome = self.verify_against(token, set, issuer);
        #[cfg(feature = "remote-jwks")]
        if let (Err(_), KeySource::Remote(remote)) = (&outcome, keys)
            && names_unknown_key(token, set)
        {
            // A key the issuer may have published since the last fetch (a new kid,
            // or a key of a new algorithm); the refresh is rate-limited.
            remote.missed();
        }
        outcome
    }

    fn verify_against(
        &self,
        token: &str,
        keys: &JwtKeys,
        issuer: Option<&str>,
    ) -> Result<VerifiedToken, Error> {
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
            .map_err(|_| TokenError::Malformed)?;
        let header: Head<'_> =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        let alg = header.alg.as_deref().ok_or(TokenError::Malformed)?;
        if alg.eq_ignore_ascii_case("none") || signature.is_empty() {
            return Err(TokenError::Unsigned.into());
        }
        let algorithm = Algorithm::from_str(alg)
            .map_err(|_| TokenError::AlgorithmNotAllowed(alg.chars().take(16).collect()))?;
        if !keys.keys.iter().any(|k| k.algorithm == algorithm) {
            return Err(TokenError::AlgorithmNotAllowed(alg.to_owned()).into());
        }
        let kid = header.kid.as_deref();
        let candidates = keys
            .keys
            .iter()
            .filter(|k| k.algorithm == algorithm)
            .filter(|k| match (kid, &k.kid) {
                (Some(wanted), Some(have)) => wanted == have,
                _ => true,
            });
        let mut outcome = Err(TokenError::UnknownKey);
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &key.key,
                &self.validations[family(algorithm)],
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
        let claims = outcome?;
        if let Some(issuer) = issuer {
            match claims.get("iss") {
                None => return Err(TokenError::MissingClaim("iss".into()).into()),
                Some(iss) if iss.as_str() != Some(issuer) => {
                    return Err(TokenError::WrongIssuer.into());
                }
                Some(_) => {}
            }
        }
        self.read_claims(claims)
    }

    fn read_claims(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Result<VerifiedToken, Error> {
        let tenant = match claim_at(&claims, &self.tenant_claim) {
            _ if !self.reads_tenant_claim => None,
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

/// Whether a token that failed names a key `keys` does not hold: an algorithm of
/// none of its keys, or a `kid` none of them has. Read on failures only.
#[cfg(feature = "remote-jwks")]
fn names_unknown_key(token: &str, keys: &JwtKeys) -> bool {
    let Some(header) = token
        .split('.')
        .next()
        .and_then(|header| URL_SAFE_NO_PAD.decode(header).ok())
    else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<Head<'_>>(&header) else {
        return false;
    };
    let algorithm = header
        .alg
        .as_deref()
        .and_then(|alg| Algorithm::from_str(alg).ok());
    let known_algorithm =
        algorithm.is_some_and(|algorithm| keys.keys.iter().any(|k| k.algorithm == algorithm));
    let known_kid = header
        .kid
        .as_deref()
        .is_none_or(|kid| keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
    algorithm.is_some() && !(known_algorithm && known_kid)
}

/// The JOSE header fields read before choosing a key ([RFC 7515 §4.1]); `jku`,
/// `x5u` and the like are never read: keys come from the configuration only.
///
/// [RFC 7515 §4.1]: https://www.rfc-editor.org/rfc/rfc7515#section-4.1
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    alg: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<std::borrow::Cow<'a, str>>,
}

/// jsonwebtoken's checks: a signature by a key of any allowed algorithm (the
/// caller chose the key, and so the algorithm), `exp` required and checked with
/// `nbf`, and `aud` when an audience is set. The issuer is the caller's check.
fn validations(leeway: Duration, audience: Option<&str>) -> Arc<[Validation; 4]> {
    Arc::new(FAMILIES.map(|family| validation(family, leeway, audience)))
}

fn validation(family: &[Algorithm], leeway: Duration, audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(family[0]);
    validation.algorithms = family.to_vec();
    validation.leeway = leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.iss = None;
    let mut required: HashSet<String> = HashSet::from(["exp".to_owned()]);
    match audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.insert("aud".into());
        }
        None => validation.validate_aud = false,
    }
    validation.required_spec_claims = required;
    validation
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
