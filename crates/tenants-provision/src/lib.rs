//! Tenants as code: declare every tenant in a tenants file, see the difference with
//! the live servers as a [`Plan`], and [`apply`](Provisioner::apply) it — or
//! [`provision`](Provisioner::provision) one tenant from application code when it
//! signs up.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tenants_provision::{ApplyOptions, Provisioner, TenantSpec, TenantsFile};
//! use tenants_core::{DataModel, SqlIdent, Tenant};
//!
//! // tenants.toml declares the servers, the shared migrations and the tenants.
//! let provisioner = Provisioner::connect(TenantsFile::load("tenants.toml")?).await?;
//! let plan = provisioner.plan().await?;
//! print!("{plan}"); // + role tenant_acme_admin, + schema acme, ~ migrations (2 pending), ...
//! let report = provisioner.apply(&plan, &ApplyOptions::new()).await?;
//! assert!(report.is_success(), "{report}");
//! assert!(provisioner.plan().await?.is_empty(), "a second apply has nothing to do");
//!
//! // A tenant signing up, provisioned at once (idempotent).
//! let newco = Tenant::new("newco".parse()?, DataModel::Bridge { schema: SqlIdent::new("newco")? });
//! provisioner.provision(&TenantSpec::new(newco)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What apply creates
//!
//! For every tenant, on its server:
//!
//! - three group roles, `tenant_{id}_admin`, `_developer` and `_customer`
//!   ([`TenantRole`](tenants_db::TenantRole)), holding exactly their privileges on the
//!   tenant's tables (and `USAGE` on their sequences for admin and developer);
//!   privileges beyond those, and other tenants' roles' privileges, are revoked;
//! - **pool**: nothing of its own; the shared migrations run once in the shared
//!   database, and each `[shared] pool_tables` table gets a `tenant_id` column
//!   (when missing) defaulting to the transaction's tenant, row-level security enabled and forced, and the policy
//!   `tenant_isolation`: `USING (tenant_id = NULLIF(current_setting('tenants.tenant_id',
//!   true), '')) WITH CHECK (...)`, so with no tenant set (NULL, or `''` on a
//!   connection that ran a tenant transaction before) a pool table yields no rows
//!   and accepts no writes;
//! - **bridge**: a schema in the shared database, migrated in place (its own
//!   `_sqlx_migrations` table records its progress);
//! - **silo**: a database copied from the server's template database, which is
//!   migrated once (`CREATE DATABASE .. TEMPLATE ..`), then migrated in place
//!   when new migrations come; `CONNECT` is revoked from `PUBLIC`;
//! - the login users, members of their tenant role, with their password stored as
//!   a SCRAM verifier computed here (the password never reaches the server);
//! - the application role's membership in the tenant's roles, so the router's
//!   `begin_as` can `SET ROLE`;
//! - the tenant's record in the catalog table `tenants.tenants` ([`PgCatalog`](tenants_db::PgCatalog)),
//!   last, so applications see a tenant only once it is ready.
//!
//! # Moving a tenant out of the pool
//!
//! A pool tenant that outgrows the shared tables moves into a database (or schema)
//! of its own with [`Provisioner::move_tenant`] (`tenants move`), or, for a tenant
//! the file declares, by writing its new model in the file and running apply, which
//! plans the same move (`~ model (pool → silo: copies its rows of ...)`). The rows
//! are copied, the record switched and the shared rows deleted in one step that an
//! interruption leaves undone and a new run completes. Other model changes (out of
//! a bridge schema or a silo database) switch the record without copying the data,
//! and the plan says so.
//!
//! Progress is recorded per tenant (each schema's or database's
//! `_sqlx_migrations`, and `tenants.provisioned`), so an interrupted run resumes,
//! and a failing tenant does not stop the others.

mod apply;
mod bridge_migrations;
mod citus;
mod context;
mod database;
mod doctor;
mod engine;
mod environment;
mod file;
mod grant;
mod list;
mod live;
mod migration;
mod moving;
mod plan;
mod policy;
mod provisioner;
mod record;
mod role;
mod schema;
mod template;

pub use apply::{ApplyOptions, Progress, Report};
pub use doctor::Finding;
pub use environment::Environment;
pub use file::{
    DEFAULT_TEMPLATE, Format, Password, ServerSpec, SharedSpec, TableName, TenantSpec, TenantsFile,
    UrlSource, UserSpec,
};
pub use list::{TenantListing, TenantLoad, TenantState};
pub use plan::{Action, Change, Plan, Scope};
pub use provisioner::Provisioner;
pub use template::uid_hash;

/// Application code awaits the engine inside request handlers and spawned tasks,
/// which need `Send` futures: this stops compiling if one of them is not.
#[allow(dead_code)]
fn futures_are_send(
    provisioner: &Provisioner,
    spec: &TenantSpec,
    plan: &Plan,
    options: &ApplyOptions,
    tenant: tenants_core::TenantId,
) {
    fn send<T: Send>(_: T) {}
    send(Provisioner::connect(provisioner.file().clone()));
    send(provisioner.plan());
    send(provisioner.apply(plan, options));
    send(provisioner.migrate(options));
    send(provisioner.provision(spec));
    send(provisioner.move_tenant(tenant, tenants_core::DataModel::Pool));
    send(provisioner.destroy_plan(tenant));
    send(provisioner.list());
    send(provisioner.doctor());
    send(provisioner.close());
}
