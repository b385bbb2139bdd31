//! Planning: compares the tenants file with the live servers, object by object,
//! and lists the changes in dependency order.

use std::collections::BTreeSet;

use tenants_core::{DataModel, SqlIdent, Tenant, TenantId};

use super::context::{SharedPlan, Storage, TenantPlan};
use super::file::TenantSpec;
use super::live::{Live, ServerLive};
use super::plan::{Action, Change, Doomed, On, Origin, Plan, Scope, Work};
use super::policy::tenant_scoped_keys;
use super::provisioner::Provisioner;
use super::{citus, database, grant, migration, policy, record, role, schema};
use tenants_db::{Error, TenantRole};

impl Provisioner {
    /// Compares the file with the servers: what [`apply`](Self::apply) would do.
    /// Tenants registered by the file (not at runtime) that the file no longer
    /// declares are planned as drops.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a tenant would take another tenant's live objects:
    /// a schema or database the catalog records for another tenant (onboarded at
    /// runtime, or registered under an id the file no longer uses), or a user that
    /// is another tenant's login user or group role. Otherwise, database errors.
    pub async fn plan(&self) -> Result<Plan, Error> {
        let specs: Vec<&TenantSpec> = self.file.tenants.iter().collect();
        if specs
            .iter()
            .any(|s| matches!(s.tenant.model, DataModel::Bridge { .. }))
        {
            self.check_bridge_migrations()?;
        }
        let live = self.read_live(&specs).await?;
        // With migrations pending, they may fix the keys: apply checks the keys
        // again once they ran.
        if self.pending(live.shared_applied.as_ref()).is_empty() {
            tenant_scoped_keys(&self.file.shared.pool_tables, &live.pool)?;
        }
        let mut plan = Plan::default();
        self.plan_shared(&live, &specs, &mut plan.changes);
        for spec in &specs {
            self.plan_tenant(spec, &live, Origin::File, &mut plan.changes)?;
        }
        let removed: Vec<TenantId> = live
            .provisioned
            .iter()
            .filter(|(id, origin)| {
                *origin == Origin::File.as_str()
                    && !self.file.tenants.iter().any(|t| t.tenant.id == id.as_str())
            })
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        for id in removed {
            self.plan_destroy(id, &live, &mut plan.changes);
        }
        Ok(plan)
    }

    /// Refuses shared migrations that a bridge tenant cannot run inside its own
    /// schema (see [`bridge_migrations`](super::bridge_migrations)).
    pub(crate) fn check_bridge_migrations(&self) -> Result<(), Error> {
        match &self.migrator {
            Some(migrator) => {
                super::bridge_migrations::check(migrator, self.file.shared.migrations.as_deref())
            }
            None => Ok(()),
        }
    }

    /// What destroying `tenant` would drop: its database, schema or pool rows, its
    /// roles and users, and its catalog entry.
    pub async fn destroy_plan(&self, tenant: TenantId) -> Result<Plan, Error> {
        let live = self.read_live(&[]).await?;
        let mut plan = Plan::default();
        self.plan_destroy(tenant, &live, &mut plan.changes);
        Ok(plan)
    }

    /// Reads what the servers hold of everything the file declares: the servers'
    /// roles and databases, the catalog, the pool tables, the bridge schemas, the
    /// silo templates and databases.
    ///
    /// # Errors
    ///
    /// [`Error::AdminBehindPooler`] when a server's admin connection loses its
    /// session between statements (migrations need session locks and a
    /// `search_path` given at connection start); database errors.
    pub(crate) async fn read_live(&self, specs: &[&TenantSpec]) -> Result<Live, Error> {
        let mut live = Live::default();
        for (name, pool) in &self.pools {
            if !tenants_db::Sqlx::keeps_sessions(pool).await? {
                return Err(Error::AdminBehindPooler {
                    server: name.clone(),
                });
            }
            live.servers
                .insert(name.clone(), ServerLive::read(pool).await?);
        }
        let shared = self.shared_pool()?;
        let schemas: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace")
            .fetch_all(shared)
            .await?;
        live.schemas = schemas.into_iter().collect();
        record::read(self, shared, &mut live).await?;
        policy::read(self, shared, &mut live).await?;
        citus::read(self, shared, &mut live).await?;
        schema::read_bridges(shared, specs, &mut live).await?;
        database::read_templates(self, &mut live).await?;
        database::read_silos(self, specs, &mut live).await?;
        Ok(live)
    }

    /// Plans what every tenant shares, in dependency order: the catalog, the
    /// application roles and their grants on the catalog, the shared schemas, the
    /// shared migrations and the pool tables' row-level security, on Citus their
    /// distribution, and the silo template databases.
    pub(crate) fn plan_shared(
        &self,
        live: &Live,
        specs: &[&TenantSpec],
        changes: &mut Vec<Change>,
    ) {
        let t = SharedPlan {
            provisioner: self,
            live,
            shared: On {
                server: self.file.default_server.clone(),
                database: None,
            },
        };
        record::plan_catalog(&t, changes);
        role::plan_app_roles(&t, changes);
        record::plan_app_reads_catalog(&t, changes);
        schema::plan_shared(&t, changes);
        let migrating = migration::plan_shared(&t, changes);
        policy::plan_pool_tables(&t, migrating, changes);
        citus::plan_shared(&t, migrating, changes);
        database::plan_templates(&t, specs, changes);
    }

    /// Refuses a tenant that would take another tenant's objects on the live
    /// server: a database or schema the catalog records for another tenant (one
    /// onboarded at runtime, or still registered under a previous id), a login user
    /// that belongs to another tenant's roles, or another tenant's group role.
    /// Apply would otherwise adopt them: revoke the other tenant's grants, or give
    /// the other tenant's users this tenant's data; a move out of the pool would
    /// empty the other tenant's copies of the pool tables before copying its rows.
    fn check_not_foreign(
        &self,
        spec: &TenantSpec,
        server: &str,
        server_live: &ServerLive,
        live: &Live,
    ) -> Result<(), Error> {
        let id = spec.tenant.id;
        let refuse = |what: String| {
            Err(Error::Config(format!(
                "tenant {id}: {what}; nothing was changed: give tenant {id} a name of its own"
            )))
        };
        if let Some(location) = self.location(&spec.tenant.model, Some(server))
            && let Some(owner) = live.locations.get(&location)
            && owner != id.as_str()
        {
            let (kind, name) = location.split_once(' ').unwrap_or(("", &location));
            let name = name.rsplit('/').next().unwrap_or(name);
            return refuse(format!("{kind} {name} is tenant {owner}'s"));
        }
        let own: Vec<SqlIdent> = TenantRole::ALL.iter().map(|r| r.role_name(&id)).collect();
        for user in &spec.users {
            let Some(role) = server_live.roles.get(user.name.as_str()) else {
                continue;
            };
            if !role.login
                && TenantRole::is_role_name(user.name.as_str())
                && !own.contains(&user.name)
            {
                return refuse(format!("user {} is another tenant's group role", user.name));
            }
            let foreign = server_live
                .tenant_groups
                .get(user.name.as_str())
                .into_iter()
                .flatten()
                .find(|group| !own.iter().any(|o| o.as_str() == group.as_str()));
            if let Some(group) = foreign {
                return refuse(format!(
                    "user {} is another tenant's user (a member of {group})",
                    user.name
                ));
            }
        }
        Ok(())
    }

    /// Plans one tenant's objects, in dependency order: its group roles, its
    /// storage (schema or database) and migrations, its table grants, its users,
    /// the application's membership in its roles, and last its catalog record.
    pub(crate) fn plan_tenant(
        &self,
        spec: &TenantSpec,
        live: &Live,
        origin: Origin,
        changes: &mut Vec<Change>,
    ) -> Result<(), Error> {
        let t = self.tenant_plan(spec, live, origin)?;
        role::plan_group_roles(&t, changes);
        let storage = match &spec.tenant.model {
            DataModel::Pool => Storage::default(),
            DataModel::Bridge { schema } => schema::plan(&t, schema, changes),
            DataModel::Silo { database, .. } => database::plan(&t, database, changes),
        };
        migration::plan_tenant(&t, &storage.pending, changes);
        grant::plan_tenant(&t, &storage, changes);
        role::plan_users(&t, changes);
        role::plan_app_membership(&t, changes);
        record::plan(&t, changes)
    }

    /// What planning `spec` reads, after checking it takes no other tenant's
    /// objects.
    fn tenant_plan<'a>(
        &'a self,
        spec: &'a TenantSpec,
        live: &'a Live,
        origin: Origin,
    ) -> Result<TenantPlan<'a>, Error> {
        let id = spec.tenant.id;
        let server = spec.server.as_str();
        let server_live = live
            .servers
            .get(server)
            .ok_or_else(|| Error::Config(format!("tenant {id}: unknown server {server:?}")))?;
        self.check_not_foreign(spec, server, server_live, live)?;
        let roles: Vec<(TenantRole, SqlIdent)> = TenantRole::ALL
            .iter()
            .map(|r| (*r, r.role_name(&id)))
            .collect();
        let role_list = roles
            .iter()
            .map(|(_, n)| n.quoted())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(TenantPlan {
            provisioner: self,
            spec,
            live,
            server_live,
            scope: Scope::Tenant(id),
            origin,
            on_server: On {
                server: server.to_owned(),
                database: None,
            },
            shared: On {
                server: self.file.default_server.clone(),
                database: None,
            },
            roles,
            role_list,
        })
    }

    pub(crate) fn plan_destroy(&self, id: TenantId, live: &Live, changes: &mut Vec<Change>) {
        let scope = Scope::Tenant(id);
        let record: Option<Tenant> =
            self.file.tenant(&id).map(|s| s.tenant.clone()).or_else(|| {
                live.records
                    .get(id.as_str())
                    .and_then(|r| serde_json::from_value(r.clone()).ok())
            });
        let server = match &record {
            Some(tenant) => self.server_of(&tenant.model).to_owned(),
            None => self.file.default_server.clone(),
        };
        let Some(server_live) = live.servers.get(&server) else {
            return;
        };
        let roles: Vec<SqlIdent> = TenantRole::ALL.iter().map(|r| r.role_name(&id)).collect();
        let users = logins_in(server_live, &roles, self.app_role(&server));
        let lines = self.destroy_lines(id, record.as_ref(), live, server_live, &roles, &users);
        if lines.is_empty() {
            return;
        }
        let doomed = Doomed {
            tenant: id,
            record,
            server,
            users: users
                .into_iter()
                .filter_map(|u| SqlIdent::new(u).ok())
                .collect(),
            pool_tables: self.file.shared.pool_tables.clone(),
        };
        for (i, (object, detail)) in lines.into_iter().enumerate() {
            let work = if i == 0 {
                Work::Destroy(Box::new(doomed.clone()))
            } else {
                Work::Note
            };
            let mut change = Change::new(scope, Action::Drop, object, work);
            change.detail = detail;
            changes.push(change);
        }
    }

    /// What destroying the tenant removes, in the words the plan shows: its data,
    /// users, roles and catalog entry.
    fn destroy_lines(
        &self,
        id: TenantId,
        record: Option<&Tenant>,
        live: &Live,
        server_live: &ServerLive,
        roles: &[SqlIdent],
        users: &BTreeSet<String>,
    ) -> Vec<(String, Option<String>)> {
        let mut lines: Vec<(String, Option<String>)> = Vec::new();
        match record.map(|t| &t.model) {
            Some(DataModel::Silo { database, .. })
                if server_live.databases.contains(database.as_str()) =>
            {
                lines.push((
                    format!("database {database}"),
                    Some("and all its data".into()),
                ));
            }
            Some(DataModel::Bridge { schema }) if live.schemas.contains(schema.as_str()) => {
                lines.push((format!("schema {schema}"), Some("and all its data".into())));
            }
            Some(DataModel::Pool) if !self.file.shared.pool_tables.is_empty() => {
                let tables: Vec<_> = self
                    .file
                    .shared
                    .pool_tables
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                lines.push((format!("rows of tenant {id}"), Some(tables.join(", "))));
            }
            _ => {}
        }
        for user in users {
            lines.push((format!("user {user}"), None));
        }
        for role in roles.iter().filter(|r| server_live.has_role(r)) {
            lines.push((format!("role {role}"), None));
        }
        if live.records.contains_key(id.as_str()) || live.provisioned.contains_key(id.as_str()) {
            lines.push(("catalog entry".into(), None));
        }
        lines
    }
}

/// The logins (not superusers, not the application role) that are members of
/// `roles`.
fn logins_in(server: &ServerLive, roles: &[SqlIdent], app: Option<&SqlIdent>) -> BTreeSet<String> {
    let mut users = BTreeSet::new();
    for role in roles {
        for member in server.members.get(role.as_str()).into_iter().flatten() {
            let login = server
                .roles
                .get(member)
                .is_some_and(|r| r.login && !r.superuser);
            if login && app.is_none_or(|a| a.as_str() != member) {
                users.insert(member.clone());
            }
        }
    }
    users
}
