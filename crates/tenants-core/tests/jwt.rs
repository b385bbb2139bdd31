//! The JWT resolver against real tokens: every way a token can be wrong has its own
//! error, and only verified claims name a tenant.
#![cfg(feature = "jwt")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use http::request::Parts;
use jsonwebtoken::{EncodingKey, Header};

/// jsonwebtoken's `encode`, after installing the crypto provider: these tests sign
/// before any resolver exists, with both jsonwebtoken backends compiled in.
fn encode(
    header: &Header,
    claims: &impl serde::Serialize,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<String> {
    tenants_core::resolve::install_crypto_provider();
    jsonwebtoken::encode(header, claims, key)
}
use serde_json::{Value, json};
use tenants_core::resolve::{
    Algorithm, HeaderResolver, JwtKeys, JwtResolver, Resolver, ResolverExt, SubdomainResolver,
};
use tenants_core::{Error, TokenError};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("fixtures/ec_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("fixtures/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("fixtures/ed_public.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(extra: Value) -> Value {
    let mut base = json!({
        "sub": "user-1", "exp": now() + 600, "iss": "https://id.test", "aud": "api",
        "tenant_id": "acme",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap()
}

fn bearer(token: &str) -> Parts {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn resolver() -> JwtResolver {
    JwtResolver::new(
        JwtKeys::new()
            .hmac(SECRET, Algorithm::HS256)
            .unwrap()
            .rsa_pem(RSA_PUBLIC, Algorithm::RS256)
            .unwrap(),
    )
    .issuer("https://id.test")
    .audience("api")
    .leeway(Duration::from_secs(5))
}

fn token_error(result: Result<Option<tenants_core::Resolved>, Error>) -> TokenError {
    match result {
        Err(Error::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

#[test]
fn valid_tokens_of_each_key_type_resolve() {
    let r = resolver();
    assert_eq!(
        r.resolve(&bearer(&hs256(&claims(json!({})))))
            .unwrap()
            .unwrap()
            .id()
            .unwrap(),
        "acme"
    );
    assert_eq!(
        r.resolve(&bearer(&rs256(&claims(json!({})), None)))
            .unwrap()
            .unwrap()
            .id()
            .unwrap(),
        "acme"
    );

    let ec = JwtResolver::new(JwtKeys::new().ec_pem(EC_PUBLIC, Algorithm::ES256).unwrap());
    let token = encode(
        &Header::new(Algorithm::ES256),
        &claims(json!({})),
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
    )
    .unwrap();
    assert_eq!(
        ec.resolve(&bearer(&token)).unwrap().unwrap().id().unwrap(),
        "acme"
    );

    let ed = JwtResolver::new(JwtKeys::new().ed_pem(ED_PUBLIC).unwrap());
    let token = encode(
        &Header::new(Algorithm::EdDSA),
        &claims(json!({})),
        &EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
    )
    .unwrap();
    assert_eq!(
        ed.resolve(&bearer(&token)).unwrap().unwrap().id().unwrap(),
        "acme"
    );
}

#[test]
fn no_token_means_no_tenant() {
    let none = Request::get("/").body(()).unwrap().into_parts().0;
    assert_eq!(resolver().resolve(&none).unwrap(), None);
    let basic = Request::get("/")
        .header("authorization", "Basic dXNlcjpwdw==")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(resolver().resolve(&basic).unwrap(), None);
}

#[test]
fn alg_none_is_unsigned() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    assert_eq!(
        token_error(resolver().resolve(&bearer(&format!("{header}.{payload}.")))),
        TokenError::Unsigned
    );
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"NONE"}"#);
    assert_eq!(
        token_error(resolver().resolve(&bearer(&format!("{header}.{payload}.sig")))),
        TokenError::Unsigned
    );
    // A real algorithm with the signature stripped.
    let token = hs256(&claims(json!({})));
    let stripped = &token[..token.rfind('.').unwrap() + 1];
    assert_eq!(
        token_error(resolver().resolve(&bearer(stripped))),
        TokenError::Unsigned
    );
}

#[test]
fn hs_rs_confusion_fails() {
    // The attacker signs HS256 with the server's RSA *public* key as the HMAC secret.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(RSA_PUBLIC),
    )
    .unwrap();
    let rsa_only = JwtResolver::new(
        JwtKeys::new()
            .rsa_pem(RSA_PUBLIC, Algorithm::RS256)
            .unwrap(),
    );
    assert!(matches!(
        token_error(rsa_only.resolve(&bearer(&forged))),
        TokenError::AlgorithmNotAllowed(_)
    ));
    // With an HMAC key configured too, the forged token still fails: wrong secret.
    assert_eq!(
        token_error(resolver().resolve(&bearer(&forged))),
        TokenError::BadSignature
    );
    // And RS256 tokens are refused by an HMAC-only resolver.
    let hmac_only = JwtResolver::new(JwtKeys::new().hmac(SECRET, Algorithm::HS256).unwrap());
    assert!(matches!(
        token_error(hmac_only.resolve(&bearer(&rs256(&claims(json!({})), None)))),
        TokenError::AlgorithmNotAllowed(_)
    ));
    // An algorithm on no key's allow-list.
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &claims(json!({})),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert!(matches!(
        token_error(resolver().resolve(&bearer(&hs512))),
        TokenError::AlgorithmNotAllowed(_)
    ));
}

#[test]
fn wrong_key_expired_premature_issuer_audience() {
    let r = resolver();
    let other = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(b"another secret that is 32 bytes long!!"),
    )
    .unwrap();
    assert_eq!(
        token_error(r.resolve(&bearer(&other))),
        TokenError::BadSignature
    );
    assert_eq!(
        token_error(r.resolve(&bearer(&hs256(&claims(json!({"exp": now() - 60})))))),
        TokenError::Expired
    );
    assert!(
        r.resolve(&bearer(&hs256(&claims(json!({"exp": now() - 2})))))
            .is_ok(),
        "within leeway"
    );
    assert_eq!(
        token_error(r.resolve(&bearer(&hs256(&claims(json!({"nbf": now() + 600})))))),
        TokenError::NotYetValid
    );
    assert_eq!(
        token_error(r.resolve(&bearer(&hs256(&claims(
            json!({"iss": "https://evil.test"})
        ))))),
        TokenError::WrongIssuer
    );
    assert_eq!(
        token_error(r.resolve(&bearer(&hs256(&claims(json!({"aud": "other"})))))),
        TokenError::WrongAudience
    );
    assert_eq!(
        token_error(r.resolve(&bearer(&hs256(&claims(json!({"exp": null})))))),
        TokenError::MissingClaim("exp".into())
    );
    assert_eq!(
        token_error(r.resolve(&bearer(&hs256(&claims(json!({"iss": null})))))),
        TokenError::MissingClaim("iss".into())
    );
}

#[test]
fn tampered_payload_fails_the_signature() {
    let token = hs256(&claims(json!({})));
    let parts: Vec<&str> = token.split('.').collect();
    let evil = URL_SAFE_NO_PAD.encode(claims(json!({"tenant_id": "globex"})).to_string());
    let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
    assert_eq!(
        token_error(resolver().resolve(&bearer(&tampered))),
        TokenError::BadSignature
    );
}

#[test]
fn malformed_tokens() {
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "!!!.###.$$$",
        &"a".repeat(20_000),
    ] {
        let e = token_error(resolver().resolve(&bearer(token)));
        assert!(
            matches!(e, TokenError::Malformed | TokenError::Unsigned),
            "{token:.20}: {e:?}"
        );
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
    assert_eq!(
        token_error(resolver().resolve(&bearer(&format!("{header}.!!!.c2ln")))),
        TokenError::BadSignature
    );
    let twice = Request::get("/")
        .header("authorization", "Bearer a")
        .header("authorization", "Bearer b")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert!(matches!(
        resolver().resolve(&twice),
        Err(Error::Ambiguous(_))
    ));
}

#[test]
fn nested_claims_members_and_bad_tenant_ids() {
    let r = resolver()
        .tenant_claim("app.tenant")
        .members_claim("app.tenants");
    let token = hs256(&claims(
        json!({"app": {"tenant": "Acme", "tenants": ["acme", "globex", "NOT VALID"]}}),
    ));
    let found = r.resolve(&bearer(&token)).unwrap().unwrap();
    assert_eq!(found.id().unwrap(), "acme");
    let verified = found.token.unwrap();
    assert_eq!(verified.members.as_deref().unwrap().len(), 2);
    assert!(verified.is_member("globex".parse().unwrap()));
    assert!(!verified.is_member("initech".parse().unwrap()));

    // Membership claim configured but absent: member of nothing (fail closed).
    let token = hs256(&claims(json!({"app": {"tenant": "acme"}})));
    let verified = r.verify(&bearer(&token)).unwrap().unwrap();
    assert!(!verified.is_member("acme".parse().unwrap()));

    // A malformed tenant claim is a malformed tenant, not "no tenant".
    let token = hs256(&claims(json!({"tenant_id": "not valid"})));
    assert!(matches!(
        resolver().resolve(&bearer(&token)),
        Err(Error::InvalidId { .. })
    ));
    let token = hs256(&claims(json!({"tenant_id": 42})));
    assert!(matches!(
        resolver().resolve(&bearer(&token)),
        Err(Error::Token(TokenError::MissingClaim(_)))
    ));
    // A verified token without the claim names no tenant.
    let token = hs256(&claims(json!({"tenant_id": null})));
    assert_eq!(resolver().resolve(&bearer(&token)).unwrap(), None);
}

#[test]
fn cookie_source() {
    let r = resolver().cookie("session");
    let token = hs256(&claims(json!({})));
    let parts = Request::get("/")
        .header("cookie", format!("theme=dark; session={token}"))
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(r.resolve(&parts).unwrap().unwrap().id().unwrap(), "acme");
    assert_eq!(
        resolver().resolve(&parts).unwrap(),
        None,
        "cookie not configured"
    );
}

#[test]
fn jwks_with_kid_selection() {
    // "current" is the fixture RSA key; "old" is another key.
    let jwks = include_str!("fixtures/jwks.json");
    let r = JwtResolver::new(JwtKeys::new().jwks(jwks).unwrap());
    let ok = rs256(&claims(json!({})), Some("current"));
    assert_eq!(
        r.resolve(&bearer(&ok)).unwrap().unwrap().id().unwrap(),
        "acme"
    );
    let wrong_kid = rs256(&claims(json!({})), Some("old"));
    assert_eq!(
        token_error(r.resolve(&bearer(&wrong_kid))),
        TokenError::BadSignature
    );
    let unknown = rs256(&claims(json!({})), Some("nope"));
    assert_eq!(
        token_error(r.resolve(&bearer(&unknown))),
        TokenError::UnknownKey
    );
    assert!(JwtKeys::new().jwks("not json").is_err());
    assert!(
        JwtKeys::new()
            .jwks(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
            .is_err()
    );
}

#[test]
fn bad_key_configuration_is_an_error() {
    assert!(JwtKeys::new().hmac(b"short", Algorithm::HS256).is_err());
    assert!(JwtKeys::new().hmac(SECRET, Algorithm::RS256).is_err());
    assert!(
        JwtKeys::new()
            .rsa_pem(b"not a pem", Algorithm::RS256)
            .is_err()
    );
    assert!(
        JwtKeys::new()
            .rsa_pem(RSA_PUBLIC, Algorithm::HS256)
            .is_err()
    );
    assert!(JwtKeys::new().ec_pem(EC_PUBLIC, Algorithm::EdDSA).is_err());
}

#[test]
fn header_must_agree_with_the_token() {
    let r = HeaderResolver::new("x-tenant-id").agree(resolver());
    let token = hs256(&claims(json!({})));
    let parts = |tenant: &str| {
        Request::get("/")
            .header("x-tenant-id", tenant)
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let found = r.resolve(&parts("acme")).unwrap().unwrap();
    assert!(
        found.token.is_some(),
        "the verified token travels with the answer"
    );
    assert!(matches!(
        r.resolve(&parts("globex")),
        Err(Error::Disagree { .. })
    ));
    // Subdomain first, token second: the token is never consulted for the tenant.
    let chain = SubdomainResolver::new(["example.com"]).or(resolver());
    let p = Request::get("/")
        .header("host", "globex.example.com")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(chain.resolve(&p).unwrap().unwrap().id().unwrap(), "globex");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A signed token names exactly the tenant of its claim, folded to lowercase.
        #[test]
        fn a_signed_claim_names_its_tenant(label in "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?") {
            let token = hs256(&claims(json!({"tenant_id": label})));
            let found = resolver().resolve(&bearer(&token)).unwrap().unwrap();
            prop_assert_eq!(found.id().unwrap().to_string(), label.to_ascii_lowercase());
            prop_assert!(found.token.is_some());
        }

        /// Changing any one character of a signed token's header or payload makes it
        /// untrusted: the resolver refuses it, never answers with a tenant.
        #[test]
        fn a_tampered_token_never_names_a_tenant(at in any::<prop::sample::Index>(), with in "[A-Za-z0-9_.=-]") {
            let token = hs256(&claims(json!({})));
            let signed_len = token.rfind('.').unwrap();
            let at = at.index(signed_len);
            prop_assume!(token[at..at + 1] != with);
            let tampered = format!("{}{}{}", &token[..at], with, &token[at + 1..]);
            prop_assert!(resolver().resolve(&bearer(&tampered)).is_err(), "{}", tampered);
        }

        /// Whatever the token text, the resolver answers (no panic) and accepts
        /// nothing: no printable string is a token signed with the test key.
        #[test]
        fn arbitrary_tokens_are_refused(text in "[ -~]{0,200}") {
            if let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {text}")) {
                let parts = Request::get("/").header("authorization", value).body(()).unwrap().into_parts().0;
                prop_assert!(!matches!(resolver().resolve(&parts), Ok(Some(_))));
            }
        }
    }
}
