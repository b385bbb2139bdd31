//! The tenant layer through a real axum app: what reaches the handler, and every
//! rejection's status, headers and problem body.
#![cfg(feature = "axum")]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;
use tenants_core::resolve::{
    Algorithm, CustomDomainResolver, HeaderResolver, JwtKeys, JwtResolver, PathResolver,
    ResolverExt, SubdomainResolver, VerifiedToken,
};
use tenants_core::{CachedCatalog, OptionsSection, StaticCatalog, TenantCatalog, TenantId};
use tenants_tower::{
    CurrentTenant, NoTenant, StrippedPrefix, TenantLayer, TenantOptions, TenantRejection,
};
use tower::ServiceExt;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-layer-test";

fn catalog() -> StaticCatalog {
    StaticCatalog::from_json_str(
        r#"{"tenants": {
        "acme": {"name": "Acme", "model": "pool", "domains": ["shop.acme.test"],
                 "options": {"branding": {"color": "red"}}},
        "globex": {"name": "Globex", "model": "pool", "status": "suspended"},
        "initech": {"name": "Initech", "model": "pool", "status": "deleted"},
        "umbrella": {"name": "Umbrella", "model": "pool", "options": {"branding": {"color": 7}}}
    }}"#,
    )
    .unwrap()
}

#[derive(Deserialize)]
struct Branding {
    color: String,
}
impl OptionsSection for Branding {
    const SECTION: &'static str = "branding";
}

fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|CurrentTenant(t): CurrentTenant| async move { t.name.clone() }),
        )
        .route(
            "/todos",
            get(
                |CurrentTenant(t): CurrentTenant, uri: http::Uri| async move {
                    format!("{} {}", t.id, uri)
                },
            ),
        )
        .route(
            "/link",
            get(|prefix: Option<StrippedPrefix>| async move {
                // A link that keeps the tenant's prefix.
                format!(
                    "{}/todos/1",
                    prefix.as_ref().map_or("", StrippedPrefix::as_str)
                )
            }),
        )
        .route(
            "/maybe",
            get(|t: Option<CurrentTenant>| async move {
                t.map_or("central".to_owned(), |t| t.id.to_string())
            }),
        )
        .route(
            "/branding",
            get(|TenantOptions(b): TenantOptions<Branding>| async move { b.color }),
        )
        .route(
            "/token",
            get(|token: Option<Extension<Arc<VerifiedToken>>>| async move {
                token.map_or("none".to_owned(), |t| t.subject().unwrap_or("").to_owned())
            }),
        )
}

async fn send<S>(app: &S, request: Request<Body>) -> (StatusCode, http::HeaderMap, String)
where
    S: tower::Service<Request<Body>, Response = http::Response<Body>> + Clone,
    S::Error: std::fmt::Debug,
{
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn host(host: &str, path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", host)
        .body(Body::empty())
        .unwrap()
}

fn problem(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

fn subdomain_app() -> Router {
    routes().layer(TenantLayer::new(
        SubdomainResolver::new(["example.com"]),
        catalog(),
    ))
}

#[tokio::test]
async fn the_tenant_reaches_the_handler() {
    let app = subdomain_app();
    let (status, _, body) = send(&app, host("acme.example.com", "/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Acme"));
    let (status, _, body) = send(&app, host("ACME.example.com:8080", "/branding")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "red"));
}

#[tokio::test]
async fn every_rejection_has_its_status_and_problem_body() {
    let app = subdomain_app();
    let cases = [
        (
            "globex.example.com",
            StatusCode::FORBIDDEN,
            "urn:tenants:problem:suspended-tenant",
        ),
        (
            "initech.example.com",
            StatusCode::NOT_FOUND,
            "urn:tenants:problem:unknown-tenant",
        ),
        (
            "nobody.example.com",
            StatusCode::NOT_FOUND,
            "urn:tenants:problem:unknown-tenant",
        ),
        (
            "bad_id.example.com",
            StatusCode::BAD_REQUEST,
            "urn:tenants:problem:malformed-tenant",
        ),
        (
            "127.0.0.1",
            StatusCode::BAD_REQUEST,
            "urn:tenants:problem:malformed-tenant",
        ),
        (
            "evil.test",
            StatusCode::BAD_REQUEST,
            "urn:tenants:problem:malformed-tenant",
        ),
        (
            "example.com",
            StatusCode::BAD_REQUEST,
            "urn:tenants:problem:missing-tenant",
        ),
    ];
    for (h, status, kind) in cases {
        let (got, headers, body) = send(&app, host(h, "/")).await;
        assert_eq!(got, status, "{h}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json");
        let p = problem(&body);
        assert_eq!(p["type"], kind, "{h}");
        assert_eq!(p["status"], status.as_u16());
        assert!(p["title"].is_string() && p["detail"].is_string());
    }
    // The deleted tenant is reported exactly like an unknown one.
    let (_, _, deleted) = send(&app, host("initech.example.com", "/")).await;
    assert_eq!(problem(&deleted)["detail"], "tenant initech does not exist");
    // A broken options section is a 500 whose details stay in the logs.
    let (status, _, body) = send(&app, host("umbrella.example.com", "/branding")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(problem(&body)["detail"], "see the server logs");
}

#[tokio::test]
async fn suspended_status_and_responder_are_configurable() {
    let app = routes().layer(
        TenantLayer::new(SubdomainResolver::new(["example.com"]), catalog())
            .suspended_status(StatusCode::PAYMENT_REQUIRED)
            .responder(|r: &TenantRejection| {
                let mut response = http::Response::new(format!("custom {}", r.status().as_u16()));
                *response.status_mut() = r.status();
                response
            }),
    );
    let (status, _, body) = send(&app, host("globex.example.com", "/")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::PAYMENT_REQUIRED, "custom 402")
    );
}

#[tokio::test]
async fn no_tenant_policies() {
    let resolver = || SubdomainResolver::new(["example.com"]);
    let pass =
        routes().layer(TenantLayer::new(resolver(), catalog()).on_no_tenant(NoTenant::PassThrough));
    assert_eq!(
        send(&pass, host("example.com", "/maybe")).await.2,
        "central"
    );
    assert_eq!(
        send(&pass, host("acme.example.com", "/maybe")).await.2,
        "acme"
    );
    let (status, _, body) = send(&pass, host("example.com", "/")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the extractor still needs a tenant"
    );
    assert_eq!(problem(&body)["type"], "urn:tenants:problem:missing-tenant");
    assert_eq!(
        send(&pass, host("bad_id.example.com", "/maybe")).await.0,
        StatusCode::BAD_REQUEST,
        "malformed is never no tenant"
    );

    let acme: TenantId = "acme".parse().unwrap();
    // A load balancer's health check by address reaches a pass-through route when
    // foreign hosts mean no tenant; a port out of range stays malformed.
    let health = routes().layer(
        TenantLayer::new(resolver().no_tenant_for_foreign_hosts(), catalog())
            .on_no_tenant(NoTenant::PassThrough),
    );
    for address in ["10.0.0.5:8080", "[fd00::5]:8080"] {
        let (status, _, body) = send(&health, host(address, "/maybe")).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "central"),
            "{address}"
        );
    }
    assert_eq!(
        send(&health, host("10.0.0.5:80800", "/maybe")).await.0,
        StatusCode::BAD_REQUEST
    );
    let fallback = routes()
        .layer(TenantLayer::new(resolver(), catalog()).on_no_tenant(NoTenant::Default(acme)));
    assert_eq!(
        send(&fallback, host("example.com", "/maybe")).await.2,
        "acme"
    );
}

#[tokio::test]
async fn path_prefix_is_stripped_for_the_inner_router() {
    // Rewriting the path must happen before routing: wrap the router, don't
    // `Router::layer` (which runs after routing).
    let layer = TenantLayer::new(PathResolver::new("/t/{tenant}").unwrap(), catalog())
        .strip_path_prefix(true);
    let app = tower::Layer::layer(&layer, routes());
    let (status, _, body) = send(&app, host("api.test", "/t/acme/todos?page=2")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "acme /todos?page=2")
    );
    let (status, _, body) = send(&app, host("api.test", "/t/acme")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Acme"));
    // Handlers learn the stripped prefix to build links.
    let (status, _, body) = send(&app, host("api.test", "/t/acme/link")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "/t/acme/todos/1"));
    // A dot segment after the tenant would climb out of its prefix: malformed.
    for climbing in ["/t/acme/x/../../t/globex/todos", "/t/acme/%2e%2e/globex"] {
        let (status, _, body) = send(&app, host("api.test", climbing)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{climbing}");
        assert!(
            problem(&body)["detail"]
                .as_str()
                .unwrap()
                .contains("dot segment"),
            "{body}"
        );
    }
    let unstripped = routes().layer(TenantLayer::new(
        PathResolver::new("/t/{tenant}").unwrap(),
        catalog(),
    ));
    assert_eq!(
        send(&unstripped, host("api.test", "/t/acme/todos")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn custom_domains_and_cache_misses_take_the_async_path() {
    let resolver = SubdomainResolver::new(["example.com"])
        .no_tenant_for_foreign_hosts()
        .or(CustomDomainResolver::new());
    let cached = CachedCatalog::new(catalog());
    let app = routes().layer(TenantLayer::new(resolver, cached));
    assert_eq!(send(&app, host("shop.acme.test", "/")).await.2, "Acme");
    assert_eq!(
        send(&app, host("acme.example.com", "/")).await.2,
        "Acme",
        "cold cache"
    );
    assert_eq!(
        send(&app, host("acme.example.com", "/")).await.2,
        "Acme",
        "warm cache"
    );
    let (status, _, body) = send(&app, host("unknown.test", "/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        problem(&body)["detail"],
        "domain unknown.test does not exist"
    );
    assert_eq!(
        send(&app, host("globex.example.com", "/")).await.0,
        StatusCode::FORBIDDEN
    );
}

/// A catalog with every answer at hand but whose store is down: only requests
/// answered without waiting succeed.
struct AtHand(StaticCatalog);

#[async_trait::async_trait]
impl TenantCatalog for AtHand {
    async fn get(
        &self,
        _: TenantId,
    ) -> Result<Option<Arc<tenants_core::Tenant>>, tenants_core::Error> {
        Err(tenants_core::Error::unavailable(Down))
    }
    fn get_now(&self, id: TenantId) -> Option<Option<Arc<tenants_core::Tenant>>> {
        self.0.get_now(id)
    }
    async fn get_by_domain(
        &self,
        _: &str,
    ) -> Result<Option<Arc<tenants_core::Tenant>>, tenants_core::Error> {
        Err(tenants_core::Error::unavailable(Down))
    }
    fn get_now_by_domain(&self, domain: &str) -> Option<Option<Arc<tenants_core::Tenant>>> {
        self.0.get_now_by_domain(domain)
    }
    async fn list(&self) -> Result<Vec<Arc<tenants_core::Tenant>>, tenants_core::Error> {
        Err(tenants_core::Error::unavailable(Down))
    }
}

#[tokio::test]
async fn answers_at_hand_need_no_lookup_for_ids_and_domains() {
    let resolver = SubdomainResolver::new(["example.com"])
        .no_tenant_for_foreign_hosts()
        .or(CustomDomainResolver::new());
    let app = routes().layer(TenantLayer::new(resolver, AtHand(catalog())));
    assert_eq!(send(&app, host("acme.example.com", "/")).await.2, "Acme");
    assert_eq!(send(&app, host("shop.acme.test", "/")).await.2, "Acme");
}

#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("catalog store down")
    }
}

impl std::error::Error for Down {}

/// A catalog whose store is down.
struct BrokenCatalog;

#[async_trait::async_trait]
impl TenantCatalog for BrokenCatalog {
    async fn get(
        &self,
        _: TenantId,
    ) -> Result<Option<Arc<tenants_core::Tenant>>, tenants_core::Error> {
        Err(tenants_core::Error::unavailable(Down))
    }
    async fn get_by_domain(
        &self,
        _: &str,
    ) -> Result<Option<Arc<tenants_core::Tenant>>, tenants_core::Error> {
        Err(tenants_core::Error::unavailable(Down))
    }
    async fn list(&self) -> Result<Vec<Arc<tenants_core::Tenant>>, tenants_core::Error> {
        Err(tenants_core::Error::unavailable(Down))
    }
}

#[tokio::test]
async fn catalog_outage_is_a_503_with_retry_after() {
    let app = routes().layer(
        TenantLayer::new(HeaderResolver::new("x-tenant-id"), BrokenCatalog)
            .retry_after(Duration::from_secs(7)),
    );
    let request = Request::get("/")
        .header("x-tenant-id", "acme")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(
        problem(&body)["type"],
        "urn:tenants:problem:catalog-unavailable"
    );
    assert!(!body.contains("down"), "store errors stay in the logs");
}

fn token(claims: Value) -> String {
    tenants_core::resolve::install_crypto_provider();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[tokio::test]
async fn membership_guard_and_token_failures() {
    let jwt = JwtResolver::new(JwtKeys::new().hmac(SECRET, Algorithm::HS256).unwrap())
        .members_claim("tenants");
    let app = routes().layer(
        TenantLayer::new(SubdomainResolver::new(["example.com"]), catalog())
            .membership(move |parts: &http::request::Parts| jwt.verify(parts)),
    );
    let exp = 4_000_000_000u64;
    let member = token(serde_json::json!({"sub": "ann", "exp": exp, "tenants": ["acme"]}));
    let outsider = token(serde_json::json!({"sub": "bob", "exp": exp, "tenants": ["umbrella"]}));
    let request = |h: &str, t: Option<&str>| {
        let mut b = Request::get("/token").header("host", h);
        if let Some(t) = t {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::empty()).unwrap()
    };
    let (status, _, body) = send(&app, request("acme.example.com", Some(&member))).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "ann"),
        "the token reaches the handler"
    );
    let (status, _, body) = send(&app, request("acme.example.com", Some(&outsider))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem(&body)["type"], "urn:tenants:problem:not-a-member");
    let (status, headers, body) =
        send(&app, request("acme.example.com", Some("forged.token.here"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(problem(&body)["type"], "urn:tenants:problem:invalid-token");
    let expired = token(serde_json::json!({"sub": "ann", "exp": 1, "tenants": ["acme"]}));
    assert_eq!(
        send(&app, request("acme.example.com", Some(&expired)))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, request("acme.example.com", None)).await.2,
        "none",
        "no token: the app decides"
    );
}

#[tokio::test]
async fn token_tenant_must_agree_with_the_header() {
    let jwt = JwtResolver::new(JwtKeys::new().hmac(SECRET, Algorithm::HS256).unwrap());
    let app = routes().layer(TenantLayer::new(
        HeaderResolver::new("x-tenant-id").agree(jwt),
        catalog(),
    ));
    let t = token(serde_json::json!({"sub": "ann", "exp": 4_000_000_000u64, "tenant_id": "acme"}));
    let request = |tenant: &str| {
        Request::get("/")
            .header("x-tenant-id", tenant)
            .header("authorization", format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, request("acme")).await.0, StatusCode::OK);
    let (status, _, body) = send(&app, request("umbrella")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        problem(&body)["type"],
        "urn:tenants:problem:malformed-tenant"
    );
}

#[tokio::test]
async fn hostile_requests_never_panic() {
    let app = subdomain_app();
    let hosts: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        vec![b'a'; 10_000],
        b"a.example.com:99999999999".to_vec(),
        b"[::1".to_vec(),
        b"\xff\xfe.example.com".to_vec(),
        b"..example.com".to_vec(),
        b"a b.example.com".to_vec(),
        "é.example.com".as_bytes().to_vec(),
    ];
    for h in hosts {
        let Ok(value) = http::HeaderValue::from_bytes(&h) else {
            continue;
        };
        let request = Request::get("/")
            .header("host", value)
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = send(&app, request).await;
        assert!(status.is_client_error(), "{h:?} → {status}");
    }
}

#[tokio::test]
async fn the_task_scope_carries_the_tenant_to_code_without_the_request() {
    async fn repository_call() -> String {
        tenants_tower::task::current().map_or("none".to_owned(), |t| t.id.to_string())
    }
    let routes = || {
        Router::new().route(
            "/",
            get(|| async {
                let job = tenants_tower::task::spawn_with_tenant(repository_call());
                format!("{} {}", repository_call().await, job.await.unwrap())
            }),
        )
    };
    let scoped = routes().layer(
        TenantLayer::new(SubdomainResolver::new(["example.com"]), catalog()).task_scope(true),
    );
    let (status, _, body) = send(&scoped, host("acme.example.com", "/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "acme acme"));
    // A cache miss goes through the lookup future: the same scope.
    let cached = routes().layer(
        TenantLayer::new(
            SubdomainResolver::new(["example.com"]),
            CachedCatalog::new(catalog()),
        )
        .task_scope(true),
    );
    assert_eq!(
        send(&cached, host("acme.example.com", "/")).await.2,
        "acme acme"
    );
    // Requests do not see each other's tenant, nor one after the scope ended.
    assert_eq!(
        send(&scoped, host("umbrella.example.com", "/")).await.2,
        "umbrella umbrella"
    );
    assert_eq!(tenants_tower::task::current().map(|t| t.id), None);

    let unscoped = routes().layer(TenantLayer::new(
        SubdomainResolver::new(["example.com"]),
        catalog(),
    ));
    assert_eq!(
        send(&unscoped, host("acme.example.com", "/")).await.2,
        "none none"
    );
}

/// Wrapped around the whole `Router` (`layer.layer(router)`), the layer is served
/// by `axum::serve` as it is: the tenant is resolved before routing, an unknown one
/// never reaches it. It costs less than `Router::layer`, which wraps every route
/// and so makes axum clone and box the layered route on each request
/// (`benches/layer.rs`, group "axum router").
#[tokio::test]
async fn a_layer_around_the_router_is_served_as_it_is() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::Layer;

    let hello = |CurrentTenant(tenant): CurrentTenant| async move { tenant.id.to_string() };
    let router = Router::new().route("/hello", get(hello));
    let layer = TenantLayer::new(
        HeaderResolver::new("x-tenant-id"),
        CachedCatalog::new(catalog()),
    );
    let app = axum::ServiceExt::<Request<Body>>::into_make_service(layer.layer(router));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    for (tenant, expected) in [("acme", "HTTP/1.1 200"), ("nobody", "HTTP/1.1 404")] {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "GET /hello HTTP/1.1\r\nhost: app.test\r\nx-tenant-id: {tenant}\r\n\
             connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with(expected), "{tenant}: {response}");
        if tenant == "acme" {
            assert!(response.ends_with("\r\n\r\nacme"), "{response}");
        }
    }
}
