//! Tenant connection routing for [`tenants`](https://docs.rs/tenants): hand a handler
//! a connection that sees only its tenant's data, in the tenant's data model.
//!
//! - [`TenantRouter`] serves PostgreSQL tenants of all three models at once — **pool**
//!   (shared tables, row-level security reading [`TENANT_SETTING`]), **bridge** (a
//!   schema per tenant) and **silo** (a database per tenant, on any server, within a
//!   global connection budget) — and hands out the driver's own types: sqlx's
//!   `Transaction` ([`Sqlx`], feature `sqlx`) or deadpool-postgres clients
//!   ([`Deadpool`], feature `deadpool`). Handlers keep writing ordinary driver code.
//! - [`sqlite::SqliteSilo`] (feature `sqlite`) keeps each silo tenant in a SQLite
//!   file: the embedded default that runs with no server to install.
//! - [`PgCatalog`] (feature `sqlx`) keeps tenant records in a PostgreSQL table,
//!   invalidates every instance's cache through `LISTEN`/`NOTIFY`, and announces
//!   each tenant's lifecycle ([`TenantEvent`]: created, moved, suspended, ...) to
//!   [subscribers](PgCatalog::subscribe).
//! - [`TenantRole`] names the per-tenant admin / developer / customer roles, whose
//!   grants the database enforces.
//! - [`tls`] (features `sqlx` and `deadpool`) reads a connection URL's `sslmode`,
//!   `sslrootcert`, `sslcert` / `sslkey` and `channel_binding` as libpq does, for
//!   every connection the crate opens, over rustls on aws-lc-rs.
//! - Tenants as code (the tenants file, plan, apply, migrate, doctor, move, runtime
//!   sign-up) live in the `tenants-provision` crate, for the CLI and the services
//!   that provision; an application that only routes does not compile them.
//!
//! # Isolation
//!
//! A tenant transaction opens with one message that also confines it: the session
//! put back as it connected (whatever an earlier handler set for it), then the
//! tenant setting (pool and bridge; silo connections are opened with it), the schema
//! search path (bridge) and, when asked, the tenant's role, all transaction-local,
//! so nothing outlives `COMMIT` or `ROLLBACK`. It costs no round trip beyond the
//! `BEGIN` every transaction sends (on deadpool, not even that: `begin` sends it
//! ahead of the caller's first statement without waiting). See [`TENANT_SETTING`] for the statements,
//! [`ConnectionMode`] for servers behind a transaction pooler,
//! [`RouterBuilder::citus`] for a Citus coordinator (two messages there, so what
//! the workers receive holds no `BEGIN`),
//! [`MIGRATED_CHANNEL`] for statements cached before a migration, and
//! [`TenantRouter::verify`] for the checks on the application's role and servers.
//!
//! # Example
//!
//! A silo tenant in a SQLite file (the same routing, with no server):
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tenants_core::{DataModel, SqlIdent, Tenant};
//! use tenants_db::sqlite::SqliteSilo;
//!
//! let dir = std::env::temp_dir().join(format!("tenants-db-doc-{}", std::process::id()));
//! let silo = SqliteSilo::new(&dir);
//! let acme = Tenant::new("acme".parse()?, DataModel::Silo {
//!     database: SqlIdent::new("acme")?,
//!     server: None,
//! });
//!
//! let mut tx = silo.begin(&acme).await?;
//! sqlx::query("CREATE TABLE IF NOT EXISTS notes (body TEXT)").execute(&mut *tx).await?;
//! sqlx::query("INSERT INTO notes VALUES ('hello')").execute(&mut *tx).await?;
//! tx.commit().await?;
//! assert!(dir.join("acme.sqlite3").exists());
//! # silo.close().await;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```
//!
//! PostgreSQL tenants of every model through one router:
//!
//! ```no_run
//! # #[cfg(feature = "sqlx")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tenants_core::StaticCatalog;
//! use tenants_db::{Sqlx, TenantRole, TenantRouter};
//!
//! let catalog = StaticCatalog::from_toml_str(r#"
//!     [tenants.free-shop]
//!     model = "pool"
//!     [tenants.mid-shop]
//!     model = "bridge"
//!     schema = "mid_shop"
//!     [tenants.big-shop]
//!     model = "silo"
//!     database = "big_shop"
//! "#)?;
//! let router = TenantRouter::<Sqlx>::builder()
//!     .server("main", "postgres://app@localhost/app")
//!     .build()?;
//! for tenant in catalog.iter() {
//!     let mut tx = router.begin_as(tenant, TenantRole::Customer).await?;
//!     let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
//!         .fetch_one(&mut *tx)
//!         .await?;
//!     println!("{}: {count} orders", tenant.id);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `sqlx` | [`TenantRouter`]`<`[`Sqlx`]`>`: PostgreSQL routing handing out sqlx types; [`PgCatalog`] | no |
//! | `deadpool` | [`TenantRouter`]`<`[`Deadpool`]`>`: PostgreSQL routing handing out deadpool-postgres clients | no |
//! | `sqlite` | [`sqlite::SqliteSilo`]: one SQLite file per silo tenant, through sqlx | no |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "sqlx")]
mod catalog;
#[cfg(feature = "deadpool")]
mod deadpool_driver;
#[cfg(any(feature = "sqlx", feature = "deadpool"))]
mod driver;
mod error;
mod isolation;
mod mode;
mod placement;
mod role;
#[cfg(any(feature = "sqlx", feature = "deadpool"))]
mod router;
#[cfg(any(feature = "sqlx", feature = "deadpool"))]
mod shape;
#[cfg(any(feature = "sqlx", feature = "deadpool"))]
mod silo;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;
#[cfg(feature = "sqlx")]
mod sqlx_driver;
#[cfg(feature = "tls")]
pub mod tls;
mod verify;

#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use catalog::{CATALOG_CHANNEL, EVENTS_CHANNEL, PgCatalog, TenantEvent};
#[cfg(feature = "deadpool")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadpool")))]
pub use deadpool_driver::{Deadpool, TenantTransaction};
#[cfg(feature = "deadpool")]
pub use deadpool_postgres;
#[cfg(any(feature = "sqlx", feature = "deadpool"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlx", feature = "deadpool"))))]
pub use driver::Driver;
pub use error::{Error, SiloMismatch};
pub use isolation::{TENANT_SETTING, sql_literal};
pub use mode::{ConnectionMode, UnknownConnectionMode};
pub use placement::Placement;
pub use role::TenantRole;
#[cfg(any(feature = "sqlx", feature = "deadpool"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlx", feature = "deadpool"))))]
pub use router::{DEFAULT_CONNECTION_LIFETIME, RouterBuilder, RouterStats, TenantRouter};
#[cfg(any(feature = "sqlx", feature = "deadpool"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlx", feature = "deadpool"))))]
pub use shape::{MIGRATED_CHANNEL, Migrated};
#[cfg(any(feature = "sqlx", feature = "sqlite"))]
pub use sqlx;
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use sqlx_driver::Sqlx;
#[cfg(feature = "deadpool")]
pub use tokio_postgres;
pub use verify::{HAZARDS_SQL, Hazard};
