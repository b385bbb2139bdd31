//! What does the router cost on a Citus cluster (a coordinator and two workers),
//! and what does a query that leaves out the tenant cost there? 100 pool tenants
//! in a table distributed by `tenant_id`, 8 concurrent clients, each unit of work
//! W1 of `benches/router.rs` (a transaction holding one point read) on a random
//! tenant and row, all in one criterion group so the ratios come from one run:
//!
//! - `raw/<driver>`: the driver's own pool on the coordinator, as the application
//!   role, setting the tenant by hand (`BEGIN`, then `SET LOCAL tenants.tenant_id`,
//!   which Citus forwards to the workers) and naming it in the query;
//! - `router/<driver> routed`: `TenantRouter` declared `.citus(..)`, the same query
//!   (`WHERE tenant_id = $1 AND id = $2`): Citus routes it to the tenant's shard;
//! - `router/<driver> fan-out`: the router, the query filtered by the policy alone
//!   (`WHERE id = $1`): Citus sends it to every shard, on both workers.
//!
//! Each criterion iteration is one unit of work per client (8 units); a lower time
//! is a higher throughput. `scripts/bench-medians` prints each `router/<driver>`
//! entry against `raw/<driver>` (router/raw: what the router adds per transaction
//! on Citus, its reset of the session riding along with the settings the workers
//! receive) and each fan-out against its routed entry (fan-out/routed: what
//! leaving the tenant out of the query costs). The fan-out entries run few
//! iterations, tens of milliseconds each, and spread widely from run to run: read
//! their ratio as an order of magnitude, or give them a longer
//! `--measurement-time`.
//!
//! Run: `cargo bench -p tenants --bench citus --features sqlx,deadpool`
//! (starts a throwaway Citus cluster, or uses `TENANTS_TEST_CITUS_URL`), then
//! `scripts/bench-medians`.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tenants::db::tokio_postgres::NoTls;
use tenants::db::{Deadpool, Sqlx, TenantRouter};
use tenants::{DataModel, Tenant};

const TENANTS: usize = 100;
const ROWS: i32 = 100;
const CLIENTS: u64 = 8;
/// Names the tenant: Citus routes it to one shard.
const ROUTED: &str = "SELECT payload FROM items WHERE tenant_id = $1 AND id = $2";
/// Leaves the tenant to the policy: Citus sends it to every shard.
const FAN_OUT: &str = "SELECT payload FROM items WHERE id = $1";

/// The pool tenants, with rows in a distributed table, and the application role's
/// URL to them on the coordinator (`sslmode=disable`: Citus nodes present an
/// X.509 v1 certificate, which sqlx cannot read; TLS is not measured here).
fn setup() -> (String, Vec<Tenant>) {
    let cluster = tenants_test_support::citus();
    let pg = cluster.coordinator();
    let admin = cluster.fresh_database();
    let database = admin.rsplit('/').next().unwrap();
    let role = tenants_test_support::unique_name("app");
    let policy = "tenant_id = NULLIF(current_setting('tenants.tenant_id', true), '')";
    // Citus refuses some DDL after a distributed command in one transaction: one
    // statement per psql call.
    for (url, statement) in [
        (
            pg.admin_url(),
            format!("CREATE ROLE {role} LOGIN PASSWORD 'bench' NOSUPERUSER NOBYPASSRLS"),
        ),
        (
            pg.admin_url(),
            format!("ALTER ROLE {role} SET citus.propagate_set_commands = 'local'"),
        ),
        (
            &admin,
            "CREATE TABLE items (
                 tenant_id text NOT NULL DEFAULT current_setting('tenants.tenant_id', true),
                 id int NOT NULL, payload text NOT NULL, PRIMARY KEY (tenant_id, id))"
                .into(),
        ),
        (
            &admin,
            "SELECT create_distributed_table('items', 'tenant_id')".into(),
        ),
        (&admin, "ALTER TABLE items ENABLE ROW LEVEL SECURITY".into()),
        (&admin, "ALTER TABLE items FORCE ROW LEVEL SECURITY".into()),
        (
            &admin,
            format!("CREATE POLICY tenant_rows ON items USING ({policy}) WITH CHECK ({policy})"),
        ),
        (
            &admin,
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON items TO {role}"),
        ),
        (
            &admin,
            format!(
                "INSERT INTO items SELECT 'p' || t, g, 'p' || t || '-' || g
                 FROM generate_series(0, {}) t, generate_series(1, {ROWS}) g",
                TENANTS - 1
            ),
        ),
    ] {
        pg.psql(url, &statement);
    }
    let tenants = (0..TENANTS)
        .map(|i| Tenant::new(format!("p{i}").parse().unwrap(), DataModel::Pool))
        .collect();
    let app = pg.url_as(&role, "bench", database);
    (
        tenants_test_support::with_params(&app, "sslmode=disable"),
        tenants,
    )
}

/// One entry of the group: `unit` run by each of the concurrent clients.
fn measure<F, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    unit: F,
) where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| common::run(rt, iters, CLIENTS, unit.clone()))
    });
}

/// `SET LOCAL tenants.tenant_id = '<id>'` for each tenant, as an application
/// setting the tenant by hand would send it (Citus forwards `SET LOCAL`, not
/// `set_config`).
fn set_locals(tenants: &[Tenant]) -> Arc<Vec<String>> {
    let set = |t: &Tenant| format!("SET LOCAL tenants.tenant_id = '{}'", t.id);
    Arc::new(tenants.iter().map(set).collect())
}

/// The baseline of the sqlx entries: a sqlx pool of the router's size, `begin`,
/// the tenant set by hand in a second message (`raw_sql`, as the router sends its
/// settings), the routed query, commit. The router's transactions make the same
/// four round trips, so router/raw is what the router itself adds.
fn raw_sqlx(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    app: &str,
    tenants: &Arc<Vec<Tenant>>,
) -> sqlx::PgPool {
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect_lazy(app)
        .unwrap();
    let (pool, tenants, sets) = (raw.clone(), tenants.clone(), set_locals(tenants));
    measure(group, rt, "raw/sqlx", move |n| {
        let (t, id) = common::pick(n, TENANTS, ROWS);
        let (pool, tenant, set) = (pool.clone(), tenants[t].id, sets[t].clone());
        async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(set))
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query_scalar::<_, String>(ROUTED)
                .bind(tenant.as_str())
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    });
    raw
}

/// `TenantRouter<Sqlx>` on the coordinator: `begin` (a bare `BEGIN`, then the
/// tenant's settings, which the workers receive), one point read, commit; `routed`
/// names the tenant in the query (one shard), otherwise the policy alone filters
/// it (every shard). A missing row fails the bench: the workers saw the tenant.
fn router_sqlx(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    router: &TenantRouter<Sqlx>,
    tenants: &Arc<Vec<Tenant>>,
    routed: bool,
) {
    let name = if routed { "routed" } else { "fan-out" };
    let (router, tenants) = (router.clone(), tenants.clone());
    measure(group, rt, &format!("router/sqlx {name}"), move |n| {
        let (t, id) = common::pick(n, TENANTS, ROWS);
        let (router, tenants) = (router.clone(), tenants.clone());
        async move {
            let tenant = &tenants[t];
            let mut tx = router.begin(tenant).await.unwrap();
            let query = if routed {
                sqlx::query_scalar::<_, String>(ROUTED).bind(tenant.id.as_str())
            } else {
                sqlx::query_scalar::<_, String>(FAN_OUT)
            };
            query.bind(id).fetch_one(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
    });
}

/// The baseline of the deadpool entries: a deadpool-postgres pool of the router's
/// size (built as in `benches/router.rs`), `transaction`, the tenant set by hand
/// (`batch_execute`, as the router sends its settings), the routed query (a cached
/// statement), commit: the router's round trips, without the router.
fn raw_deadpool(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    app: &str,
    tenants: &Arc<Vec<Tenant>>,
) {
    let raw = common::raw_deadpool(app.parse().unwrap(), NoTls, CLIENTS as usize);
    let (tenants, sets) = (tenants.clone(), set_locals(tenants));
    measure(group, rt, "raw/deadpool", move |n| {
        let (t, id) = common::pick(n, TENANTS, ROWS);
        let (pool, tenant, sets) = (raw.clone(), tenants[t].id, sets.clone());
        async move {
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            tx.batch_execute(&sets[t]).await.unwrap();
            let statement = tx.prepare_cached(ROUTED).await.unwrap();
            tx.query_one(&statement, &[&tenant.as_str(), &id])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    });
}

/// `TenantRouter<Deadpool>` on the coordinator: as [`router_sqlx`], on
/// tokio-postgres's cached statements; `routed` names the tenant in the query.
fn router_deadpool(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    router: &TenantRouter<Deadpool>,
    tenants: &Arc<Vec<Tenant>>,
    routed: bool,
) {
    let name = if routed { "routed" } else { "fan-out" };
    let (router, tenants) = (router.clone(), tenants.clone());
    measure(group, rt, &format!("router/deadpool {name}"), move |n| {
        let (t, id) = common::pick(n, TENANTS, ROWS);
        let (router, tenants) = (router.clone(), tenants.clone());
        async move {
            let tenant = &tenants[t];
            let tx = router.begin(tenant).await.unwrap();
            if routed {
                let statement = tx.prepare_cached(ROUTED).await.unwrap();
                tx.query_one(&statement, &[&tenant.id.as_str(), &id])
                    .await
                    .unwrap();
            } else {
                let statement = tx.prepare_cached(FAN_OUT).await.unwrap();
                tx.query_one(&statement, &[&id]).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
    });
}

fn benches(c: &mut Criterion) {
    let (app, tenants) = setup();
    let tenants = Arc::new(tenants);
    let rt = common::runtime();
    let _guard = rt.enter();
    let sqlx_router: TenantRouter<Sqlx> = TenantRouter::builder()
        .server("main", &app)
        .citus("main")
        .pool_connections(CLIENTS as u32)
        .build()
        .unwrap();
    let deadpool_router: TenantRouter<Deadpool> = TenantRouter::builder()
        .server("main", &app)
        .citus("main")
        .pool_connections(CLIENTS as u32)
        .build()
        .unwrap();
    // Fails here, not mid-measurement, on a role whose settings the workers miss.
    rt.block_on(async {
        sqlx_router.verify().await.unwrap();
        deadpool_router.verify().await.unwrap();
    });

    let mut group = c.benchmark_group("W1 transaction on Citus, pool");
    let raw = raw_sqlx(&mut group, &rt, &app, &tenants);
    router_sqlx(&mut group, &rt, &sqlx_router, &tenants, true);
    router_sqlx(&mut group, &rt, &sqlx_router, &tenants, false);
    raw_deadpool(&mut group, &rt, &app, &tenants);
    router_deadpool(&mut group, &rt, &deadpool_router, &tenants, true);
    router_deadpool(&mut group, &rt, &deadpool_router, &tenants, false);
    group.finish();
    rt.block_on(async {
        sqlx_router.close().await;
        deadpool_router.close().await;
        raw.close().await;
    });
}

criterion_group! {
    name = citus;
    // Here rather than on the group, so `--warm-up-time` and `--measurement-time`
    // given on the command line win.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    targets = benches
}
criterion_main!(citus);
