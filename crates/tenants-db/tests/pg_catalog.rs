//! The PostgreSQL catalog: records round-trip, a change made through one instance
//! reaches the cache of another through LISTEN/NOTIFY, and a failing store is
//! "unavailable", never "no such tenant".
#![cfg(feature = "sqlx")]

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tenants_core::{CachedCatalog, DataModel, Error, Tenant, TenantCatalog, TenantStatus};
use tenants_db::PgCatalog;

async fn fresh_catalog() -> (String, PgCatalog) {
    let url = tenants_test_support::postgres().fresh_database();
    let catalog = PgCatalog::new(PgPool::connect(&url).await.unwrap());
    catalog.install().await.unwrap();
    (url, catalog)
}

fn tenant(id: &str) -> Tenant {
    Tenant::new(id.parse().unwrap(), DataModel::Pool).with_name(id.to_uppercase())
}

#[tokio::test]
async fn records_round_trip() {
    let (url, catalog) = fresh_catalog().await;
    // Installing again, and from several instances at once, changes nothing.
    let again = PgCatalog::new(PgPool::connect(&url).await.unwrap());
    let (a, b) = tokio::join!(catalog.install(), again.install());
    a.unwrap();
    b.unwrap();

    let acme = tenant("acme")
        .with_domain("Shop.Acme.Example.")
        .with_plan("professional");
    catalog.put(&acme).await.unwrap();
    catalog.put(&tenant("globex")).await.unwrap();
    assert_eq!(
        *catalog.get("acme".parse().unwrap()).await.unwrap().unwrap(),
        acme
    );
    assert_eq!(
        catalog
            .get_by_domain("shop.acme.example")
            .await
            .unwrap()
            .unwrap()
            .id,
        "acme"
    );
    assert!(
        catalog
            .get("initech".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        catalog
            .get_by_domain("nobody.example")
            .await
            .unwrap()
            .is_none()
    );
    let ids: Vec<_> = catalog
        .list()
        .await
        .unwrap()
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["acme", "globex"]);

    assert!(catalog.remove("globex".parse().unwrap()).await.unwrap());
    assert!(!catalog.remove("globex".parse().unwrap()).await.unwrap());
    assert_eq!(catalog.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_change_reaches_every_instance_cache() {
    let (url, writer) = fresh_catalog().await;
    writer.put(&tenant("acme")).await.unwrap();

    // Another application instance, with its own pool and cache.
    let pool = PgPool::connect(&url).await.unwrap();
    let cache = Arc::new(
        CachedCatalog::builder(PgCatalog::new(pool.clone()))
            .ttl(Duration::from_secs(3600))
            .build(),
    );
    let _watch = PgCatalog::watch(&pool, &cache).await.unwrap();
    let id = "acme".parse().unwrap();
    assert!(cache.get(id).await.unwrap().unwrap().is_active());
    assert!(cache.get_now(id).is_some(), "cached for an hour");

    writer
        .put(&tenant("acme").with_status(TenantStatus::Suspended))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cache.get_now(id).is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change was not announced"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        cache.get(id).await.unwrap().unwrap().status,
        TenantStatus::Suspended
    );

    // A tenant removed by hand (SQL, not the API) is announced too.
    sqlx::query("DELETE FROM tenants.tenants")
        .execute(writer.pool())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cache.get_now(id).is_some() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cache.get(id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failing_store_is_unavailable_not_unknown() {
    // Nothing listens on port 9.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://app@127.0.0.1:9/app")
        .unwrap();
    let down = PgCatalog::new(pool);
    let err = down.get("acme".parse().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::CatalogUnavailable(_)), "{err}");

    // A record that no longer reads as a tenant is not "no such tenant" either.
    let (_, catalog) = fresh_catalog().await;
    sqlx::query(
        "INSERT INTO tenants.tenants (id, record) VALUES ('acme', '{\"model\": \"lake\"}')",
    )
    .execute(catalog.pool())
    .await
    .unwrap();
    let err = catalog.get("acme".parse().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::CatalogUnavailable(_)), "{err}");
}
