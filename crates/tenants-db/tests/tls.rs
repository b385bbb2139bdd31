//! TLS to PostgreSQL as libpq's `sslmode` means it, on both drivers, against a
//! cluster that takes TLS connections only (`hostssl` in `pg_hba.conf`) with a
//! certificate made for the test: verification that holds, refusals that say why,
//! and every part of the crate reaching that cluster.
#![cfg(all(feature = "sqlx", feature = "deadpool"))]

mod common;

use std::time::Duration;

use common::{Probe, World, until_listening};
use tenants_core::{DataModel, Tenant};
use tenants_db::{Deadpool, Error, PgCatalog, Sqlx, TenantRouter};
use tenants_test_support::{
    CHANNEL_BINDING_USER, TestServer, postgres, tls_postgres, tls_postgres_expired, unique_name,
    unrelated_ca_file, with_params,
};

/// `url` with `localhost` replaced by the address it resolves to: the same
/// server, under a name its certificate does not carry.
fn by_address(url: &str) -> String {
    url.replacen("@localhost:", "@127.0.0.1:", 1)
}

fn ca(pg: &TestServer) -> String {
    pg.ca_file().unwrap().display().to_string()
}

fn pool_tenant() -> Tenant {
    Tenant::new(
        unique_name("t").replace('_', "-").parse().unwrap(),
        DataModel::Pool,
    )
}

/// Whether a router transaction on `url` runs over TLS, through sqlx.
async fn sqlx_ssl(url: &str) -> Result<bool, Error> {
    let router = TenantRouter::<Sqlx>::builder()
        .server("main", url)
        .acquire_timeout(Duration::from_secs(5))
        .build()?;
    let mut tx = router.begin(&pool_tenant()).await?;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ssl)
}

/// Whether a router transaction on `url` runs over TLS, through deadpool.
async fn deadpool_ssl(url: &str) -> Result<bool, Error> {
    let router = TenantRouter::<Deadpool>::builder()
        .server("main", url)
        .acquire_timeout(Duration::from_secs(5))
        .build()?;
    let tx = router.begin(&pool_tenant()).await?;
    let ssl: bool = tx
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(ssl)
}

/// Both drivers' answers for one URL.
async fn both(url: &str) -> [Result<bool, Error>; 2] {
    [sqlx_ssl(url).await, deadpool_ssl(url).await]
}

fn assert_refused(results: [Result<bool, Error>; 2], because: &str, url: &str) {
    for (driver, result) in ["sqlx", "deadpool"].iter().zip(results) {
        match result {
            Err(error) => {
                let message = error.to_string().to_lowercase();
                assert!(
                    message.contains(because),
                    "{driver} on {url}: the error should say {because:?}: {message}"
                );
            }
            Ok(ssl) => panic!("{driver} on {url} connected (ssl: {ssl}); it must be refused"),
        }
    }
}

fn assert_connects(results: [Result<bool, Error>; 2], tls: bool, url: &str) {
    for (driver, result) in ["sqlx", "deadpool"].iter().zip(results) {
        match result {
            Ok(ssl) => assert_eq!(ssl, tls, "{driver} on {url}: TLS in use"),
            Err(error) => panic!("{driver} on {url}: {error}"),
        }
    }
}

#[tokio::test]
async fn verify_full_with_the_right_ca_and_host_name_connects() {
    let pg = tls_postgres();
    let url = pg.admin_url();
    assert!(url.contains("sslmode=verify-full"), "{url}");
    assert_connects(both(url).await, true, url);
}

#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused_by_verify_full_only() {
    let pg = tls_postgres();
    let url = by_address(pg.admin_url());
    assert_refused(both(&url).await, "not valid for name", &url);
    // verify-ca checks the chain only: deadpool connects; sqlx, which would add every
    // public CA to the chain check, refuses the mode.
    let verify_ca = with_params(&url, &format!("sslmode=verify-ca&sslrootcert={}", ca(pg)));
    assert!(deadpool_ssl(&verify_ca).await.unwrap());
    assert_sqlx_refuses(&verify_ca, "verify-full").await;
}

/// sqlx refuses `url` before connecting, with a TLS error that says `hint`.
async fn assert_sqlx_refuses(url: &str, hint: &str) {
    match sqlx_ssl(url).await {
        Err(Error::Tls(message)) => assert!(message.contains(hint), "{url}: {message}"),
        other => panic!("sqlx on {url}: {other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let pg = tls_postgres();
    let unrelated = unrelated_ca_file().display().to_string();
    let url = with_params(
        pg.admin_url(),
        &format!("sslmode=verify-full&sslrootcert={unrelated}"),
    );
    assert_refused(both(&url).await, "unknownissuer", &url);
    for mode in ["verify-ca", "require"] {
        // `require` with a CA file verifies the chain, as libpq's does.
        let url = with_params(
            pg.admin_url(),
            &format!("sslmode={mode}&sslrootcert={unrelated}"),
        );
        let refused = deadpool_ssl(&url).await.unwrap_err().to_string();
        assert!(
            refused.to_lowercase().contains("unknownissuer"),
            "{url}: {refused}"
        );
        assert_sqlx_refuses(&url, "verify-full").await;
    }
    // The platform's trust store does not hold the test's CA either.
    let system = with_params(pg.admin_url(), "sslmode=verify-full&sslrootcert=system");
    for (driver, result) in ["sqlx", "deadpool"].iter().zip(both(&system).await) {
        assert!(result.is_err(), "{driver} on {system} connected");
    }
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let pg = tls_postgres_expired();
    let url = pg.admin_url();
    assert_refused(both(url).await, "expired", url);
    let verify_ca = with_params(url, &format!("sslmode=verify-ca&sslrootcert={}", ca(pg)));
    let refused = deadpool_ssl(&verify_ca).await.unwrap_err().to_string();
    assert!(refused.contains("expired"), "{refused}");
}

#[tokio::test]
async fn require_is_refused_by_a_server_without_tls() {
    let plain = postgres();
    let url = with_params(plain.admin_url(), "sslmode=require");
    assert_refused(both(&url).await, "tls", &url);
    let verify = with_params(
        plain.admin_url(),
        &format!("sslmode=verify-full&sslrootcert={}", ca(tls_postgres())),
    );
    assert_refused(both(&verify).await, "tls", &verify);
}

#[tokio::test]
async fn disable_and_prefer_connect_as_the_server_allows() {
    let plain = postgres();
    for mode in ["disable", "prefer"] {
        let url = with_params(plain.admin_url(), &format!("sslmode={mode}"));
        assert_connects(both(&url).await, false, &url);
    }
    let pg = tls_postgres();
    // No sslmode: prefer, as libpq.
    for params in ["sslmode=prefer", "sslmode=require", ""] {
        let url = with_params(pg.admin_url(), params);
        assert_connects(both(&url).await, true, &url);
    }
    // The TLS-only server refuses a plain connection.
    let url = with_params(pg.admin_url(), "sslmode=disable");
    assert_refused(both(&url).await, "no encryption", &url);
}

#[tokio::test]
async fn allow_retries_with_tls_on_deadpool_and_is_refused_by_sqlx() {
    let url = with_params(tls_postgres().admin_url(), "sslmode=allow");
    assert!(deadpool_ssl(&url).await.unwrap(), "allow ends on TLS");
    let plain = with_params(postgres().admin_url(), "sslmode=allow");
    assert!(!deadpool_ssl(&plain).await.unwrap(), "allow starts plain");
    match sqlx_ssl(&url).await {
        Err(Error::Tls(message)) => assert!(message.contains("sslmode=allow"), "{message}"),
        other => panic!("sqlx with sslmode=allow: {other:?}"),
    }
}

#[tokio::test]
async fn channel_binding_require_is_honoured_or_refused() {
    let pg = tls_postgres();
    pg.psql(
        pg.admin_url(),
        &format!(
            "DO $$ BEGIN CREATE ROLE {CHANNEL_BINDING_USER} LOGIN SUPERUSER PASSWORD 'bound'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ),
    );
    let scram = pg.url_as(CHANNEL_BINDING_USER, "bound", "postgres");
    let bound = format!("{scram}&channel_binding=require");
    assert!(deadpool_ssl(&bound).await.unwrap());
    // Trust authentication binds nothing: require refuses it.
    let trusted = format!("{}&channel_binding=require", pg.admin_url());
    assert!(deadpool_ssl(&trusted).await.is_err(), "{trusted}");
    match sqlx_ssl(&bound).await {
        Err(Error::Tls(message)) => assert!(message.contains("channel_binding"), "{message}"),
        other => panic!("sqlx with channel_binding=require: {other:?}"),
    }
    // prefer (the default) connects on both.
    assert_connects(both(&scram).await, true, &scram);
}

#[tokio::test]
async fn every_model_is_served_over_tls_on_both_drivers() {
    let world = World::on(tls_postgres(), 2, 2, 2);
    assert!(world.app_url().contains("sslmode=verify-full"));
    // Bridge schemas share statements: their shapes are read over TLS too.
    let sqlx: TenantRouter<Sqlx> = world
        .router()
        .bridge_statement_sharing(true)
        .build()
        .unwrap();
    let deadpool: TenantRouter<Deadpool> = world
        .router()
        .bridge_statement_sharing(true)
        .build()
        .unwrap();
    until_listening(&sqlx).await;
    until_listening(&deadpool).await;
    for tenant in world.tenants() {
        let secret = format!("{}:tls", tenant.id);
        let seen = sqlx.write_read(&tenant, &secret, true).await.unwrap();
        assert!(
            seen.iter()
                .all(|s| s.starts_with(&format!("{}:", tenant.id)))
        );
        assert!(seen.contains(&secret), "{seen:?}");
        let seen = deadpool.write_read(&tenant, &secret, true).await.unwrap();
        assert_eq!(seen.iter().filter(|s| **s == secret).count(), 2, "{seen:?}");
    }
    // The checks of the role and of every server run over TLS too.
    sqlx.verify().await.unwrap();
    deadpool.verify().await.unwrap();
}

#[tokio::test]
async fn the_migration_listener_connects_over_tls() {
    let world = World::on(tls_postgres(), 1, 0, 0);
    let sqlx: TenantRouter<Sqlx> = world.router().build().unwrap();
    let deadpool: TenantRouter<Deadpool> = world.router().build().unwrap();
    sqlx.write_read(&world.pool[0], "x", false).await.unwrap();
    deadpool
        .write_read(&world.pool[0], "x", false)
        .await
        .unwrap();
    for _ in 0..200 {
        world.admin(&format!("NOTIFY {}", tenants_db::MIGRATED_CHANNEL));
        if sqlx.stats().migrations_heard > 0 && deadpool.stats().migrations_heard > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "announcements heard: sqlx {}, deadpool {}",
        sqlx.stats().migrations_heard,
        deadpool.stats().migrations_heard
    );
}

#[tokio::test]
async fn the_catalog_and_its_listeners_connect_over_tls() {
    let pg = tls_postgres();
    let url = pg.fresh_database();
    let catalog = PgCatalog::connect(&url).unwrap();
    catalog.install().await.unwrap();
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _listener = PgCatalog::subscribe(catalog.pool(), move |event| {
        let _ = sender.send(event);
    })
    .await
    .unwrap();
    let tenant = pool_tenant();
    catalog.put(&tenant).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("the event arrives over the TLS LISTEN connection")
        .unwrap();
    assert_eq!(event.tenant(), tenant.id);
    // A URL the catalog cannot honour is refused before any connection.
    assert!(matches!(
        PgCatalog::connect(&with_params(&url, "sslmode=verify-full")),
        Err(Error::Tls(_))
    ));
}
