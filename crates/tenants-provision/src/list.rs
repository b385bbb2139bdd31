//! `list`: every tenant, where it lives and whether it matches the file.

use std::collections::HashMap;
use std::fmt;

use tenants_core::{DataModel, Tenant, TenantId};

use super::plan::{Origin, Scope};
use super::provisioner::Provisioner;
use tenants_db::Error;

/// One tenant as [`Provisioner::list`] sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TenantListing {
    /// The tenant.
    pub id: TenantId,
    /// Its model: `pool`, `bridge` or `silo`.
    pub model: &'static str,
    /// Where its data lives: `shared database`, `schema x`, `database x on main`.
    pub location: String,
    /// How it compares with the file.
    pub state: TenantState,
    /// Its load on a Citus cluster, when the cluster tracks it.
    pub load: Option<TenantLoad>,
}

/// A tenant's load on a Citus cluster in the current period (Citus's
/// `citus_stat_tenants`, kept when `citus.stat_tenants_track = 'all'`, over periods of
/// `citus.stat_tenants_period` seconds). Citus counts the queries it routes to one
/// tenant: pool-table queries that name the tenant (`WHERE tenant_id = ..`) and
/// queries of a bridge tenant's distributed schema. Citus keeps these counts per
/// node, for every database on it: a tenant of the same name in another database of
/// the cluster adds to them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TenantLoad {
    /// Queries in the current period.
    pub queries: i64,
    /// Of those, reads.
    pub reads: i64,
    /// CPU time they used, in seconds.
    pub cpu_seconds: f64,
}

/// How a tenant compares with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantState {
    /// Declared and matching the file.
    Ready,
    /// Declared, with this many changes pending (`apply` makes them).
    Pending(usize),
    /// The last apply failed for it, with this error.
    Failed(String),
    /// Provisioned from the file, no longer declared: `plan` shows it as a drop.
    Removed,
    /// Provisioned at runtime by the application.
    Runtime,
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantState::Ready => f.write_str("ready"),
            TenantState::Pending(n) => write!(f, "{n} change(s) pending"),
            TenantState::Failed(error) => write!(f, "failed: {error}"),
            TenantState::Removed => f.write_str("not in the file (plan drops it)"),
            TenantState::Runtime => f.write_str("provisioned at runtime"),
        }
    }
}

/// A row of `tenants.provisioned`: id, origin, last error, catalog record.
type ProvisionedRow = (
    String,
    String,
    Option<String>,
    Option<sqlx::types::Json<Tenant>>,
);

fn location(tenant: &Tenant, server: &str) -> String {
    match &tenant.model {
        DataModel::Pool => "shared database".into(),
        DataModel::Bridge { schema } => format!("schema {schema}"),
        DataModel::Silo { database, .. } => format!("database {database} on {server}"),
    }
}

impl Provisioner {
    /// Every tenant of the file and of the catalog, in id order.
    pub async fn list(&self) -> Result<Vec<TenantListing>, Error> {
        let plan = self.plan().await?;
        let installed: bool =
            sqlx::query_scalar("SELECT to_regclass('tenants.provisioned') IS NOT NULL")
                .fetch_one(self.shared_pool()?)
                .await?;
        let rows: Vec<ProvisionedRow> = if installed {
            sqlx::query_as(
                "SELECT p.id, p.origin, p.error, t.record FROM tenants.provisioned p \
                     LEFT JOIN tenants.tenants t ON t.id = p.id",
            )
            .fetch_all(self.shared_pool()?)
            .await?
        } else {
            Vec::new()
        };
        let mut listed = Vec::new();
        for spec in &self.file.tenants {
            let id = spec.tenant.id;
            let pending = plan.changes_of(Scope::Tenant(id)).count();
            let error = rows
                .iter()
                .find(|(row, ..)| row == id.as_str())
                .and_then(|(_, _, error, _)| error.clone());
            let state = match (error, pending) {
                (Some(error), _) => TenantState::Failed(error),
                (None, 0) => TenantState::Ready,
                (None, n) => TenantState::Pending(n),
            };
            listed.push(TenantListing {
                id,
                model: spec.tenant.model.name(),
                location: location(&spec.tenant, &spec.server),
                state,
                load: None,
            });
        }
        for (id, origin, error, record) in rows {
            let Ok(id) = id.parse::<TenantId>() else {
                continue;
            };
            if self.file.tenant(&id).is_some() {
                continue;
            }
            let state = match error {
                Some(error) => TenantState::Failed(error),
                None if origin == Origin::Runtime.as_str() => TenantState::Runtime,
                None => TenantState::Removed,
            };
            let (model, location) = match &record {
                Some(record) => (
                    record.0.model.name(),
                    location(&record.0, self.server_of(&record.0.model)),
                ),
                None => ("?", "-".into()),
            };
            listed.push(TenantListing {
                id,
                model,
                location,
                state,
                load: None,
            });
        }
        listed.sort_by_key(|t| t.id);
        self.add_citus_load(&mut listed).await?;
        Ok(listed)
    }

    /// Fills in each pool and bridge tenant's load from `citus_stat_tenants`, on a
    /// Citus coordinator that tracks it.
    async fn add_citus_load(&self, listed: &mut [TenantListing]) -> Result<(), Error> {
        if !super::citus::declared(self) {
            return Ok(());
        }
        // Citus reports a query it could not attribute with no tenant (NULL).
        let rows: Vec<(Option<String>, i64, i64, f64)> = sqlx::query_as(
            "SELECT tenant_attribute, sum(query_count_in_this_period)::int8, \
                    sum(read_count_in_this_period)::int8, sum(cpu_usage_in_this_period)::float8 \
             FROM citus_stat_tenants GROUP BY tenant_attribute",
        )
        .fetch_all(self.shared_pool()?)
        .await?;
        let loads: HashMap<String, TenantLoad> = rows
            .into_iter()
            .filter_map(|(attribute, queries, reads, cpu_seconds)| {
                let load = TenantLoad {
                    queries,
                    reads,
                    cpu_seconds,
                };
                Some((attribute?, load))
            })
            .collect();
        for listing in listed {
            // Citus names a pool tenant by its distribution value, a bridge tenant
            // by its schema.
            let attribute = match listing.location.strip_prefix("schema ") {
                Some(schema) => schema,
                None => listing.id.as_str(),
            };
            listing.load = loads.get(attribute).copied();
        }
        Ok(())
    }
}
