//! [`PgCatalog`]: tenant records in a PostgreSQL table, with cache invalidation
//! across application instances through `LISTEN`/`NOTIFY`.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tenants_core::{CachedCatalog, DataModel, Tenant, TenantCatalog, TenantId, TenantStatus};

use crate::Error;

/// The channel on which changes to the catalog table are announced; the payload is
/// the changed tenant's id.
pub const CATALOG_CHANNEL: &str = "tenants_catalog";

/// The channel on which the catalog table announces each change as a
/// [`TenantEvent`] (read with [`PgCatalog::subscribe`]); the payload is JSON:
/// `{"id": ..., "before": {"status": ..., "model": ..., ...}, "after": {...}}`.
pub const EVENTS_CHANNEL: &str = "tenants_events";

/// A change in a tenant's life, as the catalog table saw it: whichever process made
/// it (the application, `tenants apply`, `tenants move`, or SQL by hand), every
/// [subscriber](PgCatalog::subscribe) hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantEvent {
    /// A tenant was registered.
    Created {
        /// The tenant.
        tenant: TenantId,
        /// Where its data lives.
        model: DataModel,
    },
    /// A tenant's data moved to another model or place (pool → silo, say).
    Moved {
        /// The tenant.
        tenant: TenantId,
        /// Where its data lived.
        from: DataModel,
        /// Where it lives now.
        to: DataModel,
    },
    /// A tenant's status changed: suspended, resumed, deleted.
    StatusChanged {
        /// The tenant.
        tenant: TenantId,
        /// The status before.
        from: TenantStatus,
        /// The status now.
        to: TenantStatus,
    },
    /// Something else of its record changed (name, plan, domains, options).
    Updated {
        /// The tenant.
        tenant: TenantId,
    },
    /// A tenant's record was removed from the catalog.
    Removed {
        /// The tenant.
        tenant: TenantId,
    },
}

impl TenantEvent {
    /// The tenant the event is about.
    pub fn tenant(&self) -> TenantId {
        match self {
            TenantEvent::Created { tenant, .. }
            | TenantEvent::Moved { tenant, .. }
            | TenantEvent::StatusChanged { tenant, .. }
            | TenantEvent::Updated { tenant }
            | TenantEvent::Removed { tenant } => *tenant,
        }
    }

    /// The events one notification on [`EVENTS_CHANNEL`] stands for (a change of
    /// both model and status is two events); `None` for a payload that does not
    /// read as one.
    pub fn parse(payload: &str) -> Option<Vec<TenantEvent>> {
        #[derive(serde::Deserialize)]
        struct State {
            #[serde(default)]
            status: TenantStatus,
            #[serde(flatten)]
            model: DataModel,
        }
        #[derive(serde::Deserialize)]
        struct Payload {
            id: TenantId,
            before: Option<State>,
            after: Option<State>,
        }
        let Payload { id, before, after } = serde_json::from_str(payload).ok()?;
        Some(match (before, after) {
            (None, Some(after)) => vec![TenantEvent::Created {
                tenant: id,
                model: after.model,
            }],
            (Some(_), None) => vec![TenantEvent::Removed { tenant: id }],
            (Some(before), Some(after)) => {
                let mut events = Vec::new();
                if before.model != after.model {
                    events.push(TenantEvent::Moved {
                        tenant: id,
                        from: before.model,
                        to: after.model,
                    });
                }
                if before.status != after.status {
                    events.push(TenantEvent::StatusChanged {
                        tenant: id,
                        from: before.status,
                        to: after.status,
                    });
                }
                if events.is_empty() {
                    events.push(TenantEvent::Updated { tenant: id });
                }
                events
            }
            (None, None) => return None,
        })
    }
}

/// Creates the catalog table and its change trigger; idempotent, and safe to run
/// from several instances at once (it holds an advisory lock).
const INSTALL_SQL: &str = r"
SELECT pg_advisory_xact_lock(hashtext('tenants.catalog.install'));
CREATE SCHEMA IF NOT EXISTS tenants;
CREATE TABLE IF NOT EXISTS tenants.tenants (
    id         text PRIMARY KEY,
    record     jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tenants_domains ON tenants.tenants USING gin ((record -> 'domains'));
CREATE OR REPLACE FUNCTION tenants.event_state(record jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'status', record -> 'status', 'model', record -> 'model', 'schema', record -> 'schema',
        'database', record -> 'database', 'server', record -> 'server'))
$$;
CREATE OR REPLACE FUNCTION tenants.announce_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenants_catalog', COALESCE(NEW.id, OLD.id));
    PERFORM pg_notify('tenants_events', jsonb_build_object(
        'id', COALESCE(NEW.id, OLD.id),
        'before', CASE WHEN TG_OP <> 'INSERT' THEN tenants.event_state(OLD.record) END,
        'after', CASE WHEN TG_OP <> 'DELETE' THEN tenants.event_state(NEW.record) END)::text);
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS announce_change ON tenants.tenants;
CREATE TRIGGER announce_change AFTER INSERT OR UPDATE OR DELETE ON tenants.tenants
    FOR EACH ROW EXECUTE FUNCTION tenants.announce_change();
";

/// Tenant records in the `tenants.tenants` table of a PostgreSQL database: the
/// catalog of deployments whose tenants sign up at runtime.
///
/// Each row holds a tenant's id and its whole [`Tenant`] record as `jsonb`; a
/// trigger announces every change on [`CATALOG_CHANNEL`]. Put a [`CachedCatalog`]
/// in front of it for the request path and let [`PgCatalog::watch`] invalidate the
/// cache when any instance changes a tenant, so suspending a tenant takes effect
/// everywhere at once rather than after the cache's TTL.
///
/// Failures of the database are reported as
/// [`CatalogUnavailable`](tenants_core::Error::CatalogUnavailable) (the layer answers
/// 503), never as an unknown tenant.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use tenants_core::{CachedCatalog, DataModel, Tenant};
/// use tenants_db::PgCatalog;
///
/// let store = PgCatalog::connect("postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=system")?;
/// store.install().await?; // once, as a role that may create the schema
/// store.put(&Tenant::new("acme".parse()?, DataModel::Pool).with_name("Acme")).await?;
///
/// let pool = store.pool().clone();
/// let catalog = Arc::new(CachedCatalog::new(store));
/// PgCatalog::watch(&pool, &catalog).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PgCatalog {
    pool: PgPool,
}

impl PgCatalog {
    /// A catalog reading the `tenants.tenants` table through `pool`. Build the
    /// pool from [`Sqlx::connect_options`](crate::Sqlx::connect_options) for the
    /// URL's `sslmode` to mean what libpq means, or use [`PgCatalog::connect`].
    pub fn new(pool: PgPool) -> Self {
        PgCatalog { pool }
    }

    /// A catalog on a pool of up to 10 connections to `url`, opened on first use;
    /// its TLS settings are read as libpq reads them ([`tls`](crate::tls)), and the
    /// `LISTEN` connections of [`watch`](Self::watch) and
    /// [`subscribe`](Self::subscribe) on its pool use them too.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] or [`Error::Config`] for a URL that cannot be used (see
    /// [`Sqlx::connect_options`](crate::Sqlx::connect_options)).
    pub fn connect(url: &str) -> Result<Self, Error> {
        let options = crate::Sqlx::connect_options(url)?;
        Ok(PgCatalog::new(
            sqlx::postgres::PgPoolOptions::new().connect_lazy_with(options),
        ))
    }

    /// The pool the catalog reads through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the `tenants` schema, table and change trigger if they are missing.
    pub async fn install(&self) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(INSTALL_SQL).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds a tenant, or replaces its record.
    pub async fn put(&self, tenant: &Tenant) -> Result<(), Error> {
        let record = serde_json::to_value(tenant)
            .map_err(|e| Error::Config(format!("tenant {}: {e}", tenant.id)))?;
        sqlx::query(
            "INSERT INTO tenants.tenants (id, record) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, updated_at = now()",
        )
        .bind(tenant.id.as_str())
        .bind(record)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a tenant's record; `false` when there was none.
    pub async fn remove(&self, id: TenantId) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM tenants.tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Keeps `cache` in step with the table: listens on [`CATALOG_CHANNEL`] over a
    /// connection of `pool` and invalidates each tenant announced. After a lost
    /// connection (when announcements may have been missed) it invalidates
    /// everything. The listener stops when the cache is dropped.
    ///
    /// Returns once listening, so changes made after it returns are seen.
    pub async fn watch<C: TenantCatalog + 'static>(
        pool: &PgPool,
        cache: &Arc<CachedCatalog<C>>,
    ) -> Result<tokio::task::JoinHandle<()>, Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CATALOG_CHANNEL).await?;
        let cache: Weak<CachedCatalog<C>> = Arc::downgrade(cache);
        Ok(tokio::spawn(async move {
            loop {
                let notification = listener.try_recv().await;
                let Some(cache) = cache.upgrade() else { return };
                match notification {
                    Ok(Some(notification)) => match notification.payload().parse() {
                        Ok(id) => cache.invalidate(id),
                        Err(_) => cache.invalidate_all(),
                    },
                    // Reconnected: announcements may have been missed.
                    Ok(None) => cache.invalidate_all(),
                    Err(error) => {
                        cache.invalidate_all();
                        tracing::warn!(%error, "tenant catalog listener failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }))
    }

    /// Calls `subscriber` with every [`TenantEvent`] of the catalog table, from any
    /// process, in the order they were committed: listens on [`EVENTS_CHANNEL`]
    /// over a connection of `pool`. Returns once listening, so changes made after
    /// it returns are heard; the listener runs until the returned handle is aborted.
    ///
    /// Delivery is at most once: events committed while the listening connection
    /// was down (it reconnects by itself) are not heard. Keep what must not be
    /// lost (billing, an audit trail) in a table written by the same transaction.
    ///
    /// An event is a hint, not a proof: PostgreSQL lets any role connected to the
    /// shared database `NOTIFY` on any channel (a bridge tenant's login users
    /// included), so read the tenant's record from the catalog before an event
    /// decides anything that matters.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(pool: sqlx::PgPool) -> Result<(), tenants_db::Error> {
    /// use tenants_db::{PgCatalog, TenantEvent};
    ///
    /// let listener = PgCatalog::subscribe(&pool, |event| match event {
    ///     TenantEvent::Moved { tenant, to, .. } => println!("{tenant} now lives in the {} model", to.name()),
    ///     other => println!("{other:?}"),
    /// })
    /// .await?;
    /// # listener.abort();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe(
        pool: &PgPool,
        subscriber: impl Fn(TenantEvent) + Send + Sync + 'static,
    ) -> Result<tokio::task::JoinHandle<()>, Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        Ok(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => match TenantEvent::parse(notification.payload()) {
                        Some(events) => events.into_iter().for_each(&subscriber),
                        None => tracing::warn!(
                            payload = notification.payload(),
                            "unreadable tenant event"
                        ),
                    },
                    Ok(None) => tracing::warn!(
                        "tenant event listener reconnected; events may have been missed"
                    ),
                    Err(error) => {
                        tracing::warn!(%error, "tenant event listener failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }))
    }

    async fn one(&self, sql: &str, key: &str) -> Result<Option<Arc<Tenant>>, tenants_core::Error> {
        let row: Option<(sqlx::types::Json<Tenant>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(|(record,)| Arc::new(record.0)))
    }
}

#[async_trait]
impl TenantCatalog for PgCatalog {
    async fn get(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, tenants_core::Error> {
        self.one(
            "SELECT record FROM tenants.tenants WHERE id = $1",
            id.as_str(),
        )
        .await
    }

    async fn get_by_domain(
        &self,
        domain: &str,
    ) -> Result<Option<Arc<Tenant>>, tenants_core::Error> {
        self.one(
            "SELECT record FROM tenants.tenants WHERE record -> 'domains' ? $1 ORDER BY id LIMIT 1",
            domain,
        )
        .await
    }

    async fn list(&self) -> Result<Vec<Arc<Tenant>>, tenants_core::Error> {
        let rows: Vec<(sqlx::types::Json<Tenant>,)> =
            sqlx::query_as("SELECT record FROM tenants.tenants ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(record,)| Arc::new(record.0))
            .collect())
    }
}

/// A database failure, or a record that no longer reads as a tenant: either way
/// the catalog cannot answer, which is never the same as "no such tenant".
fn unavailable(error: sqlx::Error) -> tenants_core::Error {
    tenants_core::Error::unavailable(error)
}

#[cfg(test)]
mod tests {
    use tenants_core::SqlIdent;

    use super::*;

    #[test]
    fn notifications_read_as_events() {
        let id: TenantId = "acme".parse().unwrap();
        let pool = r#"{"model": "pool", "status": "active"}"#;
        let silo = r#"{"model": "silo", "database": "acme", "status": "suspended"}"#;
        let event = |before: &str, after: &str| {
            TenantEvent::parse(&format!(
                r#"{{"id": "acme", "before": {before}, "after": {after}}}"#
            ))
        };
        assert_eq!(
            event("null", pool),
            Some(vec![TenantEvent::Created {
                tenant: id,
                model: DataModel::Pool
            }])
        );
        assert_eq!(
            event(pool, silo),
            Some(vec![
                TenantEvent::Moved {
                    tenant: id,
                    from: DataModel::Pool,
                    to: DataModel::Silo {
                        database: SqlIdent::new("acme").unwrap(),
                        server: None
                    }
                },
                TenantEvent::StatusChanged {
                    tenant: id,
                    from: TenantStatus::Active,
                    to: TenantStatus::Suspended
                }
            ])
        );
        assert_eq!(
            event(pool, pool),
            Some(vec![TenantEvent::Updated { tenant: id }])
        );
        assert_eq!(
            event(pool, "null"),
            Some(vec![TenantEvent::Removed { tenant: id }])
        );
        assert_eq!(event("null", "null"), None);
        assert_eq!(TenantEvent::parse("acme"), None);
        assert_eq!(
            TenantEvent::parse(
                r#"{"id": "Not Valid", "before": null, "after": {"model": "pool"}}"#
            ),
            None
        );
    }
}
