//! Reading what the servers hold now.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, PgPool};
use tenants_core::SqlIdent;

use super::file::TableName;
use tenants_db::sql_literal as literal;
use tenants_db::{Error, TenantRole};

/// A role as `pg_roles` shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoleLive {
    pub(crate) login: bool,
    pub(crate) superuser: bool,
    pub(crate) bypassrls: bool,
    pub(crate) creates: bool,
}

/// Cluster-wide state of one server.
#[derive(Debug, Default)]
pub(crate) struct ServerLive {
    pub(crate) roles: HashMap<String, RoleLive>,
    /// Group role → its members.
    pub(crate) members: HashMap<String, BTreeSet<String>>,
    /// Member → the tenant group roles it is a member of.
    pub(crate) tenant_groups: HashMap<String, BTreeSet<String>>,
    pub(crate) databases: HashSet<String>,
}

impl ServerLive {
    pub(crate) async fn read(pool: &PgPool) -> Result<Self, Error> {
        let roles: Vec<(String, bool, bool, bool, bool)> = sqlx::query_as(
            "SELECT rolname::text, rolcanlogin, rolsuper, rolbypassrls, rolcreatedb OR rolcreaterole \
             FROM pg_roles",
        )
        .fetch_all(pool)
        .await?;
        let members: Vec<(String, String)> = sqlx::query_as(
            "SELECT g.rolname::text, m.rolname::text FROM pg_auth_members a \
             JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member",
        )
        .fetch_all(pool)
        .await?;
        let databases: Vec<(String,)> = sqlx::query_as("SELECT datname::text FROM pg_database")
            .fetch_all(pool)
            .await?;
        let mut live = ServerLive {
            roles: roles
                .into_iter()
                .map(|(name, login, superuser, bypassrls, creates)| {
                    let role = RoleLive {
                        login,
                        superuser,
                        bypassrls,
                        creates,
                    };
                    (name, role)
                })
                .collect(),
            databases: databases.into_iter().map(|(d,)| d).collect(),
            ..ServerLive::default()
        };
        for (group, member) in members {
            if TenantRole::is_role_name(&group) {
                live.tenant_groups
                    .entry(member.clone())
                    .or_default()
                    .insert(group.clone());
            }
            live.members.entry(group).or_default().insert(member);
        }
        Ok(live)
    }

    pub(crate) fn has_role(&self, name: &SqlIdent) -> bool {
        self.roles.contains_key(name.as_str())
    }

    pub(crate) fn is_member(&self, member: &SqlIdent, group: &SqlIdent) -> bool {
        self.members
            .get(group.as_str())
            .is_some_and(|m| m.contains(member.as_str()))
    }
}

/// One privilege a role holds on a relation (or a relation holding none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantRow {
    pub(crate) schema: String,
    pub(crate) relation: String,
    /// `S` for a sequence, anything else is table-like.
    pub(crate) kind: String,
    pub(crate) grantee: Option<String>,
    pub(crate) privilege: Option<String>,
}

impl GrantRow {
    pub(crate) fn is_sequence(&self) -> bool {
        self.kind == "S"
    }

    pub(crate) fn quoted(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.relation)
        )
    }
}

/// An identifier read from the server, quoted (doubling any `"`).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const GRANTS_IN_SCHEMAS: &str = "
SELECT n.nspname::text, c.relname::text, c.relkind::text, r.rolname::text, a.privilege_type::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL aclexplode(c.relacl) a ON true
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND c.relname <> '_sqlx_migrations'";

const GRANTS_ON_TABLES: &str = "
WITH t AS (
    SELECT c.oid FROM unnest($1::text[]) x JOIN pg_class c ON c.oid = to_regclass(x)
), rel AS (
    SELECT oid FROM t
    UNION
    SELECT d.objid FROM pg_depend d JOIN t ON d.refobjid = t.oid
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i')
)
SELECT n.nspname::text, c.relname::text, c.relkind::text, r.rolname::text, a.privilege_type::text
FROM rel JOIN pg_class c ON c.oid = rel.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL aclexplode(c.relacl) a ON true
LEFT JOIN pg_roles r ON r.oid = a.grantee";

type GrantTuple = (String, String, String, Option<String>, Option<String>);

fn rows(tuples: Vec<GrantTuple>) -> Vec<GrantRow> {
    tuples
        .into_iter()
        .map(|(schema, relation, kind, grantee, privilege)| GrantRow {
            schema,
            relation,
            kind,
            grantee,
            privilege,
        })
        .collect()
}

/// Grants on every relation of these schemas.
pub(crate) async fn grants_in_schemas<'c, E>(
    db: E,
    schemas: &[String],
) -> Result<Vec<GrantRow>, Error>
where
    E: sqlx::PgExecutor<'c>,
{
    let tuples: Vec<GrantTuple> = sqlx::query_as(GRANTS_IN_SCHEMAS)
        .bind(schemas)
        .fetch_all(db)
        .await?;
    Ok(rows(tuples))
}

/// Grants on these tables and the sequences they own (not their indexes, which
/// depend on them too but take no grants).
pub(crate) async fn grants_on_tables<'c, E>(
    db: E,
    tables: &[TableName],
) -> Result<Vec<GrantRow>, Error>
where
    E: sqlx::PgExecutor<'c>,
{
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let tuples: Vec<GrantTuple> = sqlx::query_as(GRANTS_ON_TABLES)
        .bind(names)
        .fetch_all(db)
        .await?;
    Ok(rows(tuples))
}

/// A pool table's security, as it is now.
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolTableLive {
    pub(crate) exists: bool,
    pub(crate) rls: bool,
    pub(crate) forced: bool,
    pub(crate) tenant_column: bool,
    /// `tenant_id` has a default (rows then get the tenant of the transaction).
    pub(crate) tenant_default: bool,
    pub(crate) policy: bool,
    /// The policy reads the setting through [`POLICY_CHECK`], in `USING` and `WITH
    /// CHECK` alike, so no tenant (NULL, or `''` once a connection ran a tenant
    /// transaction) matches no row.
    pub(crate) policy_fails_closed: bool,
    /// Views over the table that run with their owner's rights (no
    /// `security_invoker`), schema-qualified and quoted.
    pub(crate) definer_views: Vec<String>,
    /// Unique indexes (primary keys included) and foreign keys to pool tables
    /// that do not lead with `tenant_id`, as `kind name (columns)`.
    pub(crate) keys_without_tenant: Vec<String>,
}

/// The name of the row-level security policy given to pool tables.
pub(crate) const POLICY: &str = "tenant_isolation";

/// The expression of the pool tables' policy, for reads and writes: `NULLIF` makes
/// an empty setting NULL, and `tenant_id = NULL` is never true. (A custom setting
/// reads back as `''`, not NULL, once any transaction of the session has set it:
/// PostgreSQL keeps the placeholder.)
pub(crate) const POLICY_CHECK: &str =
    "tenant_id = NULLIF(current_setting('tenants.tenant_id', true), '')";

/// The call of [`POLICY_CHECK`] as PostgreSQL prints it back (`pg_get_expr`); the
/// comparison around it prints differently for a `varchar` or `uuid` `tenant_id`.
const POLICY_READ_PRINTED: &str =
    "NULLIF(current_setting('tenants.tenant_id'::text, true), ''::text)";

/// What is wrong with a pool table's policy, from its printed expressions
/// (`pg_get_expr`), or `None`.
///
/// PostgreSQL ORs permissive policies, so one that does not read the tenant
/// setting widens every tenant's view. A custom setting reads back as `''` (not
/// NULL) once a transaction of the session has set it, so a read of the setting
/// outside `NULLIF(.., '')` compares with `''` when no tenant is set, and a test of
/// the setting for NULL or `''` lets rows through exactly then.
pub(crate) fn policy_problem(permissive: bool, expressions: &[&str]) -> Option<&'static str> {
    const READ: &str = "current_setting('tenants.tenant_id'";
    const WRAPPED: &str = "NULLIF(current_setting('tenants.tenant_id'";
    const SETTING: &str = "current_setting('tenants.tenant_id'::text, true)";
    const NULLIF: &str = "NULLIF(current_setting('tenants.tenant_id'::text, true), ''::text)";
    let reads: usize = expressions.iter().map(|e| e.matches(READ).count()).sum();
    let wrapped: usize = expressions.iter().map(|e| e.matches(WRAPPED).count()).sum();
    if reads == 0 {
        return permissive.then_some(
            "is permissive and does not read tenants.tenant_id: permissive policies are \
             ORed, so it widens what every tenant sees; make it AS RESTRICTIVE or drop it",
        );
    }
    let tests_the_setting = [SETTING, NULLIF].iter().any(|read| {
        expressions.iter().any(|e| {
            [" IS NULL", " = ''::text", " <> ''::text"]
                .iter()
                .any(|test| e.contains(&format!("{read}{test}")))
                || e.contains(&format!("COALESCE({read}"))
        })
    });
    if tests_the_setting {
        return Some(
            "lets rows through when no tenant is set (it tests the setting for NULL or ''): \
             compare tenant_id = NULLIF(current_setting('tenants.tenant_id', true), '') alone",
        );
    }
    (reads > wrapped).then_some(
        "reads tenants.tenant_id without NULLIF(.., ''): with no tenant set it compares \
         with '' (a row with tenant_id = '' matches, and such a row can be written); use \
         NULLIF(current_setting('tenants.tenant_id', true), '')",
    )
}

/// For each pool table (`$1`, quoted names; `$2`, the policy's name): whether it
/// exists, row-level security enabled and forced, a `tenant_id` column and its
/// default, the policy and its expressions, views over it reading as their
/// owner, and keys and foreign keys that do not lead with `tenant_id`.
const POOL_TABLES_SQL: &str = "SELECT x, c.oid IS NOT NULL, coalesce(c.relrowsecurity, false), \
                coalesce(c.relforcerowsecurity, false), \
                EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                        AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped), \
                EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_attrdef d \
                        ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                        WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'), \
                EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2), \
                (SELECT ARRAY[pg_get_expr(p.polqual, p.polrelid), \
                              pg_get_expr(p.polwithcheck, p.polrelid)] \
                 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2 \
                   AND p.polpermissive AND p.polcmd = '*'), \
                ARRAY(SELECT DISTINCT format('%I.%I', vn.nspname, v.relname) \
                      FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
                      JOIN pg_class v ON v.oid = r.ev_class \
                      JOIN pg_namespace vn ON vn.oid = v.relnamespace \
                      WHERE d.classid = 'pg_rewrite'::regclass \
                        AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid \
                        AND v.relkind = 'v' AND v.oid <> c.oid \
                        AND NOT coalesce((SELECT o.option_value::bool \
                                          FROM pg_options_to_table(v.reloptions) o \
                                          WHERE o.option_name = 'security_invoker'), false) \
                      ORDER BY 1), \
                ARRAY(SELECT k FROM ( \
                    SELECT format('%s %I (%s)', \
                               CASE WHEN ix.indisprimary THEN 'primary key' ELSE 'unique index' END, \
                               ic.relname, substring(pg_get_indexdef(ix.indexrelid) FROM '\\((.*)\\)')) AS k \
                    FROM pg_index ix JOIN pg_class ic ON ic.oid = ix.indexrelid \
                    WHERE ix.indrelid = c.oid AND ix.indisunique \
                      AND coalesce((SELECT a.attname = 'tenant_id' FROM pg_attribute a \
                                    WHERE a.attrelid = ix.indrelid \
                                      AND a.attnum = ix.indkey[0]), false) IS NOT TRUE \
                    UNION ALL \
                    SELECT format('foreign key %I (%s)', co.conname, \
                                  pg_get_constraintdef(co.oid, true)) \
                    FROM pg_constraint co \
                    WHERE co.conrelid = c.oid AND co.contype = 'f' \
                      AND co.confrelid IN (SELECT to_regclass(y) FROM unnest($1::text[]) AS y) \
                      AND NOT (coalesce((SELECT a.attname = 'tenant_id' FROM pg_attribute a \
                                         WHERE a.attrelid = co.conrelid \
                                           AND a.attnum = co.conkey[1]), false) \
                               AND coalesce((SELECT a.attname = 'tenant_id' FROM pg_attribute a \
                                         WHERE a.attrelid = co.confrelid \
                                           AND a.attnum = co.confkey[1]), false)) \
                    ORDER BY 1) keys) \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) \
         LEFT JOIN pg_class c ON c.oid = to_regclass(x) ORDER BY i";

pub(crate) async fn pool_tables<'c, E>(
    db: E,
    tables: &[TableName],
) -> Result<Vec<PoolTableLive>, Error>
where
    E: sqlx::PgExecutor<'c>,
{
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let found: Vec<PoolTableRow> = sqlx::query_as(POOL_TABLES_SQL)
        .bind(names)
        .bind(POLICY)
        .fetch_all(db)
        .await?;
    Ok(found.into_iter().map(pool_table).collect())
}

/// One row of [`POOL_TABLES_SQL`].
type PoolTableRow = (
    String,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    Option<Vec<Option<String>>>,
    Vec<String>,
    Vec<String>,
);

fn pool_table(row: PoolTableRow) -> PoolTableLive {
    let (_, exists, rls, forced, tenant_column, tenant_default, policy, expressions, views, keys) =
        row;
    PoolTableLive {
        exists,
        rls,
        forced,
        tenant_column,
        tenant_default,
        policy,
        policy_fails_closed: fails_closed_policy(expressions),
        definer_views: views,
        keys_without_tenant: keys,
    }
}

/// Whether a permissive policy for every command, with these `USING` and `WITH
/// CHECK` expressions, refuses rows when no tenant is set: both read the setting
/// through `NULLIF(.., '')`, and nothing in them widens it.
fn fails_closed_policy(expressions: Option<Vec<Option<String>>>) -> bool {
    let Some([Some(using), Some(check)]) = expressions.as_deref() else {
        return false;
    };
    [using, check]
        .iter()
        .all(|e| e.contains(POLICY_READ_PRINTED))
        && policy_problem(true, &[using, check]).is_none()
}

/// Applied migration versions in the `_sqlx_migrations` table the connection's
/// search path finds; `None` when there is none.
pub(crate) async fn applied(conn: &mut PgConnection) -> Result<Option<BTreeSet<i64>>, Error> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(&mut *conn)
        .await?;
    if table.is_none() {
        return Ok(None);
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await?;
    Ok(Some(versions.into_iter().collect()))
}

/// Applied migration versions of many schemas of one database, in one query.
pub(crate) async fn applied_in_schemas(
    pool: &PgPool,
    schemas: &[SqlIdent],
) -> Result<HashMap<String, BTreeSet<i64>>, Error> {
    let names: Vec<&str> = schemas.iter().map(SqlIdent::as_str).collect();
    let with_table: Vec<(String,)> = sqlx::query_as(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = '_sqlx_migrations' AND n.nspname = ANY($1)",
    )
    .bind(&names)
    .fetch_all(pool)
    .await?;
    let mut applied: HashMap<String, BTreeSet<i64>> = with_table
        .iter()
        .map(|(s,)| (s.clone(), BTreeSet::new()))
        .collect();
    for chunk in with_table.chunks(500) {
        // Schema names are validated identifiers, quoted; values are literals.
        let sql = chunk
            .iter()
            .map(|(schema,)| {
                format!(
                    "SELECT {}::text, version FROM {}._sqlx_migrations WHERE success",
                    literal(schema),
                    quote_ident(schema)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?;
        for (schema, version) in rows {
            applied.entry(schema).or_default().insert(version);
        }
    }
    Ok(applied)
}

/// Opens a connection of its own to `options` (a silo or template database, or a
/// session whose settings must not reach a pool). Close it with [`close`].
///
/// Not a `with_connection(options, async |conn| ..)` helper: the compiler cannot
/// prove the futures of async closures taking a borrowed connection `Send` for
/// every lifetime, and applications await the engine in spawned tasks.
pub(crate) async fn connect(
    options: &sqlx::postgres::PgConnectOptions,
) -> Result<PgConnection, Error> {
    Ok(PgConnection::connect_with(options).await?)
}

/// Closes a connection of [`connect`] and returns `result`: closing politely only
/// tells the server sooner, so a failure to close changes nothing.
pub(crate) async fn close<T>(conn: PgConnection, result: T) -> T {
    let _ = conn.close().await;
    result
}

/// What the servers hold now, as far as the plan needs it.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) servers: HashMap<String, ServerLive>,
    pub(crate) schemas: HashSet<String>,
    pub(crate) catalog: bool,
    pub(crate) records: BTreeMap<String, serde_json::Value>,
    /// Where the catalog's tenants live, `schema <name>` or
    /// `database <server>/<name>`, → their id.
    pub(crate) locations: HashMap<String, String>,
    pub(crate) provisioned: BTreeMap<String, String>,
    pub(crate) app_reads_catalog: bool,
    pub(crate) shared_applied: Option<BTreeSet<i64>>,
    pub(crate) templates: HashMap<String, Option<BTreeSet<i64>>>,
    pub(crate) bridge_applied: HashMap<String, BTreeSet<i64>>,
    pub(crate) bridge_grants: HashMap<String, Vec<GrantRow>>,
    pub(crate) pool: Vec<PoolTableLive>,
    pub(crate) pool_grants: Vec<GrantRow>,
    /// `(server, database)` → applied migrations and grants of each silo database.
    pub(crate) silos: HashMap<(String, String), SiloLive>,
    /// The Citus objects, when the default server is declared a Citus coordinator.
    pub(crate) citus: Option<super::citus::CitusLive>,
}

/// A silo database's applied migrations (`None`: no migrations table) and grants.
pub(crate) type SiloLive = (Option<BTreeSet<i64>>, Vec<GrantRow>);

/// Reading one silo database: `(server, database)` and what it holds.
pub(crate) type SiloRead<'a> =
    futures_util::future::BoxFuture<'a, Result<((String, String), SiloLive), Error>>;
