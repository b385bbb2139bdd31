//! The provisioning engine on a PostgreSQL that takes TLS connections only
//! (`hostssl` in `pg_hba.conf`), reached with `sslmode=verify-full`.

mod common;

use tenants_db::Error;
use tenants_provision::{Environment, Format, Provisioner, TenantsFile};
use tenants_test_support::{tls_postgres, unique_name, with_params};

#[tokio::test]
async fn the_provisioning_engine_applies_over_tls() {
    let pg = tls_postgres();
    let url = pg.fresh_database();
    // Letters and digits: a tenant id and an SQL identifier alike.
    let t = unique_name("p").replace('_', "");
    let text = format!(
        r#"
[servers.main]
url_env = "TLS_DATABASE_URL"
app_role = "app_{t}"

[tenants.bridge-{t}]
model = "bridge"
schema = "bridge_{t}"

[tenants.silo-{t}]
model = "silo"
database = "silo_{t}"
"#
    );
    let file = TenantsFile::parse(&text, Format::Toml, "tenants.toml").unwrap();
    let env = Environment::empty().var("TLS_DATABASE_URL", &url);
    let provisioner = Provisioner::connect_with_env(file, env).await.unwrap();
    common::apply_all(&provisioner).await;
    assert!(provisioner.plan().await.unwrap().is_empty());
    let schema = pg.psql(
        &url,
        &format!("SELECT count(*) FROM pg_namespace WHERE nspname = 'bridge_{t}'"),
    );
    assert_eq!(schema, "1");
    let database = pg.psql(
        &url,
        &format!("SELECT count(*) FROM pg_database WHERE datname = 'silo_{t}'"),
    );
    assert_eq!(database, "1");
    // The engine refuses a URL it cannot honour, naming the server.
    let file = TenantsFile::parse(&text, Format::Toml, "tenants.toml").unwrap();
    let env = Environment::empty().var("TLS_DATABASE_URL", with_params(&url, "sslmode=bogus"));
    match Provisioner::connect_with_env(file, env).await {
        Err(Error::Tls(message)) => {
            assert!(
                message.contains("\"main\"") && message.contains("sslmode=bogus"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}
