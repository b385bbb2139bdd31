//! Citus objects, when the default server is declared `citus = true`: the pool
//! tables distributed by `tenant_id` and co-located (a tenant's rows of every pool
//! table on one shard group, so joins and foreign keys between them stay on one
//! node), the tables of the shared schemas as reference tables (a copy on every
//! node, joinable with any shard), each bridge tenant's schema a distributed schema
//! (all its tables on one node, routed by `search_path`), and the application
//! role's `citus.propagate_set_commands = 'local'` with
//! `citus.select_opens_transaction_block` on (without them Citus keeps a
//! `SET LOCAL tenants.tenant_id` on the coordinator, and the shards' policies see no
//! tenant; the router's own transactions set both for themselves). Each is read, compared with the file and planned here.
//!
//! Citus's functions: [`create_distributed_table`], `update_distributed_table_colocation`,
//! `create_reference_table`, `citus_schema_distribute` (Citus 12 and later).
//!
//! [`create_distributed_table`]: https://docs.citusdata.com/en/stable/develop/api_udf.html

use std::collections::{BTreeSet, HashMap};

use sqlx::PgPool;
use tenants_core::{DataModel, SqlIdent, TenantId};
use tenants_db::{Error, sql_literal};

use super::context::{SharedPlan, TenantPlan};
use super::file::TableName;
use super::live::Live;
use super::plan::{Action, Change, Scope, Work};
use super::provisioner::Provisioner;

/// The setting that makes Citus forward a transaction's `SET LOCAL`s to the workers.
const FORWARD_SETTING: &str = "citus.propagate_set_commands";

/// The setting that opens the workers' transactions, which carry the forwarded
/// `SET LOCAL`s, for reads too (on by default).
const OPENS_SETTING: &str = "citus.select_opens_transaction_block";

/// What a Citus coordinator holds of the objects the file declares.
#[derive(Debug, Default)]
pub(crate) struct CitusLive {
    /// Citus tables (`schema.table`) and how each is distributed.
    pub(crate) tables: HashMap<String, Distribution>,
    /// The tables of the shared schemas that are not Citus tables yet.
    pub(crate) local_shared: Vec<String>,
    /// Distributed schemas.
    pub(crate) schemas: BTreeSet<String>,
    /// Roles whose settings make Citus forward their `SET LOCAL`s ([`FORWARDING_SQL`]).
    pub(crate) forwarding: BTreeSet<String>,
}

/// How a Citus table is distributed (`citus_tables`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Distribution {
    /// `distributed`, `reference` or `schema` (a distributed schema's table).
    pub(crate) kind: String,
    /// The distribution column (`<none>` for reference tables).
    pub(crate) column: String,
    /// Tables with the same id keep their shards of each value together.
    pub(crate) colocation: i32,
}

const TABLES_SQL: &str = "\
SELECT format('%s.%s', n.nspname, c.relname), t.citus_table_type, t.distribution_column,
       t.colocation_id
FROM citus_tables t
JOIN pg_class c ON c.oid = t.table_name
JOIN pg_namespace n ON n.oid = c.relnamespace";

/// The tables of the shared schemas (`$1`) that are not Citus tables: `schema.table`
/// and oid.
const LOCAL_SHARED_SQL: &str = "\
SELECT format('%s.%s', n.nspname, c.relname), c.oid::int8
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)
ORDER BY 1";

/// Roles whose own settings make Citus forward their `SET LOCAL`s
/// (`citus.propagate_set_commands = 'local'`) in the remote transactions that carry
/// them, opened for reads too (`citus.select_opens_transaction_block = on`, which
/// overrides a database's default), as apply writes them.
const FORWARDING_SQL: &str = "\
SELECT r.rolname::text
FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
  AND 'citus.propagate_set_commands=local' = ANY (s.setconfig)
  AND 'citus.select_opens_transaction_block=on' = ANY (s.setconfig)";

/// The Citus tables of the shared database, by `schema.table`.
async fn tables(shared: &PgPool) -> Result<HashMap<String, Distribution>, Error> {
    let rows: Vec<(String, String, String, i32)> =
        sqlx::query_as(TABLES_SQL).fetch_all(shared).await?;
    let tables = rows.into_iter().map(|(name, kind, column, colocation)| {
        let distribution = Distribution {
            kind,
            column,
            colocation,
        };
        (name, distribution)
    });
    Ok(tables.collect())
}

/// The tables of `schemas` that are not Citus tables: `schema.table` and oid.
async fn local_shared(shared: &PgPool, schemas: Vec<String>) -> Result<Vec<(String, i64)>, Error> {
    Ok(sqlx::query_as(LOCAL_SHARED_SQL)
        .bind(schemas)
        .fetch_all(shared)
        .await?)
}

/// The one text column of `sql`'s rows.
async fn names(shared: &PgPool, sql: &'static str) -> Result<BTreeSet<String>, Error> {
    let names: Vec<String> = sqlx::query_scalar(sql).fetch_all(shared).await?;
    Ok(names.into_iter().collect())
}

/// Whether the file declares the default server a Citus coordinator.
pub(crate) fn declared(provisioner: &Provisioner) -> bool {
    let file = &provisioner.file;
    file.servers
        .get(&file.default_server)
        .is_some_and(|s| s.citus)
}

/// Reads the shared database's Citus tables, schemas and forwarding roles, when
/// the default server is declared a Citus coordinator.
///
/// # Errors
///
/// [`Error::Config`] when the database has no `citus` extension: Citus is set up
/// with the cluster (`shared_preload_libraries`, the workers), not by apply.
pub(crate) async fn read(
    provisioner: &Provisioner,
    shared: &PgPool,
    live: &mut Live,
) -> Result<(), Error> {
    if !declared(provisioner) {
        return Ok(());
    }
    let installed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            .fetch_one(shared)
            .await?;
    if !installed {
        return Err(Error::Config(format!(
            "server {:?} is declared citus = true, but its database has no citus extension: \
             CREATE EXTENSION citus and add the workers (citus_add_node) first",
            provisioner.file.default_server
        )));
    }
    let shared_schemas: Vec<String> = (provisioner.file.shared.schemas.iter())
        .map(ToString::to_string)
        .collect();
    live.citus = Some(CitusLive {
        tables: tables(shared).await?,
        local_shared: local_shared(shared, shared_schemas)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
        schemas: names(shared, "SELECT schema_name::text FROM citus_schemas").await?,
        forwarding: names(shared, FORWARDING_SQL).await?,
    });
    Ok(())
}

/// Plans the shared Citus objects: the application role's forwarding, each pool
/// table distributed by `tenant_id` and co-located with the first, and the shared
/// schemas' tables as reference tables. With migrations pending (`migrating`),
/// which may create or change those tables, the distribution is checked again
/// after them.
pub(crate) fn plan_shared(t: &SharedPlan<'_>, migrating: bool, changes: &mut Vec<Change>) {
    let Some(citus) = &t.live.citus else { return };
    if let Some(app) = t.provisioner.app_role(&t.provisioner.file.default_server)
        && !citus.forwarding.contains(app.as_str())
    {
        let statements = vec![
            format!(
                "ALTER ROLE {} SET {FORWARD_SETTING} = 'local'",
                app.quoted()
            ),
            format!("ALTER ROLE {} SET {OPENS_SETTING} = on", app.quoted()),
        ];
        changes.push(
            Change::new(
                Scope::Shared,
                Action::Update,
                format!("role {app}"),
                Work::Sql(t.shared.clone(), statements),
            )
            .detail(
                "forward SET LOCAL to the Citus workers, reads included \
                 (citus.propagate_set_commands, citus.select_opens_transaction_block)",
            ),
        );
    }
    let tables = &t.provisioner.file.shared.pool_tables;
    let first = tables.first();
    for table in tables {
        let colocate_with = first.filter(|f| *f != table);
        let problem = pool_table_problem(citus, table, colocate_with);
        if let Some(problem) = problem.or_else(|| migrating.then_some(AFTER_MIGRATIONS.into())) {
            changes.push(
                Change::new(
                    Scope::Shared,
                    Action::Update,
                    format!("pool table {table}"),
                    Work::Distribute {
                        table: table.clone(),
                        colocate_with: colocate_with.cloned(),
                    },
                )
                .detail(problem),
            );
        }
    }
    plan_reference_tables(t, citus, migrating, changes);
}

const AFTER_MIGRATIONS: &str = "check its distribution again after the migrations";

/// Plans the shared schemas' tables as reference tables.
fn plan_reference_tables(
    t: &SharedPlan<'_>,
    citus: &CitusLive,
    migrating: bool,
    changes: &mut Vec<Change>,
) {
    for schema in &t.provisioner.file.shared.schemas {
        let prefix = format!("{schema}.");
        let local: Vec<&str> = (citus.local_shared.iter())
            .filter(|name| name.starts_with(&prefix))
            .map(String::as_str)
            .collect();
        let detail = if !local.is_empty() {
            format!(
                "make reference tables (a copy on every node): {}",
                local.join(", ")
            )
        } else if migrating {
            "make the tables the migrations create reference tables".to_owned()
        } else {
            continue;
        };
        changes.push(
            Change::new(
                Scope::Shared,
                Action::Update,
                format!("schema {schema}"),
                Work::ReferenceTables(schema.clone()),
            )
            .detail(detail),
        );
    }
}

/// What is wrong with a pool table's distribution, in the words the plan and
/// `doctor` show; `None` when it is distributed by `tenant_id` and co-located with
/// `colocate_with` (the first pool table; `None` for the first itself).
pub(crate) fn pool_table_problem(
    citus: &CitusLive,
    table: &TableName,
    colocate_with: Option<&TableName>,
) -> Option<String> {
    let Some(found) = citus.tables.get(&table.to_string()) else {
        return Some(match colocate_with {
            Some(first) => format!("distribute by tenant_id, co-located with {first}"),
            None => "distribute by tenant_id".to_owned(),
        });
    };
    if found.kind != "distributed" || found.column != "tenant_id" {
        return Some(format!(
            "is a {} table distributed by {}, not by tenant_id: undistribute it \
             (SELECT undistribute_table(..)) and apply again",
            found.kind, found.column
        ));
    }
    let first = colocate_with?;
    let together = citus.tables.get(&first.to_string());
    (together.map(|d| d.colocation) != Some(found.colocation))
        .then(|| format!("co-locate with {first} (update_distributed_table_colocation)"))
}

/// On a Citus coordinator, the statement that makes a bridge tenant's new schema a
/// distributed schema, to run before `CREATE SCHEMA` in its transaction; `None`
/// elsewhere.
pub(crate) fn schema_sharding(t: &TenantPlan<'_>) -> Option<String> {
    t.live.citus.as_ref()?;
    Some("SET LOCAL citus.enable_schema_based_sharding = on".into())
}

/// Plans making an existing bridge schema a distributed schema.
pub(crate) fn plan_bridge_schema(t: &TenantPlan<'_>, schema: &SqlIdent, changes: &mut Vec<Change>) {
    let Some(citus) = &t.live.citus else { return };
    if citus.schemas.contains(schema.as_str()) {
        return;
    }
    let statement = format!(
        "SELECT citus_schema_distribute({})",
        sql_literal(&schema.quoted())
    );
    changes.push(
        Change::new(
            t.scope,
            Action::Update,
            format!("schema {schema}"),
            Work::Sql(t.shared.clone(), vec![statement]),
        )
        .detail("make it a distributed schema (all its tables on one Citus node)"),
    );
}

/// Distributes `table` by `tenant_id`, co-located with `colocate_with`, as it
/// stands now (after the migrations): created, co-located, or left as it is.
pub(crate) async fn distribute(
    shared: &PgPool,
    table: &TableName,
    colocate_with: Option<&TableName>,
) -> Result<(), Error> {
    let citus = CitusLive {
        tables: tables(shared).await?,
        ..CitusLive::default()
    };
    let Some(problem) = pool_table_problem(&citus, table, colocate_with) else {
        return Ok(());
    };
    let name = sql_literal(&table.quoted());
    let with = colocate_with.map_or_else(|| "'default'".to_owned(), |f| sql_literal(&f.quoted()));
    let statement = match citus.tables.get(&table.to_string()) {
        None => {
            format!("SELECT create_distributed_table({name}, 'tenant_id', colocate_with => {with})")
        }
        Some(found) if found.kind == "distributed" && found.column == "tenant_id" => {
            format!("SELECT update_distributed_table_colocation({name}, colocate_with => {with})")
        }
        Some(_) => return Err(Error::Config(format!("pool table {table} {problem}"))),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(shared)
        .await?;
    Ok(())
}

/// Makes every table of `schema` that is not a Citus table a reference table.
pub(crate) async fn reference_tables(shared: &PgPool, schema: &SqlIdent) -> Result<(), Error> {
    for (_, oid) in local_shared(shared, vec![schema.to_string()]).await? {
        sqlx::query("SELECT create_reference_table($1::oid::regclass)")
            .bind(oid)
            .execute(shared)
            .await?;
    }
    Ok(())
}

impl Provisioner {
    /// Moves a pool or bridge tenant's data onto Citus node `node` (`host:port`, a
    /// node of the default server's cluster, as `citus_add_node` knows it), while
    /// the application keeps serving it (`tenants move <id> --to-node`).
    ///
    /// A pool tenant first gets shards of its own in every co-located pool table
    /// (`isolate_tenant_to_new_shard(.., 'CASCADE')`), which then move
    /// (`citus_move_shard_placement`); a bridge tenant's distributed schema moves
    /// whole (`citus_schema_move`). Reads go on throughout; writes to the moving
    /// shards wait while they are copied (`shard_transfer_mode => 'block_writes'`):
    /// Citus's non-blocking mode replicates logically, as a role PostgreSQL
    /// refuses to let write into tables with row-level security, so on pool
    /// tables it would wait forever. The router needs no change: the coordinator
    /// routes to wherever the shards are. Running it again once the data is there
    /// changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the default server is not declared `citus = true`,
    /// `node` is not `host:port` of an active node, the tenant is not in the catalog
    /// or is a silo tenant, or the file declares no pool table; Citus's errors
    /// otherwise.
    pub async fn move_to_node(&self, tenant: TenantId, node: &str) -> Result<(), Error> {
        if !declared(self) {
            return Err(Error::Config(format!(
                "server {:?} is not declared citus = true: --to-node moves tenants between \
                 the nodes of a Citus cluster",
                self.file.default_server
            )));
        }
        let (host, port) = parse_node(node)?;
        let shared = self.shared_pool()?;
        let active: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_dist_node \
             WHERE nodename = $1 AND nodeport = $2 AND isactive AND shouldhaveshards)",
        )
        .bind(&host)
        .bind(i32::from(port))
        .fetch_one(shared)
        .await?;
        if !active {
            return Err(Error::Config(format!(
                "{node} is not an active node of the cluster that holds shards \
                 (citus_get_active_worker_nodes() lists them)"
            )));
        }
        let target = Node { host, port };
        match self.catalog_record(tenant).await?.model {
            DataModel::Pool => {
                let Some(first) = self.file.shared.pool_tables.first() else {
                    return Err(Error::Config(
                        "the tenants file declares no pool table to find the tenant's shards by"
                            .into(),
                    ));
                };
                move_pool_tenant(shared, first, tenant, &target).await
            }
            DataModel::Bridge { schema } => move_schema(shared, &schema, &target).await,
            DataModel::Silo { .. } => Err(Error::Config(format!(
                "tenant {tenant} is a silo tenant, with a database of its own: --to-node moves \
                 pool and bridge tenants between the nodes of a Citus cluster"
            ))),
        }
    }
}

/// A Citus node, as `pg_dist_node` names it.
struct Node {
    host: String,
    port: u16,
}

/// Reads `host:port` (an IPv6 address in brackets: `[::1]:5432`).
fn parse_node(node: &str) -> Result<(String, u16), Error> {
    let refuse = || Error::Config(format!("node {node:?} is not host:port"));
    let (host, port) = node.rsplit_once(':').ok_or_else(refuse)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| refuse())?;
    if host.is_empty() || port == 0 || host.contains(['/', ' ']) {
        return Err(refuse());
    }
    Ok((host.to_owned(), port))
}

/// Gives the pool tenant shards of its own (unless it has them) and moves them to
/// `target`.
async fn move_pool_tenant(
    shared: &PgPool,
    first: &TableName,
    tenant: TenantId,
    target: &Node,
) -> Result<(), Error> {
    let table = first.quoted();
    let (shard, alone): (i64, bool) = sqlx::query_as(
        "SELECT s.shardid, s.shardminvalue = s.shardmaxvalue FROM pg_dist_shard s \
         WHERE s.shardid = get_shard_id_for_distribution_column($1::regclass, $2)",
    )
    .bind(&table)
    .bind(tenant.as_str())
    .fetch_one(shared)
    .await?;
    let shard = if alone {
        shard
    } else {
        sqlx::query_scalar(
            "SELECT isolate_tenant_to_new_shard($1::regclass, $2, 'CASCADE', \
             shard_transfer_mode => 'block_writes')",
        )
        .bind(&table)
        .bind(tenant.as_str())
        .fetch_one(shared)
        .await?
    };
    let (host, port): (String, i32) =
        sqlx::query_as("SELECT nodename, nodeport FROM citus_shards WHERE shardid = $1")
            .bind(shard)
            .fetch_one(shared)
            .await?;
    if host == target.host && port == i32::from(target.port) {
        return Ok(());
    }
    sqlx::query(
        "SELECT citus_move_shard_placement($1, $2, $3, $4, $5, \
         shard_transfer_mode => 'block_writes')",
    )
    .bind(shard)
    .bind(host)
    .bind(port)
    .bind(&target.host)
    .bind(i32::from(target.port))
    .execute(shared)
    .await?;
    Ok(())
}

/// Moves a bridge tenant's distributed schema to `target`, unless it is there.
async fn move_schema(shared: &PgPool, schema: &SqlIdent, target: &Node) -> Result<(), Error> {
    let nodes: Vec<(String, i32)> = sqlx::query_as(
        "SELECT DISTINCT nodename, nodeport FROM citus_shards \
         WHERE colocation_id = (SELECT colocation_id FROM citus_schemas \
                                WHERE schema_name = to_regnamespace($1))",
    )
    .bind(schema.quoted())
    .fetch_all(shared)
    .await?;
    if nodes.is_empty() {
        return Err(Error::Config(format!(
            "schema {schema} is not a distributed schema (or has no tables): run apply"
        )));
    }
    if nodes == [(target.host.clone(), i32::from(target.port))] {
        return Ok(());
    }
    sqlx::query(
        "SELECT citus_schema_move(to_regnamespace($1), $2, $3, \
         shard_transfer_mode => 'block_writes')",
    )
    .bind(schema.quoted())
    .bind(&target.host)
    .bind(i32::from(target.port))
    .execute(shared)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_host_and_port() {
        assert_eq!(
            parse_node("10.0.0.7:5432").unwrap(),
            ("10.0.0.7".into(), 5432)
        );
        assert_eq!(
            parse_node("worker-2.db:6432").unwrap(),
            ("worker-2.db".into(), 6432)
        );
        assert_eq!(parse_node("[::1]:5433").unwrap(), ("::1".into(), 5433));
        for bad in [
            "worker", ":5432", "w:0", "w:70000", "w:", "w:x", "a b:1", "[]:1",
        ] {
            assert!(matches!(parse_node(bad), Err(Error::Config(_))), "{bad}");
        }
    }

    fn citus(tables: &[(&str, &str, &str, i32)]) -> CitusLive {
        let tables = tables.iter().map(|(name, kind, column, colocation)| {
            let distribution = Distribution {
                kind: (*kind).into(),
                column: (*column).into(),
                colocation: *colocation,
            };
            ((*name).to_owned(), distribution)
        });
        CitusLive {
            tables: tables.collect(),
            ..CitusLive::default()
        }
    }

    #[test]
    fn pool_tables_are_distributed_by_tenant_and_co_located() {
        let todos = TableName::parse("todos").unwrap();
        let tags = TableName::parse("tags").unwrap();
        let none = citus(&[]);
        let problem = pool_table_problem(&none, &tags, Some(&todos)).unwrap();
        assert!(
            problem.contains("co-located with public.todos"),
            "{problem}"
        );
        let apart = citus(&[
            ("public.todos", "distributed", "tenant_id", 1),
            ("public.tags", "distributed", "tenant_id", 2),
        ]);
        assert_eq!(pool_table_problem(&apart, &todos, None), None);
        let problem = pool_table_problem(&apart, &tags, Some(&todos)).unwrap();
        assert!(
            problem.starts_with("co-locate with public.todos"),
            "{problem}"
        );
        let together = citus(&[
            ("public.todos", "distributed", "tenant_id", 1),
            ("public.tags", "distributed", "tenant_id", 1),
        ]);
        assert_eq!(pool_table_problem(&together, &tags, Some(&todos)), None);
        let by_id = citus(&[("public.todos", "distributed", "id", 1)]);
        let problem = pool_table_problem(&by_id, &todos, None).unwrap();
        assert!(problem.contains("distributed by id"), "{problem}");
        let reference = citus(&[("public.todos", "reference", "<none>", 3)]);
        assert!(pool_table_problem(&reference, &todos, None).is_some());
    }
}
