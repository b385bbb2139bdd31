//! What does tenant isolation cost a database round trip? 100 tenants per model,
//! 8 concurrent clients, each unit of work on a random tenant and row, through
//! `TenantRouter` and, in the same run, through the raw driver pool doing the same
//! work (the application filtering by tenant itself: `WHERE tenant_id = $1` for the
//! pool model, schema-qualified names for bridge, a pool per database for silo).
//!
//! Bridge tenants share prepared statements between schemas of one shape
//! (`bridge_statement_sharing`).
//!
//! - W1: a transaction holding one point query.
//! - W2: one point query outside a transaction (autocommit on the raw pool; the
//!   router's session-scoped connection: `acquire` on sqlx, `client` on deadpool).
//!
//! Each criterion iteration is one unit of work per client (8 units); a lower time
//! is a higher throughput, and `scripts/bench-medians` prints the router's time
//! against the raw pool's.
//!
//! Run: `cargo bench -p tenants --bench router --features sqlx,deadpool`
//! (starts a throwaway PostgreSQL, or uses `TENANTS_TEST_DATABASE_URL`).

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tenants::db::deadpool_postgres;
use tenants::db::tokio_postgres::NoTls;
use tenants::db::{Deadpool, Sqlx, TenantRouter};
use tenants::{DataModel, SqlIdent, Tenant};

const TENANTS: usize = 100;
const ROWS: i32 = 100;
const CLIENTS: u64 = 8;

/// The tenants of each model, their data, and the roles to reach it.
struct Setup {
    admin: String,
    app: String,
    pool: Vec<Tenant>,
    bridge: Vec<Tenant>,
    silo: Vec<Tenant>,
}

fn setup() -> Setup {
    let pg = tenants_test_support::postgres();
    let shared = tenants_test_support::unique_name("bench");
    let role = tenants_test_support::unique_name("app");
    pg.psql(
        pg.admin_url(),
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'bench'"),
    );
    pg.psql(pg.admin_url(), &format!("CREATE DATABASE {shared}"));
    let shared_url = pg.url_for(&shared);
    let table = "CREATE TABLE items (id int PRIMARY KEY, payload text NOT NULL)";
    let fill = |tenant: &str| {
        format!("INSERT INTO items SELECT g, '{tenant}-' || g FROM generate_series(1, {ROWS}) g")
    };
    let mut sql = format!(
        "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL,
             payload text NOT NULL, PRIMARY KEY (tenant_id, id));
         ALTER TABLE items ENABLE ROW LEVEL SECURITY;
         ALTER TABLE items FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_rows ON items
             USING (tenant_id = current_setting('tenants.tenant_id', true));
         GRANT SELECT ON items TO {role};"
    );
    let id = |kind: &str, i: usize| format!("{kind}{i}");
    let mut pool = Vec::new();
    let mut bridge = Vec::new();
    let mut silo = Vec::new();
    for i in 0..TENANTS {
        let p = id("p", i);
        sql.push_str(&format!(
            "INSERT INTO items SELECT '{p}', g, '{p}-' || g FROM generate_series(1, {ROWS}) g;"
        ));
        pool.push(Tenant::new(p.parse().unwrap(), DataModel::Pool));
        let b = id("b", i);
        sql.push_str(&format!(
            "CREATE SCHEMA {b}; SET search_path = {b}; {table}; {}; RESET search_path;
             GRANT USAGE ON SCHEMA {b} TO {role}; GRANT SELECT ON {b}.items TO {role};",
            fill(&b)
        ));
        bridge.push(Tenant::new(
            b.parse().unwrap(),
            DataModel::Bridge {
                schema: SqlIdent::new(b).unwrap(),
            },
        ));
        let s = format!("{shared}_s{i}");
        silo.push(Tenant::new(
            id("s", i).parse().unwrap(),
            DataModel::Silo {
                database: SqlIdent::new(&s).unwrap(),
                server: None,
            },
        ));
    }
    pg.psql(&shared_url, &sql);
    let template = format!("{shared}_template");
    pg.psql(pg.admin_url(), &format!("CREATE DATABASE {template}"));
    pg.psql(
        &pg.url_for(&template),
        &format!("{table}; GRANT SELECT ON items TO {role};"),
    );
    for tenant in &silo {
        let DataModel::Silo { database, .. } = &tenant.model else {
            unreachable!()
        };
        pg.psql(
            pg.admin_url(),
            &format!("CREATE DATABASE {database} TEMPLATE {template}"),
        );
        pg.psql(&pg.url_for(database.as_str()), &fill(tenant.id.as_str()));
    }
    Setup {
        admin: shared_url,
        app: pg.url_as(&role, "bench", &shared),
        pool,
        bridge,
        silo,
    }
}

fn compare<R, RF, T, TF>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    raw: R,
    routed: T,
) where
    R: Fn(u64) -> RF + Clone + Send + 'static,
    RF: Future<Output = ()> + Send,
    T: Fn(u64) -> TF + Clone + Send + 'static,
    TF: Future<Output = ()> + Send,
{
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("baseline: raw pool", |b| {
        b.iter_custom(|iters| common::run(rt, iters, CLIENTS, raw.clone()))
    });
    group.bench_function("TenantRouter", |b| {
        b.iter_custom(|iters| common::run(rt, iters, CLIENTS, routed.clone()))
    });
    group.finish();
}

fn sqlx_pool(url: &str, max: u32) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .connect_lazy(url)
        .unwrap()
}

fn deadpool(url: &str, max: usize) -> deadpool_postgres::Pool {
    common::raw_deadpool(url.parse().unwrap(), NoTls, max)
}

const POINT: &str = "SELECT payload FROM items WHERE id = $1";

fn benches(c: &mut Criterion) {
    let setup = setup();
    let rt = common::runtime();
    let _guard = rt.enter();
    let pg = tenants_test_support::postgres();
    let silo_urls: Vec<String> = setup
        .silo
        .iter()
        .map(|t| match &t.model {
            DataModel::Silo { database, .. } => pg.url_for(database.as_str()),
            _ => unreachable!(),
        })
        .collect();
    let schema_sql: Arc<Vec<String>> = Arc::new(
        setup
            .bridge
            .iter()
            .map(|t| format!("SELECT payload FROM {}.items WHERE id = $1", t.id))
            .collect(),
    );

    // sqlx
    {
        let router: TenantRouter<Sqlx> = TenantRouter::builder()
            .server("main", &setup.app)
            .pool_connections(CLIENTS as u32)
            .bridge_connections(CLIENTS as u32)
            .bridge_statement_sharing(true)
            .silo_connections_per_tenant(1)
            .silo_budget(TENANTS as u32)
            .build()
            .unwrap();
        let raw = sqlx_pool(&setup.admin, CLIENTS as u32);
        let silos: Arc<Vec<sqlx::PgPool>> =
            Arc::new(silo_urls.iter().map(|u| sqlx_pool(u, 1)).collect());
        for (model, tenants) in [
            ("pool", &setup.pool),
            ("bridge", &setup.bridge),
            ("silo", &setup.silo),
        ] {
            let tenants = Arc::new(tenants.clone());
            let raw_sql = {
                let schema_sql = schema_sql.clone();
                move |t: usize| -> String {
                    match model {
                        "pool" => {
                            "SELECT payload FROM items WHERE tenant_id = $2 AND id = $1".into()
                        }
                        "bridge" => schema_sql[t].clone(),
                        _ => POINT.into(),
                    }
                }
            };
            let raw_pool = {
                let (raw, silos) = (raw.clone(), silos.clone());
                move |t: usize| {
                    if model == "silo" {
                        silos[t].clone()
                    } else {
                        raw.clone()
                    }
                }
            };
            let bind_tenant = model == "pool";
            compare(
                c,
                &rt,
                &format!("W1 transaction, sqlx, {model}"),
                {
                    let (tenants, raw_sql, raw_pool) =
                        (tenants.clone(), raw_sql.clone(), raw_pool.clone());
                    move |n| {
                        let (t, id) = common::pick(n, TENANTS, ROWS);
                        let (sql, pool, tenant) = (raw_sql(t), raw_pool(t), tenants[t].id);
                        async move {
                            let mut tx = pool.begin().await.unwrap();
                            let mut query =
                                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(id);
                            if bind_tenant {
                                query = query.bind(tenant.as_str().to_owned());
                            }
                            query.fetch_one(&mut *tx).await.unwrap();
                            tx.commit().await.unwrap();
                        }
                    }
                },
                {
                    let (tenants, router) = (tenants.clone(), router.clone());
                    move |n| {
                        let (t, id) = common::pick(n, TENANTS, ROWS);
                        let (router, tenants) = (router.clone(), tenants.clone());
                        async move {
                            let tenant = &tenants[t];
                            let mut tx = router.begin(tenant).await.unwrap();
                            sqlx::query_scalar::<_, String>(POINT)
                                .bind(id)
                                .fetch_one(&mut *tx)
                                .await
                                .unwrap();
                            tx.commit().await.unwrap();
                        }
                    }
                },
            );
            compare(
                c,
                &rt,
                &format!("W2 statement, sqlx, {model}"),
                {
                    let (tenants, raw_sql, raw_pool) =
                        (tenants.clone(), raw_sql.clone(), raw_pool.clone());
                    move |n| {
                        let (t, id) = common::pick(n, TENANTS, ROWS);
                        let (sql, pool, tenant) = (raw_sql(t), raw_pool(t), tenants[t].id);
                        async move {
                            let mut query =
                                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(id);
                            if bind_tenant {
                                query = query.bind(tenant.as_str().to_owned());
                            }
                            query.fetch_one(&pool).await.unwrap();
                        }
                    }
                },
                {
                    let (tenants, router) = (tenants.clone(), router.clone());
                    move |n| {
                        let (t, id) = common::pick(n, TENANTS, ROWS);
                        let (router, tenants) = (router.clone(), tenants.clone());
                        async move {
                            let tenant = &tenants[t];
                            let mut conn = router.acquire(tenant).await.unwrap();
                            sqlx::query_scalar::<_, String>(POINT)
                                .bind(id)
                                .fetch_one(&mut *conn)
                                .await
                                .unwrap();
                        }
                    }
                },
            );
        }
        rt.block_on(async {
            router.close().await;
            raw.close().await;
            for pool in silos.iter() {
                pool.close().await;
            }
        });
    }

    // deadpool-postgres
    {
        let router: TenantRouter<Deadpool> = TenantRouter::builder()
            .server("main", &setup.app)
            .pool_connections(CLIENTS as u32)
            .bridge_connections(CLIENTS as u32)
            .bridge_statement_sharing(true)
            .silo_connections_per_tenant(1)
            .silo_budget(TENANTS as u32)
            .build()
            .unwrap();
        let raw = deadpool(&setup.admin, CLIENTS as usize);
        let silos: Arc<Vec<deadpool_postgres::Pool>> =
            Arc::new(silo_urls.iter().map(|u| deadpool(u, 1)).collect());
        for (model, tenants) in [
            ("pool", &setup.pool),
            ("bridge", &setup.bridge),
            ("silo", &setup.silo),
        ] {
            let tenants = Arc::new(tenants.clone());
            let raw_sql = {
                let schema_sql = schema_sql.clone();
                move |t: usize| -> String {
                    match model {
                        "pool" => {
                            "SELECT payload FROM items WHERE tenant_id = $2 AND id = $1".into()
                        }
                        "bridge" => schema_sql[t].clone(),
                        _ => POINT.into(),
                    }
                }
            };
            let raw_pool = {
                let (raw, silos) = (raw.clone(), silos.clone());
                move |t: usize| {
                    if model == "silo" {
                        silos[t].clone()
                    } else {
                        raw.clone()
                    }
                }
            };
            let by_tenant = model == "pool";
            compare(
                c,
                &rt,
                &format!("W1 transaction, deadpool, {model}"),
                {
                    let (tenants, raw_sql, raw_pool) =
                        (tenants.clone(), raw_sql.clone(), raw_pool.clone());
                    move |n| {
                        let (t, id) = common::pick(n, TENANTS, ROWS);
                        let (sql, pool, tenant) = (raw_sql(t), raw_pool(t), tenants[t].id);
                        async move {
                            let mut client = pool.get().await.unwrap();
                            let tx = client.transaction().await.unwrap();
                            let statement = tx.prepare_cached(&sql).await.unwrap();
                            if by_tenant {
                                tx.query_one(&statement, &[&id, &tenant.as_str()])
                                    .await
                                    .unwrap();
                            } else {
                                tx.query_one(&statement, &[&id]).await.unwrap();
                            }
                            tx.commit().await.unwrap();
                        }
                    }
                },
                {
                    let (tenants, router) = (tenants.clone(), router.clone());
                    move |n| {
                        let (t, id) = common::pick(n, TENANTS, ROWS);
                        let (router, tenants) = (router.clone(), tenants.clone());
                        async move {
                            let tenant = &tenants[t];
                            let tx = router.begin(tenant).await.unwrap();
                            let statement = tx.prepare_cached(POINT).await.unwrap();
                            tx.query_one(&statement, &[&id]).await.unwrap();
                            tx.commit().await.unwrap();
                        }
                    }
                },
            );
            compare(
                c,
                &rt,
                &format!("W2 statement, deadpool, {model}"),
                {
                    let (tenants, raw_sql, raw_pool) =
                        (tenants.clone(), raw_sql.clone(), raw_pool.clone());
                    move |n| {
                        let (t, id) = common::pick(n, TENANTS, ROWS);
                        let (sql, pool, tenant) = (raw_sql(t), raw_pool(t), tenants[t].id);
                        async move {
                            let client = pool.get().await.unwrap();
                            let statement = client.prepare_cached(&sql).await.unwrap();
                            if by_tenant {
                                client
                                    .query_one(&statement, &[&id, &tenant.as_str()])
                                    .await
                                    .unwrap();
                            } else {
                                client.query_one(&statement, &[&id]).await.unwrap();
                            }
                        }
                    }
                },
                {
                    let (tenants, router) = (tenants.clone(), router.clone());
                    move |n| {
                        let (t, id) = common::pick(n, TENANTS, ROWS);
                        let (router, tenants) = (router.clone(), tenants.clone());
                        async move {
                            let tenant = &tenants[t];
                            let client = router.client(tenant).await.unwrap();
                            let statement = client.prepare_cached(POINT).await.unwrap();
                            client.query_one(&statement, &[&id]).await.unwrap();
                        }
                    }
                },
            );
        }
        rt.block_on(router.close());
    }
}

criterion_group!(router, benches);
criterion_main!(router);
