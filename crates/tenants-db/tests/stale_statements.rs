//! A migration that changes a table's shape between two requests, run by the
//! provisioning engine: the routers of both drivers, whose connections cached
//! `SELECT *` before it, serve the next request of every model with the new columns,
//! never "cached plan must not change result type".
#![cfg(all(feature = "sqlx", feature = "deadpool"))]

use std::time::{Duration, Instant};

use tenants_core::{DataModel, Tenant};
use tenants_db::provision::{ApplyOptions, Provisioner, TenantsFile};
use tenants_db::{Deadpool, Sqlx, TenantRouter};
use tenants_test_support::{postgres, unique_name};

/// `SELECT *` from the tenant's table, through each driver's statement cache (sqlx's
/// own; deadpool's `prepare_cached`): its column names.
async fn columns_sqlx(router: &TenantRouter<Sqlx>, tenant: &Tenant) -> Vec<String> {
    use sqlx::{Column, Row};
    let mut tx = router.begin(tenant).await.unwrap();
    let row = sqlx::query(table_of(tenant))
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("sqlx, tenant {}: {e}", tenant.id));
    tx.commit().await.unwrap();
    row.columns().iter().map(|c| c.name().to_owned()).collect()
}

async fn columns_deadpool(router: &TenantRouter<Deadpool>, tenant: &Tenant) -> Vec<String> {
    let tx = router.begin(tenant).await.unwrap();
    let select = tx.prepare_cached(table_of(tenant)).await.unwrap();
    let row = tx
        .query_one(&select, &[])
        .await
        .unwrap_or_else(|e| panic!("deadpool, tenant {}: {e}", tenant.id));
    tx.commit().await.unwrap();
    row.columns().iter().map(|c| c.name().to_owned()).collect()
}

fn table_of(tenant: &Tenant) -> &'static str {
    match tenant.model {
        DataModel::Pool => "SELECT * FROM todos LIMIT 1",
        _ => "SELECT * FROM widgets LIMIT 1",
    }
}

/// Waits (at most 10 s) for `done`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_between_two_requests_leaves_no_stale_statement() {
    let pg = postgres();
    let url = pg.fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let t = unique_name("t").replace('_', "x");
    let dir = std::env::temp_dir().join(format!("tenants-stale-{t}"));
    std::fs::create_dir_all(dir.join("migrations")).unwrap();
    std::fs::write(
        dir.join("migrations/0001_tables.sql"),
        "CREATE TABLE widgets (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE todos (id serial, tenant_id text NOT NULL DEFAULT current_setting('tenants.tenant_id', true),
             title text NOT NULL, PRIMARY KEY (tenant_id, id));",
    )
    .unwrap();
    let path = dir.join("tenants.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[servers.main]
url = "{url}"
app_role = "app_{t}"
template = "template_{t}"

[shared]
migrations = "migrations"
pool_tables = ["todos"]

[tenants.pool-{t}]
model = "pool"
[tenants.bridge-{t}]
model = "bridge"
[tenants.silo-{t}]
model = "silo"
"#
        ),
    )
    .unwrap();
    let provisioner = Provisioner::connect(TenantsFile::load(&path).unwrap())
        .await
        .unwrap();
    let plan = provisioner.plan().await.unwrap();
    let report = provisioner
        .apply(&plan, &ApplyOptions::new())
        .await
        .unwrap();
    assert!(report.is_success(), "{report}");
    provisioner.close().await;
    let tenants: Vec<Tenant> = TenantsFile::load(&path)
        .unwrap()
        .tenants
        .into_iter()
        .map(|spec| spec.tenant)
        .collect();
    let app_url = format!("postgres://app_{t}@{}:{}/{database}", pg.host(), pg.port());
    pg.psql(
        &url,
        &format!(
            "INSERT INTO todos (tenant_id, title) VALUES ('pool-{t}', 'x');
             INSERT INTO bridge_{t}.widgets (name) VALUES ('x')"
        ),
    );
    pg.psql(
        &pg.url_for(&format!("silo_{t}")),
        "INSERT INTO widgets (name) VALUES ('x')",
    );

    // One connection per pool, so the request after the migration gets the very
    // connection whose statements were cached before it.
    let sqlx: TenantRouter<Sqlx> = TenantRouter::builder()
        .server("main", app_url.clone())
        .pool_connections(1)
        .bridge_connections(1)
        .silo_connections_per_tenant(1)
        .build()
        .unwrap();
    let deadpool: TenantRouter<Deadpool> = TenantRouter::builder()
        .server("main", app_url.clone())
        .pool_connections(1)
        .bridge_connections(1)
        .silo_connections_per_tenant(1)
        .build()
        .unwrap();
    let listening = || {
        pg.psql(
            &url,
            &format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE usename = 'app_{t}' AND query ILIKE 'LISTEN%'"
            ),
        )
    };
    eventually("both routers to listen", || listening() == "2").await;
    let mut before = Vec::new();
    for tenant in &tenants {
        before.push(columns_sqlx(&sqlx, tenant).await);
        assert_eq!(
            columns_deadpool(&deadpool, tenant).await,
            before[before.len() - 1]
        );
    }

    std::fs::write(
        dir.join("migrations/0002_more.sql"),
        "ALTER TABLE widgets ADD COLUMN colour text;
         ALTER TABLE todos ADD COLUMN done boolean NOT NULL DEFAULT false;",
    )
    .unwrap();
    let provisioner = Provisioner::connect(TenantsFile::load(&path).unwrap())
        .await
        .unwrap();
    let report = provisioner.migrate(&ApplyOptions::new()).await.unwrap();
    assert!(report.is_success(), "{report}");
    provisioner.close().await;
    // The shared database, the bridge tenant's schema and the silo database.
    eventually("the migrations to be heard", || {
        sqlx.stats().migrations_heard >= 3
            && deadpool.stats().migrations_heard >= 3
            && sqlx.stats().open_silos == 0
            && deadpool.stats().open_silos == 0
    })
    .await;

    for (tenant, before) in tenants.iter().zip(before) {
        let new = if tenant.model == DataModel::Pool {
            "done"
        } else {
            "colour"
        };
        let mut expected = before.clone();
        expected.push(new.to_owned());
        assert_eq!(columns_sqlx(&sqlx, tenant).await, expected, "{}", tenant.id);
        assert_eq!(
            columns_deadpool(&deadpool, tenant).await,
            expected,
            "{}",
            tenant.id
        );
    }
    sqlx.close().await;
    deadpool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
