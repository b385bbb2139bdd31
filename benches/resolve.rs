//! What does finding the tenant cost? Each resolver on a realistic request, and a warm
//! cached-catalog hit, each beside the plain work it replaces, in the same run.
//!
//! Run: `cargo bench -p tenants --bench resolve`

use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http::request::Parts;
use tenants::resolve::{
    Algorithm, HeaderResolver, JwtKeys, JwtResolver, PathResolver, Resolver, SubdomainResolver,
};
use tenants::{CachedCatalog, DataModel, StaticCatalog, Tenant, TenantCatalog, TenantId};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-bench-secret";
const RSA_PRIVATE: &[u8] = include_bytes!("../crates/tenants-core/tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../crates/tenants-core/tests/fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../crates/tenants-core/tests/fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../crates/tenants-core/tests/fixtures/ec_public.pem");

/// A request head as a browser sends it.
fn request(uri: &str, host: &str, extra: &[(&str, String)]) -> Parts {
    let mut builder = Request::get(uri)
        .header("host", host)
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0",
        )
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, deflate, br")
        .header("cookie", "theme=dark; lang=en");
    for (name, value) in extra {
        builder = builder.header(*name, value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// Polls a future that is expected to finish without waiting (a cache hit) once.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a cache hit must not wait"),
    }
}

fn resolvers(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    let parts = request(
        "/todos",
        "app.example.com",
        &[("x-tenant-id", "acme".into())],
    );
    let resolver = HeaderResolver::new("x-tenant-id");
    group.bench_function("baseline: headers.get", |b| {
        b.iter(|| {
            black_box(&parts)
                .headers
                .get("x-tenant-id")
                .map(|v| v.len())
        })
    });
    group.bench_function("HeaderResolver", |b| {
        b.iter(|| resolver.resolve(black_box(&parts)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("subdomain");
    let parts = request("/todos", "acme.example.com:443", &[]);
    let resolver = SubdomainResolver::new(["example.com"]);
    group.bench_function("baseline: host split_once", |b| {
        b.iter(|| {
            black_box(&parts)
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.split_once('.'))
                .map(|(label, _)| label.len())
        })
    });
    group.bench_function("SubdomainResolver", |b| {
        b.iter(|| resolver.resolve(black_box(&parts)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("path");
    let parts = request("/t/acme/todos/42?include=tags", "app.example.com", &[]);
    let resolver = PathResolver::new("/t/{tenant}").unwrap();
    group.bench_function("baseline: path split nth", |b| {
        b.iter(|| black_box(&parts).uri.path().split('/').nth(2).map(str::len))
    });
    group.bench_function("PathResolver", |b| {
        b.iter(|| resolver.resolve(black_box(&parts)).unwrap())
    });
    group.finish();

    let claims = serde_json::json!({"sub": "user-1", "exp": 4_000_000_000u64, "tenant_id": "acme"});
    for (algorithm, encoding, keys) in [
        (
            Algorithm::HS256,
            jsonwebtoken::EncodingKey::from_secret(SECRET),
            JwtKeys::new().hmac(SECRET, Algorithm::HS256).unwrap(),
        ),
        (
            Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            JwtKeys::new()
                .rsa_pem(RSA_PUBLIC, Algorithm::RS256)
                .unwrap(),
        ),
        (
            Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
            JwtKeys::new().ec_pem(EC_PUBLIC, Algorithm::ES256).unwrap(),
        ),
    ] {
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, &encoding)
            .unwrap();
        let parts = request(
            "/todos",
            "app.example.com",
            &[("authorization", format!("Bearer {token}"))],
        );
        let resolver = JwtResolver::new(keys);
        let decoding = match algorithm {
            Algorithm::HS256 => jsonwebtoken::DecodingKey::from_secret(SECRET),
            Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_pem(EC_PUBLIC).unwrap(),
            _ => jsonwebtoken::DecodingKey::from_rsa_pem(RSA_PUBLIC).unwrap(),
        };
        let validation = jsonwebtoken::Validation::new(algorithm);
        let mut group = c.benchmark_group(format!("jwt {algorithm:?}"));
        group.bench_function("baseline: jsonwebtoken::decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                    black_box(&token),
                    &decoding,
                    &validation,
                )
                .unwrap()
            })
        });
        group.bench_function("JwtResolver", |b| {
            b.iter(|| resolver.resolve(black_box(&parts)).unwrap())
        });
        group.finish();
    }
}

fn catalog(c: &mut Criterion) {
    let tenants: Vec<Tenant> = (0..1000)
        .map(|i| {
            Tenant::new(
                TenantId::parse(&format!("tenant-{i}")).unwrap(),
                DataModel::Pool,
            )
        })
        .chain([Tenant::new("acme".parse().unwrap(), DataModel::Pool)])
        .collect();
    let map: HashMap<TenantId, Arc<Tenant>> = tenants
        .iter()
        .map(|t| (t.id, Arc::new(t.clone())))
        .collect();
    // A TTL longer than the whole run: these groups measure hits, and the default
    // 60 s would expire the warm entry halfway through.
    let cached = CachedCatalog::builder(StaticCatalog::new(tenants).unwrap())
        .ttl(Duration::from_secs(3600))
        .build();
    let acme: TenantId = "acme".parse().unwrap();
    ready(cached.get(acme)).unwrap().unwrap();

    let mut group = c.benchmark_group("catalog hit");
    group.bench_function("baseline: HashMap get + Arc clone", |b| {
        b.iter(|| map.get(black_box(&acme)).cloned())
    });
    group.bench_function("CachedCatalog::get_now", |b| {
        b.iter(|| cached.get_now(black_box(acme)).unwrap())
    });
    group.bench_function("CachedCatalog::get (async, boxed)", |b| {
        b.iter(|| ready(cached.get(black_box(acme))).unwrap())
    });
    // The cache store CachedCatalog does not use, for comparison: moka's hit.
    let moka: moka::sync::Cache<TenantId, Arc<Tenant>> = moka::sync::Cache::new(10_000);
    for (id, tenant) in &map {
        moka.insert(*id, tenant.clone());
    }
    group.bench_function("moka::sync::Cache::get (comparison)", |b| {
        b.iter(|| moka.get(black_box(&acme)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("subdomain + catalog hit");
    let parts = request("/todos", "acme.example.com", &[]);
    let resolver = SubdomainResolver::new(["example.com"]);
    group.bench_function("baseline: host split + HashMap get", |b| {
        b.iter(|| {
            let host = black_box(&parts)
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok());
            let label = host
                .and_then(|h| h.split_once('.'))
                .map(|(l, _)| l)
                .unwrap_or("");
            map.get(label).cloned()
        })
    });
    group.bench_function("SubdomainResolver + CachedCatalog", |b| {
        b.iter(|| {
            let found = resolver.resolve(black_box(&parts)).unwrap().unwrap();
            cached.get_now(found.id().unwrap()).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, resolvers, catalog);
criterion_main!(benches);
