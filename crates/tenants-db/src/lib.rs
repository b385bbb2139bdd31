//! Tenant connection routing for [`tenants`](https://docs.rs/tenants): hand a handler
//! a connection that sees only its tenant's data, in the tenant's data model.
//!
//! This release routes **silo** tenants stored in SQLite files, one database file per
//! tenant ([`sqlite::SqliteSilo`], feature `sqlite`): the embedded default that runs
//! with no server to install. Handlers get sqlx's own transaction type.
//!
//! # Example
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
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `sqlite` | [`sqlite::SqliteSilo`]: one SQLite file per silo tenant, through sqlx | no |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod placement;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

pub use error::Error;
pub use placement::Placement;
#[cfg(feature = "sqlite")]
pub use sqlx;
