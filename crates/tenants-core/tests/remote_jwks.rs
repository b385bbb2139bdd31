//! Keys from an identity provider: a local HTTP server in the test serves
//! discovery documents and JWKS per realm, rotates keys, fails, returns garbage and
//! counts every hit, so the tests can assert what was fetched, and how often.
#![cfg(feature = "remote-jwks")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Request;
use http::request::Parts;
use jsonwebtoken::jwk::{Jwk, JwkSet};
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
    Algorithm, IssuerResolver, JwtResolver, Refresh, RemoteJwks, Resolver, ResolverExt,
    SubdomainResolver,
};
use tenants_core::{Error, TokenError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa_public.pem");

/// A signing key of the test's identity provider.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
}

impl SigningKey {
    /// A fresh P-256 key.
    fn ec(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        SigningKey {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        }
    }

    /// The RSA key of the fixtures.
    fn rsa(kid: &str) -> Self {
        SigningKey {
            kid: kid.into(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        }
    }

    fn jwk(&self) -> Jwk {
        // The test's own jsonwebtoken calls come before any resolver's.
        tenants_core::resolve::install_crypto_provider();
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.algorithm).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    /// A token signed with this key, naming its `kid`.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).unwrap()
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    })
    .unwrap()
}

/// What the provider answers at a path.
#[derive(Clone)]
enum Answer {
    Json {
        body: String,
        cache_control: Option<&'static str>,
    },
    Status(u16),
}

fn json_answer(body: String) -> Answer {
    Answer::Json {
        body,
        cache_control: None,
    }
}

/// The test's identity provider: answers by path, counts hits by path.
#[derive(Clone)]
struct Provider {
    base: String,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    hits: Arc<Mutex<HashMap<String, u64>>>,
    total: Arc<AtomicU64>,
}

impl Provider {
    async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider = Provider {
            base: format!("http://{}", listener.local_addr().unwrap()),
            answers: Arc::default(),
            hits: Arc::default(),
            total: Arc::default(),
        };
        let serving = provider.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let serving = serving.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                    let response = serving.answer(&path);
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        provider
    }

    fn answer(&self, path: &str) -> String {
        *self
            .hits
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default() += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        let answer = self.answers.lock().unwrap().get(path).cloned();
        let (status, body, cache) = match answer {
            Some(Answer::Json {
                body,
                cache_control,
            }) => (200, body, cache_control),
            Some(Answer::Status(status)) => (status, String::new(), None),
            None => (404, String::new(), None),
        };
        let cache = cache
            .map(|value| format!("Cache-Control: {value}\r\n"))
            .unwrap_or_default();
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{cache}Connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn set(&self, path: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(path.into(), answer);
    }

    fn hits(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// A realm: its issuer URL, a discovery document and a JWKS with `keys`.
    fn realm(&self, name: &str, keys: &[&SigningKey]) -> String {
        let issuer = format!("{}/realms/{name}", self.base);
        self.set(
            &format!("/realms/{name}/.well-known/openid-configuration"),
            json_answer(
                json!({"issuer": issuer, "jwks_uri": format!("{issuer}/certs")}).to_string(),
            ),
        );
        self.set(&format!("/realms/{name}/certs"), json_answer(jwks(keys)));
        issuer
    }
}

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(issuer: &str, extra: Value) -> Value {
    let mut claims =
        json!({"sub": "u1", "exp": now() + 600, "iss": issuer, "aud": "api", "tenant_id": "acme"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn bearer(token: &str) -> Parts {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn bearer_on(host: &str, token: &str) -> Parts {
    Request::get("/")
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn token_error(result: Result<Option<tenants_core::Resolved>, Error>) -> TokenError {
    match result {
        Err(Error::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

fn fast() -> Refresh {
    Refresh::default().min_interval(Duration::from_millis(200))
}

#[tokio::test]
async fn discovery_fetches_the_keys_once_and_tokens_verify() {
    let idp = Provider::start().await;
    let key = SigningKey::ec("k1");
    let issuer = idp.realm("acme", &[&key]);
    let keys = RemoteJwks::discover(&issuer).await.unwrap();
    assert_eq!(keys.keys().len(), 1);
    let resolver = JwtResolver::new(keys.clone())
        .issuer(&issuer)
        .audience("api");
    for _ in 0..50 {
        let found = resolver
            .resolve(&bearer(&key.sign(&claims(&issuer, json!({})))))
            .unwrap()
            .unwrap();
        assert_eq!(found.id().unwrap(), "acme");
    }
    assert_eq!(idp.hits("/realms/acme/.well-known/openid-configuration"), 1);
    assert_eq!(
        idp.hits("/realms/acme/certs"),
        1,
        "keys are parsed once, not per request"
    );
    assert_eq!(keys.fetches(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token() {
    let idp = Provider::start().await;
    let (old, new) = (SigningKey::ec("old"), SigningKey::ec("new"));
    let issuer = idp.realm("acme", &[&old]);
    let keys = RemoteJwks::discover_with(&issuer, fast()).await.unwrap();
    let resolver = JwtResolver::new(keys.clone()).issuer(&issuer);
    let old_token = old.sign(&claims(&issuer, json!({})));
    assert!(resolver.resolve(&bearer(&old_token)).is_ok());

    // The provider rotates: the new key only.
    idp.set("/realms/acme/certs", json_answer(jwks(&[&new])));
    let new_token = new.sign(&claims(&issuer, json!({})));
    assert_eq!(
        token_error(resolver.resolve(&bearer(&new_token))),
        TokenError::UnknownKey,
        "verification never waits for a fetch"
    );
    eventually("the unknown kid is fetched", || {
        resolver.resolve(&bearer(&new_token)).is_ok()
    })
    .await;
    assert_eq!(idp.hits("/realms/acme/certs"), 2);
    assert_eq!(
        token_error(resolver.resolve(&bearer(&old_token))),
        TokenError::UnknownKey,
        "a key the provider withdrew is withdrawn here too"
    );
}

#[tokio::test]
async fn a_key_of_a_new_algorithm_is_fetched_on_its_first_token() {
    let idp = Provider::start().await;
    let (rsa, ec) = (SigningKey::rsa("r1"), SigningKey::ec("e1"));
    let issuer = idp.realm("acme", &[&rsa]);
    let keys = RemoteJwks::discover_with(&issuer, fast()).await.unwrap();
    let resolver = JwtResolver::new(keys).issuer(&issuer);
    // The provider moves from RS256 to ES256.
    idp.set("/realms/acme/certs", json_answer(jwks(&[&rsa, &ec])));
    let token = ec.sign(&claims(&issuer, json!({})));
    assert!(matches!(
        token_error(resolver.resolve(&bearer(&token))),
        TokenError::AlgorithmNotAllowed(_)
    ));
    eventually("the new algorithm's key is fetched", || {
        resolver.resolve(&bearer(&token)).is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_interval() {
    let idp = Provider::start().await;
    let key = SigningKey::ec("known");
    let issuer = idp.realm("acme", &[&key]);
    let interval = Duration::from_millis(300);
    let keys = RemoteJwks::discover_with(&issuer, Refresh::default().min_interval(interval))
        .await
        .unwrap();
    let resolver = JwtResolver::new(keys.clone()).issuer(&issuer);
    let known = key.sign(&claims(&issuer, json!({})));
    let start = Instant::now();
    let mut flood = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        for _ in 0..50 {
            flood += 1;
            let forged = SigningKey {
                kid: format!("random-{flood}"),
                ..key.clone()
            };
            let token = forged.sign(&claims(&issuer, json!({})));
            assert_eq!(
                token_error(resolver.resolve(&bearer(&token))),
                TokenError::UnknownKey
            );
            // Requests with a known kid keep verifying, whatever the flood.
            assert!(resolver.resolve(&bearer(&known)).is_ok());
        }
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(interval).await;
    let elapsed = start.elapsed();
    let fetched = idp.hits("/realms/acme/certs");
    let allowed = 1 + (elapsed.as_millis() / interval.as_millis()) as u64 + 1;
    assert!(
        fetched <= allowed,
        "{flood} unknown kids in {elapsed:?} made {fetched} fetches (at most {allowed})"
    );
    assert!(
        fetched >= 2,
        "unknown kids do wake a refresh ({fetched} fetches)"
    );
}

#[tokio::test]
async fn failed_or_garbage_fetches_keep_the_last_good_keys() {
    let idp = Provider::start().await;
    let key = SigningKey::ec("k1");
    let issuer = idp.realm("acme", &[&key]);
    let keys = RemoteJwks::discover_with(&issuer, fast()).await.unwrap();
    let resolver = JwtResolver::new(keys.clone()).issuer(&issuer);
    let good = key.sign(&claims(&issuer, json!({})));
    let stranger = SigningKey::ec("stranger").sign(&claims(&issuer, json!({})));
    let encryption_only = json!({"keys": [{
        "kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc",
        "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
        "e": "AQAB"}]})
    .to_string();
    for broken in [
        Answer::Status(500),
        Answer::Status(404),
        json_answer("<html>maintenance</html>".into()),
        json_answer(r#"{"keys": []}"#.into()),
        json_answer(encryption_only),
    ] {
        let before = idp.hits("/realms/acme/certs");
        idp.set("/realms/acme/certs", broken);
        // An unknown kid asks for a refresh; the answer is unusable.
        let _ = resolver.resolve(&bearer(&stranger));
        eventually("the broken key set is fetched", || {
            idp.hits("/realms/acme/certs") > before
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let found = resolver.resolve(&bearer(&good)).unwrap().unwrap();
        assert_eq!(
            found.id().unwrap(),
            "acme",
            "the last good keys stay in use"
        );
    }
}

#[tokio::test]
async fn cache_control_max_age_schedules_the_refresh() {
    let idp = Provider::start().await;
    let key = SigningKey::ec("k1");
    let issuer = idp.realm("acme", &[&key]);
    idp.set(
        "/realms/acme/certs",
        Answer::Json {
            body: jwks(&[&key]),
            cache_control: Some("public, max-age=1"),
        },
    );
    let _keys = RemoteJwks::discover_with(&issuer, fast()).await.unwrap();
    eventually("two scheduled refreshes", || {
        idp.hits("/realms/acme/certs") >= 3
    })
    .await;
}

#[tokio::test]
async fn keys_come_from_configured_issuers_only() {
    let idp = Provider::start().await;
    let rsa = SigningKey::rsa("k1");
    let issuer = idp.realm("acme", &[&rsa]);
    let attacker = SigningKey::ec("evil");
    idp.set("/attacker/certs", json_answer(jwks(&[&attacker])));
    let keys = RemoteJwks::discover(&issuer).await.unwrap();
    let resolver = JwtResolver::new(keys).issuer(&issuer);

    // HS/RS confusion: the RSA public key as an HMAC secret, under the RSA key's kid.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let confused = encode(
        &header,
        &claims(&issuer, json!({})),
        &EncodingKey::from_secret(RSA_PUBLIC),
    )
    .unwrap();
    assert!(matches!(
        token_error(resolver.resolve(&bearer(&confused))),
        TokenError::AlgorithmNotAllowed(_)
    ));

    // The algorithm comes from the key, not from the header: an ES256 header on the
    // RSA key's kid verifies with nothing.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let relabelled = encode(&header, &claims(&issuer, json!({})), &attacker.encoding).unwrap();
    assert!(resolver.resolve(&bearer(&relabelled)).is_err());

    // `jku` and `x5u` point at the attacker's keys: never followed.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("evil".into());
    header.jku = Some(format!("{}/attacker/certs", idp.base));
    header.x5u = Some(format!("{}/attacker/certs", idp.base));
    let pointed = encode(&header, &claims(&issuer, json!({})), &attacker.encoding).unwrap();
    assert!(matches!(
        token_error(resolver.resolve(&bearer(&pointed))),
        TokenError::AlgorithmNotAllowed(_) | TokenError::UnknownKey
    ));
    // A token naming another issuer gets no fetch either.
    let elsewhere = attacker.sign(&claims(&format!("{}/attacker", idp.base), json!({})));
    assert!(resolver.resolve(&bearer(&elsewhere)).is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(idp.hits("/attacker/certs"), 0);
    assert_eq!(idp.hits("/attacker/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn start_fails_loudly_when_the_keys_cannot_be_had() {
    let idp = Provider::start().await;
    idp.set("/down/certs", Answer::Status(503));
    idp.set("/garbage/certs", json_answer("{".into()));
    for url in ["/down/certs", "/garbage/certs", "/missing/certs"] {
        let result = RemoteJwks::fetch(&format!("{}{url}", idp.base)).await;
        assert!(matches!(result, Err(Error::Config(_))), "{url}: {result:?}");
    }
    // A discovery document must name the issuer it was asked for.
    let key = SigningKey::ec("k1");
    let issuer = idp.realm("acme", &[&key]);
    idp.set(
        "/realms/impostor/.well-known/openid-configuration",
        json_answer(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/certs")}).to_string()),
    );
    let impostor = format!("{}/realms/impostor", idp.base);
    match RemoteJwks::discover(&impostor).await {
        Err(Error::Config(message)) => assert!(message.contains("names issuer"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        RemoteJwks::fetch("http://id.example.com/certs").await,
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn the_issuer_names_the_tenant_each_with_its_own_keys() {
    let idp = Provider::start().await;
    let (acme_key, globex_key) = (SigningKey::ec("a"), SigningKey::ec("g"));
    let mut resolver = IssuerResolver::new().audience("api");
    for (tenant, key) in [("acme", &acme_key), ("globex", &globex_key)] {
        let issuer = idp.realm(tenant, &[key]);
        let keys = RemoteJwks::discover(&issuer).await.unwrap();
        resolver = resolver.issuer(&issuer, keys, tenant.parse().unwrap());
    }
    let acme_iss = format!("{}/realms/acme", idp.base);
    let globex_iss = format!("{}/realms/globex", idp.base);
    let token = acme_key.sign(&claims(&acme_iss, json!({"tenant_id": "someone-else"})));
    let found = resolver.resolve(&bearer(&token)).unwrap().unwrap();
    assert_eq!(
        found.id().unwrap(),
        "acme",
        "the issuer names the tenant, not a claim"
    );
    // A provider's own `tenant_id` claim, whatever it holds, is not read.
    for claim in [json!("Acme Inc"), json!(42)] {
        let token = acme_key.sign(&claims(&acme_iss, json!({"tenant_id": claim})));
        let found = resolver.resolve(&bearer(&token)).unwrap().unwrap();
        assert_eq!(found.id().unwrap(), "acme");
    }
    let found = resolver
        .resolve(&bearer(&globex_key.sign(&claims(&globex_iss, json!({})))))
        .unwrap()
        .unwrap();
    assert_eq!(found.id().unwrap(), "globex");

    // Acme's key cannot speak for globex.
    let forged = SigningKey {
        kid: "g".into(),
        ..acme_key.clone()
    }
    .sign(&claims(&globex_iss, json!({})));
    assert_eq!(
        token_error(resolver.resolve(&bearer(&forged))),
        TokenError::BadSignature
    );
    // An issuer off the allow-list is refused before any fetch.
    let evil_iss = format!("{}/realms/evil", idp.base);
    let evil = acme_key.sign(&claims(&evil_iss, json!({})));
    assert_eq!(
        token_error(resolver.resolve(&bearer(&evil))),
        TokenError::WrongIssuer
    );
    assert_eq!(idp.hits("/realms/evil/.well-known/openid-configuration"), 0);
    assert_eq!(idp.hits("/realms/evil/certs"), 0);
    // The audience is still checked.
    let other_audience = acme_key.sign(&claims(&acme_iss, json!({"aud": "other"})));
    assert_eq!(
        token_error(resolver.resolve(&bearer(&other_audience))),
        TokenError::WrongAudience
    );

    // The host names a tenant too: both must agree.
    let both = SubdomainResolver::new(["example.com"]).agree(resolver);
    assert_eq!(
        both.resolve(&bearer_on("acme.example.com", &token))
            .unwrap()
            .unwrap()
            .id()
            .unwrap(),
        "acme"
    );
    assert!(matches!(
        both.resolve(&bearer_on("globex.example.com", &token)),
        Err(Error::Disagree { .. })
    ));
}

#[tokio::test]
async fn a_template_issuer_checks_its_claim_against_iss() {
    let idp = Provider::start().await;
    let key = SigningKey::ec("common");
    idp.set("/common/keys", json_answer(jwks(&[&key])));
    let keys = RemoteJwks::fetch(&format!("{}/common/keys", idp.base))
        .await
        .unwrap();
    let template = format!("{}/{{tid}}/v2.0", idp.base);
    let resolver = IssuerResolver::new()
        .template(
            &template,
            keys,
            [
                ("0000-aaaa", "contoso".parse().unwrap()),
                ("0000-bbbb", "fabrikam".parse().unwrap()),
            ],
        )
        .unwrap();
    let iss = |tid: &str| format!("{}/{tid}/v2.0", idp.base);
    let token = key.sign(&claims(&iss("0000-aaaa"), json!({"tid": "0000-aaaa"})));
    let found = resolver.resolve(&bearer(&token)).unwrap().unwrap();
    assert_eq!(found.id().unwrap(), "contoso");
    // The claim must repeat the directory the issuer names.
    let mismatched = key.sign(&claims(&iss("0000-aaaa"), json!({"tid": "0000-bbbb"})));
    assert_eq!(
        token_error(resolver.resolve(&bearer(&mismatched))),
        TokenError::WrongIssuer
    );
    // A directory off the allow-list.
    let unknown = key.sign(&claims(&iss("0000-cccc"), json!({"tid": "0000-cccc"})));
    assert_eq!(
        token_error(resolver.resolve(&bearer(&unknown))),
        TokenError::WrongIssuer
    );
    for bad in ["no placeholder", "{a}{b}", "x{}y"] {
        let result = IssuerResolver::new().template(
            bad,
            tenants_core::resolve::JwtKeys::new(),
            [("v", "acme".parse().unwrap())],
        );
        assert!(matches!(result, Err(Error::Config(_))), "{bad}");
    }
}
