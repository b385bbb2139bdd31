//! [`Plan`]: what `apply` would change, object by object.

use std::fmt;

use tenants_core::{SqlIdent, Tenant, TenantId};

use super::file::{Password, TableName, TenantSpec};

/// What a change does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    /// Creates the object (`+`).
    Create,
    /// Changes an existing object (`~`): grants, migrations, a catalog record.
    Update,
    /// Drops the object (`-`).
    Drop,
}

impl Action {
    /// The sign printed before the change: `+`, `~` or `-`.
    pub fn sign(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Drop => '-',
        }
    }
}

/// Whom a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scope {
    /// Infrastructure every tenant uses: the catalog, the application role, pool
    /// tables, template databases.
    Shared,
    /// One tenant.
    Tenant(TenantId),
}

/// One change to one object.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Change {
    /// Whom it belongs to.
    pub scope: Scope,
    /// What it does.
    pub action: Action,
    /// The object, as printed: `database building_shop`, `role tenant_a_admin`.
    pub object: String,
    /// More about the change, when there is more to say.
    pub detail: Option<String>,
    pub(crate) work: Work,
    /// Creates a tenant's schema or database.
    pub(crate) storage: bool,
}

impl Change {
    pub(crate) fn new(scope: Scope, action: Action, object: impl Into<String>, work: Work) -> Self {
        Change {
            scope,
            action,
            object: object.into(),
            detail: None,
            work,
            storage: false,
        }
    }

    /// Marks the change as creating a tenant's schema or database.
    pub(crate) fn storage(mut self) -> Self {
        self.storage = true;
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// `true` when this change runs pending migrations.
    pub fn is_migration(&self) -> bool {
        matches!(self.work, Work::Migrate(_))
    }

    /// `true` when this change removes a tenant's data.
    pub fn destroys_data(&self) -> bool {
        matches!(self.work, Work::Destroy(_))
    }
}

/// Where statements run: a server's admin database (the shared database, for the
/// default server), or one of its databases.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct On {
    pub(crate) server: String,
    pub(crate) database: Option<SqlIdent>,
}

/// What executing a change means.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    /// Statements run in one round trip, as one transaction.
    Sql(On, Vec<String>),
    /// Statements run one by one, for those that refuse a transaction
    /// (`CREATE DATABASE`).
    SqlEach(On, Vec<String>),
    /// Creates the catalog table and the provisioning state table.
    InstallCatalog,
    /// Creates a login role, setting its password (as a SCRAM verifier) when one is
    /// given.
    CreateLogin {
        server: String,
        name: SqlIdent,
        member_of: Option<SqlIdent>,
        password: Option<Password>,
        search_path: Option<String>,
    },
    /// Runs pending migrations.
    Migrate(MigrateTarget),
    /// Makes a tenant's table grants exactly those of its roles, and secures its
    /// copies of the pool tables (recomputed when applied, after migrations).
    SyncGrants(Box<TenantSpec>),
    /// Gives the pool tables their `tenant_id` column and row-level security
    /// (recomputed when applied, after the shared migrations).
    SecurePoolTables(Vec<TableName>),
    /// Distributes a pool table by `tenant_id` on Citus, co-located with another
    /// (recomputed when applied, after the shared migrations).
    Distribute {
        table: TableName,
        colocate_with: Option<TableName>,
    },
    /// Makes the tables of a shared schema Citus reference tables (recomputed when
    /// applied, after the shared migrations).
    ReferenceTables(SqlIdent),
    /// Registers the tenant in the catalog.
    Register(Box<Tenant>, Origin),
    /// Moves a pool tenant's rows into its new storage (created by the changes
    /// before it) and registers its new record, in one step: see
    /// `Provisioner::move_tenant`.
    Move(Box<Tenant>, Origin),
    /// Drops a tenant and its data.
    Destroy(Box<Doomed>),
    /// Shown, nothing to run (work done by another change).
    Note,
}

/// Who declared a tenant: the tenants file, or application code at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    File,
    Runtime,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Runtime => "runtime",
        }
    }
}

/// Where migrations run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MigrateTarget {
    /// The shared database's default schema (pool tables).
    Shared,
    /// A server's template database.
    Template { server: String, database: SqlIdent },
    /// A bridge tenant's schema in the shared database.
    Schema { tenant: TenantId, schema: SqlIdent },
    /// A silo tenant's database.
    Database {
        tenant: TenantId,
        server: String,
        database: SqlIdent,
    },
}

/// A tenant to drop and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct Doomed {
    pub(crate) tenant: TenantId,
    pub(crate) record: Option<Tenant>,
    pub(crate) server: String,
    pub(crate) users: Vec<SqlIdent>,
    pub(crate) pool_tables: Vec<TableName>,
}

/// What `apply` would change: every object, in order, and the migrations pending.
///
/// Print it for the terraform-like diff (`+` create, `~` change, `-` drop). An
/// empty plan means the servers match the file.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Plan {
    /// The changes, shared ones first, then tenant by tenant.
    pub changes: Vec<Change>,
}

impl Plan {
    /// `true` when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The tenants the plan would drop, with their data.
    pub fn destroyed_tenants(&self) -> Vec<TenantId> {
        self.changes
            .iter()
            .filter_map(|c| match (&c.work, c.scope) {
                (Work::Destroy(_), Scope::Tenant(id)) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// The changes of one scope.
    pub fn changes_of(&self, scope: Scope) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.scope == scope)
    }

    /// Counts of changes to create, change and drop.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |a| self.changes.iter().filter(|c| c.action == a).count();
        (
            count(Action::Create),
            count(Action::Update),
            count(Action::Drop),
        )
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "No changes: the servers match the tenants file.");
        }
        let mut scope = None;
        for change in &self.changes {
            if scope != Some(change.scope) {
                scope = Some(change.scope);
                match change.scope {
                    Scope::Shared => writeln!(f, "shared")?,
                    Scope::Tenant(id) => writeln!(f, "tenant {id}")?,
                }
            }
            write!(f, "  {} {}", change.action.sign(), change.object)?;
            match &change.detail {
                Some(detail) => writeln!(f, " ({detail})")?,
                None => writeln!(f)?,
            }
        }
        let (create, update, drop) = self.counts();
        writeln!(
            f,
            "\nPlan: {create} to create, {update} to change, {drop} to drop."
        )?;
        let destroyed = self.destroyed_tenants();
        if !destroyed.is_empty() {
            let ids: Vec<_> = destroyed.iter().map(TenantId::as_str).collect();
            writeln!(
                f,
                "Drops the data of tenant(s) {}: apply needs --allow-destroy.",
                ids.join(", ")
            )?;
        }
        Ok(())
    }
}
