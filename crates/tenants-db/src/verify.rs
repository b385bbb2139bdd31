//! Isolation hazards of the application's database role, found on a live database.

use std::fmt;

/// Lists the hazards visible to the connected role, as rows of `(kind, subject)`.
///
/// Pool tables are the tables with a `tenant_id` column outside the system schemas.
/// A superuser is reported once, without the table-ownership rows its superuser
/// status would imply. Besides the role's own attributes and the tables' security,
/// it finds the objects that read pool tables with their owner's rights, which row-level
/// security does not filter when that owner bypasses it (a superuser or `BYPASSRLS`
/// role): views without `security_invoker`, `SECURITY DEFINER` functions whose
/// source names a pool table (or, for SQL-standard bodies, that depend on one), and
/// materialized views, whose rows were computed when
/// they were refreshed, by their owner. On a Citus coordinator it reports a role
/// whose `SET LOCAL`s Citus does not forward to the workers
/// (`citus.propagate_set_commands` is not `local`, or
/// `citus.select_opens_transaction_block` is off, which leaves reads outside the
/// workers' transactions: the shards' policies would see no tenant, and pool-table
/// queries would return no rows), and a
/// `citus-coordinator` row, which [`TenantRouter::verify`](crate::TenantRouter::verify)
/// compares with the server's declaration.
pub const HAZARDS_SQL: &str = r"
WITH me AS (
    SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user
), bypassing AS (
    SELECT oid, rolname FROM pg_roles WHERE rolsuper OR rolbypassrls
), pool_tables AS (
    SELECT c.oid, c.relname, format('%I.%I', n.nspname, c.relname) AS name, c.relowner,
           c.relrowsecurity, c.relforcerowsecurity
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
      AND EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                    AND a.attnum > 0 AND NOT a.attisdropped)
)
SELECT 'superuser' AS kind, rolname::text AS subject FROM me WHERE rolsuper
UNION ALL
SELECT 'bypassrls', rolname::text FROM me WHERE rolbypassrls AND NOT rolsuper
UNION ALL
SELECT 'owner', name FROM pool_tables, me
WHERE NOT me.rolsuper AND pg_has_role(current_user, relowner, 'MEMBER')
UNION ALL
SELECT 'rls-disabled', name FROM pool_tables WHERE NOT relrowsecurity
UNION ALL
SELECT 'rls-not-forced', name FROM pool_tables WHERE relrowsecurity AND NOT relforcerowsecurity
UNION ALL
SELECT 'member-of-bypassing', b.rolname::text FROM bypassing b, me
WHERE NOT me.rolsuper AND b.rolname <> me.rolname AND pg_has_role(current_user, b.oid, 'MEMBER')
UNION ALL
SELECT DISTINCT CASE v.relkind WHEN 'm' THEN 'materialized-view' ELSE 'view-bypasses-rls' END,
       format('%I.%I', vn.nspname, v.relname)
FROM pool_tables t
JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid
                AND d.classid = 'pg_rewrite'::regclass
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class AND v.oid <> t.oid
JOIN pg_namespace vn ON vn.oid = v.relnamespace
WHERE v.relkind = 'm'
   OR (v.relkind = 'v' AND v.relowner IN (SELECT oid FROM bypassing)
       AND NOT coalesce((SELECT o.option_value::bool FROM pg_options_to_table(v.reloptions) o
                         WHERE o.option_name = 'security_invoker'), false))
UNION ALL
SELECT 'citus-settings-not-forwarded', current_user::text
WHERE EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')
  AND (coalesce(current_setting('citus.propagate_set_commands', true), 'none') <> 'local'
       OR current_setting('citus.select_opens_transaction_block', true) = 'off')
UNION ALL
SELECT 'citus-coordinator', current_database()::text
WHERE EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')
UNION ALL
SELECT DISTINCT 'security-definer', p.oid::regprocedure::text
FROM pg_proc p JOIN pool_tables t
  ON p.prosrc ~* ('\m' || regexp_replace(t.relname, '([^[:alnum:]_])', '\', 'g') || '\M')
  OR EXISTS (SELECT 1 FROM pg_depend d
             WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
               AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid)
WHERE p.prosecdef AND p.proowner IN (SELECT oid FROM bypassing)
ORDER BY 1, 2";

/// What the second statement of the session check reads: the marker its
/// connection set in the first.
#[cfg_attr(not(any(feature = "sqlx", feature = "deadpool")), allow(dead_code))]
pub(crate) const KEEPS_SESSIONS_READ: &str =
    "SELECT current_setting('tenants.session_check', true)";

/// The statements that mark two client connections' sessions for the session
/// check, and the marker the first must read back: values unique to this check,
/// so two checks through one pooler cannot mistake each other's.
#[cfg_attr(not(any(feature = "sqlx", feature = "deadpool")), allow(dead_code))]
pub(crate) fn session_markers() -> (String, String, String) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let token = format!(
        "{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mark = |who: &str| format!("SET tenants.session_check = '{who}-{token}'");
    (mark("first"), mark("second"), format!("first-{token}"))
}

/// Something that lets the application's role see past tenant isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hazard {
    /// The role is a superuser: row-level security does not apply to it.
    Superuser {
        /// The role.
        role: String,
    },
    /// The role has `BYPASSRLS`.
    BypassRls {
        /// The role.
        role: String,
    },
    /// The role owns (or is a member of the owner of) a pool table, so it can turn
    /// the table's row-level security off.
    OwnsPoolTable {
        /// The table, schema-qualified.
        table: String,
    },
    /// A pool table does not have row-level security enabled.
    RlsDisabled {
        /// The table, schema-qualified.
        table: String,
    },
    /// A pool table has row-level security enabled but not forced, so its owner is
    /// not filtered.
    RlsNotForced {
        /// The table, schema-qualified.
        table: String,
    },
    /// The role is a member of a role that bypasses row-level security (a
    /// superuser or `BYPASSRLS` role): one `SET ROLE` away from every tenant's rows.
    MemberOfBypassingRole {
        /// The bypassing role.
        role: String,
    },
    /// A view over a pool table runs with the rights of an owner that bypasses
    /// row-level security, so it shows every tenant's rows.
    ViewBypassesRls {
        /// The view, schema-qualified.
        view: String,
    },
    /// A materialized view over a pool table: its rows were read when it was last
    /// refreshed, by its owner, and row-level security does not filter them.
    MaterializedView {
        /// The materialized view, schema-qualified.
        view: String,
    },
    /// A `SECURITY DEFINER` function owned by a role that bypasses row-level
    /// security reads a pool table: it runs with its owner's rights.
    SecurityDefiner {
        /// The function, with its argument types.
        function: String,
    },
    /// A server declared [`ConnectionMode::Direct`](crate::ConnectionMode::Direct)
    /// loses session state between statements of one client connection, as a
    /// transaction-mode pooler does: sessions handed out there would carry another
    /// client's tenant, and silo connections' startup parameters are refused or
    /// dropped.
    UndeclaredTransactionPooler {
        /// The server, by the router's name for it.
        server: String,
    },
    /// The role's `SET LOCAL`s do not reach a Citus cluster's workers
    /// (`citus.propagate_set_commands` is not `local`, or
    /// `citus.select_opens_transaction_block` is off): the router's transactions
    /// set it for themselves, but any other transaction of the role that sets the
    /// tenant leaves the shards' row-level security without one, and its
    /// pool-table queries return no rows.
    CitusSettingsNotForwarded {
        /// The application's role.
        role: String,
    },
    /// The server is a Citus coordinator. From [`HAZARDS_SQL`] with the database's
    /// name; [`TenantRouter::verify`](crate::TenantRouter::verify) reports it, with
    /// the server's name, only for a server not declared with
    /// [`RouterBuilder::citus`](crate::RouterBuilder::citus).
    UndeclaredCitus {
        /// The server, by the router's name for it (from [`HAZARDS_SQL`]: the database).
        server: String,
    },
}

impl Hazard {
    /// Reads one row of [`HAZARDS_SQL`]; `None` for a kind this version does not know.
    pub fn from_row(kind: &str, subject: String) -> Option<Self> {
        Some(match kind {
            "superuser" => Hazard::Superuser { role: subject },
            "bypassrls" => Hazard::BypassRls { role: subject },
            "owner" => Hazard::OwnsPoolTable { table: subject },
            "rls-disabled" => Hazard::RlsDisabled { table: subject },
            "rls-not-forced" => Hazard::RlsNotForced { table: subject },
            "member-of-bypassing" => Hazard::MemberOfBypassingRole { role: subject },
            "view-bypasses-rls" => Hazard::ViewBypassesRls { view: subject },
            "materialized-view" => Hazard::MaterializedView { view: subject },
            "security-definer" => Hazard::SecurityDefiner { function: subject },
            "citus-settings-not-forwarded" => Hazard::CitusSettingsNotForwarded { role: subject },
            "citus-coordinator" => Hazard::UndeclaredCitus { server: subject },
            _ => return None,
        })
    }
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hazard::Superuser { role } => write!(
                f,
                "role {role} is a superuser, which row-level security never filters: \
                 connect as an ordinary role"
            ),
            Hazard::BypassRls { role } => write!(
                f,
                "role {role} has BYPASSRLS: ALTER ROLE {role} NOBYPASSRLS"
            ),
            Hazard::OwnsPoolTable { table } => write!(
                f,
                "the application role owns pool table {table} and could disable its \
                 row-level security: give the table to a migration role"
            ),
            Hazard::RlsDisabled { table } => write!(
                f,
                "pool table {table} has row-level security disabled: \
                 ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"
            ),
            Hazard::RlsNotForced { table } => write!(
                f,
                "pool table {table} does not force row-level security on its owner: \
                 ALTER TABLE {table} FORCE ROW LEVEL SECURITY"
            ),
            Hazard::MemberOfBypassingRole { role } => write!(
                f,
                "the application role is a member of {role}, which bypasses row-level security \
                 (SUPERUSER or BYPASSRLS): SET ROLE {role} would show every tenant's rows; \
                 REVOKE {role} FROM the application role"
            ),
            Hazard::ViewBypassesRls { view } => write!(
                f,
                "view {view} reads a pool table with the rights of an owner that bypasses \
                 row-level security, so it shows every tenant's rows: \
                 ALTER VIEW {view} SET (security_invoker = true)"
            ),
            Hazard::MaterializedView { view } => write!(
                f,
                "materialized view {view} holds pool-table rows that row-level security does \
                 not filter: drop it, or replace it with a view WITH (security_invoker = true)"
            ),
            Hazard::SecurityDefiner { function } => write!(
                f,
                "SECURITY DEFINER function {function} reads a pool table with the rights of an \
                 owner that bypasses row-level security: make it SECURITY INVOKER, or give it \
                 to a role without SUPERUSER or BYPASSRLS"
            ),
            Hazard::UndeclaredTransactionPooler { server } => write!(
                f,
                "server {server:?} does not keep session state from one statement to the \
                 next, as a transaction-mode pooler does: declare it with \
                 .connection_mode({server:?}, ConnectionMode::TransactionPooler) \
                 (connection = \"transaction_pooler\" in a tenants file)"
            ),
            Hazard::CitusSettingsNotForwarded { role } => write!(
                f,
                "Citus does not forward role {role}'s SET LOCAL to its workers, so pool \
                 tables' policies there see no tenant and return no rows outside the \
                 router's transactions: ALTER ROLE {role} SET citus.propagate_set_commands \
                 = 'local', and leave citus.select_opens_transaction_block on (tenants apply \
                 does both for the roles of a server declared citus)"
            ),
            Hazard::UndeclaredCitus { server } => write!(
                f,
                "server {server:?} is a Citus coordinator: declare it with \
                 .citus({server:?}) (citus = true in a tenants file), so transactions open \
                 without a BEGIN in what Citus forwards to its workers"
            ),
        }
    }
}
