//! What does TLS cost? On a cluster that takes TLS connections only, with
//! `sslmode=verify-full` on both sides:
//!
//! - W1 (a transaction holding one point query, 100 pool tenants, 8 concurrent
//!   clients) through `TenantRouter` and, in the same run, through the raw driver
//!   pool on the same TLS URL (the application filtering by tenant itself), as in
//!   `benches/router.rs`;
//! - connection set-up: opening and closing one connection, plain (to the plain
//!   test cluster, the baseline) and with TLS, on each driver.
//!
//! `scripts/bench-medians` prints each group's entries against its baseline.
//!
//! Run: `cargo bench -p tenants --bench tls --features sqlx,deadpool`
//! (starts two throwaway PostgreSQL clusters, one of them TLS-only).

mod common;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::Connection;
use tenants::db::tls::TlsSettings;
use tenants::db::tokio_postgres;
use tenants::db::{Deadpool, Sqlx, TenantRouter};
use tenants::{DataModel, Tenant};
use tokio_postgres_rustls::MakeRustlsConnect;

const TENANTS: usize = 100;
const ROWS: i32 = 100;
const CLIENTS: u64 = 8;
const POINT: &str = "SELECT payload FROM items WHERE id = $1";
const RAW_POINT: &str = "SELECT payload FROM items WHERE tenant_id = $2 AND id = $1";

/// Pool tenants with rows on the TLS-only cluster: the admin URL and the
/// application role's URL, both `verify-full`.
fn setup() -> (String, String, Vec<Tenant>) {
    let pg = tenants_test_support::tls_postgres();
    let shared = tenants_test_support::unique_name("bench");
    let role = tenants_test_support::unique_name("app");
    pg.psql(
        pg.admin_url(),
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'bench'"),
    );
    pg.psql(pg.admin_url(), &format!("CREATE DATABASE {shared}"));
    let admin = pg.url_for(&shared);
    pg.psql(
        &admin,
        &format!(
            "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL,
                 payload text NOT NULL, PRIMARY KEY (tenant_id, id));
             ALTER TABLE items ENABLE ROW LEVEL SECURITY;
             ALTER TABLE items FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_rows ON items
                 USING (tenant_id = current_setting('tenants.tenant_id', true));
             GRANT SELECT ON items TO {role};
             INSERT INTO items SELECT 'p' || t, g, 'p' || t || '-' || g
                 FROM generate_series(0, {}) t, generate_series(1, {ROWS}) g;",
            TENANTS - 1
        ),
    );
    let tenants = (0..TENANTS)
        .map(|i| Tenant::new(format!("p{i}").parse().unwrap(), DataModel::Pool))
        .collect();
    (admin, pg.url_as(&role, "bench", &shared), tenants)
}

fn measured_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    group
}

/// A tokio-postgres configuration and its rustls connector, as the URL says.
fn tokio_postgres(url: &str) -> (tokio_postgres::Config, MakeRustlsConnect) {
    let (tls, rest) = TlsSettings::from_url(url).unwrap();
    let mut config: tokio_postgres::Config = rest.parse().unwrap();
    config.ssl_mode(match tls.mode() {
        tenants::db::tls::SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        _ => tokio_postgres::config::SslMode::Require,
    });
    (config, MakeRustlsConnect::new(tls.client_config().unwrap()))
}

fn w1_sqlx(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    admin: &str,
    app: &str,
    tenants: &Arc<Vec<Tenant>>,
) {
    let router: TenantRouter<Sqlx> = TenantRouter::builder()
        .server("main", app)
        .pool_connections(CLIENTS as u32)
        .build()
        .unwrap();
    // sqlx's own parser: verify-full with the same CA file.
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect_lazy(admin)
        .unwrap();
    let mut group = measured_group(c, "W1 transaction over TLS, sqlx, pool");
    let tenants_raw = tenants.clone();
    group.bench_function("baseline: raw pool", |b| {
        b.iter_custom(|iters| {
            let (raw, tenants) = (raw.clone(), tenants_raw.clone());
            common::run(rt, iters, CLIENTS, move |n| {
                let (raw, tenant) = (raw.clone(), tenants[common::pick(n, TENANTS, ROWS).0].id);
                async move {
                    let mut tx = raw.begin().await.unwrap();
                    sqlx::query_scalar::<_, String>(RAW_POINT)
                        .bind(common::pick(n, TENANTS, ROWS).1)
                        .bind(tenant.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
    });
    group.bench_function("TenantRouter", |b| {
        b.iter_custom(|iters| {
            let (router, tenants) = (router.clone(), tenants.clone());
            common::run(rt, iters, CLIENTS, move |n| {
                let (router, tenants) = (router.clone(), tenants.clone());
                async move {
                    let mut tx = router
                        .begin(&tenants[common::pick(n, TENANTS, ROWS).0])
                        .await
                        .unwrap();
                    sqlx::query_scalar::<_, String>(POINT)
                        .bind(common::pick(n, TENANTS, ROWS).1)
                        .fetch_one(&mut *tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
    });
    group.finish();
}

fn w1_deadpool(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    admin: &str,
    app: &str,
    tenants: &Arc<Vec<Tenant>>,
) {
    let router: TenantRouter<Deadpool> = TenantRouter::builder()
        .server("main", app)
        .pool_connections(CLIENTS as u32)
        .build()
        .unwrap();
    let (config, tls) = tokio_postgres(admin);
    let raw = common::raw_deadpool(config, tls, CLIENTS as usize);
    let mut group = measured_group(c, "W1 transaction over TLS, deadpool, pool");
    let tenants_raw = tenants.clone();
    group.bench_function("baseline: raw pool", |b| {
        b.iter_custom(|iters| {
            let (raw, tenants) = (raw.clone(), tenants_raw.clone());
            common::run(rt, iters, CLIENTS, move |n| {
                let (raw, tenant) = (raw.clone(), tenants[common::pick(n, TENANTS, ROWS).0].id);
                async move {
                    let mut client = raw.get().await.unwrap();
                    let tx = client.transaction().await.unwrap();
                    let statement = tx.prepare_cached(RAW_POINT).await.unwrap();
                    tx.query_one(
                        &statement,
                        &[&common::pick(n, TENANTS, ROWS).1, &tenant.as_str()],
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
    });
    group.bench_function("TenantRouter", |b| {
        b.iter_custom(|iters| {
            let (router, tenants) = (router.clone(), tenants.clone());
            common::run(rt, iters, CLIENTS, move |n| {
                let (router, tenants) = (router.clone(), tenants.clone());
                async move {
                    let tx = router
                        .begin(&tenants[common::pick(n, TENANTS, ROWS).0])
                        .await
                        .unwrap();
                    let statement = tx.prepare_cached(POINT).await.unwrap();
                    tx.query_one(&statement, &[&common::pick(n, TENANTS, ROWS).1])
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
    });
    group.finish();
}

/// Opening and closing one connection, plain and with TLS, on each driver.
fn connect(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let plain = format!(
        "{}?sslmode=disable",
        tenants_test_support::postgres().admin_url()
    );
    let tls = tenants_test_support::tls_postgres().admin_url().to_owned();
    let mut group = measured_group(c, "connection set-up, sqlx");
    for (name, url) in [("baseline: plain", &plain), ("TLS verify-full", &tls)] {
        let options = Sqlx::connect_options(url).unwrap();
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| async {
                let connection = sqlx::PgConnection::connect_with(&options).await.unwrap();
                connection.close().await.unwrap();
            })
        });
    }
    group.finish();
    let mut group = measured_group(c, "connection set-up, tokio-postgres");
    for (name, url) in [("baseline: plain", &plain), ("TLS verify-full", &tls)] {
        let (config, tls) = tokio_postgres(url);
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| async {
                let (client, connection) = config.connect(tls.clone()).await.unwrap();
                let driver = tokio::spawn(connection);
                drop(client);
                driver.await.unwrap().unwrap();
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let (admin, app, tenants) = setup();
    let tenants = Arc::new(tenants);
    let rt = common::runtime();
    let _guard = rt.enter();
    w1_sqlx(c, &rt, &admin, &app, &tenants);
    w1_deadpool(c, &rt, &admin, &app, &tenants);
    connect(c, &rt);
}

criterion_group!(tls, benches);
criterion_main!(tls);
