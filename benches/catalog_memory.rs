//! What a connection's lifetime costs and saves: 1,000 bridge tenants, each a
//! schema of ten tables, served round-robin by a router with one bridge connection,
//! once with the default lifetime (30 minutes: the connection stays) and once with a
//! lifetime of one second (the connection is replaced every second).
//!
//! PostgreSQL keeps the catalog entries of every table a backend has touched for as
//! long as the backend lives. After the timed runs, each router serves the 1,000
//! tenants once more, in order, over about three seconds, and the backend that
//! served the last one reports its own memory (`pg_backend_memory_contexts`,
//! PostgreSQL 14 or later; the application role is given `pg_read_all_stats` to
//! read it): `CacheMemoryContext` and the contexts under it, and the backend's
//! total.
//!
//! Each criterion iteration is one tenant transaction touching the tenant's ten
//! tables; the ratio is the one-second lifetime's time against the default's.
//!
//! Run: `cargo bench -p tenants --bench catalog_memory --features sqlx`
//! (starts a throwaway PostgreSQL, or uses `TENANTS_TEST_DATABASE_URL`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tenants::db::{Sqlx, TenantRouter};
use tenants::{DataModel, SqlIdent, Tenant};

const SCHEMAS: usize = 1_000;
const TABLES: usize = 10;

/// Reads all ten tables in one statement, so each tenant costs one round trip.
fn touch_all() -> String {
    let counts: Vec<_> = (0..TABLES)
        .map(|t| format!("(SELECT count(*) FROM t{t})"))
        .collect();
    format!("SELECT {}", counts.join(" + "))
}

/// The memory of the backend that runs it, in bytes: the catalog caches
/// (`CacheMemoryContext` and the contexts under it) and the whole backend.
const MEMORY_SQL: &str = "
    SELECT (SELECT sum(total_bytes) FROM pg_backend_memory_contexts
             WHERE name = 'CacheMemoryContext' OR parent = 'CacheMemoryContext')::bigint,
           (SELECT sum(total_bytes) FROM pg_backend_memory_contexts)::bigint";

/// Serves every tenant once, in order, over about three seconds (as an application
/// reaches its tenants over time, and so that a one-second lifetime ends during
/// the pass), and reads the memory of the backend that served the last one, in
/// the last one's transaction.
async fn touch_every_schema(
    router: &TenantRouter<Sqlx>,
    tenants: &[Tenant],
    touch: &'static str,
) -> (i64, i64) {
    let (last, first) = tenants.split_last().unwrap();
    let pace = Duration::from_secs(3) / SCHEMAS as u32;
    for tenant in first {
        let mut tx = router.begin(tenant).await.unwrap();
        sqlx::query(touch).fetch_one(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        tokio::time::sleep(pace).await;
    }
    let mut tx = router.begin(last).await.unwrap();
    sqlx::query(touch).fetch_one(&mut *tx).await.unwrap();
    let memory = sqlx::query_as(MEMORY_SQL)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    memory
}

fn setup() -> (String, Vec<Tenant>) {
    let pg = tenants_test_support::postgres();
    let database = tenants_test_support::unique_name("catalog");
    let role = tenants_test_support::unique_name("app");
    pg.psql(
        pg.admin_url(),
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'bench'; GRANT pg_read_all_stats TO {role}"),
    );
    pg.psql(pg.admin_url(), &format!("CREATE DATABASE {database}"));
    // In batches: one transaction creating all 10,000 tables would need more locks
    // than the server's lock table holds, and one statement text would be too long
    // for a command line.
    for first in (0..SCHEMAS).step_by(50) {
        pg.psql(
            &pg.url_for(&database),
            &format!(
                "DO $$ BEGIN FOR i IN {first}..{last} LOOP
                   EXECUTE format('CREATE SCHEMA b%s', i);
                   FOR t IN 0..{tables} LOOP
                     EXECUTE format('CREATE TABLE b%s.t%s
                       (id int PRIMARY KEY, a text, b int, c timestamptz)', i, t);
                   END LOOP;
                   EXECUTE format('GRANT USAGE ON SCHEMA b%s TO {role}', i);
                   EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA b%s TO {role}', i);
                 END LOOP; END $$",
                last = first + 49,
                tables = TABLES - 1,
            ),
        );
    }
    let tenants = (0..SCHEMAS)
        .map(|i| {
            let schema = format!("b{i}");
            Tenant::new(
                schema.parse().unwrap(),
                DataModel::Bridge {
                    schema: SqlIdent::new(&schema).unwrap(),
                },
            )
        })
        .collect();
    (pg.url_as(&role, "bench", &database), tenants)
}

fn benches(c: &mut Criterion) {
    let (url, tenants) = setup();
    let tenants = Arc::new(tenants);
    let rt = common::runtime();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("bridge catalog memory, 1,000 ten-table schemas");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(10));
    let touch: &'static str = touch_all().leak();
    let mut routers = Vec::new();
    for (name, lifetime) in [
        ("baseline: default lifetime (30 min)", None),
        ("lifetime 1 s", Some(Duration::from_secs(1))),
    ] {
        let mut builder = TenantRouter::<Sqlx>::builder()
            .server("main", &url)
            .bridge_connections(1);
        if let Some(lifetime) = lifetime {
            builder = builder.connection_lifetime(lifetime);
        }
        let router = builder.build().unwrap();
        let next = Arc::new(AtomicUsize::new(0));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (router, tenants, next) = (router.clone(), tenants.clone(), next.clone());
                common::run(&rt, iters, 1, move |_| {
                    let tenant = &tenants[next.fetch_add(1, Ordering::Relaxed) % SCHEMAS];
                    let (router, tenant) = (router.clone(), tenant.clone());
                    async move {
                        let mut tx = router.begin(&tenant).await.unwrap();
                        sqlx::query(touch).fetch_one(&mut *tx).await.unwrap();
                        tx.commit().await.unwrap();
                    }
                })
            })
        });
        routers.push((name, router));
    }
    group.finish();
    for (name, router) in routers {
        let (cache, total) = rt.block_on(touch_every_schema(&router, &tenants, touch));
        println!(
            "{name}: after touching all {SCHEMAS} schemas, the serving backend holds \
             {:.1} MB of catalog caches, {:.1} MB in all",
            cache as f64 / 1e6,
            total as f64 / 1e6
        );
        rt.block_on(router.close());
    }
}

criterion_group!(catalog_memory, benches);
criterion_main!(catalog_memory);
