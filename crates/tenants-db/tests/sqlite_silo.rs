//! SQLite silo routing: each tenant in its own file, nothing shared.
#![cfg(feature = "sqlite")]

use std::path::PathBuf;
use std::time::Duration;

use sqlx::Row;
use tenants_core::{DataModel, SqlIdent, Tenant, TenantStatus};
use tenants_db::Error;
use tenants_db::sqlite::SqliteSilo;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tenants-db-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn silo_tenant(id: &str) -> Tenant {
    Tenant::new(
        id.parse().unwrap(),
        DataModel::Silo {
            database: SqlIdent::new(id.replace('-', "_")).unwrap(),
            server: None,
        },
    )
}

async fn migrated(dir: &PathBuf) -> SqliteSilo {
    let migrator = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/migrations"
    )))
    .await
    .unwrap();
    SqliteSilo::new(dir).migrations(migrator)
}

#[tokio::test]
async fn tenants_never_see_each_others_rows() {
    let dir = temp_dir("isolation");
    let silo = migrated(&dir).await;
    let tenants: Vec<Tenant> = ["tenant-a", "tenant-b", "tenant-c"].map(silo_tenant).into();
    let mut workers = Vec::new();
    for (i, tenant) in tenants.iter().cloned().enumerate() {
        for n in 0..5 {
            let silo = silo.clone();
            let tenant = tenant.clone();
            workers.push(tokio::spawn(async move {
                let mut tx = silo.begin(&tenant).await.unwrap();
                sqlx::query("INSERT INTO notes (body) VALUES (?)")
                    .bind(format!("secret of {} #{n}", tenant.id))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                i
            }));
        }
    }
    for worker in workers {
        worker.await.unwrap();
    }
    for tenant in &tenants {
        let mut conn = silo.acquire(tenant).await.unwrap();
        let rows = sqlx::query("SELECT body FROM notes")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(rows.len(), 5);
        for row in rows {
            let body: String = row.get("body");
            assert!(
                body.starts_with(&format!("secret of {} ", tenant.id)),
                "{body}"
            );
        }
    }
    assert!(dir.join("tenant_a.sqlite3").exists());
    silo.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn only_active_silo_tenants_are_routed() {
    let dir = temp_dir("models");
    let silo = SqliteSilo::new(&dir);
    let pool = Tenant::new("acme".parse().unwrap(), DataModel::Pool);
    assert!(matches!(
        silo.begin(&pool).await,
        Err(Error::ModelNotServed { model: "pool", .. })
    ));
    let suspended = silo_tenant("acme").with_status(TenantStatus::Suspended);
    assert!(matches!(
        silo.begin(&suspended).await,
        Err(Error::Inactive { .. })
    ));
    assert!(!dir.exists(), "nothing was created for refused tenants");
}

#[tokio::test]
async fn migrations_run_once_per_file_and_idle_pools_close() {
    let dir = temp_dir("lifecycle");
    let silo = migrated(&dir)
        .await
        .idle_timeout(Duration::from_millis(100));
    let tenant = silo_tenant("acme");
    let first = silo.pool(&tenant).await.unwrap();
    let again = silo.pool(&tenant).await.unwrap();
    sqlx::query("INSERT INTO notes (body) VALUES ('x')")
        .execute(&again)
        .await
        .unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&first)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Reopening after the idle eviction keeps the data; the migrations run again
    // and find nothing to apply.
    let reopened = silo.pool(&tenant).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&reopened)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&reopened)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    for _ in 0..50 {
        if first.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(first.is_closed(), "the idle pool was closed on eviction");
    silo.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
