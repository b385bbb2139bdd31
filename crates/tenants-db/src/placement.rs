//! Where a tenant's data lives, decided once from its record.

use tenants_core::{DataModel, SqlIdent, Tenant, TenantId, TenantStatus};

use crate::Error;

/// Where a tenant's rows are: derived from the tenant record, so every backend routes
/// the same way and moving a tenant is a record change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// Shared tables, rows tagged with the tenant id.
    Pool {
        /// The value of `tenant_id` for this tenant.
        tenant: TenantId,
    },
    /// A schema of the shared database.
    Bridge {
        /// The tenant's schema (a validated identifier).
        schema: SqlIdent,
    },
    /// A database of its own.
    Silo {
        /// The server holding it; the router's default when `None`.
        server: Option<String>,
        /// The database (a validated identifier).
        database: SqlIdent,
    },
}

impl Placement {
    /// The placement of an active tenant. Suspended and deleted tenants are refused:
    /// the layer refuses them too, but background jobs reach the router directly.
    pub fn of(tenant: &Tenant) -> Result<Self, Error> {
        Ok(match active_model(tenant)? {
            DataModel::Pool => Placement::Pool { tenant: tenant.id },
            DataModel::Bridge { schema } => Placement::Bridge {
                schema: schema.clone(),
            },
            DataModel::Silo { database, server } => Placement::Silo {
                server: server.clone(),
                database: database.clone(),
            },
        })
    }
}

/// The data model of an active tenant, refusing suspended and deleted ones (what
/// [`Placement::of`] decides, without copying the record's names).
pub(crate) fn active_model(tenant: &Tenant) -> Result<&DataModel, Error> {
    if tenant.status != TenantStatus::Active {
        return Err(Error::Inactive {
            tenant: tenant.id,
            status: tenant.status,
        });
    }
    Ok(&tenant.model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_follows_the_record_and_refuses_inactive_tenants() {
        let id: TenantId = "acme".parse().unwrap();
        let silo = Tenant::new(
            id,
            DataModel::Silo {
                database: SqlIdent::new("acme_db").unwrap(),
                server: Some("eu".into()),
            },
        );
        assert_eq!(
            Placement::of(&silo).unwrap(),
            Placement::Silo {
                server: Some("eu".into()),
                database: SqlIdent::new("acme_db").unwrap()
            }
        );
        assert_eq!(
            Placement::of(&Tenant::new(id, DataModel::Pool)).unwrap(),
            Placement::Pool { tenant: id }
        );
        let suspended = silo.with_status(TenantStatus::Suspended);
        assert!(matches!(
            Placement::of(&suspended),
            Err(Error::Inactive { .. })
        ));
    }
}
