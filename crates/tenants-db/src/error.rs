//! The crate's error type.

use tenants_core::TenantId;

/// Everything that can go wrong routing a tenant to its data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tenant lives in a data model this router does not serve.
    #[error("tenant {tenant} uses the {model} model, which this router does not serve")]
    ModelNotServed {
        /// The tenant.
        tenant: TenantId,
        /// Its data model.
        model: &'static str,
    },
    /// The tenant is not active; routing it would serve a suspended or deleted tenant.
    #[error("tenant {tenant} is {status}, not active")]
    Inactive {
        /// The tenant.
        tenant: TenantId,
        /// Its status.
        status: tenants_core::TenantStatus,
    },
    /// The database refused or failed.
    #[cfg(feature = "sqlite")]
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed for a tenant.
    #[cfg(feature = "sqlite")]
    #[error("migrating tenant {tenant}: {source}")]
    Migrate {
        /// The tenant.
        tenant: TenantId,
        /// What failed.
        source: sqlx::migrate::MigrateError,
    },
    /// Opening a tenant's database failed (the error is shared by every request that
    /// waited for the same open).
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),
    /// Creating a tenant's storage failed (a directory, a file).
    #[error("storage for tenant {tenant}: {source}")]
    Storage {
        /// The tenant.
        tenant: TenantId,
        /// What failed.
        source: std::io::Error,
    },
}
