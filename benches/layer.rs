//! What does the tenant layer add to a request? The same trivial service called bare
//! and behind `TenantLayer`, per resolver, with a warm catalog; and the same axum app
//! with and without the layer (around the `Router`, per resolver, and given to it
//! with `Router::layer`). Requests are built outside the timed part.
//!
//! Run: `cargo bench -p tenants --bench layer`

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use tenants::resolve::{
    Algorithm, HeaderResolver, JwtKeys, JwtResolver, PathResolver, Resolver, SubdomainResolver,
};
use tenants::tower::TenantLayer;
use tenants::{CachedCatalog, StaticCatalog, TenantCatalog};
use tower::{Layer, Service, ServiceExt, service_fn};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-bench-secret";
const RSA_PRIVATE: &[u8] = include_bytes!("../crates/tenants-core/tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../crates/tenants-core/tests/fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../crates/tenants-core/tests/fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../crates/tenants-core/tests/fixtures/ec_public.pem");

/// Polls a future that must finish without waiting.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked call must not wait"),
    }
}

fn catalog() -> CachedCatalog<StaticCatalog> {
    let mut json = String::from(r#"{"tenants": {"acme": {"model": "pool"}"#);
    for i in 0..1000 {
        json.push_str(&format!(r#", "tenant-{i}": {{"model": "pool"}}"#));
    }
    json.push_str("}}");
    // A TTL longer than the whole run: the benches measure warm hits.
    let catalog = CachedCatalog::builder(StaticCatalog::from_json_str(&json).unwrap())
        .ttl(Duration::from_secs(3600))
        .build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(catalog.get("acme".parse().unwrap())).unwrap();
    catalog
}

/// `uri` as hyper hands it over: hyper parses the request target out of the
/// connection's read buffer and keeps it there, so the `Uri` holds a shared slice,
/// which a clone only counts. Slicing a copied buffer makes the same kind of `Bytes`
/// (`Uri::try_from(&str)`'s plain copy would allocate on its first clone).
fn target(uri: &str) -> Uri {
    let buffer = Bytes::copy_from_slice(uri.as_bytes());
    Uri::from_maybe_shared(buffer.slice(..)).unwrap()
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Request<String> {
    let mut builder = Request::get(target(uri))
        .header("host", "app.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0",
        )
        .header("accept", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(String::new()).unwrap()
}

/// The layer against the bare service; `decode`, for token resolvers, is
/// `jsonwebtoken::decode` of the same token alone, measured in the same group.
fn compare<R: Resolver + 'static>(
    c: &mut Criterion,
    name: &str,
    resolver: R,
    make: impl Fn() -> Request<String> + Copy,
    decode: Option<&dyn Fn()>,
) {
    let bare = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut layered = TenantLayer::new(resolver, catalog()).layer(bare);
    // The layered service must really admit the request.
    assert_eq!(ready(layered.call(make())).unwrap().status(), 200, "{name}");
    let mut bare = bare;
    let mut group = c.benchmark_group(format!("layer {name}"));
    group.bench_function("baseline: bare service", |b| {
        b.iter_batched(
            make,
            |req| ready(bare.call(black_box(req))),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("TenantLayer", |b| {
        b.iter_batched(
            make,
            |req| ready(layered.call(black_box(req))),
            BatchSize::SmallInput,
        )
    });
    if let Some(decode) = decode {
        group.bench_function("jsonwebtoken::decode alone (comparison)", |b| {
            b.iter(decode)
        });
    }
    group.finish();
}

/// `jsonwebtoken::decode` of `bearer` (`Bearer <token>`) with `key`.
fn decode_alone(
    bearer: &'static str,
    key: jsonwebtoken::DecodingKey,
    algorithm: Algorithm,
) -> impl Fn() {
    let token = bearer.trim_start_matches("Bearer ");
    let validation = jsonwebtoken::Validation::new(algorithm);
    move || {
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            black_box(token),
            &key,
            &validation,
        )
        .unwrap();
    }
}

fn resolvers(c: &mut Criterion) {
    compare(
        c,
        "header",
        HeaderResolver::new("x-tenant-id"),
        || request("/todos", &[("x-tenant-id", "acme")]),
        None,
    );
    compare(
        c,
        "subdomain",
        SubdomainResolver::new(["example.com"]),
        || {
            let mut req = request("/todos", &[]);
            req.headers_mut()
                .insert("host", "acme.example.com".parse().unwrap());
            req
        },
        None,
    );
    compare(
        c,
        "path",
        PathResolver::new("/t/{tenant}").unwrap(),
        || request("/t/acme/todos", &[]),
        None,
    );

    static HS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static RS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static ES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let claims = serde_json::json!({"sub": "u", "exp": 4_000_000_000u64, "tenant_id": "acme"});
    let hs = HS.get_or_init(|| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        format!("Bearer {token}")
    });
    let rs = RS.get_or_init(|| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::RS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        )
        .unwrap();
        format!("Bearer {token}")
    });
    ES.get_or_init(|| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        )
        .unwrap();
        format!("Bearer {token}")
    });
    compare(
        c,
        "jwt HS256",
        JwtResolver::new(JwtKeys::new().hmac(SECRET, Algorithm::HS256).unwrap()),
        || request("/todos", &[("authorization", HS.get().unwrap())]),
        Some(&decode_alone(
            HS.get().unwrap(),
            jsonwebtoken::DecodingKey::from_secret(SECRET),
            Algorithm::HS256,
        )),
    );
    compare(
        c,
        "jwt RS256",
        JwtResolver::new(
            JwtKeys::new()
                .rsa_pem(RSA_PUBLIC, Algorithm::RS256)
                .unwrap(),
        ),
        || request("/todos", &[("authorization", RS.get().unwrap())]),
        Some(&decode_alone(
            RS.get().unwrap(),
            jsonwebtoken::DecodingKey::from_rsa_pem(RSA_PUBLIC).unwrap(),
            Algorithm::RS256,
        )),
    );
    compare(
        c,
        "jwt ES256",
        JwtResolver::new(JwtKeys::new().ec_pem(EC_PUBLIC, Algorithm::ES256).unwrap()),
        || request("/todos", &[("authorization", ES.get().unwrap())]),
        Some(&decode_alone(
            ES.get().unwrap(),
            jsonwebtoken::DecodingKey::from_ec_pem(EC_PUBLIC).unwrap(),
            Algorithm::ES256,
        )),
    );
    let _ = (hs, rs);
}

/// The same axum app with and without the layer, for the header, subdomain and path
/// resolvers, in one group: the layer wrapped around the whole `Router`
/// (`layer.layer(router)`, served as it is) and given to it (`Router::layer`, which
/// wraps each route: axum then clones and boxes the layered route per request).
/// Requests come as hyper hands them over: a fresh head, no extensions (hyper adds
/// one only for an upgrade).
fn axum_router(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("axum router");
    let routes = || Router::new().route("/todos", get(|| async { "ok" }));
    let bare = routes();
    group.bench_function("baseline: Router", |b| {
        b.to_async(&rt).iter_batched(
            || axum_request("/todos", "app.example.com", None),
            |req| bare.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
    let header = layer(HeaderResolver::new("x-tenant-id"));
    let make = || axum_request("/todos", "app.example.com", Some(("x-tenant-id", "acme")));
    around(&mut group, &rt, "header", header, make);
    let subdomain = layer(SubdomainResolver::new(["example.com"]));
    let make = || axum_request("/todos", "acme.example.com", None);
    around(&mut group, &rt, "subdomain", subdomain, make);
    let path = layer(PathResolver::new("/t/{tenant}").unwrap()).strip_path_prefix(true);
    let make = || axum_request("/t/acme/todos", "app.example.com", None);
    around(&mut group, &rt, "path", path, make);
    let make = || axum_request("/todos", "acme.example.com", None);
    let inside = routes().layer(layer(SubdomainResolver::new(["example.com"])));
    assert_eq!(
        rt.block_on(inside.clone().oneshot(make()))
            .unwrap()
            .status(),
        200
    );
    group.bench_function("Router::layer(TenantLayer), subdomain", |b| {
        b.to_async(&rt).iter_batched(
            make,
            |req| inside.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// `layer` wrapped around the app's `Router`, against requests from `make`.
fn around<R: Resolver + 'static>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    layer: TenantLayer<R, CachedCatalog<StaticCatalog>>,
    make: impl Fn() -> Request<Body> + Copy,
) {
    let app = layer.layer(Router::new().route("/todos", get(|| async { "ok" })));
    assert_eq!(
        rt.block_on(app.clone().oneshot(make())).unwrap().status(),
        200
    );
    group.bench_function(format!("TenantLayer around Router, {name}"), |b| {
        b.to_async(rt)
            .iter_batched(make, |req| app.clone().oneshot(req), BatchSize::SmallInput)
    });
}

/// The layer with the benches' warm catalog.
fn layer<R: Resolver + 'static>(resolver: R) -> TenantLayer<R, CachedCatalog<StaticCatalog>> {
    TenantLayer::new(resolver, catalog())
}

/// A request head as hyper builds it from the wire: method, URI, the headers a
/// browser's API call sends, no extensions.
fn axum_request(uri: &str, host: &str, header: Option<(&str, &str)>) -> Request<Body> {
    let mut builder = Request::get(target(uri))
        .header("host", host)
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0",
        )
        .header("accept", "application/json");
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    builder.body(Body::empty()).unwrap()
}

criterion_group!(benches, resolvers, axum_router);
criterion_main!(benches);
